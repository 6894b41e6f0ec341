package muxer

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/trackrec/trackrec/muxer/opus"
)

// Timeline constants (see the package doc).
const (
	// minPreSkip is the least pre-skip written: RFC 7845's recommended 80 ms,
	// so players and validators never see an implausibly small value. The
	// samples it covers are leading silence.
	minPreSkip = 3840

	// holdBound: a packet whose delay (arrival position minus RTP position)
	// differs from the current mapping by more than this is a suspected
	// discontinuity, and packets are held until it is resolved.
	holdBound = 200 * opus.ClockRate / 1000
	// driftBound: the mapping is re-based when the least delayed packet of
	// the last driftWindow of arrivals is more than this far from it.
	driftBound   = 10 * opus.ClockRate / 1000
	driftBucket  = 500 * time.Millisecond
	driftBuckets = 10 // window of 5 s

	// switchGrace: packets of the previous SSRC that arrive this soon after
	// a switch are stragglers (late), not a switch back.
	switchGrace = time.Second

	seqHistory = 512  // sequence numbers behind the next expected one remembered
	maxSeqJump = 1000 // a sequence number further ahead than this is a discontinuity

	maxQueued        = 1000 // packets in the jitter buffer or the hold queue
	maxAnchorPackets = 2000 // packets held for the anchor window
	// maxFree pooled payload buffers are kept: the jitter window and a hold
	// need a few; the anchor window's second of them goes back to the
	// heap once the track is anchored, not kept for the track's life.
	maxFree = 16
	// minOwned is the least a pooled buffer holds: a 20 ms Opus packet
	// up to about 100 kbit/s fits, so buffers are reused, not regrown.
	minOwned = 256
)

type config struct {
	anchorWindow time.Duration
	jitterWindow time.Duration
	maxConceal   int64 // samples; -1: never conceal
	log          *slog.Logger
}

// entry is one publisher packet on its way through the timeline.
type entry struct {
	ssrc      uint32
	seq       uint16
	ts        uint32
	x         int64         // extended sequence number
	ext       int64         // extended RTP timestamp, set when placed
	at        time.Duration // arrival, since the track's first packet
	n         int           // samples
	data      []byte
	owned     bool // data is a pooled copy
	reordered bool // arrived after a packet with a higher sequence number
	trusted   bool // part of the set the anchor was estimated on
}

// timeline places packets on the file's timeline (see the package doc) and
// writes them, with the holes filled, to a Container. It is not safe for
// concurrent use.
type timeline struct {
	cfg  config
	open func(start time.Time, channels, preSkip int) (Container, error)
	c    Container
	st   *Stats
	err  error // sticky: open or write failure

	started bool
	epoch   time.Time     // arrival of the first packet
	now     time.Duration // latest arrival: time only advances with packets

	anchored bool
	pending  []entry // packets of the anchor window, in arrival order

	startAt time.Duration // file start, relative to epoch
	preSkip int64
	stereo  bool

	// Sequence stage: duplicates, reordering, loss.
	ssrc     uint32
	prevSSRC uint32
	switched bool
	switchAt time.Duration
	next     int64 // next extended sequence number expected
	hi       int64 // highest extended sequence number seen
	seen     [seqHistory / 64]uint64
	jb       []entry // jitter buffer, sorted by x
	cand     entry   // a packet far off the sequence: the start of a new one?
	hasCand  bool

	// Placement stage: position = ext - base, in samples of the decoded
	// timeline (0 = the file's start second).
	base, ext  int64
	lastTS     uint32
	haveTS     bool
	end        int64 // end of what is written, decoded timeline
	toc        byte  // TOC of the last publisher packet written
	haveTOC    bool
	hold       []entry
	holding    bool
	mustRebase bool          // the mapping is provisional (new SSRC)
	holdBest   int64         // least delay among the held packets
	holdBestAt time.Duration // arrival of the packet that last lowered it by more than driftBound
	drift      driftWindow

	scratch []byte
	free    [][]byte
}

