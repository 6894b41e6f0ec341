package fleet

import (
	"errors"
	"fmt"
	"github.com/trackrec/trackrec/recorder"
	"github.com/trackrec/trackrec/testbed"
	"slices"
	"testing"

	"github.com/livekit/psrpc"
	"github.com/redis/go-redis/v9"
)

// startRedis runs a redis-server of its own (testbed) until the test ends,
// and returns its address.
func startRedis(t *testing.T) string { return testbed.RedisForTest(t).Addr() }

// The fleet over a real Redis: one bus and one client per node, as in
// three processes.
func TestOverRedis(t *testing.T) {
	addr := startRedis(t)
	c := &cluster{nodes: map[string]*Fleet{}, locals: map[string]*fakeLocal{}}
	for _, n := range names {
		rc := redis.NewClient(&redis.Options{Addr: addr})
		t.Cleanup(func() { rc.Close() })
		c.locals[n] = newFakeLocal(n, 10)
		f, err := New(Options{Instance: n, Bus: psrpc.NewRedisMessageBus(rc), Local: c.locals[n], Logger: quiet(), Timeout: testTimeout})
		if err != nil {
			t.Fatalf("New(%s): %v", n, err)
		}
		t.Cleanup(f.Close)
		c.nodes[n] = f
	}
	c.waitMembers(t)
	ctx := t.Context()

	fill(c.locals["a"], 4)
	fill(c.locals["b"], 2)
	fill(c.locals["c"], 7)
	c.locals["c"].set(func(l *fakeLocal) { l.rooms["busy"] = true })

	for _, tc := range []struct{ room, participant, from, want string }{
		{"quiet", "alice", "a", "b"}, // least loaded
		{"busy", "bob", "a", "c"},    // the room's bot
	} {
		rec, created, inst, err := c.nodes[tc.from].Start(ctx, tc.room, tc.participant, false)
		if err != nil || !created || inst != tc.want || recordingOn(t, rec) != tc.want {
			t.Fatalf("Start(%s, %s) from %s: on %q, created %v, %v; want %s", tc.room, tc.participant, tc.from, inst, created, err, tc.want)
		}
	}

	entries, err := c.nodes["a"].List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if got, want := describe(t, entries), []string{"b quiet alice", "c busy bob"}; !slices.Equal(got, want) {
		t.Fatalf("List: %v, want %v", got, want)
	}

	rec, inst, err := c.nodes["a"].Stop(ctx, recorder.Key{Room: "busy", Participant: "bob"})
	if err != nil || inst != "c" || recordingOn(t, rec) != "c" {
		t.Fatalf("Stop from a: on %q, %v; want c", inst, err)
	}
	if _, _, err := c.nodes["b"].Stop(ctx, recorder.Key{Room: "busy", Participant: "bob"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Stop: %v, want ErrNotFound", err)
	}

	c.locals["b"].set(func(l *fakeLocal) { l.err = fmt.Errorf("recorder: %w", ErrShuttingDown) })
	if _, inst, err := c.nodes["c"].Stop(ctx, recorder.Key{Room: "quiet", Participant: "alice"}); !errors.Is(err, ErrShuttingDown) || inst != "b" {
		t.Fatalf("Stop on a shutting-down b: from %q, %v", inst, err)
	}

	for _, l := range c.locals {
		fill(l, 10)
	}
	if _, _, _, err := c.nodes["b"].Start(ctx, "quiet", "dave", false); !errors.Is(err, ErrFull) {
		t.Fatalf("Start with every node full: %v, want ErrFull", err)
	}
}
