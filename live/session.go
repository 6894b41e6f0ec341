package live

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"time"

	"github.com/trackrec/trackrec/live/libopus"
	"github.com/trackrec/trackrec/live/resample"
	"github.com/trackrec/trackrec/muxer"
	"github.com/trackrec/trackrec/muxer/ogg"
	"github.com/trackrec/trackrec/muxer/opus"
)

// Formats a consumer can ask for.
const (
	FormatOgg = "ogg" // the recording's Ogg Opus pages
	FormatPCM = "pcm" // signed 16-bit little-endian PCM, interleaved
)

// Request is what a consumer asks for.
type Request struct {
	Room, Participant string
	// Track, if set, names the track: the session ends with it. Empty: the
	// participant's microphone track, then each track it publishes next,
	// for as long as it is recorded.
	Track    string
	Format   string // FormatOgg (default) or FormatPCM
	Rate     int    // PCM: 8000, 12000, 16000 (default), 24000 or 48000
	Channels int    // PCM: 1 (default) or 2
	// From, if set, starts at that position into the track's file (replayed
	// from disk, then live); otherwise the session starts at the live edge.
	From *time.Duration
	// Follow continues an Ogg session with the participant's next track
	// (as a new logical stream, after a "track" message); a plain HTTP
	// response cannot tell its client, so it ends with the track instead.
	// PCM sessions follow whenever Track is empty.
	Follow bool
}

// Sink is where a session's output goes: Audio gets the stream's bytes,
// Message its JSON messages (a plain HTTP sink drops them).
type Sink interface {
	Audio(b []byte) error
	Message(m Message) error
}

// Message is one JSON message of a WebSocket session (see the package doc).
type Message struct {
	Type            string     `json:"type"`
	Room            string     `json:"room,omitempty"`
	Participant     string     `json:"participant,omitempty"`
	ParticipantName string     `json:"participant_name,omitempty"`
	Track           string     `json:"track,omitempty"`
	Source          string     `json:"source,omitempty"`
	Format          string     `json:"format,omitempty"`
	Rate            int        `json:"rate,omitempty"`
	Channels        int        `json:"channels,omitempty"`
	FileStart       *time.Time `json:"file_start,omitempty"`
	// Samples is the session's sample count (per channel) at the instant
	// At: PCM samples sent before it. Ogg: the granule position.
	Samples *int64 `json:"samples,omitempty"`
	// Position is seconds into the track's file at At: what from= takes.
	Position *float64  `json:"position,omitempty"`
	At       time.Time `json:"at,omitzero"`
	Muted    *bool     `json:"muted,omitempty"`
	Reason   string    `json:"reason,omitempty"`
}

// Session is one consumer of a live stream.
type Session struct {
	hub *Hub
	req Request
	pcm []int16
	out []byte

	served map[*Stream]bool
	// PCM clock: sample j of the session plays at t0 + j/rate.
	t0     time.Time
	sent   int64 // samples per channel sent
	marked int64 // sample count of the last position message
}

// Open checks a request and finds what it asks for. It fails with
// ErrNotFound when the participant (or the named track) is not being
// recorded here, and with a descriptive error for a request it cannot
// serve; nothing is sent until Run.
func (h *Hub) Open(req Request) (*Session, error) {
	if req.Format == "" {
		req.Format = FormatOgg
	}
	switch req.Format {
	case FormatOgg:
	case FormatPCM:
		if req.Rate == 0 {
			req.Rate = 16000
		}
		if req.Channels == 0 {
			req.Channels = 1
		}
		if !libopus.ValidRate(req.Rate) {
			return nil, fmt.Errorf("rate %d: want 8000, 12000, 16000, 24000 or 48000", req.Rate)
		}
		if req.Channels != 1 && req.Channels != 2 {
			return nil, fmt.Errorf("channels %d: want 1 or 2", req.Channels)
		}
	default:
		return nil, fmt.Errorf("format %q: want %q or %q", req.Format, FormatOgg, FormatPCM)
	}
	if req.From != nil && *req.From < 0 {
		return nil, fmt.Errorf("from %v: want a position of 0 or more", *req.From)
	}
	s, _, ok := h.pick(req.Room, req.Participant, req.Track, nil)
	if !ok || req.Track != "" && s == nil {
		return nil, ErrNotFound
	}
	if s != nil && s.info.Format != muxer.FormatOgg && (req.Format == FormatOgg || req.From != nil) {
		return nil, fmt.Errorf("%w: track %s is recorded as %s: live Ogg and from= need an Ogg recording; ask for format=pcm without from", ErrFormat, s.info.TrackSID, s.info.Format)
	}
	return &Session{hub: h, req: req, served: make(map[*Stream]bool)}, nil
}

