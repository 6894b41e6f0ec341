package completion

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/trackrec/trackrec/spool"
	"github.com/trackrec/trackrec/uploader"
)

const settle = time.Minute

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// markers is a fake Markers: it records the paths it was asked to clear.
type markers struct {
	mu      sync.Mutex
	cleared []string
}

func (m *markers) ClearMarkers(tracks []spool.Sealed) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, t := range tracks {
		m.cleared = append(m.cleared, t.Path)
	}
}

func (m *markers) paths() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.cleared)
}

// pipe is a fake Pipeline that records its calls. answer, if set, gives the
// result of call n (from 1); by default a call succeeds with one output.
type pipe struct {
	answer func(ctx context.Context, room string, n int) ([]string, error)

	mu    sync.Mutex
	calls []call
}

type call struct {
	room   string
	paths  []string
	at     time.Time
	stored bool // every upload of the tracks was confirmed when it ran
}

func (p *pipe) run(ctx context.Context, room string, tracks []spool.Sealed) ([]string, error) {
	c := call{room: room, at: time.Now(), stored: true}
	for _, t := range tracks {
		c.paths = append(c.paths, t.Path)
		for _, u := range t.Uploads {
			if u != nil && u.Info().State != uploader.StateUploaded {
				c.stored = false
			}
		}
	}
	p.mu.Lock()
	p.calls = append(p.calls, c)
	n := len(p.calls)
	p.mu.Unlock()
	if p.answer == nil {
		return []string{"mix/" + room + ".ogg"}, nil
	}
	return p.answer(ctx, room, n)
}

func (p *pipe) got() []call {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.calls)
}

func newRooms(p *pipe, m *markers, o Options) *Rooms {
	if p != nil {
		o.Pipeline = p.run
	}
	if m != nil {
		o.Markers = m
	}
	if o.Settle == 0 {
		o.Settle = settle
	}
	o.Logger = discard()
	return New(o)
}

func sealed(room, name string, uploads ...*uploader.Upload) spool.Sealed {
	return spool.Sealed{Manifest: spool.Manifest{Room: room}, Path: "spool/" + room + "/" + name + ".ogg", Uploads: uploads}
}

func states(r *Rooms) []string {
	var out []string
	for _, run := range r.Runs() {
		out = append(out, run.Room+":"+run.State)
	}
	return out
}

