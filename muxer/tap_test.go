package muxer_test

import (
	"bytes"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/trackrec/trackrec/muxer"
	"github.com/trackrec/trackrec/muxer/internal/oggtest"
	"github.com/trackrec/trackrec/muxer/opus"
)

// recordingTap keeps what a Tap sees.
type recordingTap struct {
	begun   int
	start   time.Time
	preSkip int
	bytes   bytes.Buffer
	end     int64 // raw end of the last packet
	gaps    int   // packets that did not follow the previous one
}

func (r *recordingTap) Begin(start time.Time, _, preSkip int) {
	r.begun++
	r.start, r.preSkip = start, preSkip
}

func (r *recordingTap) Wrote(b []byte) { r.bytes.Write(b) }

func (r *recordingTap) Packet(_ []byte, start int64, samples int) {
	if start != r.end {
		r.gaps++
	}
	r.end = start + int64(samples)
}

// Advance during a mute writes its silence as time passes, so a live
// stream keeps pace with the wall clock; the file is the one a user checks
// (every packet at its instant), and the tap sees its bytes exactly.
func TestAdvanceWritesSilenceAsTimePasses(t *testing.T) {
	tone := oggtest.Tone(t, 3, 1, "32k")
	pkts := newGen(tone, 1, 100, 5000).send(100).gap(3 * time.Second).send(100).pkts
	for _, format := range formats {
		t.Run(format, func(t *testing.T) {
			tap := &recordingTap{}
			k := &sink{dir: t.TempDir(), ext: format}
			tr := newTrack(t, muxer.Options{Open: k.open, Format: format, Tap: tap})
			var lagged []time.Duration
			prev := time.Duration(-1)
			for i, s := range pkts {
				// The ticker of a listened track, every 20 ms between arrivals.
				if prev >= 0 {
					for at := prev + 20*time.Millisecond; at < s.at; at += 20 * time.Millisecond {
						if err := tr.Advance(origin.Add(at), 0); err != nil {
							t.Fatal(err)
						}
						if st := tr.Stats(); s.at-prev > time.Second && at-prev > time.Second {
							// How far the file is behind the wall clock in the mute.
							lagged = append(lagged, origin.Add(at).Sub(st.Start)-opus.Duration(st.Samples))
						}
					}
				}
				prev = s.at
				p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SSRC: s.ssrc, SequenceNumber: s.seq, Timestamp: s.ts},
					Payload: slices.Clone(s.payload)}
				if err := tr.WriteRTP(p, origin.Add(s.at)); err != nil {
					t.Fatalf("packet %d: %v", i, err)
				}
			}
			if err := tr.Close(); err != nil {
				t.Fatal(err)
			}
			st := tr.Stats()
			check(t, format, k, st, pkts, 1, expect{})
			if len(lagged) == 0 {
				t.Fatal("no Advance in the mute")
			}
			// The bound: 200 ms of holds, 2.5 ms, and whole 120 ms packets.
			for _, l := range lagged {
				if l > 200*time.Millisecond+2500*time.Microsecond+120*time.Millisecond || l < 0 {
					t.Fatalf("in the mute the file was %v behind the wall clock", l)
				}
			}
			if tap.begun != 1 || !tap.start.Equal(st.Start) || tap.preSkip != st.PreSkip || tap.gaps != 0 ||
				tap.end != st.Samples+int64(st.PreSkip) {
				t.Fatalf("tap: begun %d at %v pre-skip %d, %d gaps, end %d; stats %v %d %d", tap.begun, tap.start, tap.preSkip,
					tap.gaps, tap.end, st.Start, st.PreSkip, st.Samples)
			}
			if format == muxer.FormatOgg {
				file := readFile(t, k.path)
				if !bytes.Equal(tap.bytes.Bytes(), file) {
					t.Fatalf("the tap saw %d bytes, the file holds %d", tap.bytes.Len(), len(file))
				}
			}
		})
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Advance writes nothing while packets arrived within its idle bound: a
// pause shorter than that may be a stall whose packets still come.
func TestAdvanceWaitsForIdle(t *testing.T) {
	tone := oggtest.Tone(t, 1, 1, "32k")
	pkts := newGen(tone, 1, 100, 5000).send(100).pkts
	k := &sink{dir: t.TempDir(), ext: muxer.FormatOgg}
	tr := newTrack(t, muxer.Options{Open: k.open})
	for _, s := range pkts {
		p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SSRC: s.ssrc, SequenceNumber: s.seq, Timestamp: s.ts}, Payload: slices.Clone(s.payload)}
		if err := tr.WriteRTP(p, origin.Add(s.at)); err != nil {
			t.Fatal(err)
		}
	}
	last := origin.Add(pkts[len(pkts)-1].at)
	before := tr.Stats().Samples
	if err := tr.Advance(last.Add(1500*time.Millisecond), 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := tr.Stats().Samples; got != before {
		t.Fatalf("1.5 s into a pause, Advance with a 2 s idle bound wrote %d samples", got-before)
	}
	if err := tr.Advance(last.Add(2500*time.Millisecond), 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := tr.Stats().Samples; got <= before {
		t.Fatal("2.5 s into a pause, Advance wrote nothing")
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
}