// add takes one valid packet of n samples (payload is only borrowed).
func (t *timeline) add(ssrc uint32, seq uint16, ts uint32, payload []byte, n int, arrival time.Time) error {
	if t.err != nil {
		return t.err
	}
	if !t.started {
		t.started, t.epoch = true, arrival
	}
	e := entry{ssrc: ssrc, seq: seq, ts: ts, at: arrival.Sub(t.epoch), n: n, data: payload}
	t.now = max(t.now, e.at)
	if !t.anchored {
		if len(t.pending) == 0 || t.now-t.pending[0].at < t.cfg.anchorWindow && len(t.pending) < maxAnchorPackets {
			t.pending = append(t.pending, t.own(e))
			if t.cfg.anchorWindow > 0 {
				return nil
			}
			t.anchor() // no window: the first packet alone
			return t.err
		}
		t.anchor() // the window has passed: e is not part of it
		if t.err != nil {
			return t.err
		}
	}
	t.receive(e)
	t.tick()
	return t.err
}

// finish flushes everything held; the caller then closes the container.
func (t *timeline) finish() error {
	if !t.started || t.err != nil {
		return t.err
	}
	if !t.anchored {
		t.anchor()
		if t.err != nil {
			return t.err
		}
	}
	t.releaseJB(true)
	t.dropCand()
	if t.holding {
		t.resolve(true)
	}
	return t.err
}

// advanceLag is how far behind an arrival's position Advance writes
// silence: a packet arriving from now on lands at most holdBound before its
// arrival (later, it is held), and a 2.5 ms frame of rounding.
const advanceLag = holdBound + opus.MinFrameSamples

// advanceIdle: Advance does nothing while packets are still coming; the
// next one writes the track on.
const advanceIdle = 40 * time.Millisecond

// advance is Track.Advance.
func (t *timeline) advance(now time.Time, idle time.Duration) error {
	if !t.started || t.err != nil {
		return t.err
	}
	at := now.Sub(t.epoch)
	if at-t.now < idle {
		return nil
	}
	t.now = at
	if !t.anchored {
		if t.now-t.pending[0].at < t.cfg.anchorWindow {
			return nil
		}
		t.anchor()
		if t.err != nil {
			return t.err
		}
	}
	t.tick()
	if len(t.jb) > 0 || t.holding || t.hasCand || t.err != nil {
		return t.err
	}
	hole := t.arrPos(at) - advanceLag - t.end
	if hole < opus.MaxPacketSamples {
		return nil // whole packets of silence only, as a hole would get them
	}
	hole -= hole % opus.MaxPacketSamples
	// Silence, not concealment: this hole is longer than any concealment
	// and the one it continues is the same silence.
	t.haveTOC = false
	t.fill(hole)
	return t.err
}

// anchor estimates the wall-clock instant of the first packet's timestamp
// from the anchor window, opens the file on the second before it, and feeds
// the window's packets on.
func (t *timeline) anchor() {
	t.anchored = true
	p := t.pending
	t.pending = nil
	ssrc0 := p[0].ssrc
	hi := int64(p[0].seq)
	low := 0
	for i := range p {
		if p[i].ssrc != ssrc0 {
			continue
		}
		x := hi + int64(int16(p[i].seq-uint16(hi)))
		if x < hi {
			p[i].reordered = true
		}
		hi = max(hi, x)
		p[i].x = x
		p[i].ext = int64(int32(p[i].ts - p[0].ts))
		if x < p[low].x {
			low = i
		}
	}
	// offset(i): the arrival of packet i minus its RTP time since T0 (the
	// timestamp of the lowest sequence number): when T0 would have arrived
	// had packet i's delay applied. The least of these is the anchor. A packet
	// more than a window and a bound earlier than T0's own estimate cannot
	// be a late packet: its timestamp jumped, and it does not count.
	offset := func(i int) time.Duration { return p[i].at - opus.Duration(p[i].ext-p[low].ext) }
	floor := offset(low) - t.cfg.anchorWindow - opus.Duration(holdBound)
	best := offset(low)
	for i := range p {
		if p[i].ssrc == ssrc0 {
			if o := offset(i); o >= floor {
				p[i].trusted = true
				best = min(best, o)
			}
		}
	}
	anchor := t.epoch.Add(best).Round(time.Microsecond).UTC()
	start := anchor.Truncate(time.Second)
	lead := opus.Samples(anchor.Sub(start))
	silence := (lead + minPreSkip + opus.MinFrameSamples - 1) / opus.MinFrameSamples * opus.MinFrameSamples
	t.preSkip = silence - lead
	t.startAt = start.Sub(t.epoch)
	t.stereo = opus.Stereo(p[low].data)
	channels := 1
	if t.stereo {
		channels = 2
	}
	t.st.Anchor, t.st.Start, t.st.PreSkip = anchor, start, int(t.preSkip)
	c, err := t.open(start, channels, int(t.preSkip))
	if err != nil {
		t.err = err
		return
	}
	t.c = c
	t.st.Bytes = c.Bytes()
	t.end = -t.preSkip
	t.fill(t.preSkip + lead) // leading silence, S samples: nothing plays before the anchor
	t.lastTS, t.ext, t.haveTS = p[low].ts, int64(p[low].ts), true
	t.base = t.ext - lead
	t.debugf("anchored", slog.Time("anchor", anchor), slog.Time("start", start),
		slog.Int64("lead", lead), slog.Int64("pre_skip", t.preSkip))

	// The window's packets of the first SSRC in sequence order (the window
	// reorders them whatever their delay), then any others as they came.
	t.ssrc, t.next, t.hi = ssrc0, p[low].x, hi
	var first, rest []entry
	for _, e := range p {
		if e.ssrc == ssrc0 {
			first = append(first, e)
		} else {
			rest = append(rest, e)
		}
	}
	slices.SortStableFunc(first, func(a, b entry) int {
		if a.x != b.x {
			return cmpInt(a.x, b.x)
		}
		return cmpInt(int64(a.at), int64(b.at))
	})
	for _, e := range first {
		if !t.buffer(e) {
			continue
		}
		t.releaseJB(false)
	}
	for _, e := range rest {
		t.receive(e)
	}
	t.tick()
}

