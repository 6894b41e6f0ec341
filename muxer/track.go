// Package muxer records one Opus RTP track into an Ogg Opus file without
// transcoding: each publisher payload is written byte for byte, and holes
// are filled with Opus packets that decode to digital silence, so the file
// plays for as long as the track was recorded.
//
// # Timeline
//
// Samples are at 48 kHz, the Opus RTP clock (RFC 7587) and the Ogg Opus
// granule rate. A Track keeps the end of what it has written (end) and
// places each packet as follows.
//
//   - The first packet opens the file, at position 0; its arrival time is
//     the file's start (Stats.Start) and its TOC the channel count. OpusHead
//     has pre-skip 0.
//   - Position of a packet = its RTP timestamp minus the first packet's,
//     unwrapped across the 32-bit wrap-around (consecutive packets less than
//     2^31 samples, 12 hours, apart). The granule written is the position
//     where the packet is written plus its duration from the TOC.
//   - Hole: if the position is at least 2.5 ms past end (mute, DTX, loss),
//     silence covering the hole rounded down to 2.5 ms is written first, so
//     the decoded duration follows the RTP clock. The sub-2.5 ms remainder is
//     not lost: positions are always computed from the RTP timestamp, so the
//     file runs less than 2.5 ms early and the next hole absorbs it.
//   - Duplicate: a sequence number already written (among the last 64) is
//     dropped and counted in Duplicates.
//   - Late: a packet lying entirely before end (reordered or stale; there is
//     no jitter buffer) is dropped and counted in Late; when its sequence
//     number is among the 64 behind the newest written, it is late however
//     long it took to arrive and never triggers a re-sync. A partial overlap
//     (less than the packet's own duration) is written at end, leaving the
//     file less than one packet late until a hole absorbs it.
//   - Re-sync: on an SSRC change, or when the position differs by more than
//     2 s in either direction from the arrival-based position
//     (arrival - Start) × 48000, the RTP clock is re-based so that the packet
//     lands at its arrival-based position (the hole filled with silence), and
//     Resyncs is counted. If end is already past that position (the file
//     never moves back), the packet lands at end and that lead becomes the
//     reference for later checks, so a file that is ahead of the wall clock
//     (SFU backlog, a fast sender clock) does not re-sync on every packet.
//     Hence network jitter and backlog bursts up to 2 s never re-sync, and an
//     RTP clock that jumps (or stands still across a pause) while packets keep
//     flowing leaves the file at most 2 s away from the wall clock.
//
// Payloads are never modified. Empty payloads (RTP padding) are ignored.
// Pages are held until about 1 s of audio is buffered (see package ogg), so a
// crash loses at most the last second, and a long mute keeps the second
// before it in memory until the next packet or Close.
package muxer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/pion/rtp"

	"github.com/trackrec/trackrec/muxer/ogg"
)

const (
	clockRate   = 48000
	resyncBound = 2 * clockRate
	seqWindow   = 64 // sequence numbers remembered for duplicate detection
	vendor      = "trackrec"
)

// ErrClosed is returned by WriteRTP after Close.
var ErrClosed = errors.New("muxer: track closed")

// Packet is an RTP packet carrying one Opus packet.
type Packet = rtp.Packet

// Stats describes what a Track has written so far.
type Stats struct {
	Start          time.Time // arrival time of the first packet = the file's start
	Packets        int64     // publisher packets written
	SilencePackets int64     // filler packets inserted
	SilenceSamples int64
	Duplicates     int64 // dropped: sequence number already written
	Late           int64 // dropped: entirely before what was written
	Malformed      int64 // dropped: not a valid Opus packet
	Resyncs        int64
	Samples        int64 // media length written, 48 kHz
	Bytes          int64 // container bytes written
}

// Options configure a Track.
type Options struct {
	// Open is called once, when the first packet arrives, with that packet's
	// arrival time (the file start) and the channel count read from its TOC.
	// It returns where the container goes.
	Open   func(start time.Time, channels int) (io.WriteCloser, error)
	Logger *slog.Logger // optional
}

