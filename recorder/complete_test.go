package recorder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/trackrec/trackrec/bot"
	"github.com/trackrec/trackrec/uploader"
)

// A start refused by Owners (409) leaves a room whose ready is never closed.
func TestRefusedClaimDoesNotBlockTheRoom(t *testing.T) {
	f := newFixture(t, 0)
	owners := NewMemoryOwners()
	owners.Claim(context.Background(), Key{"r", "alice"}, "other-instance")
	f.s.opts.Owners = owners
	if _, _, err := f.s.Start(context.Background(), "r", "alice"); !errors.Is(err, ErrOwned) {
		t.Fatalf("want ErrOwned, got %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, _, err := f.s.Start(ctx, "r", "bob"); err != nil {
		t.Errorf("start of bob in the same room after a 409 for alice: %v (joins=%d)", err, f.joins)
	}
}

type completions struct {
	mu    sync.Mutex
	calls [][]CompletedTrack
}

func (c *completions) fn(_ context.Context, room string, tr []CompletedTrack) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, tr)
	return nil, nil
}
func (c *completions) n() int { c.mu.Lock(); defer c.mu.Unlock(); return len(c.calls) }

// wait waits up to 5 s for a first completion.
func (c *completions) wait() {
	for deadline := time.Now().Add(5 * time.Second); c.n() == 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
}

// A failing start during the settle delay cancels the room's completion for good.
func TestFailedStartDuringSettleStillCompletes(t *testing.T) {
	f := newFixture(t, 0)
	var c completions
	f.s.opts.OnRoomComplete = c.fn
	f.s.opts.SettleDelay = 300 * time.Millisecond
	ctx := context.Background()
	f.s.Start(ctx, "r", "alice")
	f.feed("r", "alice", "TR_a", 60)
	f.waitState("r", "alice", StateRecording)
	f.s.Stop(ctx, "r", "alice")
	f.setJoinErr(errors.New("livekit unreachable"))
	if _, _, err := f.s.Start(ctx, "r", "bob"); err == nil {
		t.Fatal("start should fail")
	}
	time.Sleep(time.Second)
	if c.n() != 1 {
		t.Errorf("room completed %d times, want 1 (finished tracks waiting: %d)", c.n(), len(f.s.finished["r"]))
	}
}

// slowReader ends only 1.5 s after its deadline: a slow close.
type slowReader struct{ *fakeReader }

func (r slowReader) SetReadDeadline(at time.Time) error {
	return r.fakeReader.SetReadDeadline(at.Add(1500 * time.Millisecond))
}
func (r slowReader) ReadRTP() (*rtp.Packet, interceptor.Attributes, error) {
	return r.fakeReader.ReadRTP()
}

// A room whose recordings stop together completes once per recording when
// one of them takes longer than the settle delay to close.
func TestRoomCompletesOnceEveryRecordingClosed(t *testing.T) {
	f := newFixture(t, 0)
	var c completions
	f.s.opts.OnRoomComplete = c.fn
	f.s.opts.SettleDelay = 200 * time.Millisecond
	ctx := context.Background()
	f.s.Start(ctx, "r", "alice")
	f.s.Start(ctx, "r", "bob")
	r := slowReader{newFakeReader()}
	f.handler("r").TrackSubscribed(&bot.Track{Info: bot.TrackInfo{Room: "r", Participant: "alice", TrackSID: "TR_a", MimeType: "audio/opus"}, Remote: r})
	for i := 0; i < 60; i++ {
		r.ch <- &rtp.Packet{Header: rtp.Header{SequenceNumber: uint16(i), Timestamp: uint32(960 * i), SSRC: 1}, Payload: []byte{0xF8, 0xFF, 0xFE}}
	}
	f.feed("r", "bob", "TR_b", 60)
	f.waitState("r", "alice", StateRecording)
	f.waitState("r", "bob", StateRecording)
	f.handler("r").Disconnected("room closed", false) // both stop at once
	f.waitState("r", "alice", StateStopped)
	time.Sleep(500 * time.Millisecond)
	if c.n() != 1 {
		for i, call := range c.calls {
			t.Logf("completion %d: %d tracks", i, len(call))
		}
		t.Errorf("room completed %d times, want once with both tracks", c.n())
	}
}

// A manifest whose file was uploaded (and deleted) before a crash or a
// drain timeout is never uploaded again.
type memQueue struct{ items []uploader.Item }

func (q *memQueue) Submit(it uploader.Item) (*uploader.Upload, error) {
	q.items = append(q.items, it)
	return nil, nil
}

func TestRecoverUploadsAManifestWhoseFileIsStored(t *testing.T) {
	dir := t.TempDir()
	q := &memQueue{}
	s := New(Options{Dir: dir, Uploads: q, KeyPrefix: "livekit", Logger: discard()})
	os.MkdirAll(filepath.Join(dir, "r"), 0o755)
	os.WriteFile(filepath.Join(dir, "r", "alice-2026-01-01T000000-TR_a.json"), []byte(`{"version":1,"file":{"key":"livekit/r/alice-2026-01-01T000000-TR_a.ogg"}}`), 0o644)
	found, err := s.Recover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(q.items) == 0 {
		t.Errorf("orphan manifest left in the spool, never uploaded (found %d)", len(found))
	}
}

// Recordings stopped by SIGTERM never reach the pipeline (settle timers

// A pipeline whose webhook receiver stayed down asks to run again: it does,
// after RetryDelay, until it succeeds; then its markers go.
func TestPipelineRetriedLater(t *testing.T) {
	f := newFixture(t, 0)
	var mu sync.Mutex
	runs := 0
	f.s.opts.OnRoomComplete = func(ctx context.Context, room string, tr []CompletedTrack) ([]string, error) {
		mu.Lock()
		defer mu.Unlock()
		if runs++; runs < 3 {
			return nil, fmt.Errorf("webhook: %w", ErrRetryLater)
		}
		return []string{"mix"}, nil
	}
	f.s.opts.SettleDelay = 10 * time.Millisecond
	f.s.opts.RetryDelay = 50 * time.Millisecond
	final := f.recordAndStop("r", "alice", "TR_a")
	marker, _ := markerPath(f.dir, final.Tracks[0].Path)
	sawRetrying := false
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		c := f.s.Completions()
		if len(c) == 1 && c[0].State == CompletionRetrying {
			sawRetrying = true
			if _, err := os.Stat(marker); err != nil {
				t.Errorf("marker gone while the pipeline waits for a retry: %v", err)
			}
		}
		if len(c) == 1 && c[0].State == CompletionDone {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	c := f.s.Completions()
	if len(c) != 1 || c[0].State != CompletionDone || c[0].Error != "" || !sawRetrying {
		t.Fatalf("completions %+v (saw retrying: %v)", c, sawRetrying)
	}
	mu.Lock()
	if runs != 3 {
		t.Errorf("%d runs, want 3", runs)
	}
	mu.Unlock()
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Errorf("marker left after success: %v", err)
	}
}
