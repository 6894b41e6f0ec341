// Package muxer records one Opus RTP track into an Ogg Opus or WebM file
// without transcoding: each publisher payload is written byte for byte on a
// timeline anchored to wall-clock time, and every hole is filled with Opus
// packets that request loss concealment or decode to digital silence, so the
// file starts exactly on the second named by its start and plays for as long
// as the track was recorded.
//
// # Timeline
//
// Samples are at 48 kHz (opus.ClockRate), the Opus RTP clock (RFC 7587), the
// Ogg granule rate and the WebM block timestamps' base; package opus holds
// the Opus rules used here (packet durations, OpusHead, silence and
// concealment packets). A timeline (container-agnostic) feeds a Container in
// order: *ogg.Writer or *webm.Writer, both with
// WritePacket(payload, start, samples), start being where the packet begins
// on the raw timeline and samples its duration; the packets follow one
// another without gaps (the timeline fills every hole). Positions below are
// on the decoded timeline: 0 is the file's start second; the raw position
// adds the pre-skip. Time only advances with packet arrivals (no timers);
// Close flushes everything held.
//
// Anchor. The first AnchorWindow (default 1 s) of arrival time is held in
// memory. Over the packets of the first SSRC in it, with T0 the timestamp of
// the lowest sequence number, anchor = min over packets of
// arrival - (ts - T0)/48000: the arrival of the least delayed packet, carried
// back to T0, so a late subscribe burst does not drag it. A packet whose
// estimate is more than AnchorWindow + 200 ms before T0's own has a jumped
// timestamp and is left out. Stats.Anchor is rounded to the microsecond.
//
// Second-aligned start. The file starts at the UTC second at or before the
// anchor (Stats.Start, passed to Options.Open, which names the file).
// lead = anchor - start in samples (rounded). The file begins with S samples
// of digital silence, S the smallest multiple of 120 (2.5 ms) with
// S >= lead + 3840, and OpusHead pre-skip (WebM CodecDelay) = S - lead, in
// [3840, 3960): the first publisher sample plays exactly lead samples after
// the start, and the pre-skip is never below RFC 7845's recommended 80 ms.
//
// Mapping. position = ts_ext - base, ts_ext the RTP timestamp unwrapped
// across the 32-bit wrap-around (consecutive packets in sequence order less
// than 2^31 samples apart); initially base = T0 - lead. A packet's delay is
// arrivalPosition - position, arrivalPosition = (arrival - start) × 48000.
// The anchor makes the least delay 0; re-syncs (below) keep it near 0.
//
// Sequence stage. Sequence numbers are extended (16-bit unwrapped) per SSRC.
// A packet with the next expected number passes at once; others wait in a
// jitter buffer sorted by sequence number, and a missing number is waited
// for until the oldest buffered packet has waited JitterWindow (default
// 60 ms of arrival time), then given up. A number already written (among the
// last 512) or already buffered is a duplicate: dropped, Stats.Duplicates. A
// number behind the next expected one that was given up is late: dropped,
// Stats.Late, never written out of order. A packet written after a packet
// with a higher number arrived counts in Stats.Reordered. The anchor
// window's own packets are sorted by sequence number whatever their delay. A
// number more than 1000 ahead or 512 behind is a stray unless the next
// packet follows it (within 16), which starts a new numbering; a stray is
// dropped as late. On an SSRC change the buffer is flushed; packets of the
// previous SSRC that arrive within 1 s are stragglers (late).
//
// Placement, holds and re-syncs. Packets leave the sequence stage in order.
// The bound is 200 ms:
//   - A packet whose delay is within ±200 ms is written at its position.
//   - A packet whose delay is off by more than 200 ms (late: a delivery stall,
//     or timestamps that jumped back or stood still; early: timestamps that
//     jumped forward) starts a hold: it and the following packets are kept
//     in memory. As soon as a held packet's delay is back within ±200 ms, the
//     hold was a delivery stall (or jitter): the held packets are written at
//     their RTP positions, no re-sync. If instead AnchorWindow of arrival time
//     passes without the least delay among the held packets falling by more
//     than 10 ms (a draining backlog extends the hold), or the hold reaches
//     1000 packets, or the track closes, it was a clock jump: the mapping is
//     re-based so that the least delayed held packet lands at its arrival
//     position (Stats.Resyncs), then the held packets are written.
//   - An SSRC change always holds (the new SSRC's mapping is provisional on
//     its first packet's arrival) and re-bases the same way when the window
//     has passed: a re-anchoring on the new SSRC, so a reconnect burst does
//     not drag it either (Stats.Resyncs).
//   - Drift: the least delay over the last 5 s of arrival time (in 500 ms
//     buckets, judged once 5 s have passed since the last re-base and at
//     least half the buckets saw a packet) is kept within ±10 ms: above
//     10 ms (RTP clock slower than arrival) the mapping moves later by that
//     amount rounded to whole frames (frames up to 20 ms, else 2.5 ms steps),
//     a hole that concealment fills; below -10 ms (RTP faster) it moves
//     earlier by exactly that amount (Stats.Resyncs).
//
// The file never moves back and never drops publisher audio: a packet whose
// position is before the end of what is written (after a backward re-base,
// or a timestamp overlap) is written at the end, and the next holes absorb
// the difference.
//
// Holes. A hole of h samples before a packet (h = position - end, rounded to
// the nearest 120, filled when at least 60) is filled, before the packet:
//   - h <= MaxConcealment (default 120 ms), after a publisher packet: packets
//     that request loss concealment (opus.PLC, RFC 7845 section 4.1): the
//     previous publisher packet's TOC with zero-length frames, one frame as
//     the TOC byte alone (code 0), several as code 3 with a frame count (up
//     to 120 ms per packet); the remainder that is not a whole frame is
//     digital silence in 2.5 ms steps (Stats.ConcealmentPackets, ConcealmentSamples).
//   - otherwise (mute, DTX, pause, reconnect, leading silence): digital
//     silence (opus.Silence), CELT-only fullband frames FF FE, 120 ms per
//     packet (Stats.SilencePackets, SilenceSamples).
//
// So a file is within 1.25 ms of its positions, plus the drift bound.
// ffmpeg (native and libopus decoders), opusinfo, oggz-validate and mkvinfo
// accept the concealment packets; the tests check each.
//
// Payloads are never modified. Malformed packets are dropped
// (Stats.Malformed) and empty ones (RTP padding) ignored. Memory held: the
// anchor window (about 1 s of packets), the jitter buffer (tens of ms), a
// hold (at most about AnchorWindow), and the container's pending page or
// Cluster (at most 1 s).
package muxer
