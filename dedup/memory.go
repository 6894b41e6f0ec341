package dedup

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"time"
)

// Defaults for NewMemory's zero arguments.
const (
	DefaultTTL = time.Hour
	DefaultMax = 4096
)

// Memory remembers recent ids in process; it is safe for concurrent use.
type Memory struct {
	ttl time.Duration

	mu   sync.Mutex
	seen map[[sha256.Size]byte]struct{}
	// ring holds the remembered ids oldest first, from head, n of them.
	// All share one TTL, so the oldest is also the first to expire.
	ring []entry
	head int
	n    int
}

type entry struct {
	sum [sha256.Size]byte
	at  time.Time
}

// NewMemory returns a Memory that remembers up to max ids, each for ttl;
// zero picks DefaultMax or DefaultTTL.
func NewMemory(max int, ttl time.Duration) (*Memory, error) {
	if max < 0 || ttl < 0 {
		return nil, fmt.Errorf("dedup: max (%d) and ttl (%v) must not be negative", max, ttl)
	}
	if max == 0 {
		max = DefaultMax
	}
	if ttl == 0 {
		ttl = DefaultTTL
	}
	return &Memory{ttl: ttl, seen: make(map[[sha256.Size]byte]struct{}, max), ring: make([]entry, max)}, nil
}

// First reports whether id is seen for the first time within the TTL, and
// remembers it. It never fails.
func (m *Memory) First(_ context.Context, id string) (bool, error) {
	sum := sha256.Sum256([]byte(id))
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for m.n > 0 && now.Sub(m.ring[m.head].at) >= m.ttl {
		m.drop()
	}
	if _, ok := m.seen[sum]; ok {
		return false, nil
	}
	if m.n == len(m.ring) {
		m.drop()
	}
	m.ring[(m.head+m.n)%len(m.ring)] = entry{sum: sum, at: now}
	m.n++
	m.seen[sum] = struct{}{}
	return true, nil
}

// drop forgets the oldest id.
func (m *Memory) drop() {
	delete(m.seen, m.ring[m.head].sum)
	m.head = (m.head + 1) % len(m.ring)
	m.n--
}
