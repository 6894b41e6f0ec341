package fleetstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// tokenRetention is how long a token counter outlives the last lease on its
// key. See the package doc for why tokens still grow when it is gone.
const tokenRetention = 24 * time.Hour

// Lease is one owner's hold on a key. Token grows every time the key changes
// hands. Expires is the holder's own deadline: for a lease one claimed or
// renewed, the time the call began plus the ttl, so it never lies past the
// moment Redis drops the lease (clock rates aside).
type Lease struct {
	Key     Key
	Owner   string
	Token   int64
	Expires time.Time
}

// Leases hands out exactly-once ownership of recordings. Safe for
// concurrent use.
type Leases struct {
	rc     redis.UniversalClient
	prefix string
	ttl    time.Duration
}

// NewLeases returns leases kept under prefix that expire ttl after their
// last claim or renewal. It panics on a nil client, a prefix CheckPrefix
// refuses, or a ttl under 1ms.
func NewLeases(rc redis.UniversalClient, prefix string, ttl time.Duration) *Leases {
	mustConfig(rc, prefix, ttl)
	return &Leases{rc: rc, prefix: prefix, ttl: ttl}
}

func (l *Leases) leaseKey(k Key) string { return l.prefix + ":lease:" + k.tag() }
func (l *Leases) tokenKey(k Key) string { return l.prefix + ":token:" + k.tag() }

// claimScript takes a free key with a new token (or one held by the owner
// handing it over, ARGV[6] when not empty), renews the caller's own lease
// keeping its token, or reports the other holder.
//
// KEYS: lease, token counter. ARGV: owner, ttl ms, room, participant,
// counter retention ms, previous owner, track. Reply: {state, owner, token, pttl
// ms}; state 0: held by another, 1: taken, 2: renewed.
var claimScript = redis.NewScript(`
local cur = redis.call('HMGET', KEYS[1], 'owner', 'token')
if cur[1] and (ARGV[6] == '' or cur[1] ~= ARGV[6]) then
	if cur[1] ~= ARGV[1] then
		return {0, cur[1], cur[2], redis.call('PTTL', KEYS[1])}
	end
	redis.call('PEXPIRE', KEYS[1], ARGV[2])
	redis.call('PEXPIRE', KEYS[2], ARGV[5])
	return {2, cur[1], cur[2], tonumber(ARGV[2])}
end
if redis.call('EXISTS', KEYS[2]) == 0 then
	-- Seed a new counter with the server's clock in ms, so tokens keep
	-- growing across a lost or expired counter.
	local t = redis.call('TIME')
	redis.call('SET', KEYS[2], string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)))
end
local token = string.format('%d', redis.call('INCR', KEYS[2]))
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', token, 'room', ARGV[3], 'participant', ARGV[4], 'track', ARGV[7])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, ARGV[1], token, tonumber(ARGV[2])}
`)

// renewScript extends a lease still held by owner with token.
// KEYS: lease, token counter. ARGV: owner, token, ttl ms, retention ms.
var renewScript = redis.NewScript(`
local cur = redis.call('HMGET', KEYS[1], 'owner', 'token')
if cur[1] ~= ARGV[1] or cur[2] ~= ARGV[2] then
	return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
`)

// releaseScript deletes a lease still held by owner with token. The counter
// stays, so the next token is higher.
// KEYS: lease. ARGV: owner, token.
var releaseScript = redis.NewScript(`
local cur = redis.call('HMGET', KEYS[1], 'owner', 'token')
if cur[1] ~= ARGV[1] or cur[2] ~= ARGV[2] then
	return 0
end
redis.call('DEL', KEYS[1])
return 1
`)

// Claim takes key for owner. It returns ok=false and no error when another
// owner holds it, with that holder's lease. Claiming one's own lease renews
// it and keeps its token.
func (l *Leases) Claim(ctx context.Context, key Key, owner string) (Lease, bool, error) {
	return l.claim(ctx, key, owner, "")
}

// Transfer takes key for owner from the owner from, who hands it over
// (a draining instance): atomically, with a new token, so the key is never
// unclaimed on the way and from's next renewal fails. A free key is taken
// as Claim takes it; one held by anybody else is not (ok=false).
func (l *Leases) Transfer(ctx context.Context, key Key, from, owner string) (Lease, bool, error) {
	if from == "" || from == owner {
		return Lease{}, false, fmt.Errorf("fleetstore: transfer %v: the previous owner must be named and differ from %q", key, owner)
	}
	return l.claim(ctx, key, owner, from)
}

