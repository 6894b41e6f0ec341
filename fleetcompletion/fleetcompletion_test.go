package fleetcompletion

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trackrec/trackrec/completion"
	"github.com/trackrec/trackrec/fleetstore"
	"github.com/trackrec/trackrec/spool"
	"github.com/trackrec/trackrec/testbed"
)

// newStore is the fleet's room lists on a redis-server of the test's own.
func newStore(t *testing.T) *fleetstore.RoomTracks {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rc, err := fleetstore.NewClient(ctx, fleetstore.Config{Address: testbed.RedisForTest(t).Addr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rc.Close() })
	return fleetstore.NewRoomTracks(rc, "test")
}

// pipe records what the fleet's completion ran.
type pipe struct {
	mu       sync.Mutex
	complete [][]string // keys of each completion
	missing  [][]string // the missing files' keys of each completion
	updated  [][]string // keys of each update
	stillOut [][]string // the missing files' keys of each update
	err      error      // returned by every call when set
}

// missingKeys are the keys of the missing files' descriptions.
func missingKeys(docs []json.RawMessage) []string {
	var out []string
	for _, d := range docs {
		var f File
		_ = json.Unmarshal(d, &f)
		out = append(out, f.Key)
	}
	return out
}

func trackKeys(tracks []spool.Sealed) []string {
	var out []string
	for _, tr := range tracks {
		out = append(out, tr.Manifest.File.Key)
	}
	return out
}

func (p *pipe) CompleteMissing(_ context.Context, _ string, tracks []spool.Sealed, missing []json.RawMessage) ([]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return nil, p.err
	}
	p.complete = append(p.complete, trackKeys(tracks))
	p.missing = append(p.missing, missingKeys(missing))
	return []string{"mix"}, nil
}

func (p *pipe) Updated(_ context.Context, _ string, tracks []spool.Sealed, missing []json.RawMessage) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	p.updated = append(p.updated, trackKeys(tracks))
	p.stillOut = append(p.stillOut, missingKeys(missing))
	return nil
}

