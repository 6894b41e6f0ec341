package muxer_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"

	"github.com/trackrec/trackrec/muxer"
	"github.com/trackrec/trackrec/muxer/internal/oggtest"
)

const ms = 48 // samples per millisecond

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// step is one RTP packet fed to a Track and where it must land.
type step struct {
	ssrc    uint32
	seq     uint16
	ts      uint32
	at      time.Duration // arrival after the first packet
	payload []byte
	want    int64 // position in the file in samples, -1 if it must be dropped
}

// stream builds a packet sequence: 20 ms packets unless told otherwise.
type stream struct {
	ssrc    uint32
	seq     uint16
	ts      uint32
	at      time.Duration
	payload [][]byte
	k       int
	steps   []step
}

func newStream(payload [][]byte, ssrc uint32, seq uint16, ts uint32) *stream {
	return &stream{ssrc: ssrc, seq: seq, ts: ts, payload: payload}
}

// add appends n consecutive 20 ms packets, expected at want, want+960, ...
// (want -1: all dropped).
func (s *stream) add(n int, want int64) *stream {
	for i := range n {
		w := int64(-1)
		if want >= 0 {
			w = want + int64(i)*960
		}
		s.steps = append(s.steps, step{s.ssrc, s.seq, s.ts, s.at, s.payload[s.k%len(s.payload)], w})
		s.k++
		s.seq++
		s.ts += 960
		s.at += 20 * time.Millisecond
	}
	return s
}

// gap advances both the RTP clock and the arrival clock (mute, DTX).
func (s *stream) gap(d time.Duration) *stream {
	s.ts += uint32(d.Milliseconds() * ms)
	s.at += d
	return s
}

// resend repeats step i now (same sequence number, timestamp and payload).
func (s *stream) resend(i int) *stream {
	st := s.steps[i]
	st.at, st.want = s.at, -1
	s.steps = append(s.steps, st)
	return s
}

type sink struct {
	path     string
	opens    int
	start    time.Time
	channels int
}

func (k *sink) open(start time.Time, channels int) (io.WriteCloser, error) {
	k.opens++
	k.start, k.channels = start, channels
	return os.Create(k.path)
}

func record(t *testing.T, steps []step) (*sink, muxer.Stats) {
	t.Helper()
	k := &sink{path: filepath.Join(t.TempDir(), "track.ogg")}
	tr := muxer.NewTrack(muxer.Options{Open: k.open})
	for i, s := range steps {
		p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SSRC: s.ssrc, SequenceNumber: s.seq, Timestamp: s.ts}, Payload: s.payload}
		if err := tr.WriteRTP(p, t0.Add(s.at)); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	return k, tr.Stats()
}

