package takeover

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/trackrec/trackrec/fleetstore"
	"github.com/trackrec/trackrec/recorder"
)

type fakeWanted struct {
	mu  sync.Mutex
	all map[fleetstore.Key]fleetstore.Intent
}

func (w *fakeWanted) Put(_ context.Context, in fleetstore.Intent) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.all[in.Key] = in
	return nil
}

func (w *fakeWanted) Delete(_ context.Context, k fleetstore.Key, id string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.all[k].ID == id {
		delete(w.all, k)
	}
	return nil
}

func (w *fakeWanted) Get(_ context.Context, k fleetstore.Key) (fleetstore.Intent, bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	in, ok := w.all[k]
	return in, ok, nil
}

func (w *fakeWanted) List(context.Context) ([]fleetstore.Intent, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []fleetstore.Intent
	for _, in := range w.all {
		out = append(out, in)
	}
	return out, nil
}

type fakeHolders map[string]bool // participant -> held

func (h fakeHolders) Holder(_ context.Context, k fleetstore.Key) (fleetstore.Lease, bool, error) {
	return fleetstore.Lease{}, h[k.Participant], nil
}

type fakeStarter struct {
	mu     sync.Mutex
	starts []string
	errs   map[string]error
}

func (s *fakeStarter) got() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.starts...)
}

func (s *fakeStarter) Start(_ context.Context, room, p string, _ ...recorder.StartOption) (recorder.RecordingInfo, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.starts = append(s.starts, p)
	if err := s.errs[p]; err != nil {
		return recorder.RecordingInfo{}, false, err
	}
	return recorder.RecordingInfo{}, true, nil
}

// Every second, a wanted recording nobody holds is resumed here; a held one
// is left alone; one whose participant is gone is no longer wanted; one
// another instance won is tried again later.
func TestRunResumesUnclaimedRecordings(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &fakeWanted{all: map[fleetstore.Key]fleetstore.Intent{}}
		for _, p := range []string{"free", "held", "gone", "lost"} {
			w.Put(context.Background(), fleetstore.Intent{Key: fleetstore.Key{Room: "r", Participant: p}, ID: "RC_" + p})
		}
		st := &fakeStarter{errs: map[string]error{"gone": recorder.ErrNoParticipant, "lost": recorder.ErrOwned}}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			Run(ctx, Options{Wanted: w, Holders: fakeHolders{"held": true}, Starter: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		}()
		time.Sleep(time.Second - time.Nanosecond)
		synctest.Wait()
		if len(st.got()) != 0 {
			t.Fatalf("started before the first look: %v", st.got())
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		got := st.got()
		sort.Strings(got)
		if want := []string{"free", "gone", "lost"}; !slices.Equal(got, want) {
			t.Errorf("first look started %v, want %v", got, want)
		}
		left, _ := w.List(ctx)
		if len(left) != 3 {
			t.Errorf("wanted after the first look: %+v (the gone one should be dropped)", left)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		cancel()
		<-done
		if n := len(st.got()); n != 5 {
			t.Errorf("%d starts after two looks, want 5 (free and lost again, not gone)", n)
		}
	})
}

// What the supervisor starts and ends reaches the wanted set.
func TestIntentsAdapter(t *testing.T) {
	w := &fakeWanted{all: map[fleetstore.Key]fleetstore.Intent{}}
	in := Intents{Wanted: w}
	ctx := context.Background()
	k := recorder.Key{Room: "r", Participant: "a"}
	in.Want(ctx, k, "RC_1", true)
	l, _ := w.List(ctx)
	if len(l) != 1 || l[0].ID != "RC_1" || !l[0].Wait || l[0].Key != (fleetstore.Key{Room: "r", Participant: "a"}) {
		t.Fatalf("wanted %+v", l)
	}
	in.Done(ctx, k, "RC_0")
	if l, _ := w.List(ctx); len(l) != 1 {
		t.Error("another recording's end dropped it")
	}
	in.Done(ctx, k, "RC_1")
	if l, _ := w.List(ctx); len(l) != 0 {
		t.Error("its end did not drop it")
	}
}

// A recording is resumed only once nobody has held its claim for the
// grace: a holder that claims it again in time keeps it.
func TestGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &fakeWanted{all: map[fleetstore.Key]fleetstore.Intent{}}
		w.Put(context.Background(), fleetstore.Intent{Key: fleetstore.Key{Room: "r", Participant: "p"}, ID: "RC_p"})
		st := &fakeStarter{}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			Run(ctx, Options{Wanted: w, Holders: fakeHolders{}, Starter: st, Grace: 1500 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		}()
		time.Sleep(2*time.Second + time.Millisecond) // looks at 1 s (first seen free) and 2 s (1 s: too soon)
		synctest.Wait()
		if n := len(st.got()); n != 0 {
			t.Fatalf("resumed %d times within the grace", n)
		}
		time.Sleep(time.Second) // the look at 3 s: free for 2 s
		synctest.Wait()
		if n := len(st.got()); n != 1 {
			t.Errorf("resumed %d times after the grace, want 1", n)
		}
		// A claim released on purpose is taken at the next look.
		w.Put(context.Background(), fleetstore.Intent{Key: fleetstore.Key{Room: "r", Participant: "q"}, ID: "RC_q", Free: true})
		time.Sleep(time.Second)
		synctest.Wait()
		if got := st.got(); len(got) != 2 || !slices.Contains(got, "q") {
			t.Errorf("starts %v: a freed recording should be resumed at the next look", got)
		}
		cancel()
		<-done
	})
}

