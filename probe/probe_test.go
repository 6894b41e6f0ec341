package probe

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/twitchtv/twirp"

	"github.com/trackrec/trackrec/recorder"
)

// fakeRooms is a RoomService: rooms holds the rooms that exist, with their
// participants. get and list, if set, run before a call answers (to block
// or fail it).
type fakeRooms struct {
	rooms map[string][]string
	get   func(ctx context.Context) error
	list  func(ctx context.Context) error

	mu        sync.Mutex
	gets      int
	listNames [][]string
}

func (f *fakeRooms) GetParticipant(ctx context.Context, req *livekit.RoomParticipantIdentity) (*livekit.ParticipantInfo, error) {
	f.mu.Lock()
	f.gets++
	f.mu.Unlock()
	if f.get != nil {
		if err := f.get(ctx); err != nil {
			return nil, err
		}
	}
	if !slices.Contains(f.rooms[req.Room], req.Identity) {
		return nil, twirp.NotFoundError("participant not found")
	}
	return &livekit.ParticipantInfo{Identity: req.Identity}, nil
}

func (f *fakeRooms) ListRooms(ctx context.Context, req *livekit.ListRoomsRequest) (*livekit.ListRoomsResponse, error) {
	f.mu.Lock()
	f.listNames = append(f.listNames, req.Names)
	f.mu.Unlock()
	if f.list != nil {
		if err := f.list(ctx); err != nil {
			return nil, err
		}
	}
	resp := &livekit.ListRoomsResponse{}
	for name := range f.rooms {
		if len(req.Names) == 0 || slices.Contains(req.Names, name) {
			resp.Rooms = append(resp.Rooms, &livekit.Room{Name: name})
		}
	}
	return resp, nil
}

func (f *fakeRooms) calls() (gets, lists int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gets, len(f.listNames)
}

// untilCut blocks a call until its context ends and then fails it the way
// twirp does: an internal error that does not wrap ctx.Err().
func untilCut(ctx context.Context) error {
	<-ctx.Done()
	return twirp.NewError(twirp.Internal, "failed to do request: "+ctx.Err().Error())
}

func TestLookup(t *testing.T) {
	denied := twirp.NewError(twirp.Unauthenticated, "invalid token")
	cases := []struct {
		name      string
		get, list func(context.Context) error
		want      recorder.Presence
		wantErr   error // errors.Is; nil means no error
		wantLists int
	}{
		{name: "present", want: recorder.Present},
		{name: "participant missing", want: recorder.NoParticipant, wantLists: 1},
		{name: "room missing", want: recorder.NoRoom, wantLists: 1},
		{name: "get refused", get: func(context.Context) error { return denied }, wantErr: denied},
		{name: "list refused", list: func(context.Context) error { return denied }, wantErr: denied, wantLists: 1},
		{name: "get too slow", get: untilCut, wantErr: context.DeadlineExceeded},
		{name: "list too slow", list: untilCut, wantErr: context.DeadlineExceeded, wantLists: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rooms := map[string][]string{"r": {"alice"}}
				identity, room := "alice", "r"
				switch tc.name {
				case "participant missing", "list refused", "list too slow":
					identity = "bob"
				case "room missing":
					room = "elsewhere"
				}
				f := &fakeRooms{rooms: rooms, get: tc.get, list: tc.list}
				lookup, err := NewLookup(f, 3*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				began := time.Now()
				got, err := lookup(context.Background(), room, identity)
				if tc.wantErr == nil {
					if err != nil || got != tc.want {
						t.Fatalf("lookup(%q, %q) = %v, %v; want %v", room, identity, got, err, tc.want)
					}
				} else if !errors.Is(err, tc.wantErr) {
					t.Fatalf("lookup error %v, want %v", err, tc.wantErr)
				}
				if errors.Is(tc.wantErr, context.DeadlineExceeded) {
					if took := time.Since(began); took != 3*time.Second {
						t.Errorf("cut after %v, want the 3s timeout for both calls together", took)
					}
				} else if errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("a refusal reported as a timeout: %v", err)
				}
				if _, lists := f.calls(); lists != tc.wantLists {
					t.Errorf("%d ListRooms calls, want %d", lists, tc.wantLists)
				}
				if tc.wantLists > 0 && !slices.Equal(f.listNames[0], []string{room}) {
					t.Errorf("ListRooms asked for %q, want only %q", f.listNames[0], room)
				}
			})
		})
	}
}

// A caller who gives up is not a slow LiveKit: the API answers 499, not 504.
func TestLookupCallerGivesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lookup, err := NewLookup(&fakeRooms{get: untilCut}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(time.Second, cancel)
		_, err = lookup(ctx, "r", "alice")
		if !errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error %v, want context.Canceled only", err)
		}
	})
}