// receive runs a packet through the sequence stage.
func (t *timeline) receive(e entry) {
	if t.err != nil {
		t.recycle(e)
		return
	}
	if e.ssrc != t.ssrc {
		if t.switched && e.ssrc == t.prevSSRC && e.at-t.switchAt < switchGrace {
			t.st.Late++
			t.debugPkt("straggler of the previous SSRC dropped", e)
			t.recycle(e)
			return
		}
		t.switchSSRC(e)
	}
	e.x = t.hi + int64(int16(e.seq-uint16(t.hi)))
	switch d := e.x - t.next; {
	case d < -seqHistory || d > maxSeqJump:
		t.far(e)
		return
	case d < 0:
		if t.seenBit(e.x) {
			t.st.Duplicates++
			t.debugPkt("duplicate dropped", e)
		} else {
			t.st.Late++
			t.debugPkt("late packet dropped", e)
		}
		t.recycle(e)
		return
	}
	t.dropCand()
	if e.x < t.hi {
		e.reordered = true
	}
	t.hi = max(t.hi, e.x)
	if e.x == t.next && len(t.jb) == 0 {
		t.emit(e) // in order: straight through, payload still borrowed
		return
	}
	if t.buffer(e) {
		t.releaseJB(false)
	}
}

// buffer inserts e into the jitter buffer, or drops it as a duplicate.
func (t *timeline) buffer(e entry) bool {
	i, found := slices.BinarySearchFunc(t.jb, e.x, func(a entry, x int64) int { return cmpInt(a.x, x) })
	if found || e.x < t.next && t.seenBit(e.x) {
		t.st.Duplicates++
		t.debugPkt("duplicate dropped", e)
		t.recycle(e)
		return false
	}
	if e.x < t.next {
		t.st.Late++
		t.recycle(e)
		return false
	}
	t.jb = slices.Insert(t.jb, i, t.own(e))
	return true
}

// releaseJB emits buffered packets in sequence order: at once while they
// follow on, and past a missing sequence number once the oldest buffered
// packet has waited the jitter window (or all of them when all is set).
func (t *timeline) releaseJB(all bool) {
	for len(t.jb) > 0 && t.err == nil {
		h := t.jb[0]
		if h.x != t.next {
			if !all && len(t.jb) < maxQueued && t.now-t.oldestJB() < t.cfg.jitterWindow {
				return
			}
			t.skipTo(h.x)
		}
		t.jb = slices.Delete(t.jb, 0, 1)
		t.emit(h)
	}
}

