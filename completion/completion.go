package completion

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/trackrec/trackrec/spool"
)

// Pipeline runs a complete room's mixdown and webhook and returns the keys it produced.
type Pipeline func(ctx context.Context, room string, tracks []spool.Sealed) ([]string, error)

// ErrRetryLater, wrapped in a Pipeline error, asks for another run later (the webhook receiver stayed down).
var ErrRetryLater = errors.New("room pipeline to be retried")

// RetryAfter is ErrRetryLater, wrapping err, with the wait before the next
// run (in place of RetryDelay's doubling): a fleet's room that waits for
// files it knows of asks again when they are due.
func RetryAfter(wait time.Duration, err error) error { return &retryError{wait: wait, err: err} }

type retryError struct {
	wait time.Duration
	err  error
}

func (e *retryError) Error() string {
	return fmt.Sprintf("%v (retry in %s)", e.err, e.wait)
}
func (e *retryError) Unwrap() []error { return []error{ErrRetryLater, e.err} }

// Markers is what clears the spool's pending-room markers once a room's pipeline ran to its end (spool.Spool).
type Markers interface{ ClearMarkers(tracks []spool.Sealed) }

// Options configure Rooms.
type Options struct {
	Pipeline    Pipeline      // nil: no pipeline; closed tracks are not retained at all
	Settle      time.Duration // how long a room stays idle before it is complete
	RetryDelay  time.Duration // first wait before rerunning after ErrRetryLater (default 1 min), doubling to 30 min
	History     int           // runs kept for Runs (default 256)
	Concurrency int           // pipelines running at once (default 1); the others wait their turn in state queued
	Markers     Markers       // may be nil
	Logger      *slog.Logger
}

// Run states.
const (
	StateWaiting = "waiting_uploads" // for the tracks' uploads to be stored
	StateQueued  = "queued"          // for a turn (Options.Concurrency)
	StateRunning = "running"
	// StateRetrying: the pipeline asked to run again later (ErrRetryLater);
	// Error says why.
	StateRetrying = "retrying"
	StateDone     = "done"
	StateFailed   = "failed"
)

// maxRetryDelay caps the doubling wait after ErrRetryLater.
const maxRetryDelay = 30 * time.Minute

// Run is a room's pipeline run, as GET /recordings shows it.
type Run struct {
	Room    string    `json:"room"`
	State   string    `json:"state"` // the State constants
	Tracks  int       `json:"tracks"`
	Outputs []string  `json:"outputs,omitempty"`
	Error   string    `json:"error,omitempty"`
	At      time.Time `json:"at"` // when the room completed
}

func (r *Run) finished() bool { return r.State == StateDone || r.State == StateFailed }

// Rooms tracks the rooms' recordings and tracks and runs each complete
// room's pipeline; see the package doc for the rules.
type Rooms struct {
	o   Options
	log *slog.Logger
	// ctx is every pipeline's context and ends every wait; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc
	// wg counts run goroutines. Add happens only under mu while !stopped,
	// and Close sets stopped before Wait, so no Add races the Wait.
	wg sync.WaitGroup

	mu      sync.Mutex
	stopped bool
	rooms   map[string]*room
	seq     uint64  // numbers settle timers, so a stale one knows it is
	runs    []*Run  // history, oldest first, at most o.History
	running int     // runs holding a turn
	turns   []*turn // runs waiting for a turn, first come first served
}

// room is what a room holds between completions.
type room struct {
	busy   bool
	tracks []spool.Sealed
	timer  *time.Timer // settling; nil otherwise
	armed  uint64      // the seq of timer
}

type turn struct {
	ready   chan struct{} // closed when granted
	granted bool
}

// New returns Rooms with zero options set to their defaults.
func New(o Options) *Rooms {
	if o.RetryDelay <= 0 {
		o.RetryDelay = time.Minute
	}
	if o.History <= 0 {
		o.History = 256
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 1
	}
	o.Settle = max(o.Settle, 0)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Rooms{o: o, log: o.Logger, ctx: ctx, cancel: cancel, rooms: map[string]*room{}}
}

// TrackClosed records a sealed track of room for its completion.
func (r *Rooms) TrackClosed(name string, t spool.Sealed) {
	if r.o.Pipeline == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return // completes in the next process, from its marker
	}
	rm := r.room(name)
	rm.tracks = append(rm.tracks, t)
	if !rm.busy && rm.timer == nil {
		r.arm(name, rm)
	}
}

// RoomBusy says room has a recording (starting, running or closing): it
// does not settle.
func (r *Rooms) RoomBusy(name string) {
	if r.o.Pipeline == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return
	}
	rm := r.room(name)
	rm.busy = true
	rm.disarm()
}

