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
	"time"
)

// flakyStore fails the first failures Puts, then stores in memory. A unit
// test fake: the real stores are tested against a real S3 server.
type flakyStore struct {
	mu       sync.Mutex
	failures int
	objects  map[string][]byte
	order    []string
}

func (s *flakyStore) Put(ctx context.Context, key, path, _ string, sum []byte) error {
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

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func quietQueue(store Storage, deleteAfter bool) *Queue {
	return NewQueue(store, QueueOptions{
		DeleteAfter: deleteAfter,
		MinBackoff:  10 * time.Millisecond,
		MaxBackoff:  40 * time.Millisecond,
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
}

func TestQueueRetriesUntilStoredThenDeletes(t *testing.T) {
	dir := t.TempDir()
	store := &flakyStore{failures: 3, objects: map[string][]byte{}}
	q := quietQueue(store, true)
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
	if err := q.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, u := range []*Upload{um, uj} {
		if info := u.Info(); info.State != StateUploaded {
			t.Errorf("%s: %+v", u.Key, info)
		}
	}
	if um.Attempts() != 4 {
		t.Errorf("media took %d attempts, want 4 (3 failures)", um.Attempts())
	}
	if string(store.objects["livekit/r/a.ogg"]) != "audio" {
		t.Error("media not stored")
	}
	if store.order[0] != "livekit/r/a.ogg" {
		t.Errorf("manifest stored before its file: %v", store.order)
	}
	for _, p := range []string{media, man} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still in the spool after upload", p)
		}
	}
}

func TestQueueKeepsFilesItCouldNotStore(t *testing.T) {
	dir := t.TempDir()
	store := &flakyStore{failures: 1 << 30, objects: map[string][]byte{}}
	q := quietQueue(store, true)
	media := writeFile(t, dir, "b.ogg", "audio")
	u, err := q.Submit(Item{Key: "livekit/r/b.ogg", Path: media})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if info := u.Info(); info.State != StateFailed && info.State != StateUploading || info.Attempts < 2 {
		t.Errorf("during an outage: %+v", info)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := q.Drain(ctx); err == nil {
		t.Error("drain reported success with an upload outstanding")
	}
	if _, err := os.Stat(media); err != nil {
		t.Errorf("file lost after a failed upload: %v", err)
	}
	if _, err := q.Submit(Item{Key: "livekit/r/c.ogg", Path: media}); !errors.Is(err, ErrQueueClosed) {
		t.Errorf("submit after drain: %v", err)
	}
}

func TestQueueRefusesBadKeys(t *testing.T) {
	q := quietQueue(&flakyStore{objects: map[string][]byte{}}, false)
	defer q.Drain(context.Background())
	for _, key := range []string{"", "../x", "a//b", "/abs"} {
		if _, err := q.Submit(Item{Key: key, Path: "x"}); err == nil {
			t.Errorf("key %q accepted", key)
		}
	}
}

func TestQueueObservesEveryAttempt(t *testing.T) {
	type attempt struct {
		key string
		ok  bool
	}
	var mu sync.Mutex
	var seen []attempt
	q := NewQueue(&flakyStore{failures: 1, objects: map[string][]byte{}}, QueueOptions{
		MinBackoff: 10 * time.Millisecond,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Observe: func(key string, took time.Duration, err error) {
			mu.Lock()
			defer mu.Unlock()
			if took < 0 {
				t.Errorf("attempt took %v", took)
			}
			seen = append(seen, attempt{key, err == nil})
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
	if want := []attempt{{"livekit/r/o.ogg", false}, {"livekit/r/o.ogg", true}}; len(seen) != 2 || seen[0] != want[0] || seen[1] != want[1] {
		t.Errorf("observed %v, want %v", seen, want)
	}
}
