package ownership

import (
	"context"
	"github.com/trackrec/trackrec/fleetstore"
	"github.com/trackrec/trackrec/testbed"
	"testing"
	"time"
)

func TestMemoryClaims(t *testing.T) {
	ctx := context.Background()
	o := NewMemory()
	k := Key{Room: "r", Participant: "alice"}
	steps := []struct {
		op    string
		owner string
		want  bool
	}{
		{"claim", "a/1", true},
		{"claim", "a/1", true},  // again by the owner
		{"claim", "b/2", false}, // held
		{"release", "b/2", false},
		{"claim", "b/2", false}, // a stale release freed nothing
		{"release", "a/1", false},
		{"claim", "b/2", true},
		{"transfer c/3 from a/1", "c/3", false}, // a/1 holds nothing now
		{"transfer c/3 from b/2", "c/3", true},
		{"claim", "b/2", false}, // handed over
	}
	for i, s := range steps {
		switch s.op {
		case "claim":
			got, err := o.Claim(ctx, k, s.owner)
			if err != nil || got != s.want {
				t.Fatalf("step %d: Claim(%s) = %v, %v; want %v", i, s.owner, got, err, s.want)
			}
		case "transfer c/3 from a/1", "transfer c/3 from b/2":
			from := s.op[len(s.op)-3:]
			got, err := o.Transfer(ctx, k, from, s.owner)
			if err != nil || got != s.want {
				t.Fatalf("step %d: Transfer(%s, %s) = %v, %v; want %v", i, from, s.owner, got, err, s.want)
			}
		case "release":
			if err := o.Release(ctx, k, s.owner); err != nil {
				t.Fatalf("step %d: Release: %v", i, err)
			}
		}
	}
	if o.Len() != 1 {
		t.Errorf("Len = %d, want 1", o.Len())
	}
}

// Two instances over one real Redis: one owner at a time; a claim whose
// instance stopped renewing lapses after the TTL and the other takes it;
// the first one's renewal then fails and its late release frees nothing.
func TestSharedClaimsAcrossInstances(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rc, err := fleetstore.NewClient(ctx, fleetstore.Config{Address: testbed.RedisForTest(t).Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	const ttl = 300 * time.Millisecond
	a := NewShared(fleetstore.NewLeases(rc, "test", ttl), ttl)
	b := NewShared(fleetstore.NewLeases(rc, "test", ttl), ttl)
	k := Key{Room: "r", Participant: "alice"}
	if ok, err := a.Claim(ctx, k, "a/1"); !ok || err != nil {
		t.Fatalf("a claims: %v %v", ok, err)
	}
	if ok, err := b.Claim(ctx, k, "b/1"); ok || err != nil {
		t.Fatalf("b claims a held key: %v %v", ok, err)
	}
	if ok, err := a.Renew(ctx, k, "a/1"); !ok || err != nil {
		t.Fatalf("a renews: %v %v", ok, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok, err := b.Claim(ctx, k, "b/1")
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a lapsed claim never freed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ok, err := a.Renew(ctx, k, "a/1"); ok || err != nil {
		t.Errorf("a renews a lease b took: %v %v", ok, err)
	}
	if err := a.Release(ctx, k, "a/1"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := b.Renew(ctx, k, "b/1"); !ok {
		t.Error("a's late release freed b's claim")
	}
	if err := b.Release(ctx, k, "b/1"); err != nil || b.Len() != 0 {
		t.Errorf("release: %v, %d held", err, b.Len())
	}
	if ok, err := a.Claim(ctx, k, "a/2"); !ok || err != nil {
		t.Errorf("claim after the release: %v %v", ok, err)
	}
	// A handover: b takes a's claim in one step; a's renewal then fails.
	if ok, err := b.Transfer(ctx, k, "a/2", "b/3"); !ok || err != nil {
		t.Fatalf("b takes a's claim over: %v %v", ok, err)
	}
	if ok, err := a.Renew(ctx, k, "a/2"); ok || err != nil {
		t.Errorf("a renews a claim it handed over: %v %v", ok, err)
	}
	if ok, _ := b.Renew(ctx, k, "b/3"); !ok {
		t.Error("b's handed-over claim does not renew")
	}
}