// RoomIdle says room has no recording now: it settles if it has tracks.
func (r *Rooms) RoomIdle(name string) {
	if r.o.Pipeline == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return
	}
	rm := r.rooms[name]
	if rm == nil {
		return
	}
	rm.busy = false
	if len(rm.tracks) == 0 {
		rm.disarm()
		delete(r.rooms, name)
		return
	}
	r.arm(name, rm)
}

// Restore adds the rooms the spool's recovery found, with their tracks;
// each room that is not busy then settles.
func (r *Rooms) Restore(rooms map[string][]spool.Sealed) {
	if r.o.Pipeline == nil {
		if len(rooms) > 0 {
			r.log.Warn("recover: room tracks wait for a pipeline, but none is configured; markers kept", "rooms", len(rooms))
		}
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return
	}
	for name, tracks := range rooms {
		if len(tracks) == 0 {
			continue
		}
		rm := r.room(name)
		rm.tracks = append(rm.tracks, tracks...)
		if !rm.busy {
			r.arm(name, rm)
		}
	}
}

// Runs lists the pipeline runs, oldest first.
func (r *Rooms) Runs() []Run {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Run, 0, len(r.runs))
	for _, run := range r.runs {
		c := *run
		c.Outputs = slices.Clone(run.Outputs)
		out = append(out, c)
	}
	return out
}

// Retained is how many rooms and tracks are held for completions to come:
// what a long-running instance keeps in memory besides its run history.
func (r *Rooms) Retained() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.rooms)
	for _, rm := range r.rooms {
		n += len(rm.tracks)
	}
	return n
}

// Stop begins shutdown: settle timers stop, and those rooms complete in the
// next process (their markers stay); no room completes from now on. Runs
// already started go on until Close.
func (r *Rooms) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return
	}
	r.stopped = true
	settling := 0
	for _, rm := range r.rooms {
		if rm.timer != nil {
			settling++
		}
		rm.disarm()
	}
	clear(r.rooms)
	if settling > 0 {
		r.log.Info("shutdown: rooms still settling complete in the next process", "rooms", settling)
	}
}

// Close ends the runs still waiting (for uploads, their turn or a retry
// delay), cancels running pipelines' context and waits for every run to
// return. Call it after Stop and the upload drain.
func (r *Rooms) Close() {
	r.Stop()
	r.cancel()
	r.wg.Wait()
}

// room returns name's state, made if new. The caller holds r.mu.
func (r *Rooms) room(name string) *room {
	rm := r.rooms[name]
	if rm == nil {
		rm = &room{}
		r.rooms[name] = rm
	}
	return rm
}

// arm (re)starts rm's settle. The caller holds r.mu.
func (r *Rooms) arm(name string, rm *room) {
	rm.disarm()
	r.seq++
	seq := r.seq
	rm.armed = seq
	rm.timer = time.AfterFunc(r.o.Settle, func() { r.settled(name, seq) })
}

func (rm *room) disarm() {
	if rm.timer != nil {
		rm.timer.Stop()
	}
	rm.timer, rm.armed = nil, 0
}

// settled runs when settle timer seq of room name fires. A timer stopped or
// replaced after it fired (RoomBusy, RoomIdle, Stop) finds itself stale and
// does nothing.
func (r *Rooms) settled(name string, seq uint64) {
	r.mu.Lock()
	rm := r.rooms[name]
	if r.stopped || rm == nil || rm.armed != seq || rm.busy {
		r.mu.Unlock()
		return
	}
	delete(r.rooms, name) // the run owns the tracks now
	tracks := rm.tracks
	run := &Run{Room: name, State: StateWaiting, Tracks: len(tracks), At: time.Now().UTC()}
	r.remember(run)
	r.wg.Add(1)
	r.mu.Unlock()
	defer r.wg.Done()
	r.run(run, tracks)
}

// remember adds run to the history, dropping the oldest finished run (else
// the oldest) when it is full. The caller holds r.mu.
func (r *Rooms) remember(run *Run) {
	r.runs = append(r.runs, run)
	if len(r.runs) <= r.o.History {
		return
	}
	i := max(slices.IndexFunc(r.runs, (*Run).finished), 0)
	r.runs = slices.Delete(r.runs, i, i+1)
}

