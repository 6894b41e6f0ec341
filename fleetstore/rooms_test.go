package fleetstore

import (
	"context"
	"encoding/json"
	"testing"
	"time"
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

// A room's files through one completion: a pending file ends when its
// manifest is published; Finish moves the carried tracks to done (a second
// publish of one adds nothing), lists a dead instance's file as missing,
// and a later Finish that carried it takes it off the list.
func TestRoomFilesThroughACompletion(t *testing.T) {
	_, rc := startRedis(t)
	ctx := context.Background()
	rt := NewRoomTracks(rc, "files")
	doc := json.RawMessage(`{}`)
	for _, k := range []string{"k/a", "k/dead"} {
		if err := rt.Pending(ctx, "r", k, doc); err != nil {
			t.Fatal(err)
		}
	}
	if err := rt.Publish(ctx, "r", map[string]json.RawMessage{"k/a": doc}); err != nil {
		t.Fatal(err)
	}
	// A pending write that arrives after the publish adds nothing.
	if err := rt.Pending(ctx, "r", "k/a", doc); err != nil {
		t.Fatal(err)
	}
	st, err := rt.Room(ctx, "r")
	if err != nil || len(st.Tracks) != 1 || len(st.Pending) != 1 || st.Pending["k/dead"] == nil {
		t.Fatalf("after publishing k/a: %+v %v", st, err)
	}
	now := time.Now().Truncate(time.Millisecond)
	for _, at := range []time.Time{now, now.Add(time.Minute)} {
		if since, err := rt.WaitSince(ctx, "r", at); err != nil || !since.Equal(now) {
			t.Fatalf("WaitSince(%v) = %v %v, want the first, %v", at, since, err, now)
		}
	}
	if err := rt.Finish(ctx, "r", "s1", []string{"k/a"}, nil, map[string]json.RawMessage{"k/dead": doc}); err != nil {
		t.Fatal(err)
	}
	if err := rt.Publish(ctx, "r", map[string]json.RawMessage{"k/a": doc}); err != nil {
		t.Fatal(err)
	}
	st, _ = rt.Room(ctx, "r")
	if len(st.Tracks) != 0 || st.Missing["k/dead"] == nil {
		t.Fatalf("after the completion: %+v", st)
	}
	if got, _ := rt.ClaimRun(ctx, "r", "s1", "x"); got != RunDone {
		t.Errorf("finished run: %q", got)
	}
	if since, _ := rt.WaitSince(ctx, "r", now.Add(time.Hour)); !since.Equal(now.Add(time.Hour)) {
		t.Errorf("the wait did not end with the completion: since %v", since)
	}
	// The late file arrives.
	if err := rt.Publish(ctx, "r", map[string]json.RawMessage{"k/dead": doc}); err != nil {
		t.Fatal(err)
	}
	if err := rt.Finish(ctx, "r", "s2", []string{"k/dead"}, []string{"k/dead"}, nil); err != nil {
		t.Fatal(err)
	}
	st, _ = rt.Room(ctx, "r")
	if len(st.Tracks)+len(st.Pending)+len(st.Missing) != 0 {
		t.Errorf("after the late file: %+v", st)
	}
}

// A room's home goes to the first instance that claims it, and passes from
// a draining instance to the one that takes its recordings over.
func TestRoomHome(t *testing.T) {
	_, rc := startRedis(t)
	ctx := context.Background()
	rt := NewRoomTracks(rc, "home")
	for _, s := range []struct{ from, inst, want string }{
		{"", "a", "a"},
		{"", "b", "a"},  // a's
		{"c", "b", "a"}, // from someone else
		{"a", "b", "b"}, // a drains: b takes it
		{"", "b", "b"},
	} {
		if got, err := rt.TakeHome(ctx, "r", s.from, s.inst, time.Minute); err != nil || got != s.want {
			t.Fatalf("TakeHome(from %q, %s) = %q %v, want %q", s.from, s.inst, got, err, s.want)
		}
	}
	if h, _ := rt.Home(ctx, "r"); h != "b" {
		t.Errorf("home %q, want b", h)
	}
}
