package recorder

import (
	"context"
	"time"
)

// Renewer is implemented by Owners whose claims expire unless renewed (a
// fleet's leases in Redis, so that the claims of an instance that died
// lapse and another instance can take its recordings over). The supervisor
// renews each recording's claim every TTL/3 while it records.
type Renewer interface {
	// Renew extends owner's claim on key. It reports false, without error,
	// when the claim is no longer owner's (it lapsed and another owner
	// took it); an error means the store could not be asked.
	Renew(ctx context.Context, key Key, owner string) (bool, error)
	// TTL is how long a claim lasts without renewal.
	TTL() time.Duration
}

// Intents remembers fleet-wide which recordings should be running
// (fleetstore.Intents), so that another instance takes one over when its
// instance dies or shuts down. A recording is wanted from its start until it
// ends for a reason of its own (a stop, a departure, the room's end); one
// cut by its instance's shutdown or a lost claim stays wanted.
type Intents interface {
	Want(ctx context.Context, key Key, id string, wait bool) error
	Done(ctx context.Context, key Key, id string) error
	// Free says the recording stays wanted but its claim is being released
	// on purpose (a shutdown): another instance may go on with it at once.
	Free(ctx context.Context, key Key, id string, wait bool) error
}

// StopClaimLost is the stop reason of a recording whose claim another
// instance took: that one goes on with it.
const StopClaimLost = "claim lost to another instance"

// Stop reasons that leave a recording wanted, for another instance to go on
// with.
const (
	reasonShutdown  = "recorder shutting down"
	reasonClaimLost = StopClaimLost
)

// keepClaim renews rec's claim until rec is stopped. A store that cannot be
// reached changes nothing: nobody else can claim through it either, so the
// recording goes on and the claim is renewed once the store is back (or
// claimed again if it lapsed meanwhile and is still free). A claim taken by
// another owner stops the recording at once: two instances never write the
// same participant's audio at the same moment.
func (s *Supervisor) keepClaim(rec *Recording, r Renewer) {
	defer close(rec.keeper)
	ttl := r.TTL()
	if ttl <= 0 {
		return
	}
	tick := time.NewTicker(ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-rec.stopDone:
			return
		case <-s.life.Done():
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(s.life, ttl/3)
		ok, err := r.Renew(ctx, rec.key, rec.owner)
		if err == nil && !ok {
			// Lapsed (the store was away longer than its TTL): claim it
			// again unless someone else holds it now, and say again that
			// it is wanted (a store that came back empty forgot it).
			if ok, err = s.opts.Owners.Claim(ctx, rec.key, rec.owner); ok && err == nil {
				s.want(ctx, rec)
			}
		}
		cancel()
		switch {
		case err != nil:
			rec.log.Warn("claim not renewed; recording goes on", "err", err)
		case !ok && rec.handing.Load():
			return // its successor holds it now
		case !ok:
			rec.log.Error("claim taken by another owner; recording stops")
			go s.stop(context.Background(), rec, reasonClaimLost)
			return
		}
	}
}

// want tells Intents that rec should be running. A store that does not
// answer only costs a takeover: the recording goes on.
func (s *Supervisor) want(ctx context.Context, rec *Recording) {
	// A track's own recording is a track egress's: wanted too, and resumed
	// with its egress (takeover.Tracks).
	if s.opts.Intents == nil {
		return
	}
	if err := s.opts.Intents.Want(context.WithoutCancel(ctx), rec.key, rec.id, rec.wait); err != nil {
		rec.log.Warn("recording not remembered fleet-wide", "err", err)
	}
}

// unwant tells Intents that rec ended for a reason of its own, before its
// claim is released: after the release another instance may look, and must
// not find it wanted. A store that does not answer is asked a few times.
func (s *Supervisor) unwant(ctx context.Context, rec *Recording) {
	ctx = context.WithoutCancel(ctx)
	wait := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := s.opts.Intents.Done(ctx, rec.key, rec.id)
		if err == nil {
			return
		}
		if attempt == 4 {
			rec.log.Error("recording end not remembered fleet-wide; another instance may resume it", "err", err)
			return
		}
		time.Sleep(wait)
		wait *= 2
	}
}
