package recorder

import (
	"context"
	"errors"
	"fmt"
	"github.com/trackrec/trackrec/muxer/opus"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/trackrec/trackrec/bot"
	"github.com/trackrec/trackrec/live"
	"github.com/trackrec/trackrec/muxer"
	"github.com/trackrec/trackrec/spool"
)

// drainGrace is how long a track that ended keeps reading, so packets the SFU
// already sent reach the file.
const drainGrace = 100 * time.Millisecond

// maxReadErrors is how many read errors in a row end a track; a single bad
// packet (unparsable RTP, unknown payload type) is skipped.
const maxReadErrors = 50

// Recording is one participant of one room, written as one file per track.
type Recording struct {
	id       string
	key      Key
	owner    string // ownership token: instance and recording, so a stale release cannot free a newer claim
	instance string
	wait     bool   // armed: started for a participant who had not joined
	output   Output // nil: the layout's names, nobody told
	format   string // container; empty: Options.Format
	log      *slog.Logger
	room     *room

	joinDone chan struct{}
	stopDone chan struct{} // the files are closed
	retired  chan struct{} // the supervisor is done with it: ownership released, in the history
	keeper   chan struct{} // closed when its claim renewal ends; nil without one
	span     span          // what its tracks write, by arrival (handover.go)
	// handing is set while the recording is being handed over: its claim
	// passing to the successor is then no reason to stop.
	handing atomic.Bool

	mu         sync.Mutex
	state      State
	joinErr    error
	startedAt  time.Time
	stoppedAt  time.Time
	stopReason string
	handoverAt time.Time // successor: where its files take over
	tracks     []*track
	liveDone   func() // ends the participant's entry in the live hub
	awayTimer  *time.Timer
	armTimer   *time.Timer
	wg         sync.WaitGroup
}

func newRecording(key Key, id, instance string, log *slog.Logger) *Recording {
	if id == "" {
		id = newID("RC_")
	}
	return &Recording{
		id:        id,
		key:       key,
		owner:     instance + "/" + id,
		instance:  instance,
		log:       log.With("room", key.Room, "participant", key.Participant, "recording", id),
		joinDone:  make(chan struct{}),
		stopDone:  make(chan struct{}),
		retired:   make(chan struct{}),
		state:     StateStarting,
		startedAt: time.Now().UTC(),
	}
}

// to moves r to next if the lifecycle allows it (the caller holds r.mu);
// it reports whether r is in next now.
func (r *Recording) to(next State) bool {
	if r.state == next {
		return true
	}
	if !r.state.can(next) {
		return false
	}
	r.state = next
	return true
}

func (r *Recording) joined(err error) {
	r.mu.Lock()
	r.joinErr = err
	if err == nil {
		if r.state == StateStarting { // a track may have come already
			r.to(StateWaiting)
		}
	} else if r.to(StateFailed) {
		r.stopReason = err.Error()
		r.stoppedAt = time.Now().UTC()
	}
	r.mu.Unlock()
	close(r.joinDone)
}

