package dedup

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestMemory(t *testing.T) {
	type step struct {
		after time.Duration // sleep before this delivery
		id    string
		first bool
	}
	cases := []struct {
		name  string
		max   int
		ttl   time.Duration
		steps []step
	}{
		{"a retry is a repeat", 8, time.Hour, []step{
			{0, "EV_1", true}, {0, "EV_1", false}, {5 * time.Minute, "EV_1", false}, {0, "EV_2", true},
		}},
		{"remembered until the ttl", 8, time.Hour, []step{
			{0, "EV_1", true}, {time.Hour - time.Nanosecond, "EV_1", false},
		}},
		{"forgotten at the ttl", 8, time.Hour, []step{
			{0, "EV_1", true}, {time.Hour, "EV_1", true}, {0, "EV_1", false},
		}},
		{"a repeat does not extend the ttl", 8, time.Hour, []step{
			{0, "EV_1", true}, {30 * time.Minute, "EV_1", false}, {30 * time.Minute, "EV_1", true},
		}},
		{"full forgets the oldest", 2, time.Hour, []step{
			{0, "a", true}, {0, "b", true}, {0, "c", true}, {0, "b", false}, {0, "c", false}, {0, "a", true},
		}},
		{"expired ones make room", 2, time.Minute, []step{
			{0, "a", true}, {30 * time.Second, "b", true}, {30 * time.Second, "c", true}, {0, "b", false}, {0, "a", true},
		}},
		{"the ring wraps", 3, time.Hour, []step{
			{0, "a", true}, {0, "b", true}, {0, "c", true}, {0, "d", true}, {0, "e", true},
			{0, "c", false}, {0, "d", false}, {0, "e", false}, {0, "a", true}, {0, "e", false}, {0, "c", true},
		}},
		{"defaults", 0, 0, []step{
			{0, "EV_1", true}, {59 * time.Minute, "EV_1", false}, {time.Minute, "EV_1", true},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				m, err := NewMemory(tc.max, tc.ttl)
				if err != nil {
					t.Fatal(err)
				}
				for i, s := range tc.steps {
					time.Sleep(s.after)
					first, err := m.First(context.Background(), s.id)
					if err != nil || first != s.first {
						t.Fatalf("step %d (%q after %v): first = %v, %v; want %v", i, s.id, s.after, first, err, s.first)
					}
				}
			})
		})
	}
}

func TestMemoryBounded(t *testing.T) {
	m, err := NewMemory(100, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10_000 {
		if first, _ := m.First(context.Background(), fmt.Sprint(i)+strings.Repeat("x", 1000)); !first {
			t.Fatalf("id %d seen before", i)
		}
	}
	if len(m.seen) != 100 || m.n != 100 {
		t.Errorf("remembers %d ids (%d in the ring), want 100", len(m.seen), m.n)
	}
}

// Concurrent deliveries of one id: exactly one is first.
func TestMemoryConcurrent(t *testing.T) {
	m, err := NewMemory(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	firsts := 0
	for range 32 {
		wg.Go(func() {
			if first, _ := m.First(context.Background(), "EV_1"); first {
				mu.Lock()
				firsts++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firsts != 1 {
		t.Errorf("%d deliveries were first, want 1", firsts)
	}
}

func TestNewMemoryRefusesNegatives(t *testing.T) {
	if _, err := NewMemory(-1, time.Hour); err == nil {
		t.Error("negative max accepted")
	}
	if _, err := NewMemory(1, -time.Hour); err == nil {
		t.Error("negative ttl accepted")
	}
}
