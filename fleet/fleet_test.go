package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/livekit/psrpc"
	"google.golang.org/protobuf/proto"

	"github.com/trackrec/trackrec/recorder"
)

// fakeLocal is a recorder in memory: one recording per (room, participant),
// one track each.
type fakeLocal struct {
	name string

	mu       sync.Mutex
	recs     map[[2]string]bool
	rooms    map[string]bool // rooms with a bot, recorded or not
	extra    int             // tracks of recordings not in recs
	capacity int
	err      error         // returned by Start and Stop when set
	listGate chan struct{} // List blocks until it is closed, when set
	stopGate chan struct{} // so does Stop
	starts   int
	draining bool
	handed   map[[2]string]string // handovers taken: the owner that handed each over
}

func newFakeLocal(name string, capacity int) *fakeLocal {
	return &fakeLocal{name: name, recs: map[[2]string]bool{}, rooms: map[string]bool{}, capacity: capacity}
}

func (l *fakeLocal) recording(room, participant, state string) json.RawMessage {
	b, _ := json.Marshal(map[string]string{"room": room, "participant": participant, "state": state, "on": l.name})
	return b
}

func (l *fakeLocal) Start(_ context.Context, room, participant string, _ bool) (json.RawMessage, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.starts++
	if l.err != nil {
		return nil, false, l.err
	}
	k := [2]string{room, participant}
	if l.recs[k] {
		return l.recording(room, participant, "recording"), false, nil
	}
	if len(l.recs)+l.extra >= l.capacity {
		return nil, false, fmt.Errorf("local: %w", ErrFull)
	}
	l.recs[k] = true
	l.rooms[room] = true
	return l.recording(room, participant, "recording"), true, nil
}

func (l *fakeLocal) Stop(_ context.Context, key recorder.Key) (json.RawMessage, error) {
	room, participant := key.Room, key.Participant
	l.mu.Lock()
	gate := l.stopGate
	l.mu.Unlock()
	if gate != nil {
		<-gate
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return nil, l.err
	}
	k := [2]string{room, participant}
	if !l.recs[k] {
		return nil, fmt.Errorf("local: %w", ErrNotFound)
	}
	delete(l.recs, k)
	return l.recording(room, participant, "stopped"), nil
}

func (l *fakeLocal) List() []json.RawMessage {
	l.mu.Lock()
	gate := l.listGate
	l.mu.Unlock()
	if gate != nil {
		<-gate
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []json.RawMessage
	for _, k := range slices.SortedFunc(func(yield func([2]string) bool) {
		for k := range l.recs {
			if !yield(k) {
				return
			}
		}
	}, func(a, b [2]string) int { return strings.Compare(a[0]+"\x00"+a[1], b[0]+"\x00"+b[1]) }) {
		out = append(out, l.recording(k[0], k[1], "recording"))
	}
	return out
}

func (l *fakeLocal) HasRoom(room string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rooms[room]
}

func (l *fakeLocal) Load() (int, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.recs) + l.extra, l.capacity
}

func (l *fakeLocal) Owns(key recorder.Key) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.recs[[2]string{key.Room, key.Participant}]
}

func (l *fakeLocal) TakesTracks() bool { return false }

func (l *fakeLocal) Draining() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.draining
}

func (l *fakeLocal) HandOver(_ context.Context, key recorder.Key, id, owner, _ string, _ bool) (json.RawMessage, time.Time, error) {
	room, participant := key.Room, key.Participant
	l.mu.Lock()
	defer l.mu.Unlock()
	k := [2]string{room, participant}
	if l.recs[k] {
		return nil, time.Time{}, fmt.Errorf("local: %w", ErrOwned)
	}
	l.recs[k] = true
	if l.handed == nil {
		l.handed = map[[2]string]string{}
	}
	l.handed[k] = owner
	return l.recording(room, participant, "recording"), time.Now().Add(cutAhead), nil
}

const cutAhead = 250 * time.Millisecond

func (l *fakeLocal) set(fn func(l *fakeLocal)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fn(l)
}

func (l *fakeLocal) startCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.starts
}

const testTimeout = 5 * time.Second

var names = []string{"a", "b", "c"}