func (r *Recording) waitJoined(ctx context.Context) error {
	select {
	case <-r.joinDone:
	case <-ctx.Done():
		return ctx.Err()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.joinErr
}

func (r *Recording) waitRetired(ctx context.Context) {
	select {
	case <-r.retired:
	case <-ctx.Done():
	}
}

// endLive (under r.mu) tells live consumers the participant's recording is
// over.
func (r *Recording) endLive() {
	if r.liveDone != nil {
		r.liveDone()
	}
}

// muted passes a publisher's mute change to the live streams of the track.
func (r *Recording) muted(sid string, muted bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.tracks {
		if t.info.TrackSID == sid && t.live != nil {
			t.live.SetMuted(muted)
		}
	}
}

// retire ends the supervisor's part; the output hears the final state.
func (r *Recording) retire() {
	r.mu.Lock()
	r.endLive()
	r.mu.Unlock()
	close(r.retired)
	if r.output != nil {
		r.output.Stopped(r.Info())
	}
}

// arm ends the recording with giveUp if its participant has not come after
// wait; the participant's arrival or first track disarms it.
func (r *Recording) arm(wait time.Duration, giveUp func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state != StateWaiting {
		return
	}
	var t *time.Timer
	t = time.AfterFunc(wait, func() {
		r.mu.Lock()
		current := r.armTimer == t
		r.mu.Unlock()
		if current {
			giveUp()
		}
	})
	r.armTimer = t
}

// arrived (under r.mu) disarms the arm timer: the participant came.
func (r *Recording) arrived() {
	if r.armTimer != nil {
		r.armTimer.Stop()
		r.armTimer = nil
	}
}

// addTrack starts writing a newly subscribed track. It reports false when
// the track will not be read.
func (r *Recording) addTrack(src *bot.Track, o *Options) bool {
	log := r.log.With("track", src.Info.TrackSID, "source", src.Info.Source)
	if !strings.EqualFold(src.Info.MimeType, "audio/opus") {
		log.Warn("not recording track: codec is not Opus", "mime", src.Info.MimeType)
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state != StateRecording && !r.state.can(StateRecording) {
		return false
	}
	// Media from the participant means it is back, whatever the order of
	// the departure and arrival events.
	if r.awayTimer != nil {
		r.awayTimer.Stop()
		r.awayTimer = nil
	}
	r.arrived()
	t := &track{info: src.Info, src: src, log: log, done: make(chan struct{}), opts: o, span: &r.span, output: r.output}
	t.format = o.Format
	if r.format != "" {
		t.format = r.format
	}
	mo := muxer.Options{
		Open:         t.open,
		Format:       t.format,
		JitterWindow: o.JitterWindow,
		Logger:       log,
	}
	if o.Live != nil {
		t.live = o.Live.NewStream(live.TrackInfo{
			Room: src.Info.Room, Participant: src.Info.Participant, ParticipantName: src.Info.ParticipantName,
			TrackSID: src.Info.TrackSID, Source: src.Info.Source, Format: t.format,
		})
		if src.Info.Muted {
			t.live.SetMuted(true) // subscribed while muted: its silence is known
		}
		mo.Tap = t.live
	}
	mux, err := muxer.NewTrack(mo)
	if err != nil {
		log.Error("not recording track", "err", err)
		return false
	}
	t.mux = mux
	if t.live != nil {
		if r.liveDone == nil {
			r.liveDone = o.Live.Recording(r.key.Room, r.key.Participant)
		}
		t.live.Publish(mux.Advance)
	}
	r.tracks = append(r.tracks, t)
	r.to(StateRecording)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		t.run()
	}()
	log.Info("track recording")
	return true
}

// endTrack lets the subscription that ended drain and close; a newer
// subscription of the same track SID goes on.
func (r *Recording) endTrack(info bot.TrackInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.tracks {
		if t.info.TrackSID == info.TrackSID && t.info.Subscription == info.Subscription {
			t.end(time.Now().Add(drainGrace))
		}
	}
}

func (r *Recording) participantAway(wait time.Duration, giveUp func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.state.can(StateAway) && r.state != StateAway {
		return
	}
	r.away(wait, giveUp)
}

// awayIfPresent is participantAway for a recording whose participant was
// in the room (recording or already away); one still waiting for its
// participant keeps waiting.
func (r *Recording) awayIfPresent(wait time.Duration, giveUp func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state != StateRecording && r.state != StateAway {
		return
	}
	r.away(wait, giveUp)
}

// away (under r.mu) arms giveUp after wait. Only the latest timer, still
// away when it fires, gives up: a return that raced the timer wins.
func (r *Recording) away(wait time.Duration, giveUp func()) {
	r.to(StateAway)
	if r.awayTimer != nil {
		r.awayTimer.Stop()
	}
	var t *time.Timer
	t = time.AfterFunc(wait, func() {
		r.mu.Lock()
		current := r.awayTimer == t && r.state == StateAway
		r.mu.Unlock()
		if current {
			giveUp()
		}
	})
	r.awayTimer = t
	r.log.Info("participant dropped; waiting for reconnect", "wait", wait)
}

func (r *Recording) participantBack() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.arrived()
	if r.state != StateAway {
		return
	}
	if r.awayTimer != nil {
		r.awayTimer.Stop()
		r.awayTimer = nil
	}
	r.to(StateWaiting)
	r.log.Info("participant reconnected")
}

// stop drains and closes every track and waits for their files to close:
// a recording is only "stopped" once every byte is on disk.
func (r *Recording) stop(reason string) {
	r.mu.Lock()
	if r.awayTimer != nil {
		r.awayTimer.Stop()
	}
	r.arrived()
	r.to(StateStopping)
	r.stopReason = reason
	// pion refuses to read once a deadline has passed, even packets it holds,
	// so the deadline leaves the reader time to take what already arrived.
	drainUntil := time.Now().Add(drainGrace)
	for _, t := range r.tracks {
		t.end(drainUntil)
	}
	r.mu.Unlock()

	r.wg.Wait()

	r.mu.Lock()
	r.to(StateStopped)
	r.stoppedAt = time.Now().UTC()
	r.endLive()
	r.mu.Unlock()
	close(r.stopDone)
	r.log.Info("recording stopped", "reason", reason)
}

