package fleetstore

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestDedupFirstOnlyAcrossCallers(t *testing.T) {
	_, rc := startRedis(t)
	ctx := testContext(t)
	// Two instances of the fleet, each with its own Dedup on the one Redis.
	const ttl = 300 * time.Millisecond
	dedups := []*Dedup{NewDedup(rc, "hooks", ttl), NewDedup(rc, "hooks", ttl)}
	const n = 20
	var firsts atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			first, err := dedups[i%2].First(ctx, "EV_1")
			if err != nil {
				t.Error(err)
			}
			if first {
				firsts.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if got := firsts.Load(); got != 1 {
		t.Fatalf("%d callers were first, want exactly 1", got)
	}
	seen := time.Now()

	// Another id, and another prefix, are not the same event.
	if first, err := dedups[0].First(ctx, "EV_2"); err != nil || !first {
		t.Fatalf("another id: %v %v", first, err)
	}
	if first, err := NewDedup(rc, "other", ttl).First(ctx, "EV_1"); err != nil || !first {
		t.Fatalf("another prefix: %v %v", first, err)
	}

	// Once the ttl is over the id is new again.
	eventually(t, 3*time.Second, "dedup expiry", func() bool {
		first, err := dedups[1].First(ctx, "EV_1")
		if err != nil {
			t.Fatal(err)
		}
		return first
	})
	if gone := time.Since(seen); gone < ttl-100*time.Millisecond {
		t.Fatalf("id forgotten after %v, want about %v", gone, ttl)
	}
}

func TestDedupHostileIDs(t *testing.T) {
	_, rc := startRedis(t)
	ctx := testContext(t)
	d := NewDedup(rc, "hooks", time.Minute)
	ids := []string{"a:b", "a", "b:", "a:b:", "*", "{x}", "\x00", "\n", "событие 🎙", strings.Repeat("e", 1024), strings.Repeat("e", 1025)}
	for _, id := range ids {
		if first, err := d.First(ctx, id); err != nil || !first {
			t.Fatalf("First(%q) = %v, %v: shares a key with an earlier id", id, first, err)
		}
	}
	for _, id := range ids {
		if first, err := d.First(ctx, id); err != nil || first {
			t.Fatalf("second First(%q) = %v, %v", id, first, err)
		}
	}
	if _, err := d.First(ctx, ""); err == nil {
		t.Fatal("empty id accepted")
	}
}