// checkFile reads the recording back and checks it the way a user would:
// validators accept it, the publisher payloads are all there byte for byte,
// in order and at their expected positions, only silence fills the rest,
// and the decoded length matches the wall-clock length.
func checkFile(t *testing.T, k *sink, st muxer.Stats, steps []step, channels int, wantDur time.Duration) {
	t.Helper()
	if k.opens != 1 || !k.start.Equal(t0) || k.channels != channels {
		t.Errorf("Open called %d times with %v, %d channels", k.opens, k.start, k.channels)
	}
	if !st.Start.Equal(t0) {
		t.Errorf("Stats.Start %v", st.Start)
	}
	data, err := os.ReadFile(k.path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Bytes != int64(len(data)) {
		t.Errorf("Stats.Bytes %d, file has %d", st.Bytes, len(data))
	}
	_, head, err := oggreader.NewWith(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if int(head.Channels) != channels || head.PreSkip != 0 {
		t.Errorf("OpusHead: %d channels, pre-skip %d", head.Channels, head.PreSkip)
	}

	pages := oggtest.ReadPages(t, data)
	pkts := oggtest.Packets(t, pages)[2:]
	var want []step
	for _, s := range steps {
		if s.want >= 0 {
			want = append(want, s)
		}
	}
	var pos, fillers, fillerSamples int64
	next := 0
	for i, p := range pkts {
		n, err := muxer.PacketSamples(p.Data)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if next < len(want) && pos == want[next].want && bytes.Equal(p.Data, want[next].payload) {
			next++
		} else if isSilence(p.Data) && muxer.Stereo(p.Data) == (channels == 2) {
			fillers++
			fillerSamples += int64(n)
		} else {
			t.Fatalf("packet %d at %d (%x...) is neither the next publisher packet (%d at %d) nor silence",
				i, pos, p.Data[:min(4, len(p.Data))], next, want[min(next, len(want)-1)].want)
		}
		pos += int64(n)
		if p.Granule >= 0 && p.Granule != pos {
			t.Fatalf("page %d: granule %d, packets end at %d", p.Page, p.Granule, pos)
		}
	}
	if next != len(want) {
		t.Fatalf("%d of %d publisher packets found", next, len(want))
	}
	if st.Packets != int64(len(want)) || st.SilencePackets != fillers || st.SilenceSamples != fillerSamples || st.Samples != pos {
		t.Errorf("stats %+v; file has %d packets, %d fillers of %d samples, %d samples", st, len(want), fillers, fillerSamples, pos)
	}

	oggtest.Validate(t, k.path, true)
	wantSamples := wantDur.Milliseconds() * ms
	pcm := oggtest.Decode(t, k.path, "")
	if got := int64(len(pcm) / channels); abs(got-wantSamples) > 20*ms {
		t.Errorf("decoded %d samples (%.3f s), want %.3f s", got, float64(got)/48000, wantDur.Seconds())
	}
	if d := oggtest.FFprobe(t, k.path).Duration - wantDur.Seconds(); d > 0.02 || d < -0.02 {
		t.Errorf("ffprobe duration off by %.3f s", d)
	}
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

type counts struct{ dup, late, resync int64 }

func TestTrack(t *testing.T) {
	tone := oggtest.Tone(t, 3, 1, "32k")
	stereo := oggtest.Tone(t, 1, 2, "48k")
	loud := oggtest.Tone(t, 1, 1, "128k")
	if len(loud[5]) <= 255 {
		t.Fatalf("128 kbit/s packet has %d bytes, want > 255", len(loud[5]))
	}
	oneByte := [][]byte{{0x08}} // SILK NB 20 ms, empty frame: what DTX sends

	tests := []struct {
		name     string
		steps    []step
		channels int
		dur      time.Duration
		counts   counts
	}{
		{"steady", newStream(tone, 1, 100, 5000).add(150, 0).steps, 1, 3 * time.Second, counts{}},
		{"mute gap of 3 s", newStream(tone, 1, 100, 5000).add(50, 0).gap(3*time.Second).add(50, 4000*ms).steps,
			1, 5 * time.Second, counts{}},
		{"DTX every 400 ms", func() []step {
			s := newStream(tone, 1, 100, 5000)
			for i := range 10 {
				s.add(1, int64(i)*400*ms).gap(380 * time.Millisecond)
			}
			return s.steps
		}(), 1, 3620 * time.Millisecond, counts{}},
		{"duplicates", func() []step {
			s := newStream(tone, 1, 100, 5000)
			for i := range 50 {
				s.add(1, int64(i)*960)
				if i%5 == 0 {
					s.resend(len(s.steps) - 1)
				}
			}
			return s.resend(40).add(10, 50*960).steps // a stale copy 0.2 s later
		}(), 1, 1200 * time.Millisecond, counts{dup: 11}},
		{"reordered packet is late", func() []step {
			s := newStream(tone, 1, 100, 5000).add(30, 0)
			a := s.add(2, 30*960).steps
			a[30], a[31] = a[31], a[30] // 31 comes first: 20 ms of silence, then 30 is late
			a[30].want, a[31].want = 31*960, -1
			a[30].at, a[31].at = a[31].at, a[30].at
			return s.add(18, 32*960).steps
		}(), 1, time.Second, counts{late: 1}},
		{"timestamp wrap-around", newStream(tone, 1, 65500, 1<<32-25*960).add(100, 0).gap(time.Second).add(50, 3000*ms).steps,
			1, 4 * time.Second, counts{}},
		{"ssrc change with timestamp jump", func() []step {
			s := newStream(tone, 1, 100, 5000).add(50, 0)
			s.ssrc, s.seq, s.ts = 2, 40000, 3_000_000_000
			return s.gap(500*time.Millisecond).add(50, 1500*ms).steps
		}(), 1, 2500 * time.Millisecond, counts{resync: 1}},
		{"ssrc change with plausible timestamps and reused sequence numbers", func() []step {
			s := newStream(tone, 1, 100, 5000).add(50, 0)
			s.ssrc, s.seq, s.ts = 2, 100, 5000 // RTP says position 0, 1.5 s before its arrival
			return s.gap(500*time.Millisecond).add(50, 1500*ms).steps
		}(), 1, 2500 * time.Millisecond, counts{resync: 1}},
		{"a packet 3 s late in DTX is late, not a clock jump", func() []step {
			s := newStream(tone, 1, 100, 5000)
			for i := range 15 {
				s.add(1, int64(i)*400*ms).gap(380 * time.Millisecond)
			}
			late := s.steps[3]
			late.at += 3 * time.Second
			late.want = -1
			s.steps[3] = step{} // not sent in time
			steps := append(s.steps[:3:3], s.steps[4:11]...)
			steps = append(steps, late)
			return append(steps, s.steps[11:]...)
		}(), 1, 5620 * time.Millisecond, counts{late: 1}},
		{"rtp jumps 10 s ahead without time passing", func() []step {
			s := newStream(tone, 1, 100, 5000).add(50, 0)
			s.ts += 10 * 48000
			return s.add(50, 1000*ms).steps
		}(), 1, 2 * time.Second, counts{resync: 1}},
		{"rtp jumps back 10 s", func() []step {
			s := newStream(tone, 1, 100, 500*48000).add(50, 0)
			s.ts -= 10 * 48000
			return s.add(50, 1000*ms).steps
		}(), 1, 2 * time.Second, counts{resync: 1}},
		{"rtp stands still across a 5 s pause", func() []step {
			s := newStream(tone, 1, 100, 5000).add(50, 0)
			s.at += 5 * time.Second
			return s.add(50, 6000*ms).steps
		}(), 1, 7 * time.Second, counts{resync: 1}},
		{"a sender clock 10% fast re-syncs every 2 s of lead, never moves back", func() []step {
			s := newStream(tone, 1, 100, 5000).add(1500, 0)
			for i := range s.steps {
				s.steps[i].at = time.Duration(i) * 18 * time.Millisecond
			}
			return s.steps
		}(), 1, 30 * time.Second, counts{resync: 1}},
		{"jitter and a 1.5 s stall stay on the RTP clock", func() []step {
			s := newStream(tone, 1, 100, 5000).add(150, 0)
			var last time.Duration
			for i := range s.steps {
				at := s.steps[i].at + time.Duration(i%7*15)*time.Millisecond // up to 90 ms late
				if i >= 60 {
					at = max(at, 2700*time.Millisecond) // stalled from 1.2 s, then a burst
				}
				last = max(last, at) // one flow: no overtaking
				s.steps[i].at = last
			}
			return s.steps
		}(), 1, 3 * time.Second, counts{}},
		{"sub-2.5 ms holes carry over", func() []step {
			s := newStream(tone, 1, 100, 5000).add(10, 0)
			s.ts += 1000 // 20.8 ms: 960 filled, 40 carried
			s.add(10, 10*960+960)
			s.ts += 100 // 140 with the carry: 120 filled, 20 carried
			return s.add(10, 20*960+960+120).steps
		}(), 1, 622 * time.Millisecond, counts{}},
		{"small overlap is written at the end", func() []step {
			s := newStream(tone, 1, 100, 5000).add(10, 0)
			s.ts -= 480
			return s.add(10, 10*960).steps
		}(), 1, 400 * time.Millisecond, counts{}},
		{"1-byte packets", newStream(oneByte, 1, 100, 5000).add(20, 0).gap(time.Second).add(20, 1400*ms).steps,
			1, 1800 * time.Millisecond, counts{}},
		{"packets over 255 bytes", newStream(loud, 1, 100, 5000).add(50, 0).gap(200*time.Millisecond).add(20, 1200*ms).steps,
			1, 1600 * time.Millisecond, counts{}},
		{"stereo", newStream(stereo, 1, 100, 5000).add(25, 0).gap(time.Second).add(25, 1500*ms).steps,
			2, 2 * time.Second, counts{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k, st := record(t, tt.steps)
			if got := (counts{st.Duplicates, st.Late, st.Resyncs}); got != tt.counts {
				t.Errorf("duplicates, late, resyncs = %+v, want %+v", got, tt.counts)
			}
			checkFile(t, k, st, tt.steps, tt.channels, tt.dur)
		})
	}
}

// The payloads are what ffprobe, an independent demuxer, reads back.
func TestTrackFFprobePackets(t *testing.T) {
	tone := oggtest.Tone(t, 2, 1, "32k")
	steps := newStream(tone, 7, 1, 1).add(50, 0).gap(time.Second).add(50, 2000*ms).steps
	k, _ := record(t, steps)
	got := oggtest.FFprobe(t, k.path).PacketMD5s
	silence := map[string]bool{}
	for _, p := range muxer.Silence(48000, false) {
		silence[oggtest.MD5(p)] = true
	}
	i := 0
	for _, h := range got {
		if silence[h] {
			continue
		}
		if i >= len(steps) || h != oggtest.MD5(steps[i].payload) {
			t.Fatalf("ffprobe packet %s is not publisher packet %d", h, i)
		}
		i++
	}
	if i != len(steps) {
		t.Fatalf("ffprobe found %d of %d publisher packets", i, len(steps))
	}
}

func TestTrackLifecycle(t *testing.T) {
	t.Run("no packet opens nothing", func(t *testing.T) {
		tr := muxer.NewTrack(muxer.Options{Open: func(time.Time, int) (io.WriteCloser, error) {
			t.Fatal("Open called")
			return nil, nil
		}})
		if err := tr.Close(); err != nil {
			t.Fatal(err)
		}
		if st := tr.Stats(); st != (muxer.Stats{}) {
			t.Errorf("stats %+v", st)
		}
	})
	t.Run("open error is reported once and sticks", func(t *testing.T) {
		errNoDisk := errors.New("no disk")
		opens := 0
		tr := muxer.NewTrack(muxer.Options{Open: func(time.Time, int) (io.WriteCloser, error) {
			opens++
			return nil, errNoDisk
		}})
		p := &rtp.Packet{Payload: []byte{0xF8, 0xFF, 0xFE}}
		for range 3 {
			if err := tr.WriteRTP(p, t0); !errors.Is(err, errNoDisk) {
				t.Errorf("WriteRTP: %v", err)
			}
		}
		if opens != 1 {
			t.Errorf("Open called %d times", opens)
		}
		if err := tr.Close(); err != nil {
			t.Error(err)
		}
	})
	t.Run("bad packets are dropped, empty ones ignored, write after close fails", func(t *testing.T) {
		var out closeBuffer
		tr := muxer.NewTrack(muxer.Options{Open: func(time.Time, int) (io.WriteCloser, error) { return &out, nil }})
		if err := tr.WriteRTP(&rtp.Packet{Payload: []byte{0xF9, 1, 2, 3}}, t0); err != nil {
			t.Errorf("malformed packet: %v, want it dropped", err)
		}
		if st := tr.Stats(); st.Malformed != 1 || st.Packets != 0 {
			t.Errorf("malformed packet not counted as dropped: %+v", st)
		}
		if err := tr.WriteRTP(&rtp.Packet{}, t0); err != nil {
			t.Errorf("padding-only packet: %v", err)
		}
		if out.Len() != 0 {
			t.Error("opened before a valid packet")
		}
		if err := tr.WriteRTP(&rtp.Packet{Payload: []byte{0xF8, 0xFF, 0xFE}}, t0); err != nil {
			t.Fatal(err)
		}
		if err := tr.Close(); err != nil || !out.closed {
			t.Fatalf("Close: %v, output closed %v", err, out.closed)
		}
		if err := tr.WriteRTP(&rtp.Packet{Header: rtp.Header{SequenceNumber: 1, Timestamp: 960}, Payload: []byte{0xF8, 0xFF, 0xFE}}, t0); !errors.Is(err, muxer.ErrClosed) {
			t.Errorf("write after Close: %v", err)
		}
		if st := tr.Stats(); st.Packets != 1 || st.Samples != 960 || st.Bytes != int64(out.Len()) {
			t.Errorf("stats %+v", st)
		}
	})
}

type closeBuffer struct {
	bytes.Buffer
	closed bool
}

func (c *closeBuffer) Close() error { c.closed = true; return nil }

// Stats may be read while another goroutine writes (run with -race).
func TestTrackStatsConcurrent(t *testing.T) {
	tr := muxer.NewTrack(muxer.Options{Open: func(time.Time, int) (io.WriteCloser, error) { return &closeBuffer{}, nil }})
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
				_ = tr.Stats()
			}
		}
	})
	for i := range 2000 {
		p := &rtp.Packet{Header: rtp.Header{SequenceNumber: uint16(i), Timestamp: uint32(i * 960)}, Payload: []byte{0xF8, 0xFF, 0xFE}}
		if err := tr.WriteRTP(p, t0.Add(time.Duration(i)*20*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if st := tr.Stats(); st.Packets != 2000 {
		t.Errorf("packets %d", st.Packets)
	}
}

type discardCloser struct{}

func (discardCloser) Write(p []byte) (int, error) { return len(p), nil }
func (discardCloser) Close() error                { return nil }

func BenchmarkTrackWriteRTP(b *testing.B) {
	payload := bytes.Repeat([]byte{0x55}, 80) // 32 kbit/s at 20 ms
	payload[0] = 0x78                         // SILK WB 20 ms
	for _, bc := range []struct {
		name string
		dtx  bool // a 400 ms hole every 10 packets
	}{{"steady", false}, {"dtx", true}} {
		b.Run(bc.name, func(b *testing.B) {
			tr := muxer.NewTrack(muxer.Options{Open: func(time.Time, int) (io.WriteCloser, error) { return discardCloser{}, nil }})
			p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SSRC: 1}, Payload: payload}
			var ts uint32
			var at time.Duration
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				p.SequenceNumber++
				ts += 960
				at += 20 * time.Millisecond
				if bc.dtx && i%10 == 0 {
					ts += 400 * ms
					at += 400 * time.Millisecond
				}
				p.Timestamp = ts
				if err := tr.WriteRTP(p, t0.Add(at)); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if err := tr.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}