// switchHolders says a key is held while held is set.
type switchHolders struct {
	mu   sync.Mutex
	held bool
}

func (h *switchHolders) set(v bool) { h.mu.Lock(); h.held = v; h.mu.Unlock() }

func (h *switchHolders) Holder(context.Context, fleetstore.Key) (fleetstore.Lease, bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return fleetstore.Lease{}, h.held, nil
}

// A holder that claims its recording again within the grace keeps it: the
// grace starts over from the next time it is seen unclaimed.
func TestGraceStartsOverWhenClaimedAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &fakeWanted{all: map[fleetstore.Key]fleetstore.Intent{}}
		w.Put(context.Background(), fleetstore.Intent{Key: fleetstore.Key{Room: "r", Participant: "p"}, ID: "RC_p"})
		h, st := &switchHolders{}, &fakeStarter{}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			Run(ctx, Options{Wanted: w, Holders: h, Starter: st, Grace: 1500 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		}()
		time.Sleep(1500 * time.Millisecond) // look at 1 s: unclaimed
		h.set(true)                         // look at 2 s: claimed again
		time.Sleep(time.Second)
		h.set(false) // looks at 3 s (unclaimed again), 4 s (1 s: too soon)
		time.Sleep(2*time.Second + time.Millisecond)
		synctest.Wait()
		if n := len(st.got()); n != 0 {
			t.Fatalf("resumed %d times though its holder claimed it again", n)
		}
		time.Sleep(time.Second) // look at 5 s: unclaimed for 2 s
		synctest.Wait()
		if n := len(st.got()); n != 1 {
			t.Errorf("resumed %d times a grace after the holder let go, want 1", n)
		}
		cancel()
		<-done
	})
}

// Later leaves a recording wanted and free, under a new recording id, so
// that the first instance with room resumes it at once.
func TestLaterIsWantedAndFree(t *testing.T) {
	w := &fakeWanted{all: map[fleetstore.Key]fleetstore.Intent{}}
	if err := Later(context.Background(), w, "r", "alice"); err != nil {
		t.Fatal(err)
	}
	in, ok, _ := w.Get(context.Background(), fleetstore.Key{Room: "r", Participant: "alice"})
	if !ok || !in.Free || len(in.ID) < 4 || in.ID[:3] != "RC_" || in.Since.IsZero() {
		t.Errorf("wanted %+v %v, want a free intent with a recording id", in, ok)
	}
	// A recording already wanted keeps its id and its wait.
	k := fleetstore.Key{Room: "r", Participant: "bob"}
	w.Put(context.Background(), fleetstore.Intent{Key: k, ID: "RC_bob", Wait: true})
	if err := Later(context.Background(), w, "r", "bob"); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := w.Get(context.Background(), k); got.ID != "RC_bob" || !got.Wait {
		t.Errorf("Later replaced a wanted recording: %+v", got)
	}
}

type fakeTracks struct {
	mu      sync.Mutex
	resumed []recorder.Key
	err     error
}

func (f *fakeTracks) Resume(_ context.Context, key recorder.Key, id string, _ ...recorder.StartOption) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resumed = append(f.resumed, key)
	return f.err == nil, f.err
}

// A track egress's recording is resumed through Tracks, never as a whole
// participant's; without Tracks this instance leaves it to the others; once
// Tracks finds its track gone (the egress ended) it is no longer wanted.
// A stop of the participant, or the room's end, leaves it wanted: only its
// takeover can report the egress's end.
func TestRunResumesTrackEgresses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		key := fleetstore.Key{Room: "r", Participant: "ann", Track: "TR_1"}
		w := &fakeWanted{all: map[fleetstore.Key]fleetstore.Intent{key: {Key: key, ID: "EG_1"}}}
		if found, err := Forget(context.Background(), w, "r", ""); found || err != nil {
			t.Fatalf("the room's end dropped a track egress's recording: %v %v", found, err)
		}
		st := &fakeStarter{}
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		run := func(tr Tracks) {
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				o := Options{Wanted: w, Holders: fakeHolders{}, Starter: st, Logger: log}
				if tr != nil {
					o.Tracks = tr
				}
				Run(ctx, o)
			}()
			time.Sleep(1500 * time.Millisecond)
			synctest.Wait()
			cancel()
			<-done
		}
		run(nil)
		if len(st.got()) != 0 {
			t.Fatalf("a track egress's recording started as a participant's: %v", st.got())
		}
		if _, ok, _ := w.Get(context.Background(), key); !ok {
			t.Fatal("an instance without Tracks dropped the recording")
		}
		tr := &fakeTracks{err: recorder.ErrNoParticipant}
		run(tr)
		if len(tr.resumed) != 1 || tr.resumed[0] != recorder.Key(key) || len(st.got()) != 0 {
			t.Fatalf("resumed %v through Tracks, %v as participants", tr.resumed, st.got())
		}
		if _, ok, _ := w.Get(context.Background(), key); ok {
			t.Error("still wanted after its egress ended")
		}
	})
}
