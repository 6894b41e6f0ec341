// Package takeover keeps the fleet's recordings going when their instance
// does not: it remembers in Redis which recordings are wanted (from their
// start until they end for a reason of their own), and every instance
// resumes, under the same recording id and in new files, a wanted recording
// whose claim nobody holds: a crashed instance's claims lapse after
// LEASE_TTL, a shutting-down instance releases them as its files close. The
// claim decides which instance wins; a participant who is gone ends the
// want. A track egress's recording is resumed through its egress worker
// (Tracks), which ends the egress instead when its track is gone.
package takeover

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/trackrec/trackrec/fleetstore"
	"github.com/trackrec/trackrec/recorder"
)

// Wanted is the fleet's set of wanted recordings (fleetstore.Intents).
type Wanted interface {
	Put(ctx context.Context, in fleetstore.Intent) error
	Delete(ctx context.Context, key fleetstore.Key, id string) error
	Get(ctx context.Context, key fleetstore.Key) (fleetstore.Intent, bool, error)
	List(ctx context.Context) ([]fleetstore.Intent, error)
}

// Holders says who holds a recording's claim (fleetstore.Leases).
type Holders interface {
	Holder(ctx context.Context, key fleetstore.Key) (fleetstore.Lease, bool, error)
}

// Starter starts recordings on this instance (recorder.Supervisor).
type Starter interface {
	Start(ctx context.Context, room, participant string, opts ...recorder.StartOption) (recorder.RecordingInfo, bool, error)
}

// Intents tells Wanted what the supervisor starts and ends
// (recorder.Intents).
type Intents struct{ Wanted Wanted }

func (i Intents) Want(ctx context.Context, key recorder.Key, id string, wait bool) error {
	return i.Wanted.Put(ctx, fleetstore.Intent{Key: fleetstore.Key(key), ID: id, Wait: wait, Since: time.Now().UTC()})
}

func (i Intents) Free(ctx context.Context, key recorder.Key, id string, wait bool) error {
	return i.Wanted.Put(ctx, fleetstore.Intent{Key: fleetstore.Key(key), ID: id, Wait: wait, Since: time.Now().UTC(), Free: true})
}

func (i Intents) Done(ctx context.Context, key recorder.Key, id string) error {
	return i.Wanted.Delete(ctx, fleetstore.Key(key), id)
}

// Tracks resumes track egresses (egress.Worker): with their egress's
// record it records key again under egress id and reports the egress from
// then on. recorder.ErrNoParticipant: the egress ended instead (its track
// is gone), nothing is left to resume.
type Tracks interface {
	Resume(ctx context.Context, key recorder.Key, id string, opts ...recorder.StartOption) (bool, error)
}

// Options configure Run.
type Options struct {
	Wanted  Wanted
	Holders Holders
	Starter Starter
	// Tracks, if set, resumes the track egresses' recordings; without it
	// this instance leaves them to the others.
	Tracks Tracks
	// Interval between looks at the wanted recordings (default 1 s).
	Interval time.Duration
	// Grace is how long a wanted recording must stay unclaimed before it
	// is resumed: its holder, back from a Redis that restarted empty,
	// claims it again within a renewal (LEASE_TTL/3), so a grace of
	// LEASE_TTL/2 leaves it there rather than moving it.
	Grace  time.Duration
	Logger *slog.Logger
}

// Run resumes unclaimed wanted recordings until ctx ends.
func Run(ctx context.Context, o Options) {
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	var busy sync.Map  // keys being resumed by this instance now
	var since sync.Map // keys seen unclaimed: since when (time.Time)
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(o.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		wanted, err := o.Wanted.List(ctx)
		if err != nil {
			o.Logger.Debug("takeover: wanted recordings unavailable", "err", err)
			continue
		}
		for _, in := range wanted {
			if _, running := busy.LoadOrStore(in.Key, true); running {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer busy.Delete(in.Key)
				resume(ctx, o, in, &since)
			}()
		}
	}
}

