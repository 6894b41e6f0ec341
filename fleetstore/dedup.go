package fleetstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Dedup remembers event ids for a while so each is acted on once
// fleet-wide. Safe for concurrent use.
type Dedup struct {
	rc     redis.UniversalClient
	prefix string
	ttl    time.Duration
}

// NewDedup returns a Dedup keeping ids under prefix for ttl. It panics on a
// nil client, a prefix CheckPrefix refuses, or a ttl under 1ms.
func NewDedup(rc redis.UniversalClient, prefix string, ttl time.Duration) *Dedup {
	mustConfig(rc, prefix, ttl)
	return &Dedup{rc: rc, prefix: prefix, ttl: ttl}
}

// First reports whether this is the first call for id fleet-wide within the
// ttl (SET NX with the ttl). On an error the caller decides: acting risks a
// duplicate, skipping risks a miss.
func (d *Dedup) First(ctx context.Context, id string) (bool, error) {
	if id == "" {
		return false, errors.New("fleetstore: dedup: empty event id")
	}
	first, err := d.rc.SetNX(ctx, d.prefix+":dedup:"+segment(id), 1, d.ttl).Result()
	if err != nil {
		return false, fmt.Errorf("fleetstore: dedup event %q: %w", id, err)
	}
	return first, nil
}