// cluster is three Fleet nodes over one bus, each over a fakeLocal with
// room for 10 tracks.
type cluster struct {
	bus    psrpc.MessageBus
	nodes  map[string]*Fleet
	locals map[string]*fakeLocal
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newCluster(t *testing.T, bus psrpc.MessageBus) *cluster {
	t.Helper()
	c := &cluster{bus: bus, nodes: map[string]*Fleet{}, locals: map[string]*fakeLocal{}}
	for _, n := range names {
		c.locals[n] = newFakeLocal(n, 10)
		f, err := New(Options{Instance: n, Bus: bus, Local: c.locals[n], Logger: quiet(), Timeout: testTimeout})
		if err != nil {
			t.Fatalf("New(%s): %v", n, err)
		}
		c.nodes[n] = f
		t.Cleanup(f.Close)
	}
	c.waitMembers(t)
	return c
}

// waitMembers waits until every node knows the three.
func (c *cluster) waitMembers(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for _, f := range c.nodes {
		for len(f.known()) < len(c.nodes) {
			if time.Now().After(deadline) {
				t.Fatalf("%s knows %v, want all of %v", f.instance, f.known(), names)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// inBubble runs fn in a synctest bubble over three new nodes on a local bus.
func inBubble(t *testing.T, fn func(t *testing.T, c *cluster)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		// Registered first, so it runs after the nodes closed: psrpc's
		// handlers of a request another node won wait for it to expire,
		// and time stands still once the bubble's root goroutine is done.
		t.Cleanup(func() { time.Sleep(testTimeout) })
		fn(t, newCluster(t, psrpc.NewLocalMessageBus()))
	})
}

// fill gives l tracks recorded now, outside any tested recording.
func fill(l *fakeLocal, tracks int) { l.set(func(l *fakeLocal) { l.extra = tracks }) }

func recordingOn(t *testing.T, rec json.RawMessage) string {
	t.Helper()
	var r struct{ On, State string }
	if err := json.Unmarshal(rec, &r); err != nil {
		t.Fatalf("recording %s: %v", rec, err)
	}
	return r.On
}

func TestStartPlacement(t *testing.T) {
	cases := []struct {
		name    string
		setup   func(c *cluster)
		want    string // the instance holding it; "" for ErrFull
		created bool
		wait    time.Duration // until placed: 0 for a claim of 1
	}{
		{
			name:  "to the least loaded",
			setup: func(c *cluster) { fill(c.locals["a"], 3); fill(c.locals["b"], 1); fill(c.locals["c"], 5) },
			want:  "b", created: true, wait: shortCircuit,
		},
		{
			name: "to the instance with a bot in the room, however loaded",
			setup: func(c *cluster) {
				fill(c.locals["a"], 0)
				fill(c.locals["c"], 9)
				c.locals["c"].set(func(l *fakeLocal) { l.rooms["room"] = true })
			},
			want: "c", created: true, wait: shortCircuit,
		},
		{
			name: "to the owner, though another instance has a bot in the room too",
			setup: func(c *cluster) {
				c.locals["a"].set(func(l *fakeLocal) { l.rooms["room"] = true })
				c.locals["b"].set(func(l *fakeLocal) { l.rooms["room"] = true; l.recs[[2]string{"room", "alice"}] = true })
			},
			want: "b", created: false,
		},
		{
			name: "past a full instance with a bot in the room",
			setup: func(c *cluster) {
				fill(c.locals["a"], 10)
				c.locals["a"].set(func(l *fakeLocal) { l.rooms["room"] = true })
				fill(c.locals["b"], 6)
				fill(c.locals["c"], 2)
			},
			want: "c", created: true, wait: shortCircuit,
		},
		{
			name: "to the owner even when full: the start is idempotent",
			setup: func(c *cluster) {
				c.locals["b"].set(func(l *fakeLocal) { l.recs[[2]string{"room", "alice"}] = true; l.extra = 9 })
			},
			want: "b", created: false,
		},
		{
			name: "every instance full",
			setup: func(c *cluster) {
				for _, l := range c.locals {
					fill(l, 10)
				}
			},
			want: "", wait: selectTimeout,
		},
	}
	for _, tc := range cases {
		for _, from := range names {
			t.Run(tc.name+"/from "+from, func(t *testing.T) {
				inBubble(t, func(t *testing.T, c *cluster) {
					tc.setup(c)
					start := time.Now()
					rec, created, inst, err := c.nodes[from].Start(t.Context(), "room", "alice", false)
					if waited := time.Since(start); waited != tc.wait {
						t.Errorf("Start answered after %s, want %s", waited, tc.wait)
					}
					if tc.want == "" {
						if !errors.Is(err, ErrFull) {
							t.Fatalf("Start: %v, want ErrFull", err)
						}
						for n, l := range c.locals {
							if l.startCount() != 0 {
								t.Errorf("a full instance %s was asked to start", n)
							}
						}
						return
					}
					if err != nil {
						t.Fatalf("Start: %v", err)
					}
					if inst != tc.want || recordingOn(t, rec) != tc.want || created != tc.created {
						t.Fatalf("Start: on %s (recording %s), created %v; want %s, created %v", inst, rec, created, tc.want, tc.created)
					}
					for n, l := range c.locals {
						if want := b2i(n == tc.want); l.startCount() != want {
							t.Errorf("%s started %d times, want %d", n, l.startCount(), want)
						}
					}
				})
			})
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestPlacementClaims(t *testing.T) {
	cases := []struct {
		owns, hasRoom    bool
		tracks, capacity int
		want             float32
	}{
		{false, false, 0, 10, 0.99},
		{false, false, 9, 10, 0.099},
		{false, false, 10, 10, -1},
		{false, false, 12, 10, -1},
		{false, false, 0, 0, -1},
		{false, true, 5, 10, roomAffinity},
		{false, true, 10, 10, -1},
		{true, false, 10, 10, 1},
	}
	for _, tc := range cases {
		got := placement(tc.owns, tc.hasRoom, tc.tracks, tc.capacity)
		if d := got - tc.want; d > 1e-6 || d < -1e-6 {
			t.Errorf("placement(owns %v, room %v, %d/%d) = %v, want %v", tc.owns, tc.hasRoom, tc.tracks, tc.capacity, got, tc.want)
		}
	}
	// More room, higher claim; every claim below a room's.
	for tracks := 1; tracks < 10; tracks++ {
		if hi, lo := placement(false, false, tracks-1, 10), placement(false, false, tracks, 10); !(hi > lo && lo > 0 && hi < 1) {
			t.Errorf("claims at %d and %d tracks: %v, %v", tracks-1, tracks, hi, lo)
		}
	}
}

func TestStopReachesOwner(t *testing.T) {
	for _, from := range names {
		t.Run("from "+from, func(t *testing.T) {
			inBubble(t, func(t *testing.T, c *cluster) {
				c.locals["b"].set(func(l *fakeLocal) { l.recs[[2]string{"room", "alice"}] = true })

				if inst, err := c.nodes[from].Owner(t.Context(), "room", "alice"); err != nil || inst != "b" {
					t.Fatalf("Owner: %q, %v; want b", inst, err)
				}
				rec, inst, err := c.nodes[from].Stop(t.Context(), recorder.Key{Room: "room", Participant: "alice"})
				if err != nil {
					t.Fatalf("Stop: %v", err)
				}
				var r struct{ On, State string }
				_ = json.Unmarshal(rec, &r)
				if inst != "b" || r.On != "b" || r.State != "stopped" {
					t.Fatalf("Stop: on %s, recording %s; want the final recording from b", inst, rec)
				}
				if c.locals["b"].Owns(recorder.Key{Room: "room", Participant: "alice"}) {
					t.Fatal("b still records alice")
				}

				start := time.Now()
				_, _, err = c.nodes[from].Stop(t.Context(), recorder.Key{Room: "room", Participant: "alice"})
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("second Stop: %v, want ErrNotFound", err)
				}
				if waited := time.Since(start); waited != selectTimeout {
					t.Errorf("not found after %s, want the %s claim window", waited, selectTimeout)
				}
				if _, err := c.nodes[from].Owner(t.Context(), "room", "alice"); !errors.Is(err, ErrNotFound) {
					t.Fatalf("Owner after stop: %v, want ErrNotFound", err)
				}
			})
		})
	}
}

// Close waits for the call into Local it serves, and serves nothing after.
func TestCloseWaitsForServedCalls(t *testing.T) {
	inBubble(t, func(t *testing.T, c *cluster) {
		gate := make(chan struct{})
		c.locals["b"].set(func(l *fakeLocal) {
			l.recs[[2]string{"r", "alice"}] = true
			l.recs[[2]string{"r", "bob"}] = true
			l.stopGate = gate
		})
		stopped := make(chan error, 1)
		go func() {
			_, _, err := c.nodes["a"].Stop(t.Context(), recorder.Key{Room: "r", Participant: "alice"})
			stopped <- err
		}()
		synctest.Wait()
		closed := make(chan struct{})
		go func() {
			c.nodes["b"].Close()
			close(closed)
		}()
		synctest.Wait()
		select {
		case <-closed:
			t.Fatal("Close returned during a stop it serves")
		default:
		}
		close(gate)
		if err := <-stopped; err != nil {
			t.Fatalf("the served stop: %v", err)
		}
		<-closed
		if _, _, err := c.nodes["a"].Stop(t.Context(), recorder.Key{Room: "r", Participant: "bob"}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Stop of a recording on a closed instance: %v, want ErrNotFound", err)
		}
		if !c.locals["b"].Owns(recorder.Key{Room: "r", Participant: "bob"}) {
			t.Fatal("a closed instance's Local was called")
		}
	})
}

func TestListAggregates(t *testing.T) {
	inBubble(t, func(t *testing.T, c *cluster) {
		c.locals["a"].set(func(l *fakeLocal) { l.recs[[2]string{"r1", "alice"}] = true; l.recs[[2]string{"r1", "bob"}] = true })
		c.locals["c"].set(func(l *fakeLocal) { l.recs[[2]string{"r2", "carol"}] = true })
		want := []string{"a r1 alice", "a r1 bob", "c r2 carol"}
		for _, from := range names {
			start := time.Now()
			entries, err := c.nodes[from].List(t.Context())
			if err != nil {
				t.Fatalf("List from %s: %v", from, err)
			}
			if got := describe(t, entries); !slices.Equal(got, want) {
				t.Fatalf("List from %s: %v, want %v", from, got, want)
			}
			if waited := time.Since(start); waited != 0 {
				t.Errorf("List from %s took %s with every instance answering, want no wait", from, waited)
			}
		}
	})
}

func describe(t *testing.T, entries []Entry) []string {
	t.Helper()
	var out []string
	for _, e := range entries {
		var r struct{ Room, Participant, On string }
		if err := json.Unmarshal(e.Recording, &r); err != nil {
			t.Fatalf("entry %s: %v", e.Recording, err)
		}
		if r.On != e.Instance {
			t.Errorf("entry of %s says instance %s", r.On, e.Instance)
		}
		out = append(out, e.Instance+" "+r.Room+" "+r.Participant)
	}
	return out
}

func TestListReportsSilentInstance(t *testing.T) {
	inBubble(t, func(t *testing.T, c *cluster) {
		c.locals["a"].set(func(l *fakeLocal) { l.recs[[2]string{"r1", "alice"}] = true })
		c.locals["b"].set(func(l *fakeLocal) { l.recs[[2]string{"r1", "bob"}] = true })
		gate := make(chan struct{})
		c.locals["b"].set(func(l *fakeLocal) { l.listGate = gate })
		defer close(gate)

		start := time.Now()
		entries, err := c.nodes["a"].List(t.Context())
		var ue *UnansweredError
		if !errors.As(err, &ue) || !slices.Equal(ue.Instances, []string{"b"}) {
			t.Fatalf("List: %v, want b reported as not answering", err)
		}
		if waited := time.Since(start); waited != testTimeout {
			t.Errorf("List returned after %s, want the %s timeout", waited, testTimeout)
		}
		if got := describe(t, entries); !slices.Equal(got, []string{"a r1 alice"}) {
			t.Fatalf("List: %v, want what a and c hold", got)
		}
		if !strings.Contains(err.Error(), "b") || !strings.Contains(err.Error(), testTimeout.String()) {
			t.Errorf("error %q does not name b and the timeout", err)
		}

		// A caller's shorter deadline bounds the wait.
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		start = time.Now()
		_, err = c.nodes["c"].List(ctx)
		if !errors.As(err, &ue) || ue.Timeout != time.Second || time.Since(start) != time.Second {
			t.Fatalf("List with a 1s deadline: %v after %s", err, time.Since(start))
		}
	})
}

func TestListMembership(t *testing.T) {
	inBubble(t, func(t *testing.T, c *cluster) {

		// An instance that announced itself and died without leaving is
		// reported until it is forgotten.
		ghost := &Fleet{instance: "ghost", id: "ghost-id", srv: c.nodes["a"].srv, log: quiet(), timeout: testTimeout}
		ghost.announce(kindAlive)
		synctest.Wait()
		_, err := c.nodes["b"].List(t.Context())
		var ue *UnansweredError
		if !errors.As(err, &ue) || !slices.Equal(ue.Instances, []string{"ghost"}) {
			t.Fatalf("List with a silent member: %v, want ghost reported", err)
		}
		time.Sleep(forgetAfter + heartbeat)
		if _, err := c.nodes["b"].List(t.Context()); err != nil {
			t.Fatalf("List after the ghost was forgotten: %v", err)
		}

		// One that left is not reported; the live ones are still known
		// after heartbeats.
		c.nodes["c"].Close()
		synctest.Wait()
		for _, from := range []string{"a", "b"} {
			start := time.Now()
			if _, err := c.nodes[from].List(t.Context()); err != nil || time.Since(start) != 0 {
				t.Fatalf("List from %s after c left: %v after %s", from, err, time.Since(start))
			}
		}

		// A newcomer learns the fleet from the answers to its probe.
		late, err := New(Options{Instance: "d", Bus: c.bus, Local: newFakeLocal("d", 10), Logger: quiet(), Timeout: testTimeout})
		if err != nil {
			t.Fatal(err)
		}
		defer late.Close()
		synctest.Wait()
		if got := slices.Sorted(maps.Keys(late.known())); !slices.Equal(got, []string{"a", "b", "d"}) {
			t.Fatalf("newcomer knows %v", got)
		}
		if got := slices.Sorted(maps.Keys(c.nodes["a"].known())); !slices.Equal(got, []string{"a", "b", "d"}) {
			t.Fatalf("a knows %v after d joined", got)
		}
	})
}

func TestErrorsCrossTheWire(t *testing.T) {
	cases := []struct {
		name string
		err  error
		is   error // nil: no sentinel
		code psrpc.ErrorCode
	}{
		{"not found", ErrNotFound, ErrNotFound, psrpc.NotFound},
		{"no room", ErrNoRoom, ErrNoRoom, psrpc.NotFound},
		{"no participant", ErrNoParticipant, ErrNoParticipant, psrpc.NotFound},
		{"owned", ErrOwned, ErrOwned, psrpc.AlreadyExists},
		{"full", ErrFull, ErrFull, psrpc.ResourceExhausted},
		{"shutting down", ErrShuttingDown, ErrShuttingDown, psrpc.Unavailable},
		{"unreachable", ErrUnreachable, ErrUnreachable, psrpc.UpstreamServerError},
		{"unavailable", ErrUnavailable, ErrUnavailable, psrpc.Unavailable},
		{"elsewhere", ErrElsewhere, ErrElsewhere, psrpc.Aborted},
		{"deadline", context.DeadlineExceeded, context.DeadlineExceeded, psrpc.DeadlineExceeded},
		{"canceled", context.Canceled, context.Canceled, psrpc.Canceled},
		{"other", errors.New("disk on fire"), nil, psrpc.Unknown},
	}
	sentinels := []error{ErrNotFound, ErrNoRoom, ErrNoParticipant, ErrOwned, ErrFull, ErrShuttingDown, ErrUnreachable, ErrUnavailable, ErrElsewhere, context.DeadlineExceeded, context.Canceled}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inBubble(t, func(t *testing.T, c *cluster) {
				local := fmt.Errorf("recorder: room %q: %w", "r1", tc.err)
				c.locals["b"].set(func(l *fakeLocal) {
					l.err = local
					l.rooms["r1"] = true
					l.recs[[2]string{"r1", "bob"}] = true
				})
				_, _, inst, startErr := c.nodes["a"].Start(t.Context(), "r1", "alice", false)
				_, stopInst, stopErr := c.nodes["c"].Stop(t.Context(), recorder.Key{Room: "r1", Participant: "bob"})
				for op, got := range map[string]struct {
					inst string
					err  error
				}{"start": {inst, startErr}, "stop": {stopInst, stopErr}} {
					if got.err == nil {
						t.Fatalf("%s: no error", op)
					}
					if got.inst != "b" {
						t.Errorf("%s: error from %q, want b", op, got.inst)
					}
					if got.err.Error() != local.Error() {
						t.Errorf("%s: message %q, want the Local's %q", op, got.err, local)
					}
					for _, s := range sentinels {
						if errors.Is(got.err, s) != (s == tc.is) {
							t.Errorf("%s: errors.Is(%v, %v) = %v", op, got.err, s, !(s == tc.is))
						}
					}
					if code, _ := psrpc.GetErrorCode(got.err); code != tc.code {
						t.Errorf("%s: code %q, want %q", op, code, tc.code)
					}
				}
			})
		})
	}
}

func TestNewValidates(t *testing.T) {
	bus := psrpc.NewLocalMessageBus()
	local := newFakeLocal("a", 1)
	cases := []struct {
		name string
		o    Options
		want string
	}{
		{"no instance", Options{Bus: bus, Local: local}, "Instance is required"},
		{"control in instance", Options{Instance: "a\nb", Bus: bus, Local: local}, "control characters"},
		{"no bus", Options{Instance: "a", Local: local}, "Bus is required"},
		{"no local", Options{Instance: "a", Bus: bus}, "Local is required"},
		{"timeout within the claim window", Options{Instance: "a", Bus: bus, Local: local, Timeout: time.Second}, "must exceed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := New(tc.o)
			if err == nil {
				f.Close()
				t.Fatal("New accepted it")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want %q", err, tc.want)
			}
		})
	}
}

// A bus that carries nothing fails New instead of leaving an instance
// nobody can reach.
func TestNewNeedsAWorkingBus(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, err := New(Options{Instance: "a", Bus: deafBus{psrpc.NewLocalMessageBus()}, Local: newFakeLocal("a", 1), Logger: quiet(), Timeout: testTimeout})
		if err == nil || !strings.Contains(err.Error(), "probe") {
			t.Fatalf("New over a deaf bus: %v", err)
		}
	})
}