// resume starts in here if nobody has held its claim for the grace.
func resume(ctx context.Context, o Options, in fleetstore.Intent, since *sync.Map) {
	if _, held, err := o.Holders.Holder(ctx, in.Key); err != nil || held {
		since.Delete(in.Key)
		return
	}
	// A claim released on purpose (Free) is taken at once; one that
	// lapsed waits the grace.
	first, _ := since.LoadOrStore(in.Key, time.Now())
	if !in.Free && time.Since(first.(time.Time)) < o.Grace {
		return
	}
	since.Delete(in.Key)
	log := o.Logger.With("room", in.Key.Room, "participant", in.Key.Participant, "recording", in.ID)
	opts := []recorder.StartOption{recorder.Resume(in.ID), recorder.Confirm(func(ctx context.Context) (bool, error) {
		return stillWanted(ctx, o.Wanted, in)
	})}
	if in.Wait {
		opts = append(opts, recorder.WaitForParticipant())
	}
	var created bool
	var err error
	if in.Key.Track != "" {
		if o.Tracks == nil {
			return
		}
		log = log.With("track", in.Key.Track)
		created, err = o.Tracks.Resume(ctx, recorder.Key(in.Key), in.ID, opts...)
	} else {
		_, created, err = o.Starter.Start(ctx, in.Key.Room, in.Key.Participant, opts...)
	}
	switch {
	case err == nil && created:
		log.Info("takeover: recording resumed on this instance")
	case err == nil:
		// Already running here.
	case errors.Is(err, recorder.ErrNoRoom) || errors.Is(err, recorder.ErrNoParticipant):
		log.Info("takeover: participant gone; recording no longer wanted", "err", err)
		if err := o.Wanted.Delete(ctx, in.Key, in.ID); err != nil {
			log.Warn("takeover: drop wanted recording", "err", err)
		}
	case errors.Is(err, recorder.ErrOwned), errors.Is(err, recorder.ErrFull), errors.Is(err, recorder.ErrShuttingDown), errors.Is(err, recorder.ErrNotWanted):
		// Another instance won the claim, or this one has no room: the
		// others try.
	default:
		log.Warn("takeover: resume failed; trying again", "err", err)
	}
}

// Later keeps participant's recording in room wanted though no instance
// could start it (the fleet was full): no claim holds it, so the first
// instance with room resumes it, under a new recording id.
func Later(ctx context.Context, w Wanted, room, participant string) error {
	key := fleetstore.Key{Room: room, Participant: participant}
	if _, wanted, err := w.Get(ctx, key); err != nil || wanted {
		return err // a recording already wanted goes on under its own id
	}
	return w.Put(ctx, fleetstore.Intent{Key: key, ID: recorder.NewID(), Since: time.Now().UTC(), Free: true})
}

// stillWanted says whether in is still wanted under the same recording id.
func stillWanted(ctx context.Context, w Wanted, in fleetstore.Intent) (bool, error) {
	cur, ok, err := w.Get(ctx, in.Key)
	return ok && cur.ID == in.ID, err
}

// Forget drops what the fleet wants of participant in room, or of every
// participant of room when participant is "": a stop or the room's end that
// found no instance recording them (their instance died and nobody resumed
// them yet) must not be undone by a takeover. It reports whether anything
// was wanted.
func Forget(ctx context.Context, w Wanted, room, participant string) (bool, error) {
	all, err := w.List(ctx)
	if err != nil {
		return false, err
	}
	found := false
	for _, in := range all {
		// A track egress's recording stays: its takeover reports the
		// egress's end once it finds the track gone.
		if in.Key.Room != room || (participant != "" && in.Key.Participant != participant) || in.Key.Track != "" {
			continue
		}
		if err := w.Delete(ctx, in.Key, in.ID); err != nil {
			return found, err
		}
		found = true
	}
	return found, nil
}
