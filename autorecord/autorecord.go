// Package autorecord is the policy for LiveKit's webhooks: which verified
// event starts, stops or refreshes which recording. It turns events into
// calls on the recorder, in the background (LiveKit wants a quick answer),
// one participant's events strictly in the order they arrived, so a
// participant_left followed at once by a participant_joined (a page
// refresh) ends the first recording before the second starts.
package autorecord

import (
	"context"
	"errors"
	"log/slog"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/trackrec/trackrec/ownership"
	"github.com/trackrec/trackrec/recorder"
)

// Recorder is what the policy drives (recorder.Supervisor).
type Recorder interface {
	Start(ctx context.Context, room, participant string, opts ...recorder.StartOption) (recorder.RecordingInfo, bool, error)
	Stop(ctx context.Context, room, participant string) (recorder.RecordingInfo, error)
	StopRoom(ctx context.Context, room, reason string)
	// Refresh makes the room's bot subscribe to audio of identity it lacks.
	Refresh(room, identity string)
	// ParticipantSID is the session of identity that the room's bot sees
	// now, "" when it sees none.
	ParticipantSID(room, identity string) string
}

// Options choose what is recorded automatically.
type Options struct {
	// Enabled starts a recording on participant_joined.
	Enabled bool
	// Rooms, if set, limits auto-recording to rooms matching one of these
	// globs (path.Match syntax: *, ?, [a-z]).
	Rooms []string
	// IgnoreIdentities are globs of identities never auto-recorded.
	IgnoreIdentities []string
	// Timeout bounds the work of one event (default 30 s).
	Timeout time.Duration
	// Later, if set, keeps a start refused for capacity (ErrFull) wanted,
	// so that the first instance of the fleet with room records it
	// (takeover.Later); without it the refusal is logged.
	Later  func(ctx context.Context, room, identity string) error
	Logger *slog.Logger
}

// Policy acts on LiveKit's webhook events.
type Policy struct {
	rec  Recorder
	opts Options
	log  *slog.Logger

	life   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu sync.Mutex
	// tail is the last queued event of each participant: the next one of
	// the same participant waits for it.
	tail map[ownership.Key]chan struct{}
	// joined is the session (participant SID) of each participant's last
	// participant_joined acted on, so that a participant_left of an older
	// session that arrives after it stops nothing.
	joined map[ownership.Key]string
}

// maxJoined bounds the sessions remembered; past it an arbitrary one is
// forgotten (its participant then relies on the bot's view alone).
const maxJoined = 10000

// New returns a Policy driving rec.
func New(rec Recorder, o Options) *Policy {
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	life, cancel := context.WithCancel(context.Background())
	return &Policy{rec: rec, opts: o, log: o.Logger, life: life, cancel: cancel, tail: map[ownership.Key]chan struct{}{}, joined: map[ownership.Key]string{}}
}

// Close ends the events being acted on and waits for them.
func (p *Policy) Close() {
	p.cancel()
	p.wg.Wait()
}

// Wait returns once every event handed over so far has been acted on.
func (p *Policy) Wait() { p.wg.Wait() }

// HandleEvent acts on a verified LiveKit webhook event in the background and
// reports whether it is one the recorder acts on. Start and stop are
// idempotent, so a retried event does no harm.
func (p *Policy) HandleEvent(ev *livekit.WebhookEvent) bool {
	room := ev.GetRoom().GetName()
	pi := ev.GetParticipant()
	key := ownership.Key{Room: room, Participant: pi.GetIdentity()}
	var act func(ctx context.Context)
	switch ev.GetEvent() {
	case "participant_joined":
		if !p.opts.Enabled || !p.Recordable(room, pi) {
			return false
		}
		act = func(ctx context.Context) {
			p.remember(key, pi.GetSid())
			p.start(ctx, room, pi.GetIdentity())
		}
	case "participant_left":
		if pi.GetIdentity() == "" || room == "" {
			return false
		}
		act = func(ctx context.Context) { p.stop(ctx, room, pi.GetIdentity(), pi.GetSid()) }
	case "track_published":
		if pi.GetIdentity() == "" || room == "" || ev.GetTrack().GetType() != livekit.TrackType_AUDIO {
			return false
		}
		act = func(context.Context) { p.rec.Refresh(room, pi.GetIdentity()) }
	case "room_finished":
		if room == "" {
			return false
		}
		key = ownership.Key{Room: room} // the room's own queue
		act = func(ctx context.Context) { p.rec.StopRoom(ctx, room, "room finished") }
	default:
		return false
	}
	p.enqueue(key, act)
	return true
}