func (r *Rooms) run(run *Run, tracks []spool.Sealed) {
	log := r.log.With("room", run.Room, "tracks", len(tracks))
	if err := r.awaitUploads(tracks); err != nil {
		log.Warn("room complete, but its uploads are unfinished at shutdown; it runs in the next process")
		r.set(run, StateFailed, nil, err)
		return
	}
	delay := r.o.RetryDelay
	for {
		if !r.takeTurn(run) {
			log.Warn("room pipeline not run before shutdown; it runs in the next process")
			r.set(run, StateFailed, nil, fmt.Errorf("shutdown while queued: %w", r.ctx.Err()))
			return
		}
		r.mu.Lock()
		stopped := r.stopped
		r.mu.Unlock()
		if stopped {
			// Shutdown began while it waited: the upload queue is closing,
			// so a mix could not be stored and the webhook would go out
			// without it. The markers stay; the next process runs it whole.
			r.releaseTurn()
			log.Warn("room pipeline not started: shutdown began; it runs in the next process")
			r.set(run, StateFailed, nil, errors.New("shutdown began before the pipeline started; it runs in the next process"))
			return
		}
		r.set(run, StateRunning, nil, nil)
		log.Info("room complete: pipeline running")
		outs, err := r.o.Pipeline(r.ctx, run.Room, tracks)
		r.releaseTurn()
		r.mu.Lock()
		cut := err != nil && (r.stopped || r.ctx.Err() != nil)
		r.mu.Unlock()
		switch {
		case err == nil:
			r.clearMarkers(tracks)
			log.Info("room pipeline done", "outputs", len(outs))
			r.set(run, StateDone, outs, nil)
			return
		case cut:
			log.Warn("room pipeline cut short by shutdown; it runs again in the next process", "err", err)
			r.set(run, StateFailed, outs, fmt.Errorf("cut short by shutdown: %w", err))
			return
		case errors.Is(err, ErrRetryLater):
			wait, next := delay, min(2*delay, maxRetryDelay)
			var hint *retryError
			if errors.As(err, &hint) && hint.wait > 0 {
				wait, next = hint.wait, delay
			}
			log.Warn("room pipeline to be retried", "in", wait, "err", err)
			r.set(run, StateRetrying, outs, err)
			if !r.wait(wait) {
				r.set(run, StateFailed, outs, fmt.Errorf("shutdown before a retry: %w", err))
				return
			}
			delay = next
		default:
			// It ran to its end: the next process must not run it again.
			r.clearMarkers(tracks)
			log.Error("room pipeline failed", "err", err)
			r.set(run, StateFailed, outs, err)
			return
		}
	}
}

// awaitUploads waits until every upload of tracks is stored, or Close.
func (r *Rooms) awaitUploads(tracks []spool.Sealed) error {
	for _, t := range tracks {
		for _, u := range t.Uploads {
			if u == nil {
				continue
			}
			select {
			case <-u.Done():
			case <-r.ctx.Done():
				return fmt.Errorf("uploads unfinished at shutdown: %w", r.ctx.Err())
			}
		}
	}
	return nil
}

// wait waits d, or until Close (false).
func (r *Rooms) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.ctx.Done():
		return false
	}
}

// takeTurn waits until run may start its pipeline, or Close (false).
func (r *Rooms) takeTurn(run *Run) bool {
	r.mu.Lock()
	if r.ctx.Err() != nil {
		r.mu.Unlock()
		return false // Close: no pipeline starts now
	}
	if r.running < r.o.Concurrency && len(r.turns) == 0 {
		r.running++
		r.mu.Unlock()
		return true
	}
	t := &turn{ready: make(chan struct{})}
	r.turns = append(r.turns, t)
	r.setLocked(run, StateQueued, nil, nil)
	r.mu.Unlock()
	select {
	case <-t.ready:
		return true
	case <-r.ctx.Done():
		r.mu.Lock()
		defer r.mu.Unlock()
		if t.granted {
			r.releaseLocked()
		} else if i := slices.Index(r.turns, t); i >= 0 {
			r.turns = slices.Delete(r.turns, i, i+1)
		}
		return false
	}
}

func (r *Rooms) releaseTurn() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.releaseLocked()
}

// releaseLocked hands a finished turn to the first waiting run. The caller
// holds r.mu.
func (r *Rooms) releaseLocked() {
	if len(r.turns) == 0 {
		r.running--
		return
	}
	t := r.turns[0]
	r.turns = slices.Delete(r.turns, 0, 1)
	t.granted = true
	close(t.ready)
}

func (r *Rooms) clearMarkers(tracks []spool.Sealed) {
	if r.o.Markers != nil {
		r.o.Markers.ClearMarkers(tracks)
	}
}

func (r *Rooms) set(run *Run, state string, outs []string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.setLocked(run, state, outs, err)
}

func (r *Rooms) setLocked(run *Run, state string, outs []string, err error) {
	run.State, run.Outputs, run.Error = state, outs, ""
	if err != nil {
		run.Error = err.Error()
	}
}
