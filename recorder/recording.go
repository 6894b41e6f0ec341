package recorder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pion/rtp"
	"github.com/trackrec/trackrec/bot"
	"github.com/trackrec/trackrec/muxer"
	"github.com/trackrec/trackrec/uploader"
)

// drainGrace is how long a track that ended keeps reading packets the SFU
// already sent, so the last ones reach the file.
const drainGrace = 250 * time.Millisecond

// Recording is one participant of one room, written as one file per track.
type Recording struct {
	id   string
	key  Key
	log  *slog.Logger
	room *room

	joinDone chan struct{}
	stopDone chan struct{}

	mu         sync.Mutex
	state      string
	joinErr    error
	startedAt  time.Time
	stoppedAt  time.Time
	stopReason string
	tracks     []*track
	awayTimer  *time.Timer
	wg         sync.WaitGroup
}

func newRecording(key Key, log *slog.Logger) *Recording {
	id := newID("RC_")
	return &Recording{
		id:        id,
		key:       key,
		log:       log.With("room", key.Room, "participant", key.Participant, "recording", id),
		joinDone:  make(chan struct{}),
		stopDone:  make(chan struct{}),
		state:     StateStarting,
		startedAt: time.Now().UTC(),
	}
}

func (r *Recording) joined(err error) {
	r.mu.Lock()
	r.joinErr = err
	if err == nil && r.state == StateStarting {
		r.state = StateWaiting
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

func (r *Recording) waitStopped(ctx context.Context) {
	select {
	case <-r.stopDone:
	case <-ctx.Done():
	}
}

// addTrack starts writing a newly subscribed track.
func (r *Recording) addTrack(src *bot.Track, dir string) {
	log := r.log.With("track", src.Info.TrackSID, "source", src.Info.Source)
	if !strings.EqualFold(src.Info.MimeType, "audio/opus") {
		log.Warn("not recording track: codec is not Opus", "mime", src.Info.MimeType)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state == StateStopping || r.state == StateStopped {
		return
	}
	t := &track{info: src.Info, src: src, log: log, done: make(chan struct{})}
	t.mux = muxer.NewTrack(muxer.Options{Open: t.opener(dir), Logger: log})
	r.tracks = append(r.tracks, t)
	r.state = StateRecording
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		t.run()
	}()
	log.Info("track recording")
}

// endTrack lets a track that was unpublished drain and close.
func (r *Recording) endTrack(sid string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.tracks {
		if t.info.TrackSID == sid {
			t.end(time.Now().Add(drainGrace))
		}
	}
}

func (r *Recording) participantAway(wait time.Duration, giveUp func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state == StateStopping || r.state == StateStopped {
		return
	}
	r.state = StateAway
	if r.awayTimer != nil {
		r.awayTimer.Stop()
	}
	r.awayTimer = time.AfterFunc(wait, giveUp)
	r.log.Info("participant dropped; waiting for reconnect", "wait", wait)
}

func (r *Recording) participantBack() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state != StateAway {
		return
	}
	r.awayTimer.Stop()
	r.awayTimer = nil
	r.state = StateWaiting
	r.log.Info("participant reconnected")
}

// stop drains and closes every track and waits for their files to close.
func (r *Recording) stop(ctx context.Context, reason string) {
	r.mu.Lock()
	if r.awayTimer != nil {
		r.awayTimer.Stop()
	}
	r.state = StateStopping
	r.stopReason = reason
	now := time.Now()
	for _, t := range r.tracks {
		t.end(now)
	}
	r.mu.Unlock()

	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		r.log.Error("stop: files still closing", "err", ctx.Err())
	}

	r.mu.Lock()
	r.state = StateStopped
	r.stoppedAt = time.Now().UTC()
	r.mu.Unlock()
	close(r.stopDone)
	r.log.Info("recording stopped", "reason", reason)
}

// track is one subscribed track and the file it goes to.
type track struct {
	info bot.TrackInfo
	src  interface {
		ReadRTP() (*rtp.Packet, time.Time, error)
		SetReadDeadline(time.Time) error
	}
	mux  *muxer.Track
	log  *slog.Logger
	done chan struct{}

	mu   sync.Mutex
	key  string // relative file name, set when the file opens
	path string
	err  error
}

// opener creates the track's file when the first packet fixes its start.
// O_EXCL: an existing file is never overwritten; a clash (the same track
// resubscribed within one second) takes a numbered name instead.
func (t *track) opener(dir string) func(time.Time, int) (io.WriteCloser, error) {
	return func(start time.Time, _ int) (io.WriteCloser, error) {
		key := uploader.TrackKey(t.info.Room, t.info.Participant, t.info.TrackSID, start, "ogg")
		path := filepath.Join(dir, filepath.FromSlash(key))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("track directory: %w", err)
		}
		for n := 2; ; n++ {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if err == nil {
				t.mu.Lock()
				t.key, t.path = key, path
				t.mu.Unlock()
				t.log.Info("track file opened", "file", path, "start", start)
				return syncCloser{f}, nil
			}
			if !errors.Is(err, os.ErrExist) || n > 100 {
				return nil, fmt.Errorf("create track file: %w", err)
			}
			key = uploader.TrackKey(t.info.Room, t.info.Participant, fmt.Sprintf("%s_%d", t.info.TrackSID, n), start, "ogg")
			path = filepath.Join(dir, filepath.FromSlash(key))
		}
	}
}

// run copies packets into the file until the track ends, then closes it.
func (t *track) run() {
	defer close(t.done)
	for {
		p, at, err := t.src.ReadRTP()
		if err != nil {
			break
		}
		if err := t.mux.WriteRTP(p, at); err != nil {
			t.fail(err)
			break
		}
	}
	if err := t.mux.Close(); err != nil {
		t.fail(err)
	}
	st := t.mux.Stats()
	t.log.Info("track closed", "file", t.path, "packets", st.Packets, "duration", samplesDuration(st.Samples))
}

func (t *track) fail(err error) {
	t.mu.Lock()
	if t.err == nil {
		t.err = err
	}
	t.mu.Unlock()
	t.log.Error("track failed", "err", err)
}

// end makes the reader return once it has read what arrived before at.
func (t *track) end(at time.Time) {
	if err := t.src.SetReadDeadline(at); err != nil {
		t.log.Warn("set read deadline", "err", err)
	}
}

// syncCloser makes Close durable: the file's bytes reach the disk before the
// recording reports it closed.
type syncCloser struct{ f *os.File }

func (s syncCloser) Write(p []byte) (int, error) { return s.f.Write(p) }
func (s syncCloser) Close() error {
	serr := s.f.Sync()
	cerr := s.f.Close()
	return errors.Join(serr, cerr)
}

func samplesDuration(samples int64) time.Duration {
	return time.Duration(samples) * time.Second / 48000
}