// Request is what the session serves, its defaults filled in.
func (ss *Session) Request() Request { return ss.req }

// ErrFormat: the track's recording cannot serve what was asked.
var ErrFormat = errors.New("live: format not available")

// Run sends the stream to sink until it ends (nil), ctx ends, the sink
// fails, or the consumer falls behind (ErrBehind).
func (ss *Session) Run(ctx context.Context, sink Sink) error {
	ss.hub.consumers.Add(1)
	defer ss.hub.consumers.Add(-1)
	err := ss.run(ctx, sink)
	if errors.Is(err, ErrBehind) {
		ss.hub.dropped.Add(1)
	}
	return err
}

func (ss *Session) run(ctx context.Context, sink Sink) error {
	for {
		s, err := ss.wait(ctx)
		if err != nil || s == nil {
			if err == nil {
				err = sink.Message(Message{Type: "end", Reason: "recording stopped", At: time.Now().UTC()})
			}
			return err
		}
		first := len(ss.served) == 0
		ss.served[s] = true
		if err := ss.serve(ctx, s, sink, first); err != nil {
			return err
		}
		if ss.req.Track != "" || ss.req.Format == FormatOgg && !ss.req.Follow {
			return sink.Message(Message{Type: "end", Reason: "track ended", At: time.Now().UTC()})
		}
		ss.req.From = nil // a position is into the first track's file
	}
}