func (t *timeline) oldestJB() time.Duration {
	at := t.jb[0].at
	for _, e := range t.jb[1:] {
		at = min(at, e.at)
	}
	return at
}

// emit passes the next packet in sequence order to placement.
func (t *timeline) emit(e entry) {
	t.setBit(e.x, true)
	t.next = e.x + 1
	if e.reordered {
		t.st.Reordered++
	}
	t.place(e)
}

// far handles a packet too far from the expected sequence number to be late
// or lost: a stray, or the start of a new numbering (same SSRC). Two packets
// in a row that follow each other there confirm a new numbering.
func (t *timeline) far(e entry) {
	if t.hasCand && e.ssrc == t.cand.ssrc {
		if d := int16(e.seq - t.cand.seq); d > 0 && d <= 16 {
			c := t.cand
			t.hasCand = false
			t.releaseJB(true)
			t.debugPkt("sequence numbers jumped", c)
			t.next, t.hi = c.x, c.x
			t.seen = [len(t.seen)]uint64{}
			t.emit(c)
			t.receive(e)
			return
		}
	}
	t.dropCand()
	t.cand, t.hasCand = t.own(e), true
}

func (t *timeline) dropCand() {
	if t.hasCand {
		t.hasCand = false
		t.st.Late++
		t.debugPkt("stray packet dropped", t.cand)
		t.recycle(t.cand)
	}
}

// switchSSRC ends the current SSRC's sequence and starts e's.
func (t *timeline) switchSSRC(e entry) {
	t.releaseJB(true)
	t.dropCand()
	if t.holding {
		t.resolve(true)
	}
	t.haveTS, t.mustRebase = false, true
	t.prevSSRC, t.switched, t.switchAt = t.ssrc, true, e.at
	t.ssrc = e.ssrc
	t.next, t.hi = int64(e.seq), int64(e.seq)
	t.seen = [len(t.seen)]uint64{}
}

func (t *timeline) skipTo(x int64) {
	if x-t.next >= seqHistory {
		t.seen = [len(t.seen)]uint64{}
	} else {
		for s := t.next; s < x; s++ {
			t.setBit(s, false)
		}
	}
	t.next = x
}

func (t *timeline) setBit(x int64, v bool) {
	i := uint64(x) % seqHistory
	if v {
		t.seen[i/64] |= 1 << (i % 64)
	} else {
		t.seen[i/64] &^= 1 << (i % 64)
	}
}

func (t *timeline) seenBit(x int64) bool {
	if x >= t.next || x < t.next-seqHistory {
		return false
	}
	i := uint64(x) % seqHistory
	return t.seen[i/64]&(1<<(i%64)) != 0
}

// place maps a packet in sequence order to its position and writes it, or
// holds it while a suspected discontinuity is resolved.
func (t *timeline) place(e entry) {
	if !t.haveTS {
		t.lastTS, t.ext, t.haveTS = e.ts, int64(e.ts), true
		if t.mustRebase {
			t.base = t.ext - t.arrPos(e.at) // provisional: resolved over the hold
		}
	} else {
		t.ext += int64(int32(e.ts - t.lastTS))
		t.lastTS = e.ts
	}
	e.ext = t.ext
	d := t.delay(e)
	if t.holding {
		t.hold = append(t.hold, t.own(e))
		if d < t.holdBest-driftBound {
			t.holdBestAt = e.at // a backlog draining: keep waiting
		}
		t.holdBest = min(t.holdBest, d)
		switch {
		case !t.mustRebase && abs(d) <= holdBound:
			t.resolve(false) // back on the mapping: it was a stall or jitter
		case len(t.hold) >= maxQueued:
			t.resolve(true)
		}
		return
	}
	if t.mustRebase || !e.trusted && abs(d) > holdBound {
		t.holding, t.holdBest, t.holdBestAt = true, d, e.at
		t.hold = append(t.hold[:0], t.own(e))
		if !t.mustRebase {
			t.debugPkt("suspected discontinuity: holding", e, slog.Int64("delay", d))
		}
		return
	}
	t.write(e)
	t.drift.add(e.at, d)
	t.checkDrift()
}

// tick releases what the jitter window no longer waits for and resolves a
// hold whose window has passed.
func (t *timeline) tick() {
	t.releaseJB(false)
	if t.holding && t.now-t.holdBestAt >= t.cfg.anchorWindow {
		t.resolve(true)
	}
}

