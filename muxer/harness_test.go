package muxer_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/trackrec/trackrec/muxer"
	"github.com/trackrec/trackrec/muxer/internal/oggtest"
	"github.com/trackrec/trackrec/muxer/opus"
)

// The synthetic streams: a publisher captures audio at origin + wall (on the
// recorder's clock); the SFU delivers it latency later, plus whatever extra
// delay a scenario adds. A file must hold each packet at wall + latency after
// its start second.
var origin = time.Date(2026, 11, 21, 19, 57, 58, 123456000, time.UTC)

const (
	latency = 40 * time.Millisecond
	ms      = 48 // samples per millisecond
)

var formats = []string{muxer.FormatOgg, muxer.FormatWebM}

// sent is one RTP packet of a synthetic stream.
type sent struct {
	ssrc    uint32
	seq     uint16
	ts      uint32
	payload []byte
	wall    time.Duration // capture time, relative to origin
	at      time.Duration // arrival, relative to origin
	keep    bool          // must be in the file (false: a copy that must be dropped)
}

// gen builds a stream: 20 ms packets unless told otherwise.
type gen struct {
	ssrc    uint32
	seq     uint16
	ts      uint32
	wall    time.Duration
	rate    float64 // sender clock speed relative to the recorder's (1: exact)
	frac    float64 // fraction of a sample the RTP clock has run beyond ts in gaps
	payload [][]byte
	k       int
	pkts    []sent
}

func newGen(payload [][]byte, ssrc uint32, seq uint16, ts uint32) *gen {
	return &gen{ssrc: ssrc, seq: seq, ts: ts, rate: 1, payload: payload}
}

// send appends n packets taken in turn from the payloads.
func (g *gen) send(n int) *gen {
	for range n {
		g.sendPayload(g.payload[g.k%len(g.payload)])
		g.k++
	}
	return g
}

// sendPayload appends one packet with payload p.
func (g *gen) sendPayload(p []byte) *gen {
	n, err := opus.PacketSamples(p)
	if err != nil {
		panic(err)
	}
	g.pkts = append(g.pkts, sent{g.ssrc, g.seq, g.ts, p, g.wall, g.wall + latency, true})
	g.seq++
	g.ts += uint32(n)
	g.wall += time.Duration(float64(n) / 48000 / g.rate * float64(time.Second))
	return g
}

// gap: nothing is sent for d (mute, DTX) while both clocks run.
func (g *gen) gap(d time.Duration) *gen {
	g.wall += d
	s := d.Seconds()*48000*g.rate + g.frac
	g.ts += uint32(math.Floor(s))
	g.frac = s - math.Floor(s)
	return g
}

// pause: nothing is sent for d and the RTP clock stands still.
func (g *gen) pause(d time.Duration) *gen {
	g.wall += d
	return g
}

// jump moves the RTP clock by samples without time passing.
func (g *gen) jump(samples int64) *gen {
	g.ts += uint32(samples)
	return g
}

// restart switches to another SSRC with its own numbering.
func (g *gen) restart(ssrc uint32, seq uint16, ts uint32) *gen {
	g.ssrc, g.seq, g.ts, g.frac = ssrc, seq, ts, 0
	return g
}

// sink is the Open callback of a test track.
type sink struct {
	dir      string
	ext      string
	path     string
	opens    int
	start    time.Time
	channels int
}

func (k *sink) open(start time.Time, channels int) (io.WriteCloser, error) {
	k.opens++
	k.start, k.channels = start, channels
	k.path = filepath.Join(k.dir, "track-"+start.UTC().Format("2006-01-02T150405")+"."+k.ext)
	return os.Create(k.path)
}

// record feeds pkts in arrival order (stable) to a new track.
func record(t testing.TB, format string, opts muxer.Options, pkts []sent) (*sink, muxer.Stats) {
	t.Helper()
	k := &sink{dir: t.TempDir(), ext: format}
	opts.Open, opts.Format = k.open, format
	tr := newTrack(t, opts)
	order := slices.Clone(pkts)
	slices.SortStableFunc(order, func(a, b sent) int { return int(a.at - b.at) })
	for i, s := range order {
		p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SSRC: s.ssrc, SequenceNumber: s.seq, Timestamp: s.ts},
			Payload: slices.Clone(s.payload)}
		if err := tr.WriteRTP(p, origin.Add(s.at)); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		clear(p.Payload) // the track must not keep the caller's buffer
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	return k, tr.Stats()
}

// fillerKind classifies the packets a track may insert, by MD5.
type filler struct {
	kind    string // "silence", "plc", "end" (the Ogg writer's end-of-stream filler)
	samples int
}