func track(key string) spool.Sealed {
	return spool.Sealed{Manifest: spool.Manifest{Room: "r", File: spool.ManifestFile{Key: key}}}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func idle(context.Context, string) (bool, error) { return false, nil }

// A room recorded by two instances: the one that finishes first while the
// other still records waits; the last one runs the pipeline once with both
// instances' tracks; the first one's retry then finds it done.
func TestOnceFleetWide(t *testing.T) {
	store := newStore(t)
	busy := true
	p := &pipe{}
	wrap := func(inst string) completion.Pipeline {
		return Wrap(p, Options{Store: store, Instance: inst, Logger: quiet(),
			Busy: func(context.Context, string) (bool, error) { return busy, nil }})
	}
	a, b := wrap("a"), wrap("b")
	ctx := context.Background()
	if _, err := a(ctx, "r", []spool.Sealed{track("k/a")}); !errors.Is(err, completion.ErrRetryLater) {
		t.Fatalf("a while b records: %v, want a retry later", err)
	}
	busy = false
	outs, err := b(ctx, "r", []spool.Sealed{track("k/b")})
	if err != nil || len(outs) != 1 || !reflect.DeepEqual(p.complete, [][]string{{"k/a", "k/b"}}) {
		t.Fatalf("b, last: %v %v, completions %v", outs, err, p.complete)
	}
	if outs, err := a(ctx, "r", []spool.Sealed{track("k/a")}); err != nil || outs != nil || len(p.complete) != 1 {
		t.Fatalf("a's retry: %v %v, completions %v", outs, err, p.complete)
	}
	// A later session of the room completes with its own tracks only.
	if _, err := a(ctx, "r", []spool.Sealed{track("k/a2")}); err != nil || len(p.complete) != 2 || !slices.Equal(p.complete[1], []string{"k/a2"}) {
		t.Fatalf("the next session: %v, completions %v", err, p.complete)
	}
}

// While another instance runs the room's pipeline, this one waits for it;
// a run this instance claimed and that asked to be retried is its again.
func TestRunClaimedElsewhere(t *testing.T) {
	store := newStore(t)
	p := &pipe{err: completion.ErrRetryLater}
	a := Wrap(p, Options{Store: store, Instance: "a", Busy: idle, Logger: quiet()})
	b := Wrap(p, Options{Store: store, Instance: "b", Busy: idle, Logger: quiet()})
	ctx := context.Background()
	if _, err := a(ctx, "r", []spool.Sealed{track("k")}); !errors.Is(err, completion.ErrRetryLater) {
		t.Fatalf("a: %v", err)
	}
	if _, err := b(ctx, "r", []spool.Sealed{track("k")}); !errors.Is(err, completion.ErrRetryLater) || !strings.Contains(err.Error(), "another instance") {
		t.Fatalf("b while a runs it: %v", err)
	}
	p.err = nil
	if _, err := a(ctx, "r", []spool.Sealed{track("k")}); err != nil || len(p.complete) != 1 {
		t.Fatalf("a's own retry: %v, completions %v", err, p.complete)
	}
}

// A file a live instance has open (or is storing) holds the room's
// completion until that instance publishes it.
func TestWaitsForALiveInstancesFiles(t *testing.T) {
	store := newStore(t)
	p := &pipe{}
	files := NewFiles(store, "b", true, quiet())
	files.Opened(spool.Track{Room: "r", Participant: "bob", TrackSID: "TR_b"}, "k/b", time.Now())
	files.Close(context.Background())
	a := Wrap(p, Options{Store: store, Instance: "a", Busy: idle, Logger: quiet(), Wait: time.Hour,
		Alive: func(string) bool { return true }})
	ctx := context.Background()
	_, err := a(ctx, "r", []spool.Sealed{track("k/a")})
	if !errors.Is(err, completion.ErrRetryLater) || len(p.complete) != 0 {
		t.Fatalf("with b's file open: %v, completions %v", err, p.complete)
	}
	if err := store.Publish(ctx, "r", map[string]json.RawMessage{"k/b": json.RawMessage(`{"file":{"key":"k/b"}}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := a(ctx, "r", []spool.Sealed{track("k/a")}); err != nil || !reflect.DeepEqual(p.complete, [][]string{{"k/a", "k/b"}}) {
		t.Fatalf("once b stored it: %v, completions %v", err, p.complete)
	}
}

// A file on an instance that died is waited for up to Wait; then the room
// completes listing it missing; when it is stored later, an update carries
// it, and the room does not complete a second time.
func TestDeadInstancesFilesAreWaitedForThenUpdated(t *testing.T) {
	store := newStore(t)
	p := &pipe{}
	ctx := context.Background()
	dead := NewFiles(store, "x", true, quiet())
	dead.Opened(spool.Track{Room: "r", Participant: "xia", TrackSID: "TR_x"}, "k/x", time.Now())
	dead.Close(ctx)
	const wait = 300 * time.Millisecond
	a := Wrap(p, Options{Store: store, Instance: "a", Busy: idle, Logger: quiet(), Wait: wait,
		Alive: func(inst string) bool { return inst != "x" }})
	_, err := a(ctx, "r", []spool.Sealed{track("k/a")})
	if !errors.Is(err, completion.ErrRetryLater) || len(p.complete) != 0 {
		t.Fatalf("within the wait: %v, completions %v", err, p.complete)
	}
	time.Sleep(wait)
	if _, err := a(ctx, "r", []spool.Sealed{track("k/a")}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p.complete, [][]string{{"k/a"}}) || !reflect.DeepEqual(p.missing, [][]string{{"k/x"}}) {
		t.Fatalf("after the wait: completions %v, missing %v", p.complete, p.missing)
	}
	// x came back (as a new process) and stored its file.
	back := Wrap(p, Options{Store: store, Instance: "x2", Busy: idle, Logger: quiet(), Wait: wait})
	if _, err := back(ctx, "r", []spool.Sealed{track("k/x")}); err != nil {
		t.Fatal(err)
	}
	if len(p.complete) != 1 || !reflect.DeepEqual(p.updated, [][]string{{"k/x"}}) || len(p.stillOut[0]) != 0 {
		t.Fatalf("late file: completions %v, updates %v (still missing %v)", p.complete, p.updated, p.stillOut)
	}
	if _, err := back(ctx, "r", []spool.Sealed{track("k/x")}); err != nil || len(p.updated) != 1 {
		t.Fatalf("the late file again: %v, updates %v", err, p.updated)
	}
}

// Files.Stored publishes a sealed track once its uploads are confirmed,
// and Close waits for what is under way.
func TestStoredPublishes(t *testing.T) {
	store := newStore(t)
	files := NewFiles(store, "a", true, quiet())
	files.Opened(spool.Track{Room: "r", Participant: "ann", TrackSID: "TR_a"}, "k/a", time.Now())
	files.Stored("r", track("k/a"))
	files.Close(context.Background())
	st, err := store.Room(context.Background(), "r")
	if err != nil || st.Tracks["k/a"] == nil || len(st.Pending) != 0 {
		t.Fatalf("after Stored: %+v %v", st, err)
	}
}

// Without a room pipeline a stored file only leaves the pending list; the
// fleet knows a file's key from its open on, so another instance's file of
// the same name takes another.
func TestFilesWithoutPipeline(t *testing.T) {
	store := newStore(t)
	files := NewFiles(store, "a", false, quiet())
	defer files.Close(context.Background())
	files.Opened(spool.Track{Room: "r", Participant: "ann", TrackSID: "TR_a"}, "k/a", time.Now())
	eventually := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("never %s", what)
			}
		}
	}
	eventually("known", func() bool { return files.Claimed("r", "k/a") })
	if files.Claimed("r", "k/b") || files.Claimed("other", "k/a") {
		t.Error("an unknown file is claimed")
	}
	files.Stored("r", track("k/a"))
	eventually("forgotten", func() bool { return !files.Claimed("r", "k/a") })
	if st, _ := store.Room(context.Background(), "r"); len(st.Tracks) != 0 {
		t.Errorf("published without a pipeline: %+v", st)
	}
}

type listedIntents []fleetstore.Intent

func (l listedIntents) List(context.Context) ([]fleetstore.Intent, error) { return l, nil }

type listedLeases []fleetstore.Lease

func (l listedLeases) List(context.Context) ([]fleetstore.Lease, error) { return l, nil }

// A room is busy while a participant's recording of it is wanted or
// claimed; a track egress's recording in it is not the room's.
func TestRoomBusy(t *testing.T) {
	egress := fleetstore.Key{Room: "r", Participant: "ann", Track: "TR_1"}
	whole := fleetstore.Key{Room: "r", Participant: "bob"}
	for _, tc := range []struct {
		name   string
		wanted listedIntents
		claims listedLeases
		busy   bool
	}{
		{"nothing", nil, nil, false},
		{"a wanted recording", listedIntents{{Key: whole}}, nil, true},
		{"a claimed recording", nil, listedLeases{{Key: whole}}, true},
		{"another room's", listedIntents{{Key: fleetstore.Key{Room: "q", Participant: "bob"}}}, nil, false},
		{"a track egress's only", listedIntents{{Key: egress}}, listedLeases{{Key: egress}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			busy, err := RoomBusy(tc.wanted, tc.claims)(context.Background(), "r")
			if err != nil || busy != tc.busy {
				t.Errorf("busy %v, %v; want %v", busy, err, tc.busy)
			}
		})
	}
}