func (l *Leases) claim(ctx context.Context, key Key, owner, from string) (Lease, bool, error) {
	if err := checkLease(key, owner); err != nil {
		return Lease{}, false, fmt.Errorf("fleetstore: claim %v: %w", key, err)
	}
	began := time.Now()
	reply, err := claimScript.Run(ctx, l.rc,
		[]string{l.leaseKey(key), l.tokenKey(key)},
		owner, l.ttl.Milliseconds(), key.Room, key.Participant, (l.ttl + tokenRetention).Milliseconds(), from, key.Track,
	).Slice()
	if err != nil {
		return Lease{}, false, fmt.Errorf("fleetstore: claim %v for %q: %w", key, owner, err)
	}
	state, lease, left, err := parseClaim(reply, key)
	if err != nil {
		return Lease{}, false, fmt.Errorf("fleetstore: claim %v for %q: %w", key, owner, err)
	}
	if state == claimHeld {
		lease.Expires = time.Now().Add(left)
		return lease, false, nil
	}
	lease.Expires = began.Add(l.ttl)
	return lease, true, nil
}

// claimScript's states.
const (
	claimHeld    = 0
	claimTaken   = 1
	claimRenewed = 2
)

// parseClaim reads claimScript's reply.
func parseClaim(reply []any, key Key) (state int64, lease Lease, left time.Duration, err error) {
	bad := fmt.Errorf("unexpected reply %v", reply)
	if len(reply) != 4 {
		return 0, Lease{}, 0, bad
	}
	state, ok1 := reply[0].(int64)
	owner, ok2 := reply[1].(string)
	tokenText, ok3 := reply[2].(string)
	pttl, ok4 := reply[3].(int64)
	token, perr := strconv.ParseInt(tokenText, 10, 64)
	if !ok1 || !ok2 || !ok3 || !ok4 || perr != nil || state < claimHeld || state > claimRenewed {
		return 0, Lease{}, 0, bad
	}
	return state, Lease{Key: key, Owner: owner, Token: token}, time.Duration(pttl) * time.Millisecond, nil
}

// Renew extends lease by the ttl. It returns ok=false when the lease is
// lost (expired, released, or taken by another owner): the holder must stop
// writing. Renew never brings back an expired lease; Claim again for a new
// token.
func (l *Leases) Renew(ctx context.Context, lease Lease) (Lease, bool, error) {
	if err := checkLease(lease.Key, lease.Owner); err != nil {
		return Lease{}, false, fmt.Errorf("fleetstore: renew %v: %w", lease.Key, err)
	}
	began := time.Now()
	n, err := renewScript.Run(ctx, l.rc,
		[]string{l.leaseKey(lease.Key), l.tokenKey(lease.Key)},
		lease.Owner, strconv.FormatInt(lease.Token, 10), l.ttl.Milliseconds(), (l.ttl + tokenRetention).Milliseconds(),
	).Int64()
	if err != nil {
		return Lease{}, false, fmt.Errorf("fleetstore: renew %v for %q token %d: %w", lease.Key, lease.Owner, lease.Token, err)
	}
	if n == 0 {
		return Lease{}, false, nil
	}
	lease.Expires = began.Add(l.ttl)
	return lease, true, nil
}

// Release gives lease up if it is still held with its token; otherwise it
// does nothing. Either way the error is nil unless Redis failed.
func (l *Leases) Release(ctx context.Context, lease Lease) error {
	if err := checkLease(lease.Key, lease.Owner); err != nil {
		return fmt.Errorf("fleetstore: release %v: %w", lease.Key, err)
	}
	err := releaseScript.Run(ctx, l.rc, []string{l.leaseKey(lease.Key)},
		lease.Owner, strconv.FormatInt(lease.Token, 10)).Err()
	if err != nil {
		return fmt.Errorf("fleetstore: release %v for %q token %d: %w", lease.Key, lease.Owner, lease.Token, err)
	}
	return nil
}