// deafBus drops every publish.
type deafBus struct{ psrpc.MessageBus }

func (deafBus) Publish(context.Context, psrpc.Channel, proto.Message) error { return nil }

// A draining owner hands its recording to the least-loaded other instance,
// never to itself; while both hold it, a stop reaches the successor. With
// no other instance able to take it the handover is ErrFull.
func TestHandOver(t *testing.T) {
	inBubble(t, func(t *testing.T, c *cluster) {
		k := [2]string{"room", "alice"}
		c.locals["a"].set(func(l *fakeLocal) { l.recs[k] = true; l.rooms["room"] = true; l.draining = true; l.extra = 10 })
		fill(c.locals["b"], 5)
		fill(c.locals["c"], 2)
		rec, inst, in, err := c.nodes["a"].HandOver(t.Context(), recorder.Key{Room: "room", Participant: "alice"}, "RC_1", "a/RC_1", false)
		if err != nil || inst != "c" || recordingOn(t, rec) != "c" {
			t.Fatalf("HandOver: on %q (%s), %v; want c", inst, rec, err)
		}
		if in != cutAhead {
			t.Errorf("cut %v after the answer, want %v", in, cutAhead)
		}
		if got := c.locals["c"].handed[k]; got != "a/RC_1" {
			t.Errorf("c took it over from %q, want a/RC_1", got)
		}
		_, stoppedOn, err := c.nodes["b"].Stop(t.Context(), recorder.Key{Room: "room", Participant: "alice"})
		if err != nil || stoppedOn != "c" {
			t.Fatalf("Stop while a drains: on %q, %v; want the successor c", stoppedOn, err)
		}
		if !c.locals["a"].Owns(recorder.Key{Room: "room", Participant: "alice"}) {
			t.Error("the stop reached the draining owner too")
		}
		fill(c.locals["b"], 10)
		fill(c.locals["c"], 10)
		if _, _, _, err := c.nodes["a"].HandOver(t.Context(), recorder.Key{Room: "room", Participant: "bob"}, "RC_2", "a/RC_2", false); !errors.Is(err, ErrFull) {
			t.Errorf("HandOver with the others full: %v, want ErrFull", err)
		}
	})
}
