package recorder

import (
	"context"
	"sync"
)

// Key identifies a recording: one participant of one room.
type Key struct {
	Room        string
	Participant string
}

// Owners records which instance records which participant, so that two bots
// (of this instance or of others sharing the store) never record the same
// participant twice.
type Owners interface {
	// Claim makes owner the owner of key. It reports false, without error,
	// when another owner holds it. Claiming a key one already owns succeeds.
	Claim(ctx context.Context, key Key, owner string) (bool, error)
	// Release gives key up if owner holds it.
	Release(ctx context.Context, key Key, owner string) error
}

// MemoryOwners is the single-instance Owners: a map in memory.
type MemoryOwners struct {
	mu sync.Mutex
	m  map[Key]string
}

// NewMemoryOwners returns an empty in-memory ownership map.
func NewMemoryOwners() *MemoryOwners {
	return &MemoryOwners{m: map[Key]string{}}
}

func (o *MemoryOwners) Claim(_ context.Context, key Key, owner string) (bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if cur, ok := o.m[key]; ok && cur != owner {
		return false, nil
	}
	o.m[key] = owner
	return true, nil
}

func (o *MemoryOwners) Release(_ context.Context, key Key, owner string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m[key] == owner {
		delete(o.m, key)
	}
	return nil
}
