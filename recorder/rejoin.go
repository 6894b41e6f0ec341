package recorder

import (
	"context"
	"errors"
	"time"
)

// startRejoin replaces rm's bot, which lost LiveKit, unless a replacement
// is under way already or the room is no longer this supervisor's.
func (s *Supervisor) startRejoin(rm *room, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || rm.rejoining || s.rooms[rm.name] != rm {
		return
	}
	rm.rejoining = true
	s.rejoins.Add(1)
	go s.rejoin(rm, reason)
}

// rejoin joins a new bot for rm, retrying for up to ReconnectTimeout. The
// recordings whose participant was in the room wait (state away) that long
// for them to be back: their open files were closed when the old
// connection died, and the participant's tracks go to new files of the same
// recordings. If no bot gets in, every recording of the room stops.
func (s *Supervisor) rejoin(rm *room, reason string) {
	defer s.rejoins.Done()
	log := s.log.With("room", rm.name)
	budget := s.opts.ReconnectTimeout
	s.mu.Lock()
	recs := rm.list()
	s.mu.Unlock()
	log.Warn("bot lost LiveKit; joining again", "reason", reason, "recordings", len(recs), "within", budget)
	for _, r := range recs {
		r.awayIfPresent(budget, func() {
			s.stop(context.Background(), r, "LiveKit connection lost: "+reason)
		})
	}

	ctx, cancel := context.WithTimeout(s.life, budget)
	defer cancel()
	wait := 500 * time.Millisecond
	for {
		s.mu.Lock()
		if s.closed || s.rooms[rm.name] != rm {
			// Every recording stopped, or shutdown began: nobody to serve.
			rm.rejoining = false
			s.mu.Unlock()
			return
		}
		rm.gen++ // from now on only the new bot's events count
		h := &handler{s: s, room: rm, gen: rm.gen}
		s.mu.Unlock()

		b, err := s.opts.Join(ctx, rm.name, h)
		if err == nil {
			s.mu.Lock()
			switch {
			case s.closed || s.rooms[rm.name] != rm:
				rm.rejoining = false
				s.mu.Unlock()
				b.Leave()
				return
			case h.lost.Load():
				s.mu.Unlock()
				b.Leave()
				err = errors.New("the new bot lost LiveKit too")
			default:
				rm.bot, rm.rejoining = b, false
				back := rm.list()
				s.mu.Unlock()
				log.Info("bot joined again", "after", reason)
				for _, r := range back {
					if r.subscribe(b) {
						r.participantBack()
					}
				}
				return
			}
		}
		log.Warn("join again failed", "err", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
			wait = min(2*wait, 5*time.Second)
			continue
		case <-ctx.Done():
			t.Stop()
		}
		s.mu.Lock()
		rm.rejoining = false
		all := rm.list()
		closed := s.closed
		s.mu.Unlock()
		if closed {
			return // Shutdown stops the recordings
		}
		log.Error("could not join LiveKit again; recordings stop", "err", err)
		for _, r := range all {
			s.stop(context.Background(), r, "LiveKit connection lost: "+reason)
		}
		return
	}
}