func fillers(pkts []sent) map[string]filler {
	m := map[string]filler{}
	add := func(kind string, p []byte) {
		n, err := opus.PacketSamples(p)
		if err != nil {
			panic(err)
		}
		m[oggtest.MD5(p)] = filler{kind, n}
	}
	for _, stereo := range []bool{false, true} {
		for n := 120; n <= 5760; n += 120 {
			for _, p := range opus.Silence(n, stereo) {
				add("silence", p)
			}
		}
		toc := byte(28<<3 | 3)
		if stereo {
			toc |= 4
		}
		for n := 1; n <= 48; n++ {
			add("end", append([]byte{toc, byte(n)}, bytes.Repeat([]byte{0xFF, 0xFE}, n)...))
		}
	}
	tocs := map[byte]bool{}
	for _, s := range pkts {
		tocs[s.payload[0]&^3] = true
	}
	for toc := range tocs {
		for n := 1; n <= 48; n++ {
			for _, p := range opus.PLC(toc, n) {
				add("plc", p)
			}
		}
	}
	return m
}

// probed is one packet as ffprobe reads it.
type probed struct {
	pts  float64 // seconds on the decoded timeline
	hash string
}

func probePackets(t testing.TB, path string) []probed {
	t.Helper()
	oggtest.RequireTools(t, "ffprobe")
	out := oggtest.Quiet(t, "ffprobe", "-v", "warning", "-of", "json", "-show_packets", "-show_data_hash", "MD5", path)
	var v struct {
		Packets []struct {
			PtsTime  string `json:"pts_time"`
			DataHash string `json:"data_hash"`
		} `json:"packets"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("ffprobe json: %v", err)
	}
	var ps []probed
	for i, p := range v.Packets {
		pts, err := strconv.ParseFloat(p.PtsTime, 64)
		if err != nil {
			t.Fatalf("ffprobe packet %d: pts_time %q", i, p.PtsTime)
		}
		ps = append(ps, probed{pts, strings.TrimPrefix(p.DataHash, "MD5:")})
	}
	return ps
}

// decode decodes path with ffmpeg and the given decoder ("opus", ffmpeg's
// own, or "libopus"), which must not complain, and returns the samples of
// the first channel.
func decode(t testing.TB, path, decoder string, channels int) []int16 {
	t.Helper()
	oggtest.RequireTools(t, "ffmpeg")
	raw := oggtest.Quiet(t, "ffmpeg", "-v", "warning", "-nostdin", "-c:a", decoder, "-i", path, "-f", "s16le", "-")
	pcm := make([]int16, len(raw)/2/channels)
	for i := range pcm {
		pcm[i] = int16(binary.LittleEndian.Uint16(raw[2*i*channels:]))
	}
	return pcm
}

// mkvinfo runs mkvinfo, which must succeed and print only the element tree.
func mkvinfo(t testing.TB, path string) {
	t.Helper()
	oggtest.RequireTools(t, "mkvinfo")
	out, err := exec.Command("mkvinfo", "-v", path).CombinedOutput()
	if err != nil {
		t.Fatalf("mkvinfo: %v\n%s", err, out)
	}
	for line := range strings.SplitSeq(strings.TrimRight(string(out), "\n"), "\n") {
		if !strings.HasPrefix(line, "+") && !strings.HasPrefix(line, "|") {
			t.Fatalf("mkvinfo: %q\n%s", line, out)
		}
	}
}

// expect is what a scenario must produce besides the universal checks.
type expect struct {
	dup, late, reordered, resyncs int64
	plc                           bool          // concealment packets are expected (else none)
	tol                           time.Duration // position tolerance of publisher packets; 0: 1.3 ms
	durTol                        time.Duration // decoded duration tolerance; 0: 20 ms
	anchor                        time.Duration // expected anchor - origin; 0: latency
	anchorTol                     time.Duration // 0: exact (to the µs)
}

// check reads a recording back the way a user would and fails unless:
// Open got the second at or before the anchor; every kept payload is in the
// file byte for byte, in order, at wall + latency after that second (ffprobe
// pts_time, 1 ms for the first one), with only silence or concealment
// between them; the decoded length equals the wall-clock length within
// 20 ms and Stats.Samples exactly; decoding finds the first sound right
// where the first packet sits; the validators are silent; and the stats
// agree with the file.
func check(t *testing.T, format string, k *sink, st muxer.Stats, pkts []sent, channels int, e expect) {
	t.Helper()
	if e.anchor == 0 {
		e.anchor = latency
	}
	if e.tol == 0 {
		e.tol = 1300 * time.Microsecond // holes are filled to the nearest 2.5 ms
	}
	if e.durTol == 0 {
		e.durTol = 20 * time.Millisecond
	}
	anchor := origin.Add(e.anchor)
	start := anchor.Truncate(time.Second)
	if d := st.Anchor.Sub(anchor); d > e.anchorTol || d < -e.anchorTol || !st.Start.Equal(st.Anchor.Truncate(time.Second)) {
		t.Errorf("anchor %s start %s, want %s %s", st.Anchor.Format(time.RFC3339Nano), st.Start.Format(time.RFC3339Nano),
			anchor.Format(time.RFC3339Nano), start)
	}
	if k.opens != 1 || !k.start.Equal(st.Start) || k.channels != channels {
		t.Errorf("Open called %d times with %v, %d channels; Stats.Start %v", k.opens, k.start, k.channels, st.Start)
	}
	if st.PreSkip < 3840 || st.PreSkip >= 3840+120 {
		t.Errorf("pre-skip %d", st.PreSkip)
	}
	lead := st.Anchor.Sub(k.start).Seconds()
	_ = start
	info, err := os.Stat(k.path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Bytes != info.Size() {
		t.Errorf("Stats.Bytes %d, file has %d", st.Bytes, info.Size())
	}

	var want []sent
	for _, s := range pkts {
		if s.keep {
			want = append(want, s)
		}
	}
	slices.SortStableFunc(want, func(a, b sent) int { return int(a.wall - b.wall) })
	fill := fillers(pkts)
	got := probePackets(t, k.path)
	next := 0
	var plc, plcSamples, silence, silenceSamples int64
	var firstPts float64
	for i, p := range got {
		if next < len(want) && p.hash == oggtest.MD5(want[next].payload) {
			w := origin.Add(want[next].wall + latency).Sub(k.start).Seconds()
			if math.Abs(p.pts-w) <= e.tol.Seconds() {
				if next == 0 {
					firstPts = p.pts
				}
				next++
				continue
			}
			if _, ok := fill[p.hash]; !ok {
				t.Fatalf("packet %d: publisher packet %d at %.4f s, want %.4f s", i, next, p.pts, w)
			}
		}
		f, ok := fill[p.hash]
		switch {
		case !ok:
			t.Fatalf("packet %d at %.4f s is neither publisher packet %d nor a filler", i, p.pts, next)
		case f.kind == "silence":
			silence++
			silenceSamples += int64(f.samples)
		case f.kind == "plc":
			plc++
			plcSamples += int64(f.samples)
		case f.kind == "end" && (format != muxer.FormatOgg || i != len(got)-1):
			t.Fatalf("packet %d: end-of-stream filler in the middle", i)
		}
	}
	if next != len(want) {
		t.Fatalf("%d of %d publisher packets found in order", next, len(want))
	}
	if math.Abs(firstPts-lead) > 0.001 {
		t.Errorf("first publisher packet at %.6f s, want %.6f s (anchor - start)", firstPts, lead)
	}
	if st.Packets != int64(len(want)) || st.ConcealmentPackets != plc || st.ConcealmentSamples != plcSamples ||
		st.SilencePackets != silence || st.SilenceSamples != silenceSamples {
		t.Errorf("stats %+v; file has %d packets, %d PLC of %d samples, %d silence of %d samples",
			st, len(want), plc, plcSamples, silence, silenceSamples)
	}
	if (plc > 0) != e.plc {
		t.Errorf("%d concealment packets, want some: %v", plc, e.plc)
	}
	if got := [4]int64{st.Duplicates, st.Late, st.Reordered, st.Resyncs}; got != [4]int64{e.dup, e.late, e.reordered, e.resyncs} {
		t.Errorf("duplicates, late, reordered, resyncs = %v, want %v", got, [4]int64{e.dup, e.late, e.reordered, e.resyncs})
	}

	// Decoding: the length, and where the sound starts.
	pcm := decode(t, k.path, "opus", channels)
	if int64(len(pcm)) != st.Samples {
		t.Errorf("decoded %d samples, Stats.Samples %d", len(pcm), st.Samples)
	}
	if lib := decode(t, k.path, "libopus", channels); len(lib) != len(pcm) {
		t.Errorf("libopus decoded %d samples, ffmpeg's decoder %d", len(lib), len(pcm))
	}
	last := want[len(want)-1]
	n, _ := opus.PacketSamples(last.payload)
	wallDur := origin.Add(last.wall+latency).Sub(k.start).Seconds() + float64(n)/48000
	if d := float64(len(pcm))/48000 - wallDur; math.Abs(d) > e.durTol.Seconds() {
		t.Errorf("decoded %.4f s, wall clock %.4f s", float64(len(pcm))/48000, wallDur)
	}
	first := slices.IndexFunc(pcm, func(v int16) bool { return v != 0 })
	leadSamples := int(math.Round(lead * 48000))
	if first < leadSamples-ms || first > leadSamples+20*ms {
		t.Errorf("first sound at sample %d, first packet at %d", first, leadSamples)
	}

	switch format {
	case muxer.FormatOgg:
		oggtest.Validate(t, k.path, false)
		checkGranules(t, k.path)
	case muxer.FormatWebM:
		mkvinfo(t, k.path)
	}
}

// checkGranules checks that every Ogg page's granule is where its last
// packet ends.
func checkGranules(t *testing.T, path string) {
	t.Helper()
	_, pkts := oggtest.ReadFile(t, path)
	var pos int64
	for i, p := range pkts[2:] {
		n, err := opus.PacketSamples(p.Data)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if p.Granule >= 0 && p.Granule != pos+int64(n) && !(p.Granule == pos && i == len(pkts)-3) {
			t.Fatalf("page %d: granule %d, packets end at %d", p.Page, p.Granule, pos+int64(n))
		}
		pos += int64(n)
	}
}