// track is one subscribed track and the file it goes to.
type track struct {
	info bot.TrackInfo
	// src reads each packet into the track's own packet and buffer
	// (bot.Track: a split subscription's packet is shared instead).
	src interface {
		ReadInto(p *rtp.Packet, buf []byte) (time.Time, error)
		SetReadDeadline(time.Time) error
	}
	mux    *muxer.Track
	live   *live.Stream // nil without a live hub
	log    *slog.Logger
	done   chan struct{}
	opts   *Options
	span   *span  // the recording's
	output Output // the recording's
	format string // its container

	mu     sync.Mutex
	file   *spool.File // set when the file opens
	sealed spool.Sealed
	err    error
}

// open creates the track's file in the spool once the timeline has fixed
// its start.
func (t *track) open(start time.Time, _ int) (io.WriteCloser, error) {
	desc := spool.Track{
		Room:            t.info.Room,
		RoomSID:         t.info.RoomSID,
		Participant:     t.info.Participant,
		ParticipantName: t.info.ParticipantName,
		ParticipantSID:  t.info.ParticipantSID,
		TrackSID:        t.info.TrackSID,
		Source:          t.info.Source,
		MimeType:        t.info.MimeType,
	}
	if t.output != nil {
		key, err := t.output.Key(desc, start)
		if err != nil {
			return nil, err
		}
		desc.Key, desc.Store = key, t.output.Storage()
	}
	f, err := t.opts.Spool.Create(desc, start, t.format)
	if err != nil {
		return nil, err
	}
	// A file with an output (a track egress) is that output's: not the
	// room's completion's, nor the fleet's.
	if t.opts.Opened != nil && t.output == nil {
		t.opts.Opened(desc, f.Key(), start)
	}
	if t.output != nil {
		t.output.Opened(desc, f.Key(), start)
	}
	t.mu.Lock()
	t.file = f
	t.mu.Unlock()
	if t.live != nil {
		t.live.SetPath(f.Path())
	}
	t.log.Info("track file opened", "file", f.Path(), "start", start)
	return f, nil
}

// receiveMTU bounds one RTP packet as pion receives it.
const receiveMTU = 1500

// run copies packets into the file until the track ends, then closes it.
func (t *track) run() {
	defer close(t.done)
	errs := 0
	// One packet and one buffer, read into again and again: the muxer
	// copies what it keeps.
	p, buf := &rtp.Packet{}, make([]byte, receiveMTU)
	for {
		at, err := t.src.ReadInto(p, buf)
		if err != nil {
			if endOfTrack(err) {
				break
			}
			if errs++; errs >= maxReadErrors {
				t.fail(fmt.Errorf("read: %d errors in a row, last: %w", errs, err))
				break
			}
			t.log.Debug("skipping unreadable packet", "err", err)
			continue
		}
		errs = 0
		if ok, past := t.span.admit(at); !ok {
			if past {
				break // handed over: the successor has it from here
			}
			continue
		}
		if err := t.mux.WriteRTP(p, at); err != nil {
			t.fail(err)
			break
		}
	}
	if err := t.mux.Close(); err != nil {
		t.fail(err)
	}
	if t.live != nil {
		t.live.End()
	}
	st := t.mux.Stats()
	t.log.Info("track closed", "packets", st.Packets, "duration", opus.Duration(st.Samples))
	if err := t.finish(st); err != nil {
		t.fail(err)
	}
}

// finish seals the closed file (manifest, marker, uploads) and tells room
// completion. A file that never opened has nothing to seal.
func (t *track) finish(st muxer.Stats) error {
	t.mu.Lock()
	f := t.file
	t.mu.Unlock()
	if f == nil {
		return nil
	}
	sealed, err := t.opts.Spool.Seal(f, st)
	t.mu.Lock()
	t.sealed = sealed
	t.mu.Unlock()
	if t.output != nil {
		t.output.Closed(sealed, err)
	}
	if sealed.Manifest.File.SHA256 != "" && t.opts.Rooms != nil && t.output == nil {
		// Sealed, even if its upload could not be queued: its marker makes
		// the next start retry it.
		t.opts.Rooms.TrackClosed(t.info.Room, sealed)
	}
	return err
}

func (t *track) fail(err error) {
	t.mu.Lock()
	if t.err == nil {
		t.err = err
	}
	t.mu.Unlock()
	t.log.Error("track failed", "err", err)
}

// endOfTrack says whether a read error means no more packets will come:
// the track closed, or the read deadline set by end passed.
func endOfTrack(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) ||
		errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// end makes the reader return once it has read what arrived before at.
func (t *track) end(at time.Time) {
	if err := t.src.SetReadDeadline(at); err != nil {
		t.log.Warn("set read deadline", "err", err)
	}
}