// Holder returns the lease on key now, ok=false when nobody holds it.
// Expires is now plus the time Redis has left on it.
func (l *Leases) Holder(ctx context.Context, key Key) (Lease, bool, error) {
	if err := key.check(); err != nil {
		return Lease{}, false, fmt.Errorf("fleetstore: holder of %v: %w", key, err)
	}
	var read leaseRead
	_, err := l.rc.TxPipelined(ctx, func(p redis.Pipeliner) error {
		read = readLease(ctx, p, l.leaseKey(key))
		return nil
	})
	if err != nil {
		return Lease{}, false, fmt.Errorf("fleetstore: holder of %v: %w", key, err)
	}
	lease, ok := read.lease(time.Now())
	if ok && lease.Key != key {
		return Lease{}, false, fmt.Errorf("fleetstore: holder of %v: lease names %v", key, lease.Key)
	}
	return lease, ok, nil
}

// List returns every live lease, in no particular order. It walks the keys
// with SCAN (on every master of a cluster), so leases taken or dropped
// meanwhile may or may not appear.
func (l *Leases) List(ctx context.Context) ([]Lease, error) {
	keys, err := scanAll(ctx, l.rc, l.prefix+":lease:{*")
	if err != nil {
		return nil, fmt.Errorf("fleetstore: list leases: %w", err)
	}
	var out []Lease
	const batch = 256
	for len(keys) > 0 {
		n := min(batch, len(keys))
		reads := make([]leaseRead, n)
		_, err := l.rc.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, k := range keys[:n] {
				reads[i] = readLease(ctx, p, k)
			}
			return nil
		})
		// A key of ours that is not a lease hash is skipped by lease(); any
		// other failure (no reply at all) fails the listing.
		if err != nil && !isReplyError(err) {
			return nil, fmt.Errorf("fleetstore: list leases: %w", err)
		}
		now := time.Now()
		for _, r := range reads {
			if lease, ok := r.lease(now); ok {
				out = append(out, lease)
			}
		}
		keys = keys[n:]
	}
	return out, nil
}

// leaseRead is a lease hash and its remaining time, read in one pipeline.
type leaseRead struct {
	fields *redis.SliceCmd
	pttl   *redis.DurationCmd
}

func readLease(ctx context.Context, p redis.Pipeliner, key string) leaseRead {
	return leaseRead{
		fields: p.HMGet(ctx, key, "owner", "token", "room", "participant", "track"),
		pttl:   p.PTTL(ctx, key),
	}
}

// lease is ok when the hash is whole and expiring: a key that expired
// between the two reads, or one this package did not write, is skipped.
func (r leaseRead) lease(now time.Time) (Lease, bool) {
	v, err := r.fields.Result()
	if err != nil || len(v) != 5 {
		return Lease{}, false
	}
	track, _ := v[4].(string) // absent: a whole participant
	owner, ok1 := v[0].(string)
	tokenText, ok2 := v[1].(string)
	room, ok3 := v[2].(string)
	participant, ok4 := v[3].(string)
	token, err := strconv.ParseInt(tokenText, 10, 64)
	left, pttlErr := r.pttl.Result()
	// PTTL is -2 for a key gone meanwhile and -1 for one without an expiry,
	// which this package never writes; 0 is a lease in its last millisecond.
	if !ok1 || !ok2 || !ok3 || !ok4 || err != nil || pttlErr != nil || left < 0 {
		return Lease{}, false
	}
	return Lease{Key: Key{Room: room, Participant: participant, Track: track}, Owner: owner, Token: token, Expires: now.Add(left)}, true
}

// scanAll returns the keys matching pattern, each once. A cluster is
// scanned master by master: SCAN covers one node only.
func scanAll(ctx context.Context, rc redis.UniversalClient, pattern string) ([]string, error) {
	var mu sync.Mutex
	seen := map[string]bool{}
	var out []string
	scan := func(ctx context.Context, c redis.Cmdable) error {
		it := c.Scan(ctx, 0, pattern, 256).Iterator()
		for it.Next(ctx) {
			mu.Lock()
			if k := it.Val(); !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
			mu.Unlock()
		}
		return it.Err()
	}
	if cc, ok := rc.(*redis.ClusterClient); ok {
		err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
		return out, err
	}
	return out, scan(ctx, rc)
}

// isReplyError tells an error Redis answered with (WRONGTYPE, say) from a
// failure to get an answer.
func isReplyError(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr)
}

func checkLease(key Key, owner string) error {
	if err := key.check(); err != nil {
		return err
	}
	if owner == "" {
		return errors.New("owner must not be empty")
	}
	return nil
}
