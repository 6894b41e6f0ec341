// Package opus holds the Opus facts the muxer and its containers share, so
// each is defined once: packet durations from the TOC byte, the OpusHead
// identification header, the packets written into holes (digital silence
// and loss-concealment requests), the 48 kHz clock and the conversions
// between samples and time. It never decodes audio.
//
// # Clock
//
// Opus always runs at ClockRate (48 kHz) for timing purposes: the RTP clock
// (RFC 7587), the Ogg granule position and OpusHead pre-skip (RFC 7845) and
// the Matroska Opus block timing all count 48 kHz samples, whatever the
// input rate. Duration and Samples convert between that count and
// time.Duration without overflowing for any duration a time.Duration holds.
//
// # Packet durations (RFC 6716 section 3)
//
// The first byte of a packet, the TOC, holds config (bits 7-3), the stereo
// flag s (bit 2) and the frame count code c (bits 1-0). config gives the
// frame duration (section 3.1, table 2):
//
//	config  0-11  SILK-only    10, 20, 40, 60 ms   (config & 3)
//	config 12-15  hybrid       10, 20 ms           (config & 1)
//	config 16-31  CELT-only    2.5, 5, 10, 20 ms   (config & 3)
//
// c gives the frame count (section 3.2): 0 one frame, 1 two frames of equal
// size, 2 two frames with the first one's length coded in 1 or 2 bytes, 3 a
// frame count byte (bits 5-0, at least 1; bit 6 padding follows, bit 7 VBR
// with all lengths but the last coded). A packet lasts frames × frame
// duration, at most 120 ms (MaxPacketSamples). PacketSamples enforces the
// framing requirements R1-R7 of section 3.4 (at least one byte; no frame
// over 1275 bytes; code 1 payloads of even length; lengths and padding
// that fit the packet; code 3 with at least one frame and at most 120 ms),
// because a decoder rejects a packet that breaks them. A zero-length frame
// is legal: it tells the decoder to conceal (section 3.2.1).
//
// # OpusHead (RFC 7845 section 5.1)
//
// The identification header of channel mapping family 0 (mono or stereo,
// the only family written here) is HeadSize (19) bytes, integers little
// endian:
//
//	0   "OpusHead"         magic signature
//	8   version            1; a reader accepts any version whose high nibble is 0
//	9   channel count      1 or 2 for family 0
//	10  pre-skip           uint16, 48 kHz samples the decoder drops at the start
//	12  input sample rate  uint32, informational (0: unspecified)
//	16  output gain        int16, Q7.8 dB
//	18  mapping family     0
//
// Ogg Opus carries it as the first packet, alone on the first page; WebM as
// the track's CodecPrivate, with CodecDelay holding the same pre-skip in
// nanoseconds.
//
// # Filling holes (RFC 7845 section 4.1)
//
// A hole in a stream is filled with packets rather than left as a gap in
// the timestamps, so every player keeps the timing. Two kinds are built:
//
//   - Loss concealment: PLC returns packets with the configuration and
//     channels of the previous packet's TOC and zero-length frames, which the
//     decoder answers with its packet loss concealment, as RFC 7845 section
//     4.1 recommends for short gaps: one frame is the TOC byte alone (code 0),
//     several are code 3 with a frame count and no frame data (CBR, every
//     frame 0 bytes), up to 120 ms per packet.
//   - Digital silence: Silence returns CELT-only fullband packets whose frames
//     are the two bytes FF FE, whose first range-coded symbol is CELT's
//     silence flag, so they decode to exact zeros: 20 ms frames, up to six per
//     packet (120 ms, code 3, 14 bytes), then at most one 10, one 5 and one
//     2.5 ms packet for the rest. F8 FF FE is 20 ms of mono silence. Silence
//     covers multiples of MinFrameSamples (2.5 ms); the caller keeps the
//     remainder.
//
// AppendSilence and AppendPLC build the first packet of such a run into a
// caller's buffer, so filling holes does not allocate.
package opus