// resolve ends a hold: if the window passed (or the track ends) without a
// packet back on the mapping, the mapping is re-based on the least delayed
// held packet; then the held packets are written.
func (t *timeline) resolve(expired bool) {
	if expired {
		dmin := t.delay(t.hold[0])
		for _, e := range t.hold[1:] {
			dmin = min(dmin, t.delay(e))
		}
		if t.mustRebase || abs(dmin) > holdBound {
			reason := "rtp behind arrival (timestamps jumped back or stood still)"
			switch {
			case t.mustRebase:
				reason = "ssrc changed"
			case dmin < 0:
				reason = "rtp ahead of arrival (timestamps jumped forward)"
			}
			t.rebase(dmin, reason)
		}
	}
	t.holding, t.mustRebase = false, false
	for i, e := range t.hold {
		d := t.delay(e)
		t.write(e)
		t.hold[i] = entry{}
		t.drift.add(e.at, d)
	}
	t.hold = t.hold[:0]
}

// checkDrift re-bases the mapping when the least delayed packet of a full
// drift window is more than driftBound away from it. A forward shift opens a
// hole: it is rounded to the nearest whole number of frames (at least one;
// frames up to 20 ms, else 2.5 ms steps) so that concealment fills it. A
// backward shift is exact: it costs no audio, the next holes absorb it.
func (t *timeline) checkDrift() {
	m, ok := t.drift.min()
	if !ok {
		return
	}
	switch {
	case m > driftBound:
		f := int64(opus.MinFrameSamples)
		if t.haveTOC && opus.FrameSamples(t.toc) <= 2*driftBound {
			f = int64(opus.FrameSamples(t.toc))
		}
		t.rebase(max((m+f/2)/f, 1)*f, "drift: rtp slower than arrival")
	case m < -driftBound:
		t.rebase(m, "drift: rtp faster than arrival")
	}
}

// rebase moves the mapping so that packets land shift samples later.
func (t *timeline) rebase(shift int64, reason string) {
	t.base -= shift
	t.st.Resyncs++
	t.drift.reset()
	if l := t.cfg.log; l != nil {
		l.LogAttrs(context.Background(), slog.LevelInfo, "muxer: re-sync",
			slog.String("reason", reason), slog.Uint64("ssrc", uint64(t.ssrc)),
			slog.Int64("shift", shift), slog.Int64("end", t.end))
	}
}

// delay is how many samples after its mapped position a packet arrived.
func (t *timeline) delay(e entry) int64 { return t.arrPos(e.at) - (e.ext - t.base) }

// arrPos is an arrival time as a position on the decoded timeline.
func (t *timeline) arrPos(at time.Duration) int64 { return opus.Samples(at - t.startAt) }

// write puts a publisher packet at its mapped position, filling the hole
// before it. A packet mapped before the end of what is written goes at the
// end: the file never moves back, and the next hole absorbs the difference.
func (t *timeline) write(e entry) {
	defer t.recycle(e)
	if t.err != nil {
		return
	}
	pos := e.ext - t.base
	if hole := pos - t.end; hole >= opus.MinFrameSamples/2 {
		t.fill(hole)
	} else if hole < 0 {
		t.debugPkt("packet written after its position", e, slog.Int64("position", pos))
	}
	t.put(e.data, e.n)
	t.toc, t.haveTOC = e.data[0], true
	t.st.Packets++
}

// fill covers hole, rounded to the nearest 2.5 ms, with concealment or
// silence.
func (t *timeline) fill(hole int64) {
	hole = (hole + opus.MinFrameSamples/2) / opus.MinFrameSamples * opus.MinFrameSamples
	if t.haveTOC && hole <= t.cfg.maxConceal {
		f := int64(opus.FrameSamples(t.toc))
		for frames := int(hole / f); frames > 0 && t.err == nil; {
			var k int
			t.scratch, k = opus.AppendPLC(t.scratch[:0], t.toc, frames)
			t.put(t.scratch, k*int(f))
			frames -= k
			hole -= int64(k) * f
			t.st.ConcealmentPackets++
			t.st.ConcealmentSamples += int64(k) * f
		}
	}
	for t.err == nil {
		var n int
		t.scratch, n = opus.AppendSilence(t.scratch[:0], int(min(hole, opus.MaxPacketSamples)), t.stereo)
		if n == 0 {
			return
		}
		t.put(t.scratch, n)
		hole -= int64(n)
		t.st.SilencePackets++
		t.st.SilenceSamples += int64(n)
	}
}