// Track writes one RTP track's Opus payloads into an Ogg Opus file along the
// timeline described in the package doc. WriteRTP and Close may be called
// from different goroutines; Stats from any.
type Track struct {
	opts Options

	mu       sync.Mutex // serialises WriteRTP and Close
	out      io.WriteCloser
	ogg      *ogg.Writer
	stereo   bool
	err      error // sticky failure to open
	closed   bool
	closeErr error

	start   time.Time
	ssrc    uint32
	lastTS  uint32
	ext     int64 // unwrapped timestamp of the last packet
	base    int64 // unwrapped timestamp at position 0
	ref     int64 // lead over the arrival clock accepted at the last re-sync
	end     int64 // samples written
	seqMax  uint16
	seqMask uint64 // bit i: seqMax-i was written
	scratch []byte // silence packet being written

	statsMu sync.Mutex
	stats   Stats
}

// NewTrack returns a Track that opens its output on the first packet.
func NewTrack(o Options) *Track {
	return &Track{opts: o, scratch: make([]byte, 0, 16)}
}

// Stats returns a snapshot of the counters.
func (t *Track) Stats() Stats {
	t.statsMu.Lock()
	defer t.statsMu.Unlock()
	return t.stats
}

// WriteRTP writes p's payload, which arrived at arrival, to the file,
// preceded by silence if it leaves a hole, or drops it (see the package doc).
func (t *Track) WriteRTP(p *rtp.Packet, arrival time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	if t.err != nil {
		return t.err
	}
	if len(p.Payload) == 0 {
		return nil
	}
	n, err := PacketSamples(p.Payload)
	if err != nil {
		// A packet no decoder would accept is dropped: one bad packet from a
		// publisher must not end the recording of the track.
		t.count(func(s *Stats) { s.Malformed++ })
		if l := t.opts.Logger; l != nil {
			l.Debug("muxer: malformed packet dropped", "seq", p.SequenceNumber, "err", err)
		}
		return nil
	}
	if t.ogg == nil {
		if t.opts.Open == nil {
			return errors.New("muxer: Options.Open is nil")
		}
		if err := t.open(p, arrival); err != nil {
			t.err = err
			return err
		}
		return t.write(p, n)
	}

	// ns × 48 / 10^6 overflows after 6 years, ns × 48000 after 53 hours.
	arrivalPos := int64(arrival.Sub(t.start)) * (clockRate / 1000) / int64(time.Millisecond)
	var pos int64
	if p.SSRC != t.ssrc {
		t.ssrc, t.lastTS, t.ext = p.SSRC, p.Timestamp, int64(p.Timestamp)
		t.seqMask = 0
		pos = t.resync(arrivalPos, "ssrc changed")
	} else {
		back := t.seqAge(p.SequenceNumber)
		if back >= 0 && t.seqMask&(1<<back) != 0 {
			t.count(func(s *Stats) { s.Duplicates++ })
			t.debug("duplicate dropped", p, n)
			return nil
		}
		t.ext += int64(int32(p.Timestamp - t.lastTS))
		t.lastTS = p.Timestamp
		pos = t.ext - t.base
		// A reordered packet (a recent sequence number) that lies before end
		// is late, however long it took to arrive: not a reason to re-sync.
		stale := back > 0 && pos+int64(n) <= t.end
		if dev := pos - arrivalPos - t.ref; !stale && (dev > resyncBound || dev < -resyncBound) {
			pos = t.resync(arrivalPos, "rtp clock jumped")
		}
	}

	switch hole := pos - t.end; {
	case hole >= SilenceGranularity:
		if err := t.fill(hole); err != nil {
			return err
		}
	case pos+int64(n) <= t.end:
		t.count(func(s *Stats) { s.Late++ })
		t.debug("late packet dropped", p, n)
		return nil
	}
	return t.write(p, n)
}

func (t *Track) open(p *rtp.Packet, arrival time.Time) error {
	channels := 1
	if Stereo(p.Payload) {
		channels = 2
	}
	out, err := t.opts.Open(arrival, channels)
	if err != nil {
		return fmt.Errorf("muxer: open output: %w", err)
	}
	w, err := ogg.NewWriter(out, ogg.Header{Channels: uint8(channels), InputSampleRate: clockRate},
		ogg.Options{Vendor: vendor})
	if err != nil {
		_ = out.Close()
		return fmt.Errorf("muxer: start stream: %w", err)
	}
	t.out, t.ogg, t.stereo = out, w, channels == 2
	t.start = arrival
	t.ssrc, t.lastTS, t.ext, t.base = p.SSRC, p.Timestamp, int64(p.Timestamp), int64(p.Timestamp)
	t.count(func(s *Stats) { s.Start = arrival; s.Bytes = w.Bytes() })
	return nil
}