// A room completes exactly Settle after it last became idle with tracks,
// once, with every track it gathered.
func TestSettle(t *testing.T) {
	a, b := sealed("r", "a"), sealed("r", "b")
	tests := []struct {
		name   string
		script func(r *Rooms)
		want   time.Duration // from the start; 0: never completes
		tracks []string
	}{
		{"idle after tracks", func(r *Rooms) {
			r.RoomBusy("r")
			r.TrackClosed("r", a)
			r.TrackClosed("r", b)
			r.RoomIdle("r")
		}, settle, []string{a.Path, b.Path}},
		{"a track in a room never busy settles", func(r *Rooms) {
			r.TrackClosed("r", a)
		}, settle, []string{a.Path}},
		{"a track while settling does not restart it", func(r *Rooms) {
			r.TrackClosed("r", a)
			r.RoomIdle("r")
			time.Sleep(30 * time.Second)
			r.TrackClosed("r", b)
		}, settle, []string{a.Path, b.Path}},
		{"idle again restarts", func(r *Rooms) {
			r.TrackClosed("r", a)
			r.RoomIdle("r")
			time.Sleep(30 * time.Second)
			r.RoomIdle("r")
		}, 30*time.Second + settle, []string{a.Path}},
		{"busy cancels, idle re-arms", func(r *Rooms) {
			r.TrackClosed("r", a)
			r.RoomIdle("r")
			time.Sleep(30 * time.Second)
			r.RoomBusy("r")
			time.Sleep(10 * time.Minute)
			r.TrackClosed("r", b)
			r.RoomIdle("r")
		}, 10*time.Minute + 30*time.Second + settle, []string{a.Path, b.Path}},
		{"busy is a state, not a count", func(r *Rooms) {
			r.RoomBusy("r")
			r.RoomBusy("r")
			r.TrackClosed("r", a)
			r.RoomIdle("r")
		}, settle, []string{a.Path}},
		{"busy for good", func(r *Rooms) {
			r.TrackClosed("r", a)
			r.RoomIdle("r")
			r.RoomBusy("r")
		}, 0, nil},
		{"idle without tracks", func(r *Rooms) {
			r.RoomBusy("r")
			r.RoomIdle("r")
		}, 0, nil},
		{"restored", func(r *Rooms) {
			r.Restore(map[string][]spool.Sealed{"r": {a, b}})
		}, settle, []string{a.Path, b.Path}},
		{"restored while busy waits for idle", func(r *Rooms) {
			r.RoomBusy("r")
			r.Restore(map[string][]spool.Sealed{"r": {a}})
			time.Sleep(time.Hour)
			r.RoomIdle("r")
		}, time.Hour + settle, []string{a.Path}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var p pipe
				var m markers
				r := newRooms(&p, &m, Options{})
				defer r.Close()
				start := time.Now()
				tt.script(r)
				if tt.want == 0 {
					time.Sleep(24 * time.Hour)
					synctest.Wait()
					if c := p.got(); len(c) != 0 || len(r.Runs()) != 0 {
						t.Fatalf("room completed: %+v, runs %+v", c, r.Runs())
					}
					return
				}
				time.Sleep(tt.want - time.Since(start) - time.Nanosecond)
				synctest.Wait()
				if c := p.got(); len(c) != 0 {
					t.Fatalf("completed %v early", tt.want-c[0].at.Sub(start))
				}
				time.Sleep(time.Nanosecond)
				synctest.Wait()
				c := p.got()
				if len(c) != 1 || c[0].room != "r" || !slices.Equal(c[0].paths, tt.tracks) || c[0].at.Sub(start) != tt.want {
					t.Fatalf("calls %+v, want one for r at %v with %v", c, tt.want, tt.tracks)
				}
				runs := r.Runs()
				want := Run{Room: "r", State: StateDone, Tracks: len(tt.tracks), Outputs: []string{"mix/r.ogg"}, At: start.Add(tt.want).UTC()}
				if len(runs) != 1 || !equalRun(runs[0], want) {
					t.Errorf("runs %+v, want %+v", runs, want)
				}
				if !slices.Equal(m.paths(), tt.tracks) {
					t.Errorf("markers cleared %v, want %v", m.paths(), tt.tracks)
				}
				time.Sleep(24 * time.Hour)
				if n := len(p.got()); n != 1 {
					t.Errorf("pipeline ran %d times, want once", n)
				}
			})
		})
	}
}

func equalRun(a, b Run) bool {
	return a.Room == b.Room && a.State == b.State && a.Tracks == b.Tracks && slices.Equal(a.Outputs, b.Outputs) &&
		a.Error == b.Error && a.At.Equal(b.At)
}

// A settle timer that fired but had not taken the room yet when the room
// became busy, was re-armed or shutdown began, does nothing.
func TestStaleSettleTimer(t *testing.T) {
	tests := []struct {
		name  string
		after func(r *Rooms)
		want  time.Duration // when the room completes after the stale call; 0: never
	}{
		{"busy", func(r *Rooms) { r.RoomBusy("r") }, 0},
		{"busy, then idle", func(r *Rooms) { r.RoomBusy("r"); r.RoomIdle("r") }, settle},
		{"idle again", func(r *Rooms) { r.RoomIdle("r") }, settle},
		{"stop", func(r *Rooms) { r.Stop() }, 0},
		{"close", func(r *Rooms) { r.Close() }, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var p pipe
				r := newRooms(&p, nil, Options{})
				defer r.Close()
				r.TrackClosed("r", sealed("r", "a"))
				r.RoomIdle("r")
				r.mu.Lock()
				fired := r.rooms["r"].armed
				r.mu.Unlock()
				tt.after(r)
				start := time.Now()
				r.settled("r", fired) // the old timer's callback gets the lock only now
				synctest.Wait()
				if n := len(r.Runs()); n != 0 {
					t.Fatalf("a stale settle timer started %d runs: %v", n, states(r))
				}
				time.Sleep(24 * time.Hour)
				c := p.got()
				switch {
				case tt.want == 0 && len(c) != 0:
					t.Errorf("room completed: %+v", c)
				case tt.want != 0 && (len(c) != 1 || c[0].at.Sub(start) != tt.want):
					t.Errorf("calls %+v, want one %v after", c, tt.want)
				}
			})
		})
	}
}

