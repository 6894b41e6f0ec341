// Package fleetstore keeps the state a fleet of recorders shares in one
// Redis: who records which participant (leases) and which webhook events
// have been acted on (dedup).
//
// # Keys
//
// Every key starts with the prefix given to NewLeases or NewDedup (see
// CheckPrefix). Names from outside (room, participant, event id) appear only
// as unpadded URL-safe base64, written R, P and E below. That alphabet has
// no ':', '.', '{' or '}', so two different names, or pairs of names, never
// share a key, whatever bytes they hold.
//
//	PREFIX:lease:{R.P}   hash owner, token, room, participant; expires ttl
//	                     after the last claim or renewal
//	PREFIX:token:{R.P}   the key's fencing counter; expires 24 h after the
//	                     ttl of the last claim or renewal
//	PREFIX:dedup:E       "1"; expires ttl after the first call for E
//
// The braces are a Redis Cluster hash tag: a lease and its counter live in
// one slot, so one script can change both.
//
// # Leases and fencing
//
// A lease on a key (a room and participant) is held by at most one owner (an
// instance id). Claim on a free key takes it with a new token: the counter,
// incremented. Claim by the holder renews and keeps the token; Claim by
// anyone else is refused (ok=false) and returns the holder's lease. Renew
// and Release act only when the key is still held by that owner with that
// token; Renew never brings back an expired lease, and Release keeps the
// counter, so the next holder's token is higher.
//
// Tokens of a key only grow: each new holder's token is higher than every
// earlier one, so a stale owner (one paused or cut off past its ttl while
// another took over) can be told apart wherever the token was written down,
// and its Renew returns false and its Release does nothing. A new counter is
// seeded with the Redis server's clock in milliseconds before its first
// increment, so tokens keep growing even after the counter expired or Redis
// restarted without its data (given a server clock that does not step back).
//
// Lease.Expires is the holder's own deadline: the time its Claim or Renew
// began plus the ttl, never later than the moment Redis drops the lease
// (clock rates aside). A holder renews well before it (a third of the ttl is
// usual) and stops writing when Renew returns false or Expires passes without
// a successful Renew. For a lease one does not hold (a refused Claim, Holder,
// List), Expires is the local time plus what Redis has left on it.
//
// Every operation that checks and changes is one Lua script, so it is atomic
// (Redis 7.0 and later: scripts replicate their effects, which lets the seed
// read the clock). Holder reads in one MULTI; List walks the leases with SCAN
// (every master of a cluster), so leases that come and go meanwhile may or
// may not appear.
//
// Exactly once holds as long as Redis keeps what it acknowledged. A restart
// without persistence, or a failover to a replica that missed the last
// writes, lets a second owner claim a key the first still believes it holds;
// the first finds out at its next Renew, which returns false. After a
// restart the second token is still the higher; after such a failover it may
// equal the lost one.
//
// # When Redis is unreachable
//
// Every operation returns an error wrapped with what it was doing
// ("fleetstore: claim room ... for ...: ...") and never panics; nothing is
// retried beyond the client's own retries, bounded by the caller's context.
// Callers decide: a holder that cannot renew must stop writing by Expires; a
// Claim whose reply was lost may have taken the key, and claiming again with
// the same owner gets that lease back with its token; a Dedup error means
// "unknown", and the caller chooses between a possible duplicate and a
// possible miss. After many failed dials the client fails at once and
// re-dials in the background, so errors may go on for about a second after
// Redis is back. NewClient's errors never contain the password.
package fleetstore
