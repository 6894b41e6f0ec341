// Package ownership says which instance records which participant: a claim
// per recording, so that two bots never write the same participant's audio
// at the same moment. Memory is the single-instance store; a shared store
// implements the same two calls for a fleet.
package ownership

import (
	"context"
	"sync"
)

// Key identifies a recording: one participant of one room, or one track of
// theirs (a track egress).
type Key struct {
	Room        string
	Participant string
	Track       string `json:",omitempty"` // empty: every audio track of the participant
}

// Memory is the single-instance claim store: a map in memory.
type Memory struct {
	mu sync.Mutex
	m  map[Key]string
}

// NewMemory returns an empty in-memory claim store.
func NewMemory() *Memory {
	return &Memory{m: map[Key]string{}}
}

// Claim makes owner the owner of key. It reports false, without error, when
// another owner holds it; claiming a key one already owns succeeds.
func (o *Memory) Claim(_ context.Context, key Key, owner string) (bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if cur, ok := o.m[key]; ok && cur != owner {
		return false, nil
	}
	o.m[key] = owner
	return true, nil
}

// Transfer makes owner the owner of key if from holds it (or nobody does):
// from hands it over.
func (o *Memory) Transfer(_ context.Context, key Key, from, owner string) (bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if cur, ok := o.m[key]; ok && cur != from && cur != owner {
		return false, nil
	}
	o.m[key] = owner
	return true, nil
}

// Release gives key up if owner holds it; a stale owner's release frees
// nothing.
func (o *Memory) Release(_ context.Context, key Key, owner string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m[key] == owner {
		delete(o.m, key)
	}
	return nil
}

// Len is the number of keys held.
func (o *Memory) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.m)
}