// ErrRetryLater reruns the pipeline after 1, 2, 4 ... minutes, at most 30,
// showing the error meanwhile; markers stay until it ran to its end.
func TestRetryLater(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const fails = 8
		p := pipe{answer: func(_ context.Context, _ string, n int) ([]string, error) {
			if n <= fails {
				return nil, fmt.Errorf("webhook: receiver down: %w", ErrRetryLater)
			}
			return []string{"mix"}, nil
		}}
		var m markers
		r := newRooms(&p, &m, Options{})
		defer r.Close()
		r.TrackClosed("r", sealed("r", "a"))
		time.Sleep(settle)
		synctest.Wait()
		for i := range fails {
			runs := r.Runs()
			if len(runs) != 1 || runs[0].State != StateRetrying || !strings.Contains(runs[0].Error, "receiver down") {
				t.Fatalf("after call %d: runs %+v", i+1, runs)
			}
			if c := m.paths(); len(c) != 0 {
				t.Fatalf("markers cleared while retrying: %v", c)
			}
			for len(p.got()) == i+1 {
				time.Sleep(time.Second)
				synctest.Wait()
			}
		}
		var gaps []time.Duration
		c := p.got()
		for i := 1; i < len(c); i++ {
			gaps = append(gaps, c[i].at.Sub(c[i-1].at))
		}
		want := []time.Duration{1 * time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 16 * time.Minute, 30 * time.Minute, 30 * time.Minute, 30 * time.Minute}
		if !slices.Equal(gaps, want) {
			t.Errorf("retry delays %v, want %v", gaps, want)
		}
		if runs := r.Runs(); len(runs) != 1 || runs[0].State != StateDone || runs[0].Error != "" {
			t.Errorf("runs %+v, want one done", runs)
		}
		if got := m.paths(); len(got) != 1 {
			t.Errorf("markers cleared %v, want the track's", got)
		}
	})
}

// RetryAfter reruns the pipeline after the wait it names, not the doubling
// delay, and a plain ErrRetryLater after it still starts the doubling at 1 min.
func TestRetryAfterNamesTheWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := pipe{answer: func(_ context.Context, _ string, n int) ([]string, error) {
			switch n {
			case 1, 2:
				return nil, RetryAfter(5*time.Second, errors.New("files still on a dead instance"))
			case 3:
				return nil, fmt.Errorf("webhook: %w", ErrRetryLater)
			}
			return nil, nil
		}}
		r := newRooms(&p, nil, Options{})
		defer r.Close()
		r.TrackClosed("r", sealed("r", "a"))
		time.Sleep(settle)
		for len(p.got()) < 4 {
			time.Sleep(time.Second)
			synctest.Wait()
		}
		c := p.got()
		var gaps []time.Duration
		for i := 1; i < len(c); i++ {
			gaps = append(gaps, c[i].at.Sub(c[i-1].at))
		}
		if want := []time.Duration{5 * time.Second, 5 * time.Second, time.Minute}; !slices.Equal(gaps, want) {
			t.Errorf("retry delays %v, want %v", gaps, want)
		}
	})
}

// Shutdown during the settle: the room does not complete in this process
// and its markers stay; nothing completes after Stop.
func TestStopDuringSettle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var p pipe
		var m markers
		r := newRooms(&p, &m, Options{})
		r.TrackClosed("r", sealed("r", "a"))
		time.Sleep(settle / 2)
		r.Stop()
		r.TrackClosed("s", sealed("s", "a"))
		r.RoomIdle("s")
		r.Restore(map[string][]spool.Sealed{"t": {sealed("t", "a")}})
		time.Sleep(24 * time.Hour)
		r.Close()
		if c := p.got(); len(c) != 0 || len(r.Runs()) != 0 || len(m.paths()) != 0 {
			t.Errorf("calls %+v, runs %+v, markers cleared %v", c, r.Runs(), m.paths())
		}
		if len(r.rooms) != 0 {
			t.Errorf("%d rooms kept after Stop", len(r.rooms))
		}
	})
}