// wait returns the next stream to serve, or nil once the participant is
// no longer recorded here.
func (ss *Session) wait(ctx context.Context) (*Stream, error) {
	for {
		s, changed, ok := ss.hub.pick(ss.req.Room, ss.req.Participant, ss.req.Track, ss.served)
		switch {
		case !ok:
			return nil, nil
		case s != nil:
			return s, nil
		case ss.req.Track != "" && len(ss.served) > 0:
			return nil, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// serve sends one stream from its start (or From) until it ends.
func (ss *Session) serve(ctx context.Context, s *Stream, sink Sink, first bool) error {
	// Wait for the file to open: its start and pre-skip fix every position.
	var snap snapshot
	c := s.attach()
	defer func() { s.detach(c) }()
	for {
		var begun, ended bool
		snap, begun, ended = s.begunOrEnded()
		if begun {
			break
		}
		if ended {
			return nil // closed before any audio: no file
		}
		select {
		case <-c.wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if s.info.Format != muxer.FormatOgg && (ss.req.Format == FormatOgg || ss.req.From != nil) {
		// A track published later may be recorded otherwise than the one
		// the session began with.
		_ = sink.Message(Message{Type: "end", Reason: "track " + s.info.TrackSID + " is recorded as " + s.info.Format + ": live Ogg and from= need an Ogg recording", At: time.Now().UTC()})
		return fmt.Errorf("%w: track %s is recorded as %s", ErrFormat, s.info.TrackSID, s.info.Format)
	}
	t := &trackOut{ss: ss, s: s, snap: snap, sink: sink, first: first}
	if ss.req.Format == FormatPCM {
		// A decoder per track: a new track's stream starts from scratch.
		// libopus decodes at 48 kHz, as a file's player does; a lower rate
		// is resampled from that (package resample).
		d, err := libopus.NewDecoder(opus.ClockRate, ss.req.Channels)
		if err != nil {
			return err
		}
		defer d.Close()
		t.dec = d
		if ss.pcm == nil {
			ss.pcm = make([]int16, opus.ClockRate*ss.req.Channels*libopus.MaxFrameMs/1000)
		}
		_ = t.begin() // prepares the start message, sent with the first sample
	}
	if ss.req.From != nil {
		t.from = opus.Samples(*ss.req.From)
		t.hasFrom = true
		t.lo = int64(math.Round(ss.req.From.Seconds() * float64(ss.req.Rate)))
		// Replay the file first, reattaching once caught up: pages written
		// since are on disk or in the ring, never neither. Passes go on
		// detached until one is short, so the last one, attached, cannot
		// take long enough to fall behind.
		s.detach(c)
		for {
			n, err := t.replay()
			if err != nil {
				return err
			}
			if n <= replayShort {
				break
			}
		}
		c = s.attach()
	}
	return t.live(ctx, c)
}

// trackOut sends one stream to a sink.
type trackOut struct {
	ss   *Session
	s    *Stream
	snap snapshot
	sink Sink

	from    int64 // decoded position (48 kHz) asked for
	hasFrom bool
	lo      int64               // PCM: the first output index sent (from's, else 0)
	rs      *resample.Decimator // PCM below 48 kHz; made at the first sample
	out     []int16
	dec     *libopus.Decoder

	first    bool
	started  bool
	startMsg *Message // PCM: sent with the first sample
	clocked  bool
	jOff     int64 // PCM: session sample = track output index + jOff
	// Where what was sent ends: the last page's sequence number (Ogg), the
	// raw end of the last packet (PCM).
	off     int64 // replay: file offset of the next page
	lastSeq uint32
	haveSeq bool
	end     int64
	haveEnd bool
	buf     []byte
	pkts    [][]byte
}

// replayShort is a replay pass short enough (pages, about 2 s of audio)
// to be the last one before the ring takes over.
const replayShort = 4

// replay sends what the file holds from the position asked for, and
// returns the pages it read.
func (t *trackOut) replay() (int, error) {
	f, err := os.Open(t.snap.path)
	if err != nil {
		return 0, fmt.Errorf("live: replay: %w", err)
	}
	defer f.Close()
	tries, pages := 0, 0
	for {
		p, err := ogg.ReadPageAt(f, t.off, t.buf)
		switch {
		case err == io.EOF:
			return pages, nil
		case errors.Is(err, ogg.ErrIncomplete):
			// Being written: a page goes out in one write, so a moment
			// later it is whole.
			if tries++; tries > 50 {
				return pages, nil
			}
			time.Sleep(2 * time.Millisecond)
			continue
		case err != nil:
			return pages, fmt.Errorf("live: replay: %w", err)
		}
		pages++
		tries = 0
		t.buf = p.Raw[:cap(p.Raw)]
		t.off += int64(len(p.Raw))
		if p.Granule == 0 || p.Seq < 2 {
			continue // the header pages: sent from memory
		}
		if err := t.diskPage(p); err != nil {
			return pages, err
		}
		if p.EOS() {
			return pages, nil
		}
	}
}

// diskPage sends a page read back from the file.
func (t *trackOut) diskPage(p ogg.Page) error {
	if t.ss.req.Format == FormatOgg {
		return t.page(p.Raw, p.Granule, p.Seq)
	}
	// The packets of a page follow the previous page's granule: the
	// timeline leaves no gaps.
	pos := int64(0)
	if t.haveEnd {
		pos = t.end
	}
	t.pkts = p.Packets(t.pkts[:0])
	for _, pk := range t.pkts {
		if p.EOS() && pos >= p.Granule {
			break // the writer's end filler: past the stream's end, it does not play
		}
		n, err := opus.PacketSamples(pk)
		if err != nil {
			return fmt.Errorf("live: replay: packet at %d: %w", pos, err)
		}
		if err := t.packet(pk, pos, n); err != nil {
			return err
		}
		pos += int64(n)
	}
	return nil
}

// live sends from the ring until the stream ends.
func (t *trackOut) live(ctx context.Context, c *cursor) error {
	ss := t.ss
	pcm := ss.req.Format == FormatPCM
	// Catch up with the file once more: pages written between the replay
	// and the attach are on disk, and later ones in the ring.
	synced := true
	if t.hasFrom {
		if _, err := t.replay(); err != nil {
			return err
		}
		// PCM: the ring's packets start at the attach; those between the
		// file's end and the attach reach the file with the next page.
		synced = !pcm
	}
	if !t.hasFrom {
		if err := t.begin(); err != nil {
			return err
		}
	}
	var e entry
	var held []entry // PCM replay: ring packets past the file's end
	flush := func() error {
		end := int64(0) // a file without audio yet reaches the start only
		if t.haveEnd {
			end = t.end
		}
		if len(held) == 0 || held[0].pos > end {
			return nil // the file does not reach them yet
		}
		for _, h := range held {
			if err := t.ringPacket(h); err != nil {
				return err
			}
		}
		held, synced = held[:0], true
		return nil
	}
	for {
		ok, err := t.s.read(c, &e)
		if errors.Is(err, errEnded) {
			break
		}
		if err != nil {
			return err
		}
		if !ok {
			select {
			case <-c.wake:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		switch e.kind {
		case kindMuted, kindUnmuted:
			typ := "unmuted"
			if e.kind == kindMuted {
				typ = "muted"
			}
			if err := t.sink.Message(Message{Type: typ, Track: t.s.info.TrackSID, At: e.at.UTC()}); err != nil {
				return err
			}
		case kindPage:
			if !pcm {
				if t.haveSeq && e.seq <= t.lastSeq {
					continue // the replay sent it
				}
				if err := t.page(e.data, e.pos, e.seq); err != nil {
					return err
				}
				continue
			}
			if !synced && len(held) > 0 {
				if _, err := t.replay(); err != nil {
					return err
				}
				if err := flush(); err != nil {
					return err
				}
			}
		case kindPacket:
			if !pcm {
				continue
			}
			if !synced {
				held = append(held, cloneEntry(e))
				if err := flush(); err != nil {
					return err
				}
				continue
			}
			if err := t.ringPacket(e); err != nil {
				return err
			}
		}
	}
	if !synced {
		if _, err := t.replay(); err != nil {
			return err
		}
		for _, h := range held {
			if err := t.ringPacket(h); err != nil {
				return err
			}
		}
	}
	if !t.haveEnd {
		return nil
	}
	if pcm {
		if err := t.flush(); err != nil {
			return err
		}
	}
	end := float64(t.end-int64(t.snap.preSkip)) / opus.ClockRate
	return t.sink.Message(Message{Type: "track_ended", Track: t.s.info.TrackSID, Position: &end, At: t.utc(t.end)})
}

func cloneEntry(e entry) entry {
	e.data = append([]byte(nil), e.data...)
	return e
}

// ringPacket sends a packet from the ring unless the replay sent it.
func (t *trackOut) ringPacket(e entry) error {
	if t.haveEnd && e.pos < t.end {
		return nil
	}
	return t.packet(e.data, e.pos, e.samples)
}

// utc is the instant a raw position plays.
func (t *trackOut) utc(raw int64) time.Time {
	return t.snap.start.Add(opus.Duration(raw - int64(t.snap.preSkip))).UTC()
}

// begin prepares the start message (for a following track, "track") and,
// for Ogg, sends it with the header pages. PCM sends it with the first
// sample, whose instant it names.
func (t *trackOut) begin() error {
	if t.started {
		return nil
	}
	t.started = true
	ss := t.ss
	info := t.s.info
	muted := t.snap.muted
	m := Message{
		Type: "start", Room: info.Room, Participant: info.Participant, ParticipantName: info.ParticipantName,
		Track: info.TrackSID, Source: info.Source, Format: ss.req.Format, FileStart: &t.snap.start, Muted: &muted,
	}
	if !t.first {
		m.Type = "track"
	}
	if ss.req.Format == FormatPCM {
		m.Rate, m.Channels = ss.req.Rate, ss.req.Channels
		t.startMsg = &m
		return nil
	}
	if err := t.sink.Message(m); err != nil {
		return err
	}
	return t.audio(t.snap.head)
}

func (t *trackOut) audio(b []byte) error {
	if err := t.sink.Audio(b); err != nil {
		return err
	}
	t.ss.hub.sent.Add(int64(len(b)))
	return nil
}

// page sends an Ogg page with the given granule and sequence number,
// unless it ends at or before the position asked for.
func (t *trackOut) page(raw []byte, granule int64, seq uint32) error {
	if t.hasFrom && !t.haveSeq && granule-int64(t.snap.preSkip) <= t.from {
		return nil
	}
	if err := t.begin(); err != nil {
		return err
	}
	if err := t.audio(raw); err != nil {
		return err
	}
	t.lastSeq, t.haveSeq = seq, true
	t.end, t.haveEnd = granule, true
	pos := float64(granule-int64(t.snap.preSkip)) / opus.ClockRate
	g := granule
	return t.sink.Message(Message{Type: "position", Track: t.s.info.TrackSID, Samples: &g, Position: &pos, At: t.utc(granule)})
}

// preRoll is how much audio before a PCM replay's position is decoded and
// dropped, so the decoder's state is that of a continuous decode. RFC 7845
// (section 4.6) asks for at least 80 ms, which brings the decoder close;
// libopus's state (CELT's energy prediction) takes about a second more to
// become identical to a decode from the start, and 3 s costs a few
// milliseconds of CPU once per resume.
const preRoll = 3 * opus.ClockRate

// maxFill bounds the silence a PCM session sends for the time between two
// tracks; a longer absence restarts its clock (the track message says
// where).
const maxFill = time.Minute

// packet decodes and sends a PCM packet at raw on the track's timeline.
func (t *trackOut) packet(p []byte, raw int64, n int) error {
	ss := t.ss
	t.end, t.haveEnd = raw+int64(n), true
	rate, ch := int64(ss.req.Rate), ss.req.Channels
	m := opus.ClockRate / rate
	pos := raw - int64(t.snap.preSkip) // decoded position at 48 kHz: 0 is the file's start
	if pos+int64(n) <= t.lo*m-preRoll {
		return nil // before the pre-roll: not decoded at all
	}
	k, err := t.dec.Decode(p, ss.pcm)
	if err != nil {
		// The packet was accepted into the file; a decoder that refuses it
		// conceals it instead, keeping the clock.
		if k, err = t.dec.Decode(nil, ss.pcm[:n*ch]); err != nil {
			return fmt.Errorf("live: decode: %w", err)
		}
	}
	frames := ss.pcm[:k*ch]
	if pos < 0 { // the pre-skip
		drop := min(-pos, int64(k))
		frames, pos = frames[drop*int64(ch):], pos+drop
	}
	if len(frames) == 0 {
		return nil
	}
	if m == 1 {
		return t.emitFrom(frames, pos)
	}
	if t.rs == nil {
		if t.rs, err = resample.New(int(rate), ch, pos); err != nil {
			return err
		}
	}
	idx := t.rs.Next()
	t.out = t.rs.Write(frames, t.out[:0])
	return t.emitFrom(t.out, idx)
}

// flush sends what the resampler holds back at the track's end.
func (t *trackOut) flush() error {
	if t.rs == nil || !t.haveEnd {
		return nil
	}
	idx := t.rs.Next()
	t.out = t.rs.Flush(t.end-int64(t.snap.preSkip), t.out[:0])
	return t.emitFrom(t.out, idx)
}

// emitFrom sends samples from output index idx, those before t.lo left out.
func (t *trackOut) emitFrom(samples []int16, idx int64) error {
	ch := int64(t.ss.req.Channels)
	if idx < t.lo {
		drop := min(t.lo-idx, int64(len(samples))/ch)
		samples, idx = samples[drop*ch:], idx+drop
	}
	if len(samples) == 0 {
		return nil
	}
	return t.emit(samples, idx)
}

// emit sends samples that start at output index idx of the track on the
// session's clock: the time between tracks is silence, an overlap is not
// sent twice.
func (t *trackOut) emit(pcm []int16, idx int64) error {
	ss := t.ss
	rate, ch := int64(ss.req.Rate), int64(ss.req.Channels)
	at := t.snap.start.Add(time.Duration(idx) * time.Second / time.Duration(rate))
	if !t.clocked {
		t.clocked = true
		if ss.t0.IsZero() {
			ss.t0 = at
		}
		j := int64(math.Round(at.Sub(ss.t0).Seconds() * float64(rate)))
		if gap := j - ss.sent; gap > 0 && time.Duration(gap)*time.Second/time.Duration(rate) > maxFill {
			// Too long to fill: the clock restarts here.
			ss.t0 = at.Add(-time.Duration(ss.sent) * time.Second / time.Duration(rate))
			j = ss.sent
		}
		t.jOff = j - idx
	}
	j := idx + t.jOff
	if gap := j - ss.sent; gap > 0 {
		if err := t.silence(gap); err != nil {
			return err
		}
	} else if gap < 0 {
		drop := min(-gap, int64(len(pcm))/ch)
		pcm = pcm[drop*ch:]
		idx += drop
		if len(pcm) == 0 {
			return nil
		}
	}
	if t.startMsg != nil {
		m := *t.startMsg
		t.startMsg = nil
		sent, pos := ss.sent, float64(idx)/float64(rate)
		m.Samples, m.Position, m.At = &sent, &pos, ss.t0.Add(time.Duration(sent)*time.Second/time.Duration(rate)).UTC()
		if err := t.sink.Message(m); err != nil {
			return err
		}
	}
	if err := t.write(pcm); err != nil {
		return err
	}
	if ss.sent-ss.marked >= rate {
		ss.marked = ss.sent - ss.sent%rate
		sent := ss.sent
		pos := float64(idx+int64(len(pcm))/ch) / float64(rate)
		if err := t.sink.Message(Message{Type: "position", Track: t.s.info.TrackSID, Samples: &sent, Position: &pos,
			At: ss.t0.Add(time.Duration(sent) * time.Second / time.Duration(rate)).UTC()}); err != nil {
			return err
		}
	}
	return nil
}

// silence sends n samples (per channel) of zeros.
func (t *trackOut) silence(n int64) error {
	ch := int64(t.ss.req.Channels)
	zero := make([]int16, min(n, int64(t.ss.req.Rate))*ch)
	for n > 0 {
		k := min(n, int64(len(zero))/ch)
		if err := t.write(zero[:k*ch]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// write sends PCM as signed 16-bit little-endian.
func (t *trackOut) write(pcm []int16) error {
	ss := t.ss
	ss.out = ss.out[:0]
	for _, v := range pcm {
		ss.out = append(ss.out, byte(v), byte(uint16(v)>>8))
	}
	if err := t.audio(ss.out); err != nil {
		return err
	}
	ss.sent += int64(len(pcm) / ss.req.Channels)
	return nil
}
