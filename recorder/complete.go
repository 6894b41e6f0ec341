package recorder

import (
	"context"
	"errors"
	"time"

	"github.com/trackrec/trackrec/spool"
	"github.com/trackrec/trackrec/uploader"
)

// CompletedTrack is one file a room's recordings produced.
type CompletedTrack struct {
	Manifest spool.Manifest
	// Path is the file in the spool; it may be gone once uploaded.
	Path    string
	Uploads []*uploader.Upload
}

// RoomComplete runs when every recording of a room has stopped, the room
// stayed without recordings for the settle delay, and every file of those
// recordings is stored: the point where the mixdown pipeline may start. It
// returns the keys it produced.
type RoomComplete func(ctx context.Context, room string, tracks []CompletedTrack) ([]string, error)

// ErrRetryLater, wrapped in a RoomComplete error, asks for another run
// later (OnRoomComplete's webhook receiver was down through every attempt).
var ErrRetryLater = errors.New("room pipeline to be retried")

// Completion states.
const (
	CompletionWaiting = "waiting_uploads"
	CompletionRunning = "running"
	// CompletionRetrying: the pipeline asked to be run again later
	// (ErrRetryLater); Error says why.
	CompletionRetrying = "retrying"
	CompletionDone     = "done"
	CompletionFailed   = "failed"
)

// Completion is a room's pipeline run, as GET /recordings shows it.
type Completion struct {
	Room    string    `json:"room"`
	State   string    `json:"state"`
	Tracks  int       `json:"tracks"`
	Outputs []string  `json:"outputs,omitempty"`
	Error   string    `json:"error,omitempty"`
	At      time.Time `json:"at"`
}

// roomStopped is called (under s.mu) when the last recording of a room
// stopped: it waits for the settle delay before declaring the room complete.
func (s *Supervisor) roomStopped(room string) {
	// Complete only with every recording's files closed and collected.
	if s.opts.OnRoomComplete == nil || s.rooms[room] != nil || s.closing[room] > 0 || len(s.finished[room]) == 0 {
		return
	}
	if t := s.settle[room]; t != nil {
		t.Stop()
	}
	s.settle[room] = time.AfterFunc(s.opts.SettleDelay, func() { s.settled(room) })
}

// roomResumed is called (under s.mu) when a room gets a recording again.
func (s *Supervisor) roomResumed(room string) {
	if t := s.settle[room]; t != nil {
		t.Stop()
		delete(s.settle, room)
	}
}

func (s *Supervisor) settled(room string) {
	s.mu.Lock()
	if s.rooms[room] != nil || s.closing[room] > 0 || s.closed {
		s.mu.Unlock()
		return
	}
	delete(s.settle, room)
	tracks := s.finished[room]
	delete(s.finished, room)
	s.mu.Unlock()
	if len(tracks) == 0 {
		return
	}
	c := &Completion{Room: room, State: CompletionWaiting, Tracks: len(tracks), At: time.Now().UTC()}
	s.mu.Lock()
	s.completionsLog = append(s.completionsLog, c)
	if over := len(s.completionsLog) - s.opts.History; over > 0 {
		s.completionsLog = append(s.completionsLog[:0:0], s.completionsLog[over:]...)
	}
	s.mu.Unlock()
	s.completions.Add(1)
	go func() {
		defer s.completions.Done()
		ctx := s.life
		for _, t := range tracks {
			for _, u := range t.Uploads {
				if u == nil {
					continue
				}
				select {
				case <-u.Done():
				case <-ctx.Done():
					s.setCompletion(c, CompletionFailed, nil, ctx.Err())
					s.log.Warn("room complete: uploads unfinished at shutdown; no mixdown", "room", room)
					return
				}
			}
		}
		s.run(ctx, c, room, tracks)
	}()
}

// run runs the room's pipeline; one that asks for it (ErrRetryLater: its
// webhook receiver stayed down) runs again with growing delays while the
// process lives, and its markers stay so a restart retries it too.
func (s *Supervisor) run(ctx context.Context, c *Completion, room string, tracks []CompletedTrack) {
	delay := s.opts.RetryDelay
	if delay <= 0 {
		delay = time.Minute
	}
	for {
		s.setCompletion(c, CompletionRunning, nil, nil)
		s.log.Info("room complete", "room", room, "tracks", len(tracks))
		outs, err := s.opts.OnRoomComplete(ctx, room, tracks)
		s.mu.Lock()
		cut := err != nil && (s.closed || ctx.Err() != nil)
		s.mu.Unlock()
		if err != nil && !cut && errors.Is(err, ErrRetryLater) {
			s.log.Warn("room pipeline to be retried", "room", room, "in", delay, "err", err)
			s.setCompletion(c, CompletionRetrying, outs, err)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
				delay = min(2*delay, 30*time.Minute)
				continue
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
		if !cut {
			// Ran to its end: the next process must not run it again (a
			// failed mix still sent the webhook). Cut short by shutdown
			// (the queue closes under a running mix), the markers stay and
			// the next process reruns it.
			s.clearPending(tracks)
		}
		if err != nil {
			s.log.Error("room pipeline failed", "room", room, "err", err)
			s.setCompletion(c, CompletionFailed, outs, err)
			return
		}
		s.setCompletion(c, CompletionDone, outs, nil)
		return
	}
}

func (s *Supervisor) setCompletion(c *Completion, state string, outs []string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.State, c.Outputs, c.Error = state, outs, ""
	if err != nil {
		c.Error = err.Error()
	}
}

// Completions lists the rooms' pipeline runs, oldest first.
func (s *Supervisor) Completions() []Completion {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Completion, 0, len(s.completionsLog))
	for _, c := range s.completionsLog {
		out = append(out, *c)
	}
	return out
}

// collect records the files of a stopped recording for its room's
// completion.
func (s *Supervisor) collect(rec *Recording) {
	rec.mu.Lock()
	tracks := append([]*track(nil), rec.tracks...)
	rec.mu.Unlock()
	var done []CompletedTrack
	for _, t := range tracks {
		t.mu.Lock()
		if t.path != "" && t.manifest.File.SHA256 != "" {
			done = append(done, CompletedTrack{Manifest: t.manifest, Path: t.path, Uploads: t.uploads})
		}
		t.mu.Unlock()
	}
	s.mu.Lock()
	room := rec.key.Room
	s.finished[room] = append(s.finished[room], done...)
	if s.closing[room]--; s.closing[room] <= 0 {
		delete(s.closing, room)
	}
	s.roomStopped(room)
	s.mu.Unlock()
}