// Close during a retry delay ends the run at once: no rerun, markers kept.
func TestCloseDuringRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := pipe{answer: func(context.Context, string, int) ([]string, error) {
			return nil, fmt.Errorf("webhook: %w", ErrRetryLater)
		}}
		var m markers
		r := newRooms(&p, &m, Options{RetryDelay: time.Hour})
		r.TrackClosed("r", sealed("r", "a"))
		time.Sleep(settle)
		synctest.Wait()
		if s := states(r); !slices.Equal(s, []string{"r:" + StateRetrying}) {
			t.Fatalf("runs %v", s)
		}
		before := time.Now()
		r.Stop()
		r.Close()
		if waited := time.Since(before); waited != 0 {
			t.Errorf("Close waited %v", waited)
		}
		if n := len(p.got()); n != 1 {
			t.Errorf("pipeline ran %d times, want once", n)
		}
		if s := states(r); !slices.Equal(s, []string{"r:" + StateFailed}) {
			t.Errorf("runs %v", s)
		}
		if c := m.paths(); len(c) != 0 {
			t.Errorf("markers cleared: %v", c)
		}
	})
}

// store is a fake uploader.Storage: its first fails Puts fail, and with
// release set a Put returns only once release is closed.
type store struct {
	fails   int
	release chan struct{}

	mu   sync.Mutex
	puts int
}

func (s *store) Put(ctx context.Context, key, path, contentType string, sha256 []byte) error {
	s.mu.Lock()
	s.puts++
	n := s.puts
	s.mu.Unlock()
	if n <= s.fails {
		return errors.New("store unreachable")
	}
	if s.release != nil {
		select {
		case <-s.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (s *store) Get(context.Context, string, io.Writer) error   { return uploader.ErrNotFound }
func (s *store) List(context.Context, string) ([]string, error) { return nil, nil }
func (s *store) String() string                                 { return "fake://" }

// upload queues a track's file and its manifest, the manifest after the file.
func upload(t *testing.T, q *uploader.Queue, room, name string) spool.Sealed {
	t.Helper()
	key := "livekit/" + room + "/" + name
	file, err := q.Submit(uploader.Item{Key: key + ".ogg", Path: "spool/" + name + ".ogg", SHA256: []byte{1}})
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := q.Submit(uploader.Item{Key: key + ".json", Path: "spool/" + name + ".json", SHA256: []byte{2}, After: file})
	if err != nil {
		t.Fatal(err)
	}
	return sealed(room, name, file, nil, manifest)
}

// A complete room's pipeline runs only once every upload of its tracks is
// stored.
func TestUploadsAwaited(t *testing.T) {
	tests := []struct {
		name  string
		store func() *store // made in the bubble: a channel from outside it is not durably blocking
	}{
		{"a store that blocks until released", func() *store { return &store{release: make(chan struct{})} }},
		{"a store that fails, then stores", func() *store { return &store{fails: 3} }},
		// The queue retries after an hour or more: still waiting once settled.
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				st := tt.store()
				q := uploader.NewQueue(st, uploader.QueueOptions{Logger: discard(), MinBackoff: time.Hour, MaxBackoff: 4 * time.Hour})
				var p pipe
				var m markers
				r := newRooms(&p, &m, Options{})
				defer shutdown(t, r, q)
				r.TrackClosed("r", upload(t, q, "r", "a"))
				r.TrackClosed("r", upload(t, q, "r", "b"))
				time.Sleep(settle)
				synctest.Wait()
				if s := states(r); !slices.Equal(s, []string{"r:" + StateWaiting}) || len(p.got()) != 0 {
					t.Fatalf("runs %v, calls %+v, want waiting for uploads", s, p.got())
				}
				if st.release != nil {
					close(st.release)
				}
				time.Sleep(24 * time.Hour) // the queue's backoff
				synctest.Wait()
				c := p.got()
				if len(c) != 1 || !c[0].stored || len(c[0].paths) != 2 {
					t.Errorf("calls %+v, want one with both tracks stored", c)
				}
				if s := states(r); !slices.Equal(s, []string{"r:" + StateDone}) {
					t.Errorf("runs %v", s)
				}
			})
		})
	}
}

