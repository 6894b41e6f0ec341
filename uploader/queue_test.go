package uploader

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// The queue's retries run on timers, so every test that waits for one runs
// in a synctest bubble: time moves only when every goroutine is blocked, a
// 30 s backoff passes instantly, and when an attempt runs is exact.

// flakyStore fails the first failures Puts, then stores in memory. A unit
// test fake: the real stores are tested against a real S3 server.
type flakyStore struct {
	mu       sync.Mutex
	failures int
	took     time.Duration // each Put lasts this long
	objects  map[string][]byte
	order    []string
	tries    map[string][]time.Time // when each Put of a key began
}

func newFlakyStore(failures int) *flakyStore {
	return &flakyStore{failures: failures, objects: map[string][]byte{}, tries: map[string][]time.Time{}}
}

func (s *flakyStore) Put(ctx context.Context, key, path, _ string, sum []byte) error {
	s.mu.Lock()
	s.tries[key] = append(s.tries[key], time.Now())
	took := s.took
	s.mu.Unlock()
	if took > 0 {
		time.Sleep(took)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failures > 0 {
		s.failures--
		return errors.New("connection refused")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if got, _ := FileSHA256(path); !bytes.Equal(got, sum) {
		return errors.New("checksum mismatch")
	}
	s.objects[key] = data
	s.order = append(s.order, key)
	return nil
}

func (s *flakyStore) Get(ctx context.Context, key string, w io.Writer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, ok := s.objects[key]
	if !ok {
		return ErrNotFound
	}
	_, err := w.Write(data)
	return err
}

func (s *flakyStore) List(ctx context.Context, prefix string) ([]string, error) { return nil, nil }
func (s *flakyStore) String() string                                            { return "memory" }

// gaps is the time between consecutive attempts at key.
func (s *flakyStore) gaps(key string) []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []time.Duration
	for i := 1; i < len(s.tries[key]); i++ {
		out = append(out, s.tries[key][i].Sub(s.tries[key][i-1]))
	}
	return out
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// The defaults (1 s doubling to 30 s); each retry waits between half and one
// and a half times its backoff.
func TestQueueRetriesUntilStoredThenDeletes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		store := newFlakyStore(3)
		q := NewQueue(store, QueueOptions{DeleteAfter: true, Logger: quiet()})
		media := writeFile(t, dir, "a.ogg", "audio")
		man := writeFile(t, dir, "a.json", "{}")
		um, err := q.Submit(Item{Key: "livekit/r/a.ogg", Path: media})
		if err != nil {
			t.Fatal(err)
		}
		uj, err := q.Submit(Item{Key: "livekit/r/a.json", Path: man, After: um})
		if err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		if err := q.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
		// Three retries: at most 1.5+3+6 s, at least 0.5+1+2 s.
		if took := time.Since(began); took < 3500*time.Millisecond || took >= 10500*time.Millisecond {
			t.Errorf("three retries took %v", took)
		}
		for _, u := range []*Upload{um, uj} {
			if info := u.Info(); info.State != StateUploaded || info.Error != "" {
				t.Errorf("%s: %+v", u.Key, info)
			}
		}
		if um.Attempts() != 4 || uj.Attempts() != 1 {
			t.Errorf("media took %d attempts (want 4: 3 failures), manifest %d (want 1)", um.Attempts(), uj.Attempts())
		}
		if string(store.objects["livekit/r/a.ogg"]) != "audio" || string(store.objects["livekit/r/a.json"]) != "{}" {
			t.Errorf("stored %q", store.objects)
		}
		if len(store.order) != 2 || store.order[0] != "livekit/r/a.ogg" {
			t.Errorf("manifest stored before its file: %v", store.order)
		}
		for _, p := range []string{media, man} {
			if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s still in the spool after upload", p)
			}
		}
	})
}

func TestQueueBackoffDoublesUpToItsCap(t *testing.T) {
	for name, tc := range map[string]struct {
		opts     QueueOptions
		failures int
		backoffs []time.Duration // each retry's backoff, before jitter
	}{
		"defaults": {failures: 8, backoffs: []time.Duration{
			time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second,
			16 * time.Second, 30 * time.Second, 30 * time.Second, 30 * time.Second}},
		"short": {opts: QueueOptions{MinBackoff: 100 * time.Millisecond, MaxBackoff: 250 * time.Millisecond}, failures: 4,
			backoffs: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 250 * time.Millisecond, 250 * time.Millisecond}},
		"min is max": {opts: QueueOptions{MinBackoff: 5 * time.Second, MaxBackoff: 5 * time.Second}, failures: 3,
			backoffs: []time.Duration{5 * time.Second, 5 * time.Second, 5 * time.Second}},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				store := newFlakyStore(tc.failures)
				tc.opts.Logger = quiet()
				q := NewQueue(store, tc.opts)
				u, err := q.Submit(Item{Key: "livekit/r/x.ogg", Path: writeFile(t, t.TempDir(), "x.ogg", "audio")})
				if err != nil {
					t.Fatal(err)
				}
				<-u.Done()
				if err := q.Drain(context.Background()); err != nil {
					t.Fatal(err)
				}
				gaps := store.gaps(u.Key)
				if len(gaps) != len(tc.backoffs) {
					t.Fatalf("%d retries, want %d", len(gaps), len(tc.backoffs))
				}
				for i, g := range gaps {
					if b := tc.backoffs[i]; g < b/2 || g >= b*3/2 {
						t.Errorf("retry %d came %v after the failure; backoff %v allows [%v, %v)", i+1, g, b, b/2, b*3/2)
					}
				}
			})
		})
	}
}

