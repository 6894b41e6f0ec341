package recorder

import (
	"context"
	"time"
)

// rejoin replaces the bot of rm, which lost LiveKit, with a new one. Its
// recordings wait (state away) for up to ReconnectTimeout: their open files
// were closed when the old connection died; the new bot subscribes to
// their participants again and new tracks go to new files of the same
// recordings. If no bot gets in, or a participant does not come back in
// time, those recordings stop.
func (s *Supervisor) rejoin(rm *room, reason string) {
	s.mu.Lock()
	if s.closed || rm.rejoining || s.rooms[rm.name] != rm {
		s.mu.Unlock()
		return
	}
	rm.rejoining = true
	recs := make([]*Recording, 0, len(rm.recs))
	for _, r := range rm.recs {
		recs = append(recs, r)
	}
	s.mu.Unlock()
	log := s.log.With("room", rm.name)
	budget := s.opts.ReconnectTimeout
	log.Warn("bot lost LiveKit; joining again", "reason", reason, "recordings", len(recs), "within", budget)
	for _, r := range recs {
		r.participantAway(budget, func() {
			s.stop(context.Background(), r, "LiveKit connection lost: "+reason)
		})
	}

	ctx, cancel := context.WithTimeout(s.life, budget)
	defer cancel()
	wait := 500 * time.Millisecond
	for {
		b, err := s.opts.Join(ctx, rm.name, &handler{s: s, room: rm})
		if err == nil {
			s.mu.Lock()
			if s.closed || s.rooms[rm.name] != rm {
				// Every recording stopped (or shutdown began) meanwhile.
				s.mu.Unlock()
				b.Leave()
				return
			}
			rm.bot, rm.rejoining = b, false
			back := make(map[string]*Recording, len(rm.recs))
			for id, r := range rm.recs {
				back[id] = r
			}
			s.mu.Unlock()
			log.Info("bot joined again", "after", reason)
			for id, r := range back {
				if b.Record(id) {
					r.participantBack()
				}
			}
			return
		}
		log.Warn("join again failed", "err", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
			wait = min(2*wait, 5*time.Second)
		case <-ctx.Done():
			t.Stop()
			s.mu.Lock()
			rm.rejoining = false
			s.mu.Unlock()
			// The away timers stop the recordings.
			log.Error("could not join LiveKit again; recordings stop", "err", err)
			return
		}
	}
}