// shutdown shuts down as the recorder does: Stop, the upload drain, Close.
func shutdown(t *testing.T, r *Rooms, q *uploader.Queue) {
	r.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := q.Drain(ctx); err != nil {
		t.Log(err)
	}
	r.Close()
}

// Close while a room waits for uploads the drain did not finish: no
// pipeline, the run failed, markers kept for the next process.
func TestCloseWhileWaitingUploads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &store{release: make(chan struct{})} // never released
		q := uploader.NewQueue(st, uploader.QueueOptions{Logger: discard()})
		var p pipe
		var m markers
		r := newRooms(&p, &m, Options{})
		r.TrackClosed("r", upload(t, q, "r", "a"))
		time.Sleep(settle)
		synctest.Wait()
		r.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := q.Drain(ctx); err == nil {
			t.Error("drain finished with the store blocked")
		}
		if s := states(r); !slices.Equal(s, []string{"r:" + StateWaiting}) {
			t.Errorf("runs after the drain %v, want still waiting", s)
		}
		r.Close()
		runs := r.Runs()
		if len(runs) != 1 || runs[0].State != StateFailed || !strings.Contains(runs[0].Error, "uploads unfinished") {
			t.Errorf("runs %+v", runs)
		}
		if len(p.got()) != 0 || len(m.paths()) != 0 {
			t.Errorf("calls %+v, markers cleared %v", p.got(), m.paths())
		}
	})
}

// At most Concurrency pipelines run at once; the other rooms wait their
// turn, queued, first come first served.
func TestConcurrency(t *testing.T) {
	for _, conc := range []int{1, 2, 3} {
		t.Run(fmt.Sprint(conc), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rooms := []string{"r0", "r1", "r2"}
				gates := map[string]chan struct{}{}
				for _, name := range rooms {
					gates[name] = make(chan struct{})
				}
				var mu sync.Mutex
				running, most := 0, 0
				p := pipe{answer: func(ctx context.Context, room string, _ int) ([]string, error) {
					mu.Lock()
					running++
					most = max(most, running)
					mu.Unlock()
					defer func() { mu.Lock(); running--; mu.Unlock() }()
					select {
					case <-gates[room]:
						return nil, nil
					case <-ctx.Done():
						return nil, ctx.Err()
					}
				}}
				r := newRooms(&p, nil, Options{Concurrency: conc})
				defer r.Close()
				for _, name := range rooms {
					r.TrackClosed(name, sealed(name, "a"))
					time.Sleep(time.Second) // settles in this order
				}
				time.Sleep(settle)
				for done := 0; done <= len(rooms); done++ {
					synctest.Wait()
					var want []string
					for i, name := range rooms {
						switch {
						case i < done:
							want = append(want, name+":"+StateDone)
						case i < done+conc:
							want = append(want, name+":"+StateRunning)
						default:
							want = append(want, name+":"+StateQueued)
						}
					}
					if got := states(r); !slices.Equal(got, want) {
						t.Fatalf("with %d done: runs %v, want %v", done, got, want)
					}
					if done < len(rooms) {
						close(gates[rooms[done]])
					}
				}
				if most != conc {
					t.Errorf("%d pipelines ran at once, want %d", most, conc)
				}
			})
		})
	}
}