func TestConstruction(t *testing.T) {
	ok := func() error { return nil }
	if _, err := NewLookup(nil, time.Second); err == nil {
		t.Error("NewLookup without a RoomService")
	}
	if _, err := NewLookup(&fakeRooms{}, 0); err == nil {
		t.Error("NewLookup with no timeout")
	}
	if _, err := NewReadiness(nil, ok, time.Second); err == nil {
		t.Error("NewReadiness without a RoomService")
	}
	if _, err := NewReadiness(&fakeRooms{}, nil, time.Second); err == nil {
		t.Error("NewReadiness without a write check")
	}
	if _, err := NewReadiness(&fakeRooms{}, ok, -time.Second); err == nil {
		t.Error("NewReadiness with a negative max age")
	}
}

// counter counts calls to a write check that answers err.
type counter struct {
	mu  sync.Mutex
	n   int
	err error
}

func (c *counter) write() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return c.err
}

func (c *counter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func TestReadinessServesAFreshResult(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, w := &fakeRooms{}, &counter{}
		r, err := NewReadiness(f, w.write, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		check := func(wantChecks int) {
			t.Helper()
			if err := r.Check(context.Background()); err != nil {
				t.Fatal(err)
			}
			if _, lists := f.calls(); lists != wantChecks || w.count() != wantChecks {
				t.Fatalf("after %v: %d LiveKit calls and %d writes, want %d each", time.Since(began), lists, w.count(), wantChecks)
			}
		}
		check(1)
		for range 20 { // a burst of unauthenticated probes
			check(1)
		}
		time.Sleep(2 * time.Second) // the result is exactly maxAge old: still served
		check(1)
		time.Sleep(time.Nanosecond)
		check(2)
	})
}

func TestReadinessSharesTheCheckInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		f := &fakeRooms{list: func(ctx context.Context) error {
			<-release
			return nil
		}}
		w := &counter{}
		r, err := NewReadiness(f, w.write, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 50)
		for i := range errs {
			wg.Go(func() { errs[i] = r.Check(context.Background()) })
		}
		synctest.Wait() // every caller is waiting
		if _, lists := f.calls(); lists != 1 {
			t.Fatalf("%d LiveKit calls in flight for 50 callers, want 1", lists)
		}
		close(release)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("caller %d: %v", i, err)
			}
		}
		if _, lists := f.calls(); lists != 1 || w.count() != 1 {
			t.Errorf("%d LiveKit calls and %d writes, want 1 each", lists, w.count())
		}
	})
}

// A caller that gives up neither cancels the check nor loses its result.
func TestReadinessCallerGivesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRooms{list: func(ctx context.Context) error {
			select {
			case <-time.After(3 * time.Second):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}}
		r, err := NewReadiness(f, (&counter{}).write, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := r.Check(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("impatient caller: %v, want its deadline", err)
		}
		time.Sleep(2 * time.Second) // the check ends at 3s
		synctest.Wait()
		if err := r.Check(context.Background()); err != nil {
			t.Fatalf("after the check ended: %v", err)
		}
		if _, lists := f.calls(); lists != 1 {
			t.Errorf("%d LiveKit calls, want the first one's result served", lists)
		}
	})
}

func TestReadinessFailures(t *testing.T) {
	refused := errors.New("connection refused")
	full := errors.New("no space left on device")
	cases := []struct {
		name       string
		list       func(context.Context) error
		writeErr   error
		want       error
		wantInErr  string
		wantWrites int
	}{
		{"livekit down", func(context.Context) error { return refused }, nil, refused, "livekit: ", 0},
		{"livekit silent", untilCut, nil, context.DeadlineExceeded, "livekit: ", 0},
		{"disk full", nil, full, full, "local directory: ", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f, w := &fakeRooms{list: tc.list}, &counter{err: tc.writeErr}
				r, err := NewReadiness(f, w.write, 2*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				began := time.Now()
				err = r.Check(context.Background())
				if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.wantInErr) {
					t.Fatalf("Check = %v, want %v saying %q", err, tc.want, tc.wantInErr)
				}
				if tc.want == context.DeadlineExceeded && time.Since(began) != CheckTimeout {
					t.Errorf("cut after %v, want %v", time.Since(began), CheckTimeout)
				}
				if w.count() != tc.wantWrites {
					t.Errorf("%d writes, want %d", w.count(), tc.wantWrites)
				}
				// A failure is rationed like a success.
				if err2 := r.Check(context.Background()); !errors.Is(err2, tc.want) {
					t.Errorf("second Check = %v", err2)
				}
				if _, lists := f.calls(); lists != 1 {
					t.Errorf("%d LiveKit calls within maxAge, want 1", lists)
				}
			})
		})
	}
}

func TestDirWritable(t *testing.T) {
	dir := t.TempDir()
	if err := DirWritable(dir)(); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("the check left %v behind", left)
	}
	if err := DirWritable(filepath.Join(dir, "missing"))(); err == nil {
		t.Error("a missing directory took a write")
	}
}
