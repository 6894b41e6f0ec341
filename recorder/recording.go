package recorder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pion/rtp"
	"github.com/trackrec/trackrec/bot"
	"github.com/trackrec/trackrec/muxer"
	"github.com/trackrec/trackrec/spool"
	"github.com/trackrec/trackrec/uploader"
)

// drainGrace is how long a track that ended keeps reading, so packets the SFU
// already sent reach the file.
const drainGrace = 100 * time.Millisecond

// maxReadErrors is how many read errors in a row end a track; a single bad
// packet (unparsable RTP, unknown payload type) is skipped.
const maxReadErrors = 50

// Recording is one participant of one room, written as one file per track.
type Recording struct {
	id    string
	key   Key
	owner string // ownership token: instance and recording, so a stale release cannot free a newer claim
	log   *slog.Logger
	room  *room

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

func newRecording(key Key, instance string, log *slog.Logger) *Recording {
	id := newID("RC_")
	return &Recording{
		id:        id,
		key:       key,
		owner:     instance + "/" + id,
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
	if r.state == StateStopping || r.state == StateStopped {
		return false
	}
	// Media from the participant means it is back, whatever the order of
	// the departure and arrival events.
	if r.awayTimer != nil {
		r.awayTimer.Stop()
		r.awayTimer = nil
	}
	t := &track{info: src.Info, src: src, log: log, done: make(chan struct{}), opts: o, format: o.Format}
	mux, err := muxer.NewTrack(muxer.Options{
		Open:         t.opener(o.Dir, o.Format),
		Format:       o.Format,
		JitterWindow: o.JitterWindow,
		Logger:       log,
	})
	if err != nil {
		t.fail(err)
		return false
	}
	t.mux = mux
	r.tracks = append(r.tracks, t)
	r.state = StateRecording
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		t.run()
	}()
	log.Info("track recording")
	return true
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
	r.state = StateAway
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
	if r.state != StateAway {
		return
	}
	if r.awayTimer != nil {
		r.awayTimer.Stop()
		r.awayTimer = nil
	}
	r.state = StateWaiting
	r.log.Info("participant reconnected")
}

// stop drains and closes every track and waits for their files to close:
// a recording is only "stopped" once every byte is on disk.
func (r *Recording) stop(reason string) {
	r.mu.Lock()
	if r.awayTimer != nil {
		r.awayTimer.Stop()
	}
	r.state = StateStopping
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
	mux    *muxer.Track
	log    *slog.Logger
	done   chan struct{}
	opts   *Options
	format string

	mu       sync.Mutex
	key      string // relative file name, set when the file opens
	path     string
	manifest spool.Manifest
	uploads  []*uploader.Upload // the file, then its manifest
	err      error
}

// opener creates the track's file once the timeline has fixed its start.
// O_EXCL: an existing file is never overwritten; a clash (the same track
// resubscribed within one second) takes a numbered name instead.
func (t *track) opener(dir, ext string) func(time.Time, int) (io.WriteCloser, error) {
	return func(start time.Time, _ int) (io.WriteCloser, error) {
		key := uploader.TrackKey(t.info.Room, t.info.Participant, t.info.TrackSID, start, ext)
		path := filepath.Join(dir, filepath.FromSlash(key))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("track directory: %w", err)
		}
		for n := 2; ; n++ {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if err == nil {
				m := spool.NewManifest(t.info, t.opts.objectKey(key), t.format, t.opts.Instance, start)
				if err := spool.WriteJSON(spool.PendingPath(path), m); err != nil {
					// Only crash recovery needs it; the recording goes on.
					t.log.Warn("pending manifest", "err", err)
				}
				t.mu.Lock()
				t.key, t.path, t.manifest = key, path, m
				t.mu.Unlock()
				t.log.Info("track file opened", "file", path, "start", start)
				return syncCloser{f}, nil
			}
			if !errors.Is(err, os.ErrExist) || n > 100 {
				return nil, fmt.Errorf("create track file: %w", err)
			}
			key = uploader.TrackKey(t.info.Room, t.info.Participant, fmt.Sprintf("%s_%d", t.info.TrackSID, n), start, ext)
			path = filepath.Join(dir, filepath.FromSlash(key))
		}
	}
}

// run copies packets into the file until the track ends, then closes it.
func (t *track) run() {
	defer close(t.done)
	errs := 0
	for {
		p, at, err := t.src.ReadRTP()
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
	if err := t.finish(st); err != nil {
		t.fail(err)
	}
}

// finish writes the track's manifest beside its file and hands both to the
// upload queue, the file first. A file that never opened has neither.
func (t *track) finish(st muxer.Stats) error {
	t.mu.Lock()
	path, m := t.path, t.manifest
	t.mu.Unlock()
	if path == "" {
		return nil
	}
	m, ups, err := publish(t.opts, path, m, func(m *spool.Manifest, size int64, sum []byte) { m.Complete(st, size, sum) })
	t.mu.Lock()
	t.manifest, t.uploads = m, ups
	t.mu.Unlock()
	return err
}

// publish completes a closed file's manifest, writes it beside the file, and
// submits both for upload (the file first). It serves closed tracks and
// files recovered at start-up alike.
func publish(o *Options, path string, m spool.Manifest, fill func(*spool.Manifest, int64, []byte)) (spool.Manifest, []*uploader.Upload, error) {
	sum, err := uploader.FileSHA256(path)
	if err != nil {
		return m, nil, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return m, nil, fmt.Errorf("track file: %w", err)
	}
	fill(&m, fi.Size(), sum)
	// The marker goes first: a crash before the manifest leaves a file
	// that recovery publishes (and marks) again, never a closed file
	// without a marker.
	if err := markPending(o, path, m); err != nil {
		return m, nil, fmt.Errorf("pending-room marker: %w", err)
	}
	mpath := spool.ManifestPath(path)
	if err := spool.WriteJSON(mpath, m); err != nil {
		return m, nil, err
	}
	_ = os.Remove(spool.PendingPath(path))
	if o.Uploads == nil {
		return m, nil, nil
	}
	media, err := o.Uploads.Submit(uploader.Item{Key: m.File.Key, Path: path, ContentType: contentType(m.File.Container), SHA256: sum})
	if err != nil {
		return m, nil, fmt.Errorf("queue upload: %w", err)
	}
	man, err := o.Uploads.Submit(uploader.Item{Key: spool.ManifestPath(m.File.Key), Path: mpath, ContentType: "application/json", After: media})
	if err != nil {
		return m, []*uploader.Upload{media}, fmt.Errorf("queue manifest upload: %w", err)
	}
	return m, []*uploader.Upload{media, man}, nil
}

func contentType(container string) string {
	if container == muxer.FormatWebM {
		return "audio/webm"
	}
	return "audio/ogg"
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

// syncCloser makes Close durable: the file's bytes reach the disk before the
// recording reports it closed.
type syncCloser struct{ f *os.File }

func (s syncCloser) Write(p []byte) (int, error) { return s.f.Write(p) }

// Seek lets the WebM writer go back at close to fill in Duration and Cues.
func (s syncCloser) Seek(off int64, whence int) (int64, error) { return s.f.Seek(off, whence) }
func (s syncCloser) Close() error {
	serr := s.f.Sync()
	cerr := s.f.Close()
	return errors.Join(serr, cerr)
}

func samplesDuration(samples int64) time.Duration {
	return time.Duration(samples) * time.Second / 48000
}