// Markers are cleared once the pipeline ran to its end, and kept when
// shutdown cut it short, so the next process reruns it.
func TestMarkersPerOutcome(t *testing.T) {
	failed := errors.New("ffmpeg: exit status 1")
	tests := []struct {
		name      string
		err       error // the pipeline's answer once released
		stop      bool  // Stop before the pipeline returns
		close     bool  // Close cancels the running pipeline instead of releasing it
		state     string
		cleared   bool
		wantError string
	}{
		{name: "success", state: StateDone, cleared: true},
		{name: "failure", err: failed, state: StateFailed, cleared: true, wantError: "exit status 1"},
		{name: "success after Stop", stop: true, state: StateDone, cleared: true},
		{name: "failure after Stop", err: failed, stop: true, state: StateFailed, wantError: "cut short"},
		{name: "retry after Stop", err: fmt.Errorf("webhook: %w", ErrRetryLater), stop: true, state: StateFailed, wantError: "cut short"},
		{name: "cut by Close", stop: true, close: true, state: StateFailed, wantError: "context canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				release := make(chan struct{})
				p := pipe{answer: func(ctx context.Context, _ string, _ int) ([]string, error) {
					select {
					case <-release:
						return nil, tt.err
					case <-ctx.Done():
						return nil, fmt.Errorf("mix: upload: %w", ctx.Err())
					}
				}}
				var m markers
				r := newRooms(&p, &m, Options{})
				defer r.Close()
				r.TrackClosed("r", sealed("r", "a"))
				time.Sleep(settle)
				synctest.Wait()
				if tt.stop {
					r.Stop()
				}
				if tt.close {
					r.Close()
				} else {
					close(release)
				}
				time.Sleep(24 * time.Hour)
				synctest.Wait()
				runs := r.Runs()
				if len(runs) != 1 || runs[0].State != tt.state || !strings.Contains(runs[0].Error, tt.wantError) || (tt.wantError == "") != (runs[0].Error == "") {
					t.Errorf("runs %+v, want %s with error %q", runs, tt.state, tt.wantError)
				}
				if cleared := len(m.paths()) == 1; cleared != tt.cleared {
					t.Errorf("markers cleared: %v, want %v", cleared, tt.cleared)
				}
				if n := len(p.got()); n != 1 {
					t.Errorf("pipeline ran %d times, want once", n)
				}
			})
		})
	}
}

// Nothing is kept per track without a pipeline; with one, a room's tracks
// go with its run and the history stays within History.
func TestRetention(t *testing.T) {
	const rooms, history = 1000, 16
	tracks := 1000
	feed := func(r *Rooms, room string) {
		r.RoomBusy(room)
		for i := range tracks {
			r.TrackClosed(room, sealed(room, fmt.Sprint(i)))
		}
		r.RoomIdle(room)
	}
	t.Run("no pipeline", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := newRooms(nil, nil, Options{})
			defer r.Close()
			for i := range rooms {
				feed(r, fmt.Sprint("room", i))
			}
			r.Restore(map[string][]spool.Sealed{"restored": {sealed("restored", "a")}})
			if len(r.rooms) != 0 {
				t.Errorf("%d rooms kept with no pipeline", len(r.rooms))
			}
			time.Sleep(24 * time.Hour)
			if n := len(r.Runs()); n != 0 {
				t.Errorf("%d runs with no pipeline", n)
			}
		})
	})
	t.Run("pipeline", func(t *testing.T) {
		tracks = 100 // copied into the rooms, unlike above: kept light for -race
		synctest.Test(t, func(t *testing.T) {
			var mu sync.Mutex
			got := 0
			r := newRooms(nil, nil, Options{History: history, Pipeline: func(_ context.Context, _ string, tr []spool.Sealed) ([]string, error) {
				mu.Lock()
				got += len(tr)
				mu.Unlock()
				return nil, nil
			}})
			defer r.Close()
			for i := range rooms {
				feed(r, fmt.Sprint("room", i))
				time.Sleep(settle)
				synctest.Wait()
				r.mu.Lock()
				kept, runs := len(r.rooms), len(r.runs)
				r.mu.Unlock()
				if kept != 0 || runs > history {
					t.Fatalf("after %d rooms: %d rooms kept, %d runs", i+1, kept, runs)
				}
			}
			if got != rooms*tracks || len(r.Runs()) != history {
				t.Errorf("pipelines got %d tracks, %d runs kept; want %d and %d", got, len(r.Runs()), rooms*tracks, history)
			}
		})
	})
}

