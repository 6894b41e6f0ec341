package recorder

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Successor takes a recording over from this instance while it drains
// (fleet.Recorder): another instance starts recording key under the same id,
// claiming it from owner in one step, and answers the instant its files take
// over (every packet that arrives from then on is its own) and its name.
type Successor interface {
	TakeOver(ctx context.Context, key Key, id, owner string, wait bool) (cut time.Time, instance string, err error)
	// Cancel stops the successor's recording of key: this instance's
	// ended for a reason of its own (a stop) while the handover ran.
	Cancel(ctx context.Context, key Key) error
}

// HandedOver is implemented by Outputs that hear of their recording's
// handover (a track egress: the successor reports it from then on):
// HandingOver as it begins, then HandedOver with the instance that goes on,
// or "" when it failed.
type HandedOver interface {
	HandingOver()
	HandedOver(instance string)
}

// Transferer is implemented by Owners whose claims can pass straight from
// one owner to another (ownership.Shared), so that a recording handed over
// is never unclaimed on the way.
type Transferer interface {
	Transfer(ctx context.Context, key Key, from, owner string) (bool, error)
}

// HandOverFrom starts a recording that owner (another instance, draining)
// hands over: the claim passes from owner in one step, the tracks are
// subscribed, and the files take only what arrives from the cut on, which
// Start chooses once audio flows (RecordingInfo.HandoverAt). owner writes
// everything that arrived before it.
func HandOverFrom(owner string) StartOption {
	return func(o *startOptions) { o.from = owner }
}

// Cut timing. A successor waits for its first packet at most firstAudioWait
// (a muted participant sends none), then cuts cutAhead later: the answer
// reaches the instance handing over well before, and both sides then split
// the packets by arrival at the same instant. Both read arrival from their
// own clock: the split is as exact as the clocks agree (NTP: milliseconds).
const (
	firstAudioWait = 2 * time.Second
	cutAhead       = 250 * time.Millisecond
)

// span bounds, by arrival, what a recording's tracks write: a successor
// writes what arrives from its cut on, the instance handing over what
// arrived before it. Times are Unix nanoseconds; 0 means unbounded.
type span struct {
	from, until atomic.Int64
	heard       chan struct{} // a packet arrived (successors only)
	once        sync.Once
}

// hold makes the span write nothing until open: a successor's tracks
// subscribe before its cut is chosen.
func (s *span) hold() {
	s.from.Store(math.MaxInt64)
	s.heard = make(chan struct{})
}

// admit says whether a packet that arrived at at is written, and past
// whether it lies after the span's end (the track is done).
func (s *span) admit(at time.Time) (ok, past bool) {
	if s.heard != nil {
		s.once.Do(func() { close(s.heard) })
	}
	n := at.UnixNano()
	if u := s.until.Load(); u != 0 && n >= u {
		return false, true
	}
	return n >= s.from.Load(), false
}

// cutover waits for rec's first packet (at most firstAudioWait), then opens
// its span cutAhead from now and returns that instant.
func (rec *Recording) cutover(ctx context.Context) time.Time {
	wait := time.NewTimer(firstAudioWait)
	defer wait.Stop()
	select {
	case <-rec.span.heard:
	case <-wait.C:
	case <-ctx.Done():
	}
	cut := time.Now().Add(cutAhead).UTC()
	rec.span.from.Store(cut.UnixNano())
	rec.mu.Lock()
	rec.handoverAt = cut
	rec.mu.Unlock()
	return cut
}

// reasonHandedOver ends a recording that goes on on another instance.
const reasonHandedOver = "handed over to another instance"

// Drain refuses new work and hands every recording to next; one that next
// cannot take (no instance has room, or the handover failed) is stopped as
// Shutdown stops it. With next nil it is Shutdown. ctx bounds the wait.
func (s *Supervisor) Drain(ctx context.Context, next Successor) error {
	s.mu.Lock()
	s.closed = true
	// Stops already under way (participant left, room closed) must finish
	// too before the process may exit.
	recs := s.live()
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range recs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r.waitJoined(ctx) != nil {
				return
			}
			if next != nil && s.handOver(ctx, r, next) {
				return
			}
			s.stop(ctx, r, reasonShutdown)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("shutdown: %w", ctx.Err())
	}
}

// handOver asks next to go on with rec and, once it answered its cut, ends
// rec's files there. It reports false when rec is still this instance's to
// stop.
func (s *Supervisor) handOver(ctx context.Context, rec *Recording, next Successor) bool {
	if s.activeRecording(rec.key) != rec {
		return false // stopping for a reason of its own
	}
	rec.handing.Store(true)
	h, hears := rec.output.(HandedOver)
	if hears {
		h.HandingOver()
	}
	cut, inst, err := next.TakeOver(ctx, rec.key, rec.id, rec.owner, rec.wait)
	if hears {
		if err != nil {
			inst = ""
		}
		h.HandedOver(inst) // handed over: the successor reports it from then on
	}
	if err != nil {
		rec.handing.Store(false)
		if !errors.Is(err, ErrFull) {
			rec.log.Warn("handover failed; the recording stops here and the fleet resumes it", "err", err)
		} else {
			rec.log.Info("no instance can take the recording over; it stops here", "err", err)
		}
		return false
	}
	if s.activeRecording(rec.key) != rec {
		// Stopped here meanwhile, for a reason of its own: so is the
		// successor's.
		rec.log.Info("recording ended during its handover; ending the successor's", "to", inst)
		if err := next.Cancel(ctx, rec.key); err != nil {
			rec.log.Warn("successor's recording not stopped", "to", inst, "err", err)
		}
		return true
	}
	rec.log.Info("recording handed over", "to", inst, "cut", cut)
	rec.span.until.Store(cut.UnixNano())
	// The readers stop at their first packet from the cut on; the stop,
	// once the cut has come, ends a muted track's reader, which gets none.
	wait := time.NewTimer(time.Until(cut))
	defer wait.Stop()
	select {
	case <-wait.C:
	case <-ctx.Done():
	}
	s.stop(ctx, rec, reasonHandedOver)
	return true
}
