package recorder

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/trackrec/trackrec/bot"
	"github.com/trackrec/trackrec/ownership"
	"github.com/trackrec/trackrec/spool"
)

// fakeBot stands in for a LiveKit participant in unit tests.
type fakeBot struct {
	mu           sync.Mutex
	present      map[string]bool
	wanted       map[string]bool
	published    map[string]bool // identity/track
	resubscribed map[string]int  // identity/track: Resubscribe calls
	left         bool
}

func (b *fakeBot) Record(id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.wanted[id] = true
	return b.present[id]
}

func (b *fakeBot) RecordTrack(id, sid string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.wanted[id+"/"+sid] = true
	return b.present[id]
}

func (b *fakeBot) Resubscribe(id, sid string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.resubscribed == nil {
		b.resubscribed = map[string]int{}
	}
	b.resubscribed[id+"/"+sid]++
}

func (b *fakeBot) Publishes(id, sid string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.published[id+"/"+sid]
}

func (b *fakeBot) ForgetTrack(id, sid string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.wanted, id+"/"+sid)
}

func (b *fakeBot) Forget(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.wanted, id)
}

func (b *fakeBot) Leave() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.left = true
}

func (b *fakeBot) SID() string { return "RM_fake" }

func (b *fakeBot) ParticipantSID(id string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.present[id] {
		return "PA_" + id
	}
	return ""
}

func (b *fakeBot) Present(id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.present[id]
}

func (b *fakeBot) setPresent(id string, present bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.present[id] = present
}

func (b *fakeBot) hasLeft() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.left
}

// fakeReader is an RTP source fed by the test; it honours read deadlines
// like pion's track does: once the deadline has passed, even packets it
// holds are refused.
type fakeReader struct {
	ch       chan *rtp.Packet
	mu       sync.Mutex
	deadline chan struct{}
}

func newFakeReader() *fakeReader {
	return &fakeReader{ch: make(chan *rtp.Packet, 1000), deadline: make(chan struct{})}
}

func (r *fakeReader) ReadRTP() (*rtp.Packet, interceptor.Attributes, error) {
	r.mu.Lock()
	dl := r.deadline
	r.mu.Unlock()
	select {
	case <-dl:
		return nil, nil, os.ErrDeadlineExceeded
	default:
	}
	select {
	case p := <-r.ch:
		return p, nil, nil
	case <-dl:
		return nil, nil, os.ErrDeadlineExceeded
	}
}

func (r *fakeReader) SetReadDeadline(at time.Time) error {
	r.mu.Lock()
	dl := r.deadline
	r.mu.Unlock()
	time.AfterFunc(time.Until(at), func() {
		defer func() { _ = recover() }() // closed twice
		close(dl)
	})
	return nil
}

type fixture struct {
	t       *testing.T
	s       *Supervisor
	dir     string
	mu      sync.Mutex
	joins   int
	joinErr error
	bots    map[string]*fakeBot
	hs      map[string]bot.Handler
	rooms   *fakeRooms
}

func newFixture(t *testing.T, rejoin time.Duration) *fixture {
	return newFixtureOn(t, rejoin, ownership.NewMemory(), "test")
}

