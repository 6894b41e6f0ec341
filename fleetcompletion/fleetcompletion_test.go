package fleetcompletion

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"

	"github.com/trackrec/trackrec/completion"
	"github.com/trackrec/trackrec/fleetstore"
	"github.com/trackrec/trackrec/spool"
)

// memStore is the fleet's room lists in memory.
type memStore struct {
	mu     sync.Mutex
	tracks map[string]map[string]json.RawMessage
	runs   map[string]string
}

func (m *memStore) Publish(_ context.Context, room string, ms map[string]json.RawMessage) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tracks[room] == nil {
		m.tracks[room] = map[string]json.RawMessage{}
	}
	for k, v := range ms {
		m.tracks[room][k] = v
	}
	return nil
}

func (m *memStore) Tracks(_ context.Context, room string) (map[string]json.RawMessage, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]json.RawMessage{}
	for k, v := range m.tracks[room] {
		out[k] = v
	}
	return out, nil
}

func (m *memStore) ClaimRun(_ context.Context, room, set, inst string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch v := m.runs[room+set]; v {
	case "":
		m.runs[room+set] = "running " + inst
		return fleetstore.RunMine, nil
	case "done":
		return fleetstore.RunDone, nil
	case "running " + inst:
		return fleetstore.RunMine, nil
	}
	return fleetstore.RunRunning, nil
}

func (m *memStore) RunDone(_ context.Context, room, set string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.runs[room+set] = "done"
	return nil
}

func track(key string) spool.Sealed {
	return spool.Sealed{Manifest: spool.Manifest{Room: "r", File: spool.ManifestFile{Key: key}}}
}

// A room recorded by two instances: the one that finishes first while the
// other still records waits; the last one runs the pipeline once with both
// instances' tracks; the first one's retry then finds it done.
func TestOnceFleetWide(t *testing.T) {
	store := &memStore{tracks: map[string]map[string]json.RawMessage{}, runs: map[string]string{}}
	busy := true
	var calls [][]string
	pipeline := func(_ context.Context, room string, tracks []spool.Sealed) ([]string, error) {
		var keys []string
		for _, t := range tracks {
			keys = append(keys, t.Manifest.File.Key)
		}
		calls = append(calls, keys)
		return []string{"mix"}, nil
	}
	wrap := func(inst string) completion.Pipeline {
		return Wrap(pipeline, Options{Store: store, Instance: inst, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Busy: func(context.Context, string) (bool, error) { return busy, nil }})
	}
	a, b := wrap("a"), wrap("b")
	ctx := context.Background()
	if _, err := a(ctx, "r", []spool.Sealed{track("k/a")}); !errors.Is(err, completion.ErrRetryLater) {
		t.Fatalf("a while b records: %v, want a retry later", err)
	}
	busy = false
	outs, err := b(ctx, "r", []spool.Sealed{track("k/b")})
	if err != nil || len(outs) != 1 || len(calls) != 1 || len(calls[0]) != 2 || calls[0][0] != "k/a" || calls[0][1] != "k/b" {
		t.Fatalf("b, last: %v %v, calls %v", outs, err, calls)
	}
	if outs, err := a(ctx, "r", []spool.Sealed{track("k/a")}); err != nil || outs != nil || len(calls) != 1 {
		t.Fatalf("a's retry: %v %v, calls %v", outs, err, calls)
	}
}

// While another instance runs the room's pipeline, this one waits for it;
// a run this instance claimed and that asked to be retried is its again.
func TestRunClaimedElsewhere(t *testing.T) {
	store := &memStore{tracks: map[string]map[string]json.RawMessage{}, runs: map[string]string{}}
	n := 0
	retry := func(context.Context, string, []spool.Sealed) ([]string, error) {
		n++
		return nil, completion.ErrRetryLater
	}
	idle := func(context.Context, string) (bool, error) { return false, nil }
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	a := Wrap(retry, Options{Store: store, Instance: "a", Busy: idle, Logger: quiet})
	b := Wrap(retry, Options{Store: store, Instance: "b", Busy: idle, Logger: quiet})
	ctx := context.Background()
	a(ctx, "r", []spool.Sealed{track("k")})
	if _, err := b(ctx, "r", []spool.Sealed{track("k")}); !errors.Is(err, completion.ErrRetryLater) || n != 1 {
		t.Fatalf("b while a runs it: %v (runs %d)", err, n)
	}
	if _, err := a(ctx, "r", []spool.Sealed{track("k")}); !errors.Is(err, completion.ErrRetryLater) || n != 2 {
		t.Fatalf("a's own retry: %v (runs %d), want the pipeline run again", err, n)
	}
}
