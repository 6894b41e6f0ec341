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
//	PREFIX:room:{R}:tracks   hash: object key -> manifest (JSON) of a stored track not yet completed
//	PREFIX:room:{R}:pending  hash: object key -> a file being written (JSON, Pending), until published
//	PREFIX:room:{R}:done     hash: object key -> "1", tracks a completion (or update) carried
//	PREFIX:room:{R}:missing  hash: object key -> a pending file a completion listed as missing
//	PREFIX:room:{R}:wait     since when a completion waits for a dead instance's files (Unix ms)
//	PREFIX:room:{R}:run:S    "running <instance>" or "done", for the track set S
//
// Each expires a day after its last change. A room's keys share its hash
// tag, so the scripts below work on a Redis Cluster too.
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

// publishScript adds manifests to a room's tracks, except those a
// completion already carried, and ends their pending entries.
// KEYS: tracks, pending, done. ARGV: ttl s, then object key, manifest pairs.
var publishScript = redis.NewScript(`
for i = 2, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[3], ARGV[i]) == 0 then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i+1])
  end
  redis.call('HDEL', KEYS[2], ARGV[i])
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1`)

// Publish adds manifests (by object key) to room's tracks, except those a
// completion already carried (Finish), and ends their pending entries.
func (r *RoomTracks) Publish(ctx context.Context, room string, manifests map[string]json.RawMessage) error {
	if len(manifests) == 0 {
		return nil
	}
	args := []any{int64(roomTTL / time.Second)}
	for key, doc := range manifests {
		args = append(args, key, []byte(doc))
	}
	err := publishScript.Run(ctx, r.rc, []string{r.key(room, "tracks"), r.key(room, "pending"), r.key(room, "done")}, args...).Err()
	if err != nil {
		return fmt.Errorf("fleetstore: publish tracks of room %q: %w", room, err)
	}
	return nil
}

// pendingScript records a pending file unless it was published already
// (the two writes of one file may arrive out of order).
// KEYS: pending, tracks, done. ARGV: ttl s, object key, doc.
var pendingScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 or redis.call('HEXISTS', KEYS[3], ARGV[2]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1`)

// Pending records that the file with object key is being written (doc
// describes it) until its manifest is published: a completion waits for it.
func (r *RoomTracks) Pending(ctx context.Context, room, key string, doc json.RawMessage) error {
	err := pendingScript.Run(ctx, r.rc, []string{r.key(room, "pending"), r.key(room, "tracks"), r.key(room, "done")},
		int64(roomTTL/time.Second), key, []byte(doc)).Err()
	if err != nil {
		return fmt.Errorf("fleetstore: pending file of room %q: %w", room, err)
	}
	return nil
}

// Forget ends the pending entry of the file with object key (stored, with
// no completion to publish it for).
func (r *RoomTracks) Forget(ctx context.Context, room, key string) error {
	if err := r.rc.HDel(ctx, r.key(room, "pending"), key).Err(); err != nil {
		return fmt.Errorf("fleetstore: pending file of room %q: %w", room, err)
	}
	return nil
}

// Known says whether the fleet knows a file of room under object key:
// pending, published or completed.
func (r *RoomTracks) Known(ctx context.Context, room, key string) (bool, error) {
	var cmds [3]*redis.BoolCmd
	_, err := r.rc.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, part := range []string{"pending", "tracks", "done"} {
			cmds[i] = p.HExists(ctx, r.key(room, part), key)
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("fleetstore: files of room %q: %w", room, err)
	}
	return cmds[0].Val() || cmds[1].Val() || cmds[2].Val(), nil
}

// Tracks returns every manifest published for room and not yet completed,
// by object key.
func (r *RoomTracks) Tracks(ctx context.Context, room string) (map[string]json.RawMessage, error) {
	st, err := r.Room(ctx, room)
	return st.Tracks, err
}

// RoomState is what the fleet knows of a room's files, each by object key.
type RoomState struct {
	Tracks  map[string]json.RawMessage // stored, not yet completed: manifests
	Pending map[string]json.RawMessage // being written or stored, not yet published
	Missing map[string]json.RawMessage // listed as missing by a completion
}

// Room reads room's files.
func (r *RoomTracks) Room(ctx context.Context, room string) (RoomState, error) {
	var cmds [3]*redis.MapStringStringCmd
	_, err := r.rc.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, part := range []string{"tracks", "pending", "missing"} {
			cmds[i] = p.HGetAll(ctx, r.key(room, part))
		}
		return nil
	})
	if err != nil {
		return RoomState{}, fmt.Errorf("fleetstore: files of room %q: %w", room, err)
	}
	var maps [3]map[string]json.RawMessage
	for i, c := range cmds {
		maps[i] = make(map[string]json.RawMessage, len(c.Val()))
		for k, v := range c.Val() {
			maps[i][k] = json.RawMessage(v)
		}
	}
	return RoomState{Tracks: maps[0], Pending: maps[1], Missing: maps[2]}, nil
}

// WaitSince returns when room's completion began to wait for files on a
// dead instance: now, unless an earlier completion (on any instance)
// already began.
func (r *RoomTracks) WaitSince(ctx context.Context, room string, now time.Time) (time.Time, error) {
	k := r.key(room, "wait")
	if err := r.rc.SetNX(ctx, k, now.UnixMilli(), roomTTL).Err(); err != nil {
		return time.Time{}, fmt.Errorf("fleetstore: completion wait of room %q: %w", room, err)
	}
	ms, err := r.rc.Get(ctx, k).Int64()
	if err != nil {
		return time.Time{}, fmt.Errorf("fleetstore: completion wait of room %q: %w", room, err)
	}
	return time.UnixMilli(ms), nil
}

// Finish records the completion of room's track set set: the tracks it
// carried (completed) leave the room's tracks for its done list, found (late
// files it carried) leave the missing list, and missing (pending files of
// dead instances it listed) join it. The wait for dead instances ends.
func (r *RoomTracks) Finish(ctx context.Context, room, set string, completed, found []string, missing map[string]json.RawMessage) error {
	tracks, done, miss := r.key(room, "tracks"), r.key(room, "done"), r.key(room, "missing")
	_, err := r.rc.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range completed {
			p.HDel(ctx, tracks, k)
			p.HSet(ctx, done, k, "1")
		}
		for _, k := range found {
			p.HDel(ctx, miss, k)
		}
		for k, doc := range missing {
			p.HSet(ctx, miss, k, []byte(doc))
		}
		for _, k := range []string{done, miss} {
			p.Expire(ctx, k, roomTTL)
		}
		p.Del(ctx, r.key(room, "wait"))
		p.Set(ctx, r.key(room, "run:"+set), RunDone, roomTTL)
		return nil
	})
	if err != nil {
		return fmt.Errorf("fleetstore: complete room %q: %w", room, err)
	}
	return nil
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

// claimHome makes ARGV[1] the room's home unless another instance than
// ARGV[3] (one handing its recordings over, or "") is: it returns the home.
var claimHome = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[3] then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]`)

// TakeHome makes instance the home of room for ttl unless another instance
// than from (one handing its recordings over as it drains; "" for none)
// is, and returns the home: the instance whose bot joins the room, so that
// starts for a room that has no bot yet, arriving at once on several
// instances, all go to one.
func (r *RoomTracks) TakeHome(ctx context.Context, room, from, instance string, ttl time.Duration) (string, error) {
	v, err := claimHome.Run(ctx, r.rc, []string{r.key(room, "home")}, instance, ttl.Milliseconds(), from).Text()
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