// newFixtureOn is a fixture whose claims are in owners, as instance: two
// of them on one store are two instances of a fleet.
func newFixtureOn(t *testing.T, rejoin time.Duration, owners Owners, instance string) *fixture {
	f := &fixture{t: t, dir: t.TempDir(), bots: map[string]*fakeBot{}, hs: map[string]bot.Handler{}}
	sp, err := spool.Open(spool.Options{Dir: f.dir, Instance: "test", SpoolIsStore: true, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sp.Close() })
	f.rooms = &fakeRooms{}
	f.s, err = New(Options{
		Spool:         sp,
		Owners:        owners,
		Rooms:         f.rooms,
		Instance:      instance,
		RejoinTimeout: rejoin,
		Logger:        discard(),
		Join: func(ctx context.Context, room string, h bot.Handler) (Bot, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.joins++
			if f.joinErr != nil {
				return nil, f.joinErr
			}
			b := &fakeBot{present: map[string]bool{"alice": true, "bob": true}, wanted: map[string]bool{}}
			f.bots[room], f.hs[room] = b, h
			return b, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Close every file before TempDir removes the folder.
	t.Cleanup(func() { _ = f.s.Shutdown(context.Background()) })
	return f
}

// setJoinErr makes the next joins fail with err (nil: succeed).
func (f *fixture) setJoinErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.joinErr = err
}

// waitJoins waits until the fixture saw n joins.
func (f *fixture) waitJoins(n int) {
	f.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		f.mu.Lock()
		got := f.joins
		f.mu.Unlock()
		if got >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.t.Fatalf("fewer than %d joins", n)
}

// recordAndStop records 60 packets of identity's track sid in room, then
// stops the recording and returns it.
func (f *fixture) recordAndStop(room, identity, sid string) RecordingInfo {
	f.t.Helper()
	ctx := context.Background()
	if _, _, err := f.s.Start(ctx, room, identity); err != nil {
		f.t.Fatal(err)
	}
	f.feed(room, identity, sid, 60)
	f.waitState(room, identity, StateRecording)
	final, err := f.s.Stop(ctx, room, identity)
	if err != nil || len(final.Tracks) != 1 {
		f.t.Fatalf("stop: %+v %v", final, err)
	}
	return final
}

// discard is a logger for supervisors whose logs a test does not read.
func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func (f *fixture) handler(room string) bot.Handler {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hs[room]
}

// feed subscribes a track for identity and sends n packets of 20 ms.
func (f *fixture) feed(room, identity, sid string, n int) *fakeReader {
	r := newFakeReader()
	_ = f.handler(room).TrackSubscribed(&bot.Track{
		Info:   bot.TrackInfo{Room: room, Participant: identity, TrackSID: sid, Source: "microphone", MimeType: "audio/opus"},
		Remote: r,
	})
	for i := 0; i < n; i++ {
		r.ch <- &rtp.Packet{
			Header:  rtp.Header{SequenceNumber: uint16(i), Timestamp: uint32(960 * i), SSRC: 1},
			Payload: []byte{0xF8, 0xFF, 0xFE},
		}
	}
	return r
}

func (f *fixture) state(room, p string) RecordingInfo {
	var last RecordingInfo
	for _, r := range f.s.List() {
		if r.Room == room && r.Participant == p {
			last = r
		}
	}
	return last
}

func (f *fixture) waitState(room, p string, state State) RecordingInfo {
	f.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if r := f.state(room, p); r.State == state {
			return r
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.t.Fatalf("%s/%s never reached %s: %+v", room, p, state, f.state(room, p))
	return RecordingInfo{}
}

func TestStartIsIdempotentAndSharesTheBot(t *testing.T) {
	f := newFixture(t, 0)
	ctx := context.Background()
	a, created, err := f.s.Start(ctx, "r", "alice")
	if err != nil || !created {
		t.Fatalf("start: %v %v", created, err)
	}
	again, created, err := f.s.Start(ctx, "r", "alice")
	if err != nil || created || again.ID != a.ID {
		t.Fatalf("second start: %+v %v %v", again, created, err)
	}
	if _, _, err := f.s.Start(ctx, "r", "bob"); err != nil {
		t.Fatal(err)
	}
	if f.joins != 1 {
		t.Errorf("%d joins for one room, want 1", f.joins)
	}
	if a.State != StateWaiting {
		t.Errorf("state %q before any track", a.State)
	}
	if _, err := f.s.Stop(ctx, "r", "alice"); err != nil {
		t.Fatal(err)
	}
	if f.bots["r"].hasLeft() {
		t.Error("bot left while bob is still recorded")
	}
	if _, err := f.s.Stop(ctx, "r", "bob"); err != nil {
		t.Fatal(err)
	}
	if !f.bots["r"].hasLeft() {
		t.Error("bot stayed after its last recording")
	}
	if _, err := f.s.Stop(ctx, "r", "bob"); !errors.Is(err, ErrNotFound) {
		t.Errorf("stop twice: %v, want ErrNotFound", err)
	}
}

func TestTrackIsWrittenAndClosedOnStop(t *testing.T) {
	f := newFixture(t, 0)
	ctx := context.Background()
	if _, _, err := f.s.Start(ctx, "r", "alice"); err != nil {
		t.Fatal(err)
	}
	f.feed("r", "alice", "TR_a", 50)
	f.waitState("r", "alice", StateRecording)
	info, err := f.s.Stop(ctx, "r", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Tracks) != 1 {
		t.Fatalf("tracks %+v", info.Tracks)
	}
	tr := info.Tracks[0]
	if tr.State != "closed" || tr.Packets != 50 || tr.Anchor == nil || tr.StartedAt == nil {
		t.Fatalf("track after stop: %+v", tr)
	}
	// The file begins on the second before the anchor: lead, then 1 s of audio.
	lead := tr.Anchor.Sub(*tr.StartedAt)
	if lead < 0 || lead >= time.Second || tr.StartedAt.Nanosecond() != 0 {
		t.Errorf("anchor %v, file start %v", tr.Anchor, tr.StartedAt)
	}
	if d := time.Duration(tr.DurationMS)*time.Millisecond - lead - time.Second; d < -2*time.Millisecond || d > 2*time.Millisecond {
		t.Errorf("duration %d ms, want 1000 ms after a lead of %v", tr.DurationMS, lead)
	}
	st, err := os.Stat(tr.Path)
	if err != nil || st.Size() != tr.Bytes || st.Size() == 0 {
		t.Errorf("file %s: %v %v, API says %d bytes", tr.Path, st, err, tr.Bytes)
	}
}

func TestParticipantLeaving(t *testing.T) {
	ctx := context.Background()
	t.Run("on purpose stops at once", func(t *testing.T) {
		f := newFixture(t, time.Hour)
		f.s.Start(ctx, "r", "alice")
		f.handler("r").ParticipantLeft("alice", true)
		r := f.waitState("r", "alice", StateStopped)
		if r.StopReason != "participant left" {
			t.Errorf("reason %q", r.StopReason)
		}
	})
	t.Run("dropped and back keeps recording", func(t *testing.T) {
		f := newFixture(t, time.Hour)
		f.s.Start(ctx, "r", "alice")
		f.handler("r").ParticipantLeft("alice", false)
		f.waitState("r", "alice", StateAway)
		f.handler("r").ParticipantJoined("alice")
		f.waitState("r", "alice", StateWaiting)
		f.feed("r", "alice", "TR_b", 5)
		f.waitState("r", "alice", StateRecording)
	})
	t.Run("dropped for good stops after the timeout", func(t *testing.T) {
		f := newFixture(t, 100*time.Millisecond)
		f.s.Start(ctx, "r", "alice")
		f.bots["r"].setPresent("alice", false)
		f.handler("r").ParticipantLeft("alice", false)
		r := f.waitState("r", "alice", StateStopped)
		if r.StopReason != "participant did not reconnect" {
			t.Errorf("reason %q", r.StopReason)
		}
	})
	t.Run("reconnect reported before the departure keeps recording", func(t *testing.T) {
		f := newFixture(t, 50*time.Millisecond)
		f.s.Start(ctx, "r", "alice")
		// The new session is in the room when the old one's departure lands.
		f.handler("r").ParticipantJoined("alice")
		f.handler("r").ParticipantLeft("alice", false)
		time.Sleep(200 * time.Millisecond)
		if r := f.state("r", "alice"); r.State != StateWaiting {
			t.Errorf("state %q (%s), want waiting", r.State, r.StopReason)
		}
	})
	t.Run("room closing stops everyone", func(t *testing.T) {
		f := newFixture(t, time.Hour)
		f.s.Start(ctx, "r", "alice")
		f.s.Start(ctx, "r", "bob")
		f.handler("r").Disconnected("room closed", false)
		f.waitState("r", "alice", StateStopped)
		f.waitState("r", "bob", StateStopped)
	})
}

func TestFailedJoinLeavesNothingBehind(t *testing.T) {
	f := newFixture(t, 0)
	f.setJoinErr(errors.New("refused"))
	ctx := context.Background()
	if _, _, err := f.s.Start(ctx, "r", "alice"); err == nil {
		t.Fatal("start succeeded with a failing join")
	}
	if l := f.s.List(); len(l) != 0 {
		t.Errorf("list after failed start: %+v", l)
	}
	f.setJoinErr(nil)
	if _, created, err := f.s.Start(ctx, "r", "alice"); err != nil || !created {
		t.Errorf("retry after failed join: %v %v", created, err)
	}
}

func TestOwnedElsewhere(t *testing.T) {
	f := newFixture(t, 0)
	owners := ownership.NewMemory()
	owners.Claim(context.Background(), Key{Room: "r", Participant: "alice"}, "other-instance")
	f.s.opts.Owners = owners
	if _, _, err := f.s.Start(context.Background(), "r", "alice"); !errors.Is(err, ErrOwned) {
		t.Errorf("start of a participant owned elsewhere: %v", err)
	}
	if f.joins != 0 {
		t.Errorf("joined although the participant is owned elsewhere")
	}
}

func TestShutdownStopsEverythingAndRefusesWork(t *testing.T) {
	f := newFixture(t, 0)
	ctx := context.Background()
	f.s.Start(ctx, "r1", "alice")
	f.s.Start(ctx, "r2", "bob")
	f.feed("r1", "alice", "TR_c", 10)
	if err := f.s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, r := range f.s.List() {
		if r.State != StateStopped {
			t.Errorf("%s/%s still %s after shutdown", r.Room, r.Participant, r.State)
		}
		for _, tr := range r.Tracks {
			if tr.State != "closed" {
				t.Errorf("track %s %s after shutdown", tr.TrackSID, tr.State)
			}
		}
	}
	if !f.bots["r1"].hasLeft() || !f.bots["r2"].hasLeft() {
		t.Error("bots did not leave on shutdown")
	}
	if _, _, err := f.s.Start(ctx, "r3", "carol"); !errors.Is(err, ErrShuttingDown) {
		t.Errorf("start after shutdown: %v", err)
	}
}

func TestStopKeepsPacketsAlreadyReceived(t *testing.T) {
	f := newFixture(t, 0)
	ctx := context.Background()
	f.s.Start(ctx, "r", "alice")
	// Stop right after the packets arrive, before the reader caught up.
	f.feed("r", "alice", "TR_d", 200)
	info, err := f.s.Stop(ctx, "r", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Tracks[0].Packets; got != 200 {
		t.Errorf("%d of 200 received packets written", got)
	}
}

func TestShutdownWaitsForStopsUnderWay(t *testing.T) {
	f := newFixture(t, 0)
	ctx := context.Background()
	f.s.Start(ctx, "r", "alice")
	f.feed("r", "alice", "TR_e", 100)
	f.handler("r").ParticipantLeft("alice", true) // stops in the background
	if err := f.s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	r := f.state("r", "alice")
	if r.State != StateStopped || len(r.Tracks) != 1 || r.Tracks[0].State != "closed" {
		t.Errorf("after shutdown: %+v", r)
	}
}

func TestRestartKeepsItsClaim(t *testing.T) {
	f := newFixture(t, 0)
	owners := ownership.NewMemory()
	f.s.opts.Owners = owners
	ctx := context.Background()
	first, _, _ := f.s.Start(ctx, "r", "alice")
	f.s.Stop(ctx, "r", "alice")
	f.s.Start(ctx, "r", "alice")
	// The first recording's release, arriving late, must not free the
	// second one's claim.
	owners.Release(ctx, Key{Room: "r", Participant: "alice"}, "test/"+first.ID)
	if ok, _ := owners.Claim(ctx, Key{Room: "r", Participant: "alice"}, "other-instance"); ok {
		t.Error("a stale release freed the restarted recording's claim")
	}
}
