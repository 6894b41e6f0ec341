package muxer

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/pion/rtp"

	"github.com/trackrec/trackrec/muxer/opus"
)

// Defaults of the Options windows.
const (
	DefaultAnchorWindow   = time.Second
	DefaultJitterWindow   = 60 * time.Millisecond
	DefaultMaxConcealment = 120 * time.Millisecond
)

const vendor = "trackrec"

// ErrClosed is returned by WriteRTP after Close.
var ErrClosed = errors.New("muxer: track closed")

// Packet is an RTP packet carrying one Opus packet.
type Packet = rtp.Packet

// Counts are a track's packet counters. One struct serves the muxer's Stats,
// the manifest beside each file, the API and the metrics, so a counter has
// one name everywhere.
type Counts struct {
	Packets            int64 `json:"packets"`             // publisher packets written
	ConcealmentPackets int64 `json:"concealment_packets"` // inserted packets that request loss concealment
	SilencePackets     int64 `json:"silence_packets"`     // inserted digital-silence packets (leading silence included)
	Reordered          int64 `json:"reordered"`           // publisher packets written that arrived after a later one
	Duplicates         int64 `json:"duplicates"`          // dropped: sequence number already written or buffered
	Late               int64 `json:"late"`                // dropped: too late for the jitter window, or a straggler
	Malformed          int64 `json:"malformed"`           // dropped: not a valid Opus packet
	Resyncs            int64 `json:"resyncs"`             // mapping re-based on arrival (SSRC change, jump, drift)
}

// Add adds o's counters to c.
func (c *Counts) Add(o Counts) {
	c.Packets += o.Packets
	c.ConcealmentPackets += o.ConcealmentPackets
	c.SilencePackets += o.SilencePackets
	c.Reordered += o.Reordered
	c.Duplicates += o.Duplicates
	c.Late += o.Late
	c.Malformed += o.Malformed
	c.Resyncs += o.Resyncs
}

// Stats describes what a Track has written so far. Sample counts are at
// 48 kHz.
type Stats struct {
	// Anchor is the estimated wall-clock instant of the first packet's RTP
	// timestamp, to the microsecond (zero until the anchor window closes).
	Anchor time.Time
	// Start is the file's start: the UTC second at or before Anchor, passed
	// to Options.Open. The first publisher sample plays at Anchor - Start.
	Start time.Time
	// PreSkip is the OpusHead pre-skip (WebM: CodecDelay) in samples.
	PreSkip int

	Counts

	ConcealmentSamples int64 // samples of the inserted concealment packets
	SilenceSamples     int64 // samples of the inserted silence, the pre-skip included

	Samples int64 // media length on the decoded timeline (after pre-skip)
	Bytes   int64 // container bytes written
}

// Options configure a Track.
type Options struct {
	// Open is called once, when the anchor window has passed (or at Close),
	// with the file's start (Stats.Start: a whole UTC second) and the channel
	// count read from the first packet's TOC. It returns where the container
	// goes. For WebM, an output that is also an io.Seeker gets Duration and
	// Cues at Close. Required.
	Open func(start time.Time, channels int) (io.WriteCloser, error)
	// Format is FormatOgg (the default when empty) or FormatWebM.
	Format string
	// AnchorWindow is how long (in arrival time) packets are held before the
	// file opens, to estimate the anchor; also how long a suspected
	// discontinuity is held before the mapping is re-based. Zero means
	// DefaultAnchorWindow; negative means none.
	AnchorWindow time.Duration
	// JitterWindow is how long a missing sequence number is waited for. Zero
	// means DefaultJitterWindow; negative means not at all.
	JitterWindow time.Duration
	// MaxConcealment is the longest hole filled with concealment requests
	// rather than silence. Zero means DefaultMaxConcealment; negative means
	// holes are always filled with silence.
	MaxConcealment time.Duration
	// Tap, if set, sees the output as it is written (live streams).
	Tap    Tap
	Logger *slog.Logger // optional
}

// Track writes one RTP track's Opus payloads into an Ogg Opus or WebM file
// along the timeline described in the package doc. WriteRTP and Close may be
// called from different goroutines; Stats from any.
type Track struct {
	opts Options

	mu       sync.Mutex // serialises WriteRTP and Close
	tl       timeline
	work     Stats // the timeline's counters, under mu
	out      io.WriteCloser
	closed   bool
	closeErr error

	statsMu sync.Mutex
	stats   Stats
}