// A full history drops finished runs before ones still under way.
func TestHistoryKeepsRunsUnderWay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := pipe{answer: func(ctx context.Context, room string, _ int) ([]string, error) {
			if room == "stuck" {
				<-ctx.Done()
				return nil, ctx.Err()
			}
			return nil, nil
		}}
		r := newRooms(&p, nil, Options{History: 3, Concurrency: 2})
		defer r.Close()
		for _, name := range []string{"stuck", "a", "b", "c", "d"} {
			r.TrackClosed(name, sealed(name, "t"))
			time.Sleep(time.Second)
		}
		time.Sleep(settle)
		synctest.Wait()
		want := []string{"stuck:" + StateRunning, "c:" + StateDone, "d:" + StateDone}
		if got := states(r); !slices.Equal(got, want) {
			t.Errorf("runs %v, want %v", got, want)
		}
	})
}

// Stop and Close racing settle timers that fire: no run starts once Stop
// returned, and Close waits for those that did (the race detector checks
// the WaitGroup).
func TestShutdownRacesSettleTimers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRooms(&pipe{}, nil, Options{Settle: time.Nanosecond})
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for i := range 200 {
					room := fmt.Sprint(g, "-", i%7)
					r.TrackClosed(room, sealed(room, fmt.Sprint(i)))
					r.RoomIdle(room)
					if i%3 == 0 {
						time.Sleep(time.Nanosecond)
					}
				}
			})
		}
		time.Sleep(50 * time.Nanosecond)
		r.Stop()
		before := len(r.Runs())
		r.Close()
		wg.Wait()
		time.Sleep(time.Hour)
		if before == 0 {
			t.Error("no room completed before Stop; the test raced nothing")
		}
		if n := len(r.Runs()); n != before {
			t.Errorf("%d runs started after Stop", n-before)
		}
		for _, run := range r.Runs() {
			if run.State != StateDone && run.State != StateFailed {
				t.Errorf("run %+v under way after Close", run)
			}
		}
	})
}

// A run waiting to retry gives its turn back: other rooms run meanwhile.
func TestRetryGivesBackTheTurn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := pipe{answer: func(_ context.Context, room string, _ int) ([]string, error) {
			if room == "down" {
				return nil, fmt.Errorf("webhook: %w", ErrRetryLater)
			}
			return nil, nil
		}}
		r := newRooms(&p, nil, Options{Concurrency: 1, RetryDelay: time.Hour})
		defer r.Close()
		r.TrackClosed("down", sealed("down", "a"))
		time.Sleep(time.Second)
		r.TrackClosed("up", sealed("up", "a"))
		time.Sleep(settle)
		synctest.Wait()
		want := []string{"down:" + StateRetrying, "up:" + StateDone}
		if got := states(r); !slices.Equal(got, want) {
			t.Errorf("runs %v, want %v", got, want)
		}
	})
}

// Uploads that finish during the drain, after Stop, do not start the
// pipeline: the queue is closing, so a mix could not be stored and the
// webhook would go out without it. The markers stay for the next process.
func TestUploadsDoneAfterStopDoNotRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &store{release: make(chan struct{})}
		q := uploader.NewQueue(st, uploader.QueueOptions{Logger: discard()})
		var p pipe
		var m markers
		r := newRooms(&p, &m, Options{})
		r.TrackClosed("r", upload(t, q, "r", "a"))
		time.Sleep(settle)
		synctest.Wait()
		r.Stop()
		close(st.release) // stored during the drain
		if err := q.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		r.Close()
		runs := r.Runs()
		if len(runs) != 1 || runs[0].State != StateFailed || !strings.Contains(runs[0].Error, "next process") {
			t.Errorf("runs %+v", runs)
		}
		if len(p.got()) != 0 || len(m.paths()) != 0 {
			t.Errorf("calls %+v, markers cleared %v", p.got(), m.paths())
		}
	})
}
