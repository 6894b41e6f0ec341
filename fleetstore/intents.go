package fleetstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Intent is a recording the fleet wants running: started and not yet ended
// by a stop, a departure or the room's end. It outlives the instance that
// records it, so another instance can take the recording over when that one
// dies or shuts down.
type Intent struct {
	Key   Key       `json:"key"`
	ID    string    `json:"id"`   // the recording's id, kept by whoever takes it over
	Wait  bool      `json:"wait"` // armed for a participant who had not joined yet
	Since time.Time `json:"since"`
	// Free says its instance released the claim on purpose (a shutdown):
	// another may take it over at once, without waiting for a lapse.
	Free bool `json:"free,omitempty"`
}

// Intents is the fleet's set of wanted recordings: one hash in Redis,
// PREFIX:intents, one field per (room, participant).
type Intents struct {
	rc  redis.UniversalClient
	key string
}

// NewIntents returns the wanted recordings kept under prefix.
func NewIntents(rc redis.UniversalClient, prefix string) *Intents {
	mustConfig(rc, prefix, time.Second)
	return &Intents{rc: rc, key: prefix + ":intents"}
}

func (k Key) field() string { return k.id() }

// Put records in as wanted, replacing what was wanted of its key.
func (i *Intents) Put(ctx context.Context, in Intent) error {
	if err := in.Key.check(); err != nil {
		return fmt.Errorf("fleetstore: intent: %w", err)
	}
	doc, err := json.Marshal(in)
	if err != nil {
		return err
	}
	if err := i.rc.HSet(ctx, i.key, in.Key.field(), doc).Err(); err != nil {
		return fmt.Errorf("fleetstore: want %s: %w", in.Key, err)
	}
	return nil
}

// dropIntent deletes the field only while it is still the recording id
// given: a newer recording of the key stays wanted.
var dropIntent = redis.NewScript(`
local doc = redis.call('HGET', KEYS[1], ARGV[1])
if not doc then return 0 end
local ok, v = pcall(cjson.decode, doc)
if ok and v.id == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0`)

// Delete says key's recording id is no longer wanted.
func (i *Intents) Delete(ctx context.Context, key Key, id string) error {
	if err := dropIntent.Run(ctx, i.rc, []string{i.key}, key.field(), id).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("fleetstore: drop %s: %w", key, err)
	}
	return nil
}

// Get returns what is wanted of key, if anything.
func (i *Intents) Get(ctx context.Context, key Key) (Intent, bool, error) {
	doc, err := i.rc.HGet(ctx, i.key, key.field()).Result()
	if errors.Is(err, redis.Nil) {
		return Intent{}, false, nil
	}
	if err != nil {
		return Intent{}, false, fmt.Errorf("fleetstore: intent of %s: %w", key, err)
	}
	var in Intent
	if err := json.Unmarshal([]byte(doc), &in); err != nil {
		return Intent{}, false, fmt.Errorf("fleetstore: intent of %s: %w", key, err)
	}
	return in, true, nil
}

// List returns every wanted recording; unreadable entries are skipped.
func (i *Intents) List(ctx context.Context) ([]Intent, error) {
	all, err := i.rc.HGetAll(ctx, i.key).Result()
	if err != nil {
		return nil, fmt.Errorf("fleetstore: list intents: %w", err)
	}
	out := make([]Intent, 0, len(all))
	for _, doc := range all {
		var in Intent
		if json.Unmarshal([]byte(doc), &in) == nil && in.Key.check() == nil {
			out = append(out, in)
		}
	}
	return out, nil
}
