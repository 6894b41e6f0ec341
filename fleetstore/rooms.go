package fleetstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// RoomTracks gathers, fleet-wide, the stored track files of each room, so
// that a room recorded by several instances completes once with all of
// them, and says which instance runs that completion.
//
//	PREFIX:room:{R}:tracks   hash: object key -> the track's manifest (JSON)
//	PREFIX:room:{R}:run:S    "running <instance>" or "done", for the track set S
//
// Both expire a day after their last change.
type RoomTracks struct {
	rc     redis.UniversalClient
	prefix string
}

// roomTTL is how long a room's entries outlive its last change.
const roomTTL = 24 * time.Hour

// runTimeout is how long a completion claimed by an instance may take
// before another one may run it (the first one died while running it).
const runTimeout = 30 * time.Minute

// NewRoomTracks returns the rooms' shared track lists kept under prefix.
func NewRoomTracks(rc redis.UniversalClient, prefix string) *RoomTracks {
	mustConfig(rc, prefix, time.Second)
	return &RoomTracks{rc: rc, prefix: prefix}
}

func (r *RoomTracks) key(room, part string) string {
	return r.prefix + ":room:{" + segment(room) + "}:" + part
}

// Publish adds manifests (by object key) to room's tracks.
func (r *RoomTracks) Publish(ctx context.Context, room string, manifests map[string]json.RawMessage) error {
	if len(manifests) == 0 {
		return nil
	}
	k := r.key(room, "tracks")
	_, err := r.rc.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for key, doc := range manifests {
			p.HSet(ctx, k, key, []byte(doc))
		}
		p.Expire(ctx, k, roomTTL)
		return nil
	})
	if err != nil {
		return fmt.Errorf("fleetstore: publish tracks of room %q: %w", room, err)
	}
	return nil
}

// Tracks returns every manifest published for room, by object key.
func (r *RoomTracks) Tracks(ctx context.Context, room string) (map[string]json.RawMessage, error) {
	all, err := r.rc.HGetAll(ctx, r.key(room, "tracks")).Result()
	if err != nil {
		return nil, fmt.Errorf("fleetstore: tracks of room %q: %w", room, err)
	}
	out := make(map[string]json.RawMessage, len(all))
	for k, v := range all {
		out[k] = json.RawMessage(v)
	}
	return out, nil
}

// Run states of a room's completion for one track set.
const (
	RunMine    = "mine"    // this instance is to run it
	RunRunning = "running" // another instance is running it
	RunDone    = "done"    // it ran to its end
)

// claimRun takes the run of a track set: SET NX, or already this
// instance's; "done" once finished.
var claimRun = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], 'running ' .. ARGV[1], 'PX', ARGV[2])
  return 'mine'
end
if v == 'done' then return 'done' end
if v == 'running ' .. ARGV[1] then return 'mine' end
return 'running'`)

// ClaimRun says who runs room's completion for the track set set.
func (r *RoomTracks) ClaimRun(ctx context.Context, room, set, instance string) (string, error) {
	v, err := claimRun.Run(ctx, r.rc, []string{r.key(room, "run:"+set)}, instance, runTimeout.Milliseconds()).Text()
	if err != nil && !errors.Is(err, redis.Nil) {
		return "", fmt.Errorf("fleetstore: claim completion of room %q: %w", room, err)
	}
	return v, nil
}

// RunDone marks room's completion for set as done.
func (r *RoomTracks) RunDone(ctx context.Context, room, set string) error {
	if err := r.rc.Set(ctx, r.key(room, "run:"+set), RunDone, roomTTL).Err(); err != nil {
		return fmt.Errorf("fleetstore: complete room %q: %w", room, err)
	}
	return nil
}

// claimHome makes ARGV[1] the room's home unless another instance is: it
// returns the home.
var claimHome = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]`)

// ClaimHome makes instance the home of room for ttl unless another instance
// is, and returns the home: the instance whose bot joins the room, so that
// starts for a room that has no bot yet, arriving at once on several
// instances, all go to one.
func (r *RoomTracks) ClaimHome(ctx context.Context, room, instance string, ttl time.Duration) (string, error) {
	v, err := claimHome.Run(ctx, r.rc, []string{r.key(room, "home")}, instance, ttl.Milliseconds()).Text()
	if err != nil {
		return "", fmt.Errorf("fleetstore: home of room %q: %w", room, err)
	}
	return v, nil
}

// Home is the room's home instance, "" when none.
func (r *RoomTracks) Home(ctx context.Context, room string) (string, error) {
	v, err := r.rc.Get(ctx, r.key(room, "home")).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("fleetstore: home of room %q: %w", room, err)
	}
	return v, nil
}
