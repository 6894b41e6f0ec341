package recorder

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/trackrec/trackrec/ownership"
)

// leasedOwners is an expiring claim store whose renewals the test scripts.
type leasedOwners struct {
	*ownership.Memory
	mu    sync.Mutex
	renew func(n int) (bool, error) // the nth renewal's answer
	claim bool                      // the answer to a claim after a lapse
	n     int
	ops   []string
}

func (o *leasedOwners) log(op string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ops = append(o.ops, op)
}

func (o *leasedOwners) Renew(ctx context.Context, key Key, owner string) (bool, error) {
	o.mu.Lock()
	o.n++
	n := o.n
	o.ops = append(o.ops, "renew")
	o.mu.Unlock()
	return o.renew(n)
}

func (o *leasedOwners) Claim(ctx context.Context, key Key, owner string) (bool, error) {
	o.mu.Lock()
	first := o.n == 0
	o.mu.Unlock()
	o.log("claim")
	if !first && !o.claim {
		return false, nil
	}
	return o.Memory.Claim(ctx, key, owner)
}

func (o *leasedOwners) Release(ctx context.Context, key Key, owner string) error {
	o.log("release")
	return o.Memory.Release(ctx, key, owner)
}

func (o *leasedOwners) TTL() time.Duration { return 3 * time.Second }

func (o *leasedOwners) last() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.ops[len(o.ops)-1]
}

// A recording renews its claim every TTL/3 while it records. A store that
// cannot be reached, or a claim that lapsed and is still free, changes
// nothing; a claim another owner took stops the recording at once; after
// the stop's release nothing renews.
func TestClaimRenewal(t *testing.T) {
	unreachable := errors.New("redis: connection refused")
	cases := []struct {
		name   string
		renew  func(n int) (bool, error)
		claim  bool
		stops  bool
		reason string
	}{
		{"renewed", func(int) (bool, error) { return true, nil }, false, false, ""},
		{"store away", func(n int) (bool, error) { return false, unreachable }, false, false, ""},
		{"lapsed, claimed again", func(n int) (bool, error) { return n != 3, nil }, true, false, ""},
		{"taken by another", func(n int) (bool, error) { return n < 3, nil }, false, true, "claim lost to another instance"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFixture(t, 0)
				o := &leasedOwners{Memory: ownership.NewMemory(), renew: tc.renew, claim: tc.claim}
				f.s.opts.Owners = o
				ctx := context.Background()
				if _, _, err := f.s.Start(ctx, "r", "alice"); err != nil {
					t.Fatal(err)
				}
				time.Sleep(10 * time.Second) // renewals at 1, 2, 3 ... s
				synctest.Wait()
				r := f.state("r", "alice")
				if tc.stops {
					if r.State != StateStopped || r.StopReason != tc.reason {
						t.Fatalf("after losing the claim: %s %q", r.State, r.StopReason)
					}
				} else if r.State != StateWaiting {
					t.Fatalf("while the claim holds: %s %q", r.State, r.StopReason)
				}
				o.mu.Lock()
				n := o.n
				o.mu.Unlock()
				if want := 3; tc.stops && n != want || !tc.stops && n != 10 {
					t.Errorf("%d renewals in 10 s", n)
				}
				f.s.Stop(ctx, "r", "alice")
				time.Sleep(10 * time.Second)
				synctest.Wait()
				if o.last() != "release" {
					t.Errorf("after the stop's release: %v", o.ops)
				}
				f.s.Shutdown(ctx)
			})
		})
	}
}
