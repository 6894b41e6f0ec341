package ownership

import (
	"context"
	"sync"
	"time"

	"github.com/trackrec/trackrec/fleetstore"
)

// Shared is the fleet's claim store: leases in Redis (fleetstore.Leases)
// that lapse when their instance stops renewing them, each carrying a
// fencing token. It remembers the lease behind each claim it made, so a
// renewal or release names exactly that lease and a stale owner changes
// nothing.
type Shared struct {
	leases *fleetstore.Leases
	ttl    time.Duration

	mu   sync.Mutex
	held map[string]fleetstore.Lease // by owner (unique per recording)
}

// NewShared returns a claim store over leases that last ttl.
func NewShared(leases *fleetstore.Leases, ttl time.Duration) *Shared {
	return &Shared{leases: leases, ttl: ttl, held: map[string]fleetstore.Lease{}}
}

// TTL is how long a claim lasts without renewal.
func (s *Shared) TTL() time.Duration { return s.ttl }

// Claim takes key's lease for owner; false when another owner holds it.
func (s *Shared) Claim(ctx context.Context, key Key, owner string) (bool, error) {
	return s.hold(owner)(s.leases.Claim(ctx, fleetstore.Key(key), owner))
}

// hold keeps owner's lease when a claim took it.
func (s *Shared) hold(owner string) func(fleetstore.Lease, bool, error) (bool, error) {
	return func(lease fleetstore.Lease, ok bool, err error) (bool, error) {
		if err != nil || !ok {
			return false, err
		}
		s.mu.Lock()
		s.held[owner] = lease
		s.mu.Unlock()
		return true, nil
	}
}

// Transfer takes key's lease for owner from the owner from, who is handing
// it over, in one step; false when someone else holds it.
func (s *Shared) Transfer(ctx context.Context, key Key, from, owner string) (bool, error) {
	return s.hold(owner)(s.leases.Transfer(ctx, fleetstore.Key(key), from, owner))
}

// Renew extends owner's lease on key; false when it is no longer owner's.
func (s *Shared) Renew(ctx context.Context, key Key, owner string) (bool, error) {
	s.mu.Lock()
	lease, ok := s.held[owner]
	s.mu.Unlock()
	if !ok || lease.Key != fleetstore.Key(key) {
		return false, nil
	}
	next, ok, err := s.leases.Renew(ctx, lease)
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ok {
		s.held[owner] = next
	} else {
		delete(s.held, owner)
	}
	return ok, nil
}

// Release gives owner's lease on key up; a lease that changed hands is left
// alone.
func (s *Shared) Release(ctx context.Context, key Key, owner string) error {
	s.mu.Lock()
	lease, ok := s.held[owner]
	delete(s.held, owner)
	s.mu.Unlock()
	if !ok || lease.Key != fleetstore.Key(key) {
		return nil
	}
	return s.leases.Release(ctx, lease)
}

// Len is how many claims this instance holds.
func (s *Shared) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.held)
}