// NewTrack returns a Track that opens its output once the anchor window has
// passed. It fails if o.Open is nil or o.Format is not a format this package
// writes (see CheckFormat).
func NewTrack(o Options) (*Track, error) {
	if o.Open == nil {
		return nil, errors.New("muxer: Options.Open is nil")
	}
	if err := CheckFormat(o.Format); err != nil {
		return nil, err
	}
	t := &Track{opts: o}
	t.tl = timeline{
		cfg: config{
			anchorWindow: window(o.AnchorWindow, DefaultAnchorWindow),
			jitterWindow: window(o.JitterWindow, DefaultJitterWindow),
			maxConceal:   opus.Samples(window(o.MaxConcealment, DefaultMaxConcealment)),
			log:          o.Logger,
		},
		open:    t.open,
		st:      &t.work,
		scratch: make([]byte, 0, 2+2*48),
	}
	if o.MaxConcealment < 0 {
		t.tl.cfg.maxConceal = -1
	}
	return t, nil
}

func window(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

// Stats returns a snapshot of the counters.
func (t *Track) Stats() Stats {
	t.statsMu.Lock()
	defer t.statsMu.Unlock()
	return t.stats
}

func (t *Track) publish() {
	t.statsMu.Lock()
	t.stats = t.work
	t.statsMu.Unlock()
}

// WriteRTP takes p, which arrived at arrival. Its payload is copied if it
// has to wait (anchor window, jitter window, hold), so p may be reused once
// WriteRTP returns. Malformed packets are counted and dropped, empty ones
// (RTP padding) ignored. The error is that of opening or writing the file,
// and sticks.
func (t *Track) WriteRTP(p *rtp.Packet, arrival time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	if t.tl.err != nil {
		return t.tl.err
	}
	if len(p.Payload) == 0 {
		return nil
	}
	n, err := opus.PacketSamples(p.Payload)
	if err != nil {
		// A packet no decoder would accept is dropped: one bad packet from a
		// publisher must not end the recording of the track.
		t.work.Malformed++
		t.publish()
		t.tl.debugf("malformed packet dropped", slog.Uint64("seq", uint64(p.SequenceNumber)), slog.Any("err", err))
		return nil
	}
	err = t.tl.add(p.SSRC, p.SequenceNumber, p.Timestamp, p.Payload, n, arrival)
	t.publish()
	return err
}

func (t *Track) open(start time.Time, channels, preSkip int) (Container, error) {
	out, err := t.opts.Open(start, channels)
	if err != nil {
		return nil, fmt.Errorf("muxer: open output: %w", err)
	}
	var w io.Writer = out
	if t.opts.Tap != nil {
		w = teeWriter{out, t.opts.Tap}
	}
	c, err := newContainer(t.opts.Format, w, channels, preSkip)
	if err != nil {
		_ = out.Close()
		return nil, fmt.Errorf("muxer: start stream: %w", err)
	}
	t.out = out
	if t.opts.Tap != nil {
		t.opts.Tap.Begin(start, channels, preSkip)
		return tapped{c, t.opts.Tap}, nil
	}
	return c, nil
}

// Advance tells the track that time has come to now with no packet for at
// least idle: the jitter window and a hold expire as they would on an
// arrival, and the silence is written out up to where a packet arriving
// from now on could land (holdBound and a margin before now), so a live
// stream keeps pace with the wall clock while nothing arrives. A hole
// written this way is digital silence, as it would be once the next packet
// came. A short idle suits a track known to be silent (its publisher
// muted it); otherwise the pause may be a delivery stall whose packets are
// still coming, and those that arrive later than the margin are written
// after the silence already written, not at their RTP positions (no audio
// is dropped, but they play late until the drift bound re-syncs): past a
// second or two such packets are re-based on arrival anyway.
func (t *Track) Advance(now time.Time, idle time.Duration) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	err := t.tl.advance(now, max(idle, advanceIdle))
	t.publish()
	return err
}

// Close writes what is held (opening the file first if the anchor window
// was still open), ends the container and closes the output. A track that
// never got a packet has nothing to close. It returns the track's first
// error, if any; later calls return the same.
func (t *Track) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return t.closeErr
	}
	t.closed = true
	err := t.tl.finish()
	if c := t.tl.c; c != nil {
		if cerr := c.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("muxer: close container: %w", cerr)
		}
		t.work.Bytes = c.Bytes()
	}
	if t.out != nil {
		if cerr := t.out.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("muxer: close output: %w", cerr)
		}
	}
	t.publish()
	t.closeErr = err
	t.tl.release()
	return err
}
