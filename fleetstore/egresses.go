package fleetstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Egresses keeps what the fleet knows of each running track egress, so
// that an instance that takes one over (a handover, or a takeover after a
// crash) goes on with it: one hash per egress, PREFIX:egress:{id}, whose
// fields each have one writer (the job's owner writes "job", each instance
// the fields of the files it wrote), so no update races another.
type Egresses struct {
	rc     redis.UniversalClient
	prefix string
}

// egressRetention bounds how long a record outlives its last write: one
// whose egress nobody ended (every instance gone for good) does not stay.
const egressRetention = 30 * 24 * time.Hour

// NewEgresses returns the egress records kept under prefix.
func NewEgresses(rc redis.UniversalClient, prefix string) *Egresses {
	mustConfig(rc, prefix, time.Second)
	return &Egresses{rc: rc, prefix: prefix}
}

func (e *Egresses) key(id string) string { return e.prefix + ":egress:{" + segment(id) + "}" }

// Put sets one field of egress id's record.
func (e *Egresses) Put(ctx context.Context, id, field string, doc []byte) error {
	if id == "" || field == "" {
		return errors.New("fleetstore: egress record: empty id or field")
	}
	k := e.key(id)
	p := e.rc.TxPipeline()
	p.HSet(ctx, k, field, doc)
	p.Expire(ctx, k, egressRetention)
	if _, err := p.Exec(ctx); err != nil {
		return fmt.Errorf("fleetstore: egress %s: %w", id, err)
	}
	return nil
}

// Get returns every field of egress id's record; none when it has none.
func (e *Egresses) Get(ctx context.Context, id string) (map[string][]byte, error) {
	all, err := e.rc.HGetAll(ctx, e.key(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("fleetstore: egress %s: %w", id, err)
	}
	out := make(map[string][]byte, len(all))
	for f, v := range all {
		out[f] = []byte(v)
	}
	return out, nil
}

// Once sets field of egress id's record to value unless it is set, and
// reports whether this call set it: of instances racing to do something
// once for the egress, the one it answers true does it.
func (e *Egresses) Once(ctx context.Context, id, field, value string) (bool, error) {
	ok, err := e.rc.HSetNX(ctx, e.key(id), field, value).Result()
	if err != nil {
		return false, fmt.Errorf("fleetstore: egress %s: %w", id, err)
	}
	return ok, nil
}

// Delete drops egress id's record: its end is reported.
func (e *Egresses) Delete(ctx context.Context, id string) error {
	if err := e.rc.Del(ctx, e.key(id)).Err(); err != nil {
		return fmt.Errorf("fleetstore: drop egress %s: %w", id, err)
	}
	return nil
}