// enqueue runs act after the events of key queued before it.
func (p *Policy) enqueue(key ownership.Key, act func(ctx context.Context)) {
	done := make(chan struct{})
	p.mu.Lock()
	prev := p.tail[key]
	p.tail[key] = done
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer func() {
			close(done)
			p.mu.Lock()
			if p.tail[key] == done {
				delete(p.tail, key)
			}
			p.mu.Unlock()
		}()
		if prev != nil {
			select {
			case <-prev:
			case <-p.life.Done():
				return
			}
		}
		ctx, cancel := context.WithTimeout(p.life, p.opts.Timeout)
		defer cancel()
		act(ctx)
	}()
}

// BotIdentityPrefix starts every bot identity of this service.
const BotIdentityPrefix = recorder.BotIdentityPrefix

// Recordable filters out what must never be recorded: bots (ours by
// identity prefix, any recorder, egress or agent by kind or permission),
// hidden participants, and what the allow and deny globs exclude.
func (p *Policy) Recordable(room string, pi *livekit.ParticipantInfo) bool {
	if pi == nil || room == "" || pi.GetIdentity() == "" {
		return false
	}
	id := pi.GetIdentity()
	switch {
	case strings.HasPrefix(id, BotIdentityPrefix):
		return false
	case pi.GetKind() == livekit.ParticipantInfo_EGRESS || pi.GetKind() == livekit.ParticipantInfo_AGENT:
		return false
	case pi.GetPermission().GetHidden() || pi.GetPermission().GetRecorder() || pi.GetPermission().GetAgent():
		return false
	}
	if len(p.opts.Rooms) > 0 && !matchAny(p.opts.Rooms, room) {
		return false
	}
	return !matchAny(p.opts.IgnoreIdentities, id)
}

func matchAny(globs []string, name string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

func (p *Policy) start(ctx context.Context, room, identity string) {
	log := p.log.With("room", room, "participant", identity)
	// Start checks the room's live state, so a late participant_joined for
	// someone who already left starts nothing.
	_, created, err := p.rec.Start(ctx, room, identity)
	if errors.Is(err, recorder.ErrLookup) {
		// LiveKit just sent the event, so the participant most likely is
		// there: better a recording that waits than a lost one.
		log.Warn("webhook: cannot check the room; recording anyway", "err", err)
		_, created, err = p.rec.Start(ctx, room, identity, recorder.WaitForParticipant())
	}
	switch {
	case errors.Is(err, recorder.ErrNoRoom) || errors.Is(err, recorder.ErrNoParticipant):
		log.Info("webhook: participant already gone; not recording", "err", err)
	case errors.Is(err, recorder.ErrFull) && p.opts.Later != nil:
		if lerr := p.opts.Later(ctx, room, identity); lerr != nil {
			log.Error("webhook: start refused for capacity, and not kept for later", "err", err, "later", lerr)
			return
		}
		log.Warn("webhook: no room to record now; the first instance with room records it", "err", err)
	case err != nil:
		log.Error("webhook: start failed", "err", err)
	case created:
		log.Info("webhook: recording started")
	}
}

// remember notes sid as key's latest joined session.
func (p *Policy) remember(key ownership.Key, sid string) {
	if sid == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.joined[key]; !ok && len(p.joined) >= maxJoined {
		for k := range p.joined {
			delete(p.joined, k)
			break
		}
	}
	p.joined[key] = sid
}

// newerSession reports the session that joined after sid left, if any, and
// forgets sid's entry when it is the latest.
func (p *Policy) newerSession(key ownership.Key, sid string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch j := p.joined[key]; {
	case j == "" || sid == "":
		return ""
	case j != sid:
		return j
	}
	delete(p.joined, key)
	return ""
}

// stop ends identity's recording unless a newer session of the participant
// than the one that left is known, from its participant_joined (which
// overtook this participant_left) or from the bot's view: that session is
// being recorded and must go on.
func (p *Policy) stop(ctx context.Context, room, identity, sid string) {
	log := p.log.With("room", room, "participant", identity)
	if newer := p.newerSession(ownership.Key{Room: room, Participant: identity}, sid); newer != "" {
		log.Info("webhook: participant_left of an older session; recording goes on", "left", sid, "current", newer)
		return
	}
	if cur := p.rec.ParticipantSID(room, identity); sid != "" && cur != "" && cur != sid {
		log.Info("webhook: participant_left of an older session; recording goes on", "left", sid, "current", cur)
		return
	}
	if _, err := p.rec.Stop(ctx, room, identity); err != nil && !errors.Is(err, recorder.ErrNotFound) {
		log.Warn("webhook: stop failed", "err", err)
	}
}