// resync re-bases the RTP clock so the current packet lands at arrivalPos,
// or at end if the file is already past it, and returns that position.
func (t *Track) resync(arrivalPos int64, reason string) int64 {
	pos := max(arrivalPos, t.end)
	if l := t.opts.Logger; l != nil {
		l.LogAttrs(context.Background(), slog.LevelInfo, "muxer: re-sync",
			slog.String("reason", reason), slog.Uint64("ssrc", uint64(t.ssrc)),
			slog.Int64("rtp_position", t.ext-t.base), slog.Int64("new_position", pos),
			slog.Int64("arrival_position", arrivalPos))
	}
	t.base = t.ext - pos
	t.ref = pos - arrivalPos
	t.count(func(s *Stats) { s.Resyncs++ })
	return pos
}

// fill writes silence covering hole rounded down to 2.5 ms.
func (t *Track) fill(hole int64) error {
	if l := t.opts.Logger; l != nil && l.Enabled(context.Background(), slog.LevelDebug) {
		l.LogAttrs(context.Background(), slog.LevelDebug, "muxer: filling hole",
			slog.Int64("at", t.end), slog.Int64("samples", hole))
	}
	var pkts, samples int64
	for {
		var n int
		t.scratch, n = appendSilence(t.scratch[:0], int(min(hole, maxPacketSamples)), t.stereo)
		if n == 0 {
			break
		}
		if err := t.ogg.WritePacket(t.scratch, t.end+int64(n)); err != nil {
			return fmt.Errorf("muxer: write silence: %w", err)
		}
		t.end += int64(n)
		hole -= int64(n)
		pkts++
		samples += int64(n)
	}
	t.count(func(s *Stats) {
		s.SilencePackets += pkts
		s.SilenceSamples += samples
		s.Samples = t.end
		s.Bytes = t.ogg.Bytes()
	})
	return nil
}

// write appends p's payload at end.
func (t *Track) write(p *rtp.Packet, n int) error {
	if err := t.ogg.WritePacket(p.Payload, t.end+int64(n)); err != nil {
		return fmt.Errorf("muxer: write packet %d: %w", p.SequenceNumber, err)
	}
	t.end += int64(n)
	t.markSeen(p.SequenceNumber)
	t.count(func(s *Stats) {
		s.Packets++
		s.Samples = t.end
		s.Bytes = t.ogg.Bytes()
	})
	return nil
}

// seqAge returns how many sequence numbers seq is behind the newest one
// written, or -1 if it is newer or more than seqWindow behind.
func (t *Track) seqAge(seq uint16) int {
	back := -int(int16(seq - t.seqMax))
	if back < 0 || back >= seqWindow || t.seqMask == 0 {
		return -1
	}
	return back
}

func (t *Track) markSeen(seq uint16) {
	switch d := int(int16(seq - t.seqMax)); {
	case t.seqMask == 0 || d >= seqWindow:
		t.seqMax, t.seqMask = seq, 1
	case d > 0:
		t.seqMax, t.seqMask = seq, t.seqMask<<d|1
	case -d < seqWindow:
		t.seqMask |= 1 << -d
	}
}

// count applies f to the stats under their lock.
func (t *Track) count(f func(*Stats)) {
	t.statsMu.Lock()
	f(&t.stats)
	t.statsMu.Unlock()
}

func (t *Track) debug(msg string, p *rtp.Packet, n int) {
	l := t.opts.Logger
	if l == nil || !l.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	l.LogAttrs(context.Background(), slog.LevelDebug, "muxer: "+msg,
		slog.Uint64("seq", uint64(p.SequenceNumber)), slog.Uint64("ts", uint64(p.Timestamp)),
		slog.Int64("position", t.ext-t.base), slog.Int("samples", n), slog.Int64("end", t.end))
}

// Close ends the stream (end-of-stream page) and closes the output. A track
// that never got a packet has nothing to close. Later calls return the first
// call's result.
func (t *Track) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return t.closeErr
	}
	t.closed = true
	if t.ogg == nil {
		return nil
	}
	err := t.ogg.Close()
	t.count(func(s *Stats) { s.Bytes = t.ogg.Bytes() })
	if cerr := t.out.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("muxer: close output: %w", cerr)
	}
	t.closeErr = err
	return err
}