// Files failing together (an outage) do not all come back at the same
// instant.
func TestQueueJitterSpreadsRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const files = 20
		store := newFlakyStore(files)
		q := NewQueue(store, QueueOptions{Logger: quiet()})
		dir := t.TempDir()
		var keys []string
		for i := range files {
			key := "livekit/r/" + string(rune('a'+i)) + ".ogg"
			keys = append(keys, key)
			if _, err := q.Submit(Item{Key: key, Path: writeFile(t, dir, string(rune('a'+i)), "audio")}); err != nil {
				t.Fatal(err)
			}
		}
		if err := q.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
		distinct := map[time.Duration]bool{}
		for _, k := range keys {
			g := store.gaps(k)
			if len(g) != 1 {
				t.Fatalf("%s: %d retries, want 1", k, len(g))
			}
			distinct[g[0]] = true
		}
		if len(distinct) < files/2 {
			t.Errorf("%d files retried at only %d distinct delays", files, len(distinct))
		}
	})
}

func TestQueueKeepsFilesItCouldNotStore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		store := newFlakyStore(1 << 30)
		q := NewQueue(store, QueueOptions{DeleteAfter: true, Logger: quiet()})
		media := writeFile(t, dir, "b.ogg", "audio")
		u, err := q.Submit(Item{Key: "livekit/r/b.ogg", Path: media})
		if err != nil {
			t.Fatal(err)
		}
		// Two minutes of outage. Backoffs of 1, 2, 4, 8, 16, then 30 s, each
		// waited for between half and one and a half times, fit at least 6
		// retries (91.5 s at the slowest) and at most 11 (105.5 s at the
		// fastest; a 12th needs 120.5 s).
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		info := u.Info()
		if info.State != StateFailed || info.Error != "connection refused" || info.Attempts < 7 || info.Attempts > 12 {
			t.Errorf("after two minutes of outage: %+v", info)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		began := time.Now()
		if err := q.Drain(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("drain with an upload outstanding: %v, want its deadline", err)
		}
		if took := time.Since(began); took != 10*time.Second {
			t.Errorf("drain gave up after %v, want its 10 s", took)
		}
		if _, err := os.Stat(media); err != nil {
			t.Errorf("file lost after a failed upload: %v", err)
		}
		if _, err := q.Submit(Item{Key: "livekit/r/c.ogg", Path: media}); !errors.Is(err, ErrQueueClosed) {
			t.Errorf("submit after drain: %v", err)
		}
		// The pending retry finds the queue closed and does not try again.
		n := u.Attempts()
		time.Sleep(time.Minute)
		if u.Attempts() != n {
			t.Errorf("%d attempts after drain", u.Attempts()-n)
		}
	})
}

func TestQueueRefusesBadKeys(t *testing.T) {
	q := NewQueue(newFlakyStore(0), QueueOptions{Logger: quiet()})
	defer q.Drain(context.Background())
	for _, key := range []string{"", "../x", "a//b", "/abs"} {
		if _, err := q.Submit(Item{Key: key, Path: "x"}); err == nil {
			t.Errorf("key %q accepted", key)
		}
	}
}

func TestQueueObservesEveryAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		type attempt struct {
			key  string
			took time.Duration
			ok   bool
		}
		var mu sync.Mutex
		var seen []attempt
		store := newFlakyStore(1)
		store.took = 3 * time.Second
		q := NewQueue(store, QueueOptions{
			Logger: quiet(),
			Observe: func(key string, took time.Duration, err error) {
				mu.Lock()
				defer mu.Unlock()
				seen = append(seen, attempt{key, took, err == nil})
			},
		})
		if _, err := q.Submit(Item{Key: "livekit/r/o.ogg", Path: writeFile(t, t.TempDir(), "o.ogg", "audio")}); err != nil {
			t.Fatal(err)
		}
		if err := q.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		want := []attempt{{"livekit/r/o.ogg", 3 * time.Second, false}, {"livekit/r/o.ogg", 3 * time.Second, true}}
		if len(seen) != 2 || seen[0] != want[0] || seen[1] != want[1] {
			t.Errorf("observed %v, want %v", seen, want)
		}
	})
}
