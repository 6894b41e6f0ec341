package ownership

import (
	"context"
	"testing"
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
	}
	for i, s := range steps {
		switch s.op {
		case "claim":
			got, err := o.Claim(ctx, k, s.owner)
			if err != nil || got != s.want {
				t.Fatalf("step %d: Claim(%s) = %v, %v; want %v", i, s.owner, got, err, s.want)
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
