package fleetstore

import (
	"context"
	"encoding/json"
	"testing"
)

func TestRoomTracks(t *testing.T) {
	_, rc := startRedis(t)
	ctx := context.Background()
	rt := NewRoomTracks(rc, "test")
	if err := rt.Publish(ctx, "r:1", map[string]json.RawMessage{"k/a": json.RawMessage(`{"a":1}`)}); err != nil {
		t.Fatal(err)
	}
	if err := rt.Publish(ctx, "r:1", map[string]json.RawMessage{"k/b": json.RawMessage(`{"b":2}`)}); err != nil {
		t.Fatal(err)
	}
	rt.Publish(ctx, "r", map[string]json.RawMessage{"k/c": json.RawMessage(`{}`)}) // another room
	all, err := rt.Tracks(ctx, "r:1")
	if err != nil || len(all) != 2 || string(all["k/b"]) != `{"b":2}` {
		t.Fatalf("tracks %v %v", all, err)
	}
	steps := []struct{ inst, want string }{
		{"a", RunMine}, {"a", RunMine}, {"b", RunRunning},
	}
	for _, s := range steps {
		if got, err := rt.ClaimRun(ctx, "r:1", "set1", s.inst); err != nil || got != s.want {
			t.Fatalf("ClaimRun(%s) = %q %v, want %q", s.inst, got, err, s.want)
		}
	}
	if got, _ := rt.ClaimRun(ctx, "r:1", "set2", "b"); got != RunMine {
		t.Errorf("another track set: %q", got)
	}
	if err := rt.RunDone(ctx, "r:1", "set1"); err != nil {
		t.Fatal(err)
	}
	for _, inst := range []string{"a", "b"} {
		if got, _ := rt.ClaimRun(ctx, "r:1", "set1", inst); got != RunDone {
			t.Errorf("after done, %s: %q", inst, got)
		}
	}
}