// put writes one packet at the end.
func (t *timeline) put(p []byte, n int) {
	if t.err != nil {
		return
	}
	if err := t.c.WritePacket(p, t.end+t.preSkip, n); err != nil {
		t.err = fmt.Errorf("muxer: write: %w", err)
		return
	}
	t.end += int64(n)
	t.st.Samples = max(t.end, 0)
	t.st.Bytes = t.c.Bytes()
}

// release lets go of what the timeline holds once its track is closed:
// the buffers, the queues and the container (a closed recording stays in
// the history, its tracks with it).
func (t *timeline) release() {
	t.pending, t.jb, t.hold, t.free, t.scratch = nil, nil, nil, nil, nil
	t.cand = entry{}
	t.c = nil
}

// own makes e's payload a pooled copy.
func (t *timeline) own(e entry) entry {
	if e.owned {
		return e
	}
	var b []byte
	if k := len(t.free); k > 0 {
		b, t.free = t.free[k-1], t.free[:k-1]
	}
	if cap(b) < len(e.data) {
		b = make([]byte, 0, max(len(e.data), minOwned))
	}
	e.data, e.owned = append(b[:0], e.data...), true
	return e
}

// recycle returns e's payload to the pool.
func (t *timeline) recycle(e entry) {
	if e.owned && len(t.free) < maxFree {
		t.free = append(t.free, e.data[:0])
	}
}

func (t *timeline) debugPkt(msg string, e entry, attrs ...slog.Attr) {
	l := t.cfg.log
	if l == nil || !l.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	attrs = append(attrs, slog.Uint64("ssrc", uint64(e.ssrc)), slog.Uint64("seq", uint64(e.seq)),
		slog.Uint64("ts", uint64(e.ts)), slog.Duration("arrival", e.at), slog.Int64("end", t.end))
	l.LogAttrs(context.Background(), slog.LevelDebug, "muxer: "+msg, attrs...)
}

func (t *timeline) debugf(msg string, attrs ...slog.Attr) {
	if l := t.cfg.log; l != nil {
		l.LogAttrs(context.Background(), slog.LevelDebug, "muxer: "+msg, attrs...)
	}
}

// driftWindow keeps the least delay seen in each of the last driftBuckets
// intervals of arrival time.
type driftWindow struct {
	valid      bool
	start, cur int64 // bucket index of the first arrival since the reset, and of the newest
	judged     bool
	last       int64 // cur when min last answered
	has        [driftBuckets]bool
	mins       [driftBuckets]int64
}

func (w *driftWindow) reset() { w.valid = false }

func (w *driftWindow) add(at time.Duration, d int64) {
	b := int64(at / driftBucket)
	if at < 0 {
		b-- // floor
	}
	if !w.valid {
		*w = driftWindow{valid: true, start: b, cur: b}
	}
	if b > w.cur {
		for k := w.cur + 1; k <= b && k <= w.cur+driftBuckets; k++ {
			w.has[slot(k)] = false
		}
		w.cur = b
	}
	if b <= w.cur-driftBuckets || b < w.start {
		return
	}
	i := slot(b)
	if !w.has[i] || d < w.mins[i] {
		w.has[i], w.mins[i] = true, d
	}
}

// min returns the least delay over the window, if the window has run its
// full length since the last reset and at least half of its intervals saw
// a packet (so a burst after a stall is not judged on its own). It answers
// once per interval.
func (w *driftWindow) min() (int64, bool) {
	if !w.valid || w.cur-w.start < driftBuckets-1 || w.judged && w.last == w.cur {
		return 0, false
	}
	w.judged, w.last = true, w.cur
	m, n := int64(0), 0
	for i := range driftBuckets {
		if w.has[i] {
			if n == 0 || w.mins[i] < m {
				m = w.mins[i]
			}
			n++
		}
	}
	return m, n >= driftBuckets/2
}

func slot(b int64) int64 {
	i := b % driftBuckets
	if i < 0 {
		i += driftBuckets
	}
	return i
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
