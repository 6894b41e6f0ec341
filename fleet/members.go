package fleet

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/livekit/psrpc/pkg/client"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Announcement kinds on the members channel (doc.go).
const (
	kindProbe = "probe" // who is there? the sender is not a member yet
	kindAlive = "alive"
	kindLeave = "leave"
)

type announcement struct {
	Kind     string `json:"kind"`
	Instance string `json:"instance"`
	ID       string `json:"id"`
	URL      string `json:"url,omitempty"` // where its API is served
}

// announce publishes one announcement of this instance; the bus delivers
// it or logs the failure itself (Redis publishes are queued).
func (f *Fleet) announce(kind string) {
	m, err := encode(announcement{Kind: kind, Instance: f.instance, ID: f.id, URL: f.url})
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
		defer cancel()
		err = f.srv.Publish(ctx, mMembers, nil, m)
	}
	if err != nil {
		f.log.Warn("fleet: cannot announce this instance", "kind", kind, "err", err)
	}
}

// probe sends probes until run saw one come back.
func (f *Fleet) probe(joined <-chan struct{}) error {
	deadline := time.NewTimer(f.timeout)
	defer deadline.Stop()
	tick := time.NewTicker(probeEvery)
	defer tick.Stop()
	for {
		f.announce(kindProbe)
		select {
		case <-joined:
			return nil
		case <-deadline.C:
			return fmt.Errorf("fleet: the bus did not carry this instance's probe back within %s", f.timeout)
		case <-tick.C:
		}
	}
}

// run keeps the members: it reads the announcements, answers probes once
// this instance joined, announces it every heartbeat and forgets the
// instances gone silent.
func (f *Fleet) run(joined chan struct{}) {
	defer close(f.done)
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	in := false
	for {
		select {
		case <-f.stop:
			return
		case now := <-tick.C:
			if in {
				f.announce(kindAlive)
			}
			f.forget(now)
		case m, ok := <-f.sub.Channel():
			if !ok {
				return
			}
			var a announcement
			if err := json.Unmarshal(m.GetValue(), &a); err != nil {
				f.log.Warn("fleet: unreadable announcement", "err", err)
				continue
			}
			if a.Instance == f.instance {
				if a.ID != f.id {
					f.log.Error("fleet: another process runs under this instance's name", "kind", a.Kind)
				} else if a.Kind == kindProbe && !in {
					in = true
					close(joined)
					f.announce(kindAlive)
				}
				continue
			}
			f.heard(a, in)
		}
	}
}

func (f *Fleet) heard(a announcement, in bool) {
	switch a.Kind {
	case kindProbe:
		if in {
			f.announce(kindAlive)
		}
	case kindAlive:
		f.mu.Lock()
		_, known := f.seen[a.Instance]
		f.seen[a.Instance] = time.Now()
		if a.URL != "" {
			f.urls[a.Instance] = a.URL
		}
		f.mu.Unlock()
		if !known {
			f.log.Info("fleet: instance joined", "peer", a.Instance)
		}
	case kindLeave:
		f.mu.Lock()
		_, known := f.seen[a.Instance]
		delete(f.seen, a.Instance)
		delete(f.urls, a.Instance)
		f.mu.Unlock()
		if known {
			f.log.Info("fleet: instance left", "peer", a.Instance)
		}
	}
}

func (f *Fleet) forget(now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for inst, t := range f.seen {
		if now.Sub(t) > forgetAfter {
			delete(f.seen, inst)
			delete(f.urls, inst)
			f.log.Warn("fleet: instance forgotten, not heard from", "peer", inst, "silent", now.Sub(t).Round(time.Second))
		}
	}
}

// URL is where instance serves its API, as it announced it; "" when it
// announced none or is not a member.
func (f *Fleet) URL(instance string) string {
	if instance == f.instance {
		return f.url
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.urls[instance]
}

// Member says whether instance is this one or another it heard from
// lately: a live member of the fleet.
func (f *Fleet) Member(instance string) bool { return f.known()[instance] }

// known is this instance and the others it heard from.
func (f *Fleet) known() map[string]bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := make(map[string]bool, len(f.seen)+1)
	for inst := range f.seen {
		m[inst] = true
	}
	m[f.instance] = true
	return m
}

// List gathers the recordings of every instance (doc.go). It returns once
// each known instance answered, or at the timeout with the entries it has
// and an *UnansweredError naming the others.
func (f *Fleet) List(ctx context.Context) ([]Entry, error) {
	want := f.known()
	timeout := f.timeout
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends psrpc's wait for further answers
	m, err := encode(listReq{})
	if err != nil {
		return nil, fmt.Errorf("fleet: list request: %w", err)
	}
	answers, err := client.RequestMulti[*wrapperspb.BytesValue](ctx, f.cli, mList, nil, m)
	if err != nil {
		return nil, fmt.Errorf("fleet: list: %w", err)
	}
	answered := map[string]bool{}
	var entries []Entry
	for res := range answers {
		if res.Err != nil {
			inst := ""
			if re, ok := fromWire(res.Err); ok {
				inst = re.instance
			}
			f.log.Warn("fleet: an instance failed to list", "peer", inst, "err", res.Err)
			continue
		}
		var l listRes
		if err := json.Unmarshal(res.Result.GetValue(), &l); err != nil {
			f.log.Warn("fleet: unreadable list answer", "err", err)
			continue
		}
		answered[l.Instance] = true
		for _, rec := range l.Recordings {
			entries = append(entries, Entry{Instance: l.Instance, Recording: rec})
		}
		if allAnswered(want, answered) {
			break
		}
	}
	slices.SortStableFunc(entries, func(a, b Entry) int { return cmp.Compare(a.Instance, b.Instance) })
	var missing []string
	for _, inst := range slices.Sorted(maps.Keys(want)) {
		if !answered[inst] {
			missing = append(missing, inst)
		}
	}
	if len(missing) > 0 {
		return entries, &UnansweredError{Instances: missing, Timeout: timeout}
	}
	return entries, nil
}

func allAnswered(want, answered map[string]bool) bool {
	for inst := range want {
		if !answered[inst] {
			return false
		}
	}
	return true
}
