package muxer_test

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/trackrec/trackrec/muxer"
	"github.com/trackrec/trackrec/muxer/internal/oggtest"
)

type scenario struct {
	name     string
	pkts     []sent
	channels int
	want     expect
}

func scenarios(t testing.TB) []scenario {
	tone := oggtest.Tone(t, 3, 1, "32k")
	stereo := oggtest.Tone(t, 2, 2, "48k")
	loud := oggtest.Tone(t, 2, 1, "128k")
	if len(loud[5]) <= 255 {
		t.Fatalf("128 kbit/s packet has %d bytes, want > 255", len(loud[5]))
	}
	// What the SFU sends while a track is muted (see REFERENCE.md).
	blank := append([]byte{0xF8, 0xFF, 0xFE}, make([]byte, 77)...)

	return []scenario{
		{"steady", newGen(tone, 1, 100, 5000).send(150).pkts, 1, expect{}},
		{"subscribe burst", func() []sent {
			p := newGen(tone, 1, 100, 5000).send(150).pkts
			burst := 600*time.Millisecond + latency // the first 0.5 s arrive at once, late
			for i := range p {
				p[i].at = max(p[i].at, burst)
			}
			return p
		}(), 1, expect{}},
		{"DTX every 400 ms", func() []sent {
			g := newGen(tone, 1, 100, 5000)
			for range 12 {
				g.send(1).gap(380 * time.Millisecond)
			}
			return g.pkts
		}(), 1, expect{}},
		{"3 s mute", func() []sent {
			g := newGen(tone, 1, 100, 5000).send(50)
			for range 50 { // the SFU's blank frames for the first second
				g.sendPayload(blank)
			}
			return g.gap(2 * time.Second).send(50).pkts
		}(), 1, expect{}},
		{"5% loss", func() []sent {
			p := newGen(tone, 1, 100, 5000).send(250).pkts
			r := rand.New(rand.NewPCG(1, 2))
			out := p[:1]
			for _, s := range p[1 : len(p)-1] {
				if r.Float64() >= 0.05 {
					out = append(out, s)
				}
			}
			return append(out, p[len(p)-1])
		}(), 1, expect{plc: true}},
		{"reordered within the window", func() []sent {
			p := newGen(tone, 1, 100, 5000).send(150).pkts
			p[10].at = p[11].at + 5*time.Millisecond                                        // in the anchor window
			p[60].at = p[61].at + 10*time.Millisecond                                       // swapped with the next one
			p[100].at += 45 * time.Millisecond                                              // after two later ones
			p[120].at, p[121].at = p[122].at+time.Millisecond, p[122].at+time.Millisecond/2 // 122, 121, 120
			return p
		}(), 1, expect{reordered: 5}},
		{"reordered beyond the window", func() []sent {
			p := newGen(tone, 1, 100, 5000).send(150).pkts
			p[80].at += 100 * time.Millisecond // the window (60 ms) gave up on it
			p[80].keep = false
			return p
		}(), 1, expect{late: 1, plc: true}},
		{"duplicates", func() []sent {
			p := newGen(tone, 1, 100, 5000).send(100).pkts
			p[80].at += 30 * time.Millisecond // 81 waits for it in the jitter buffer
			dup := func(i int, after time.Duration) sent {
				s := p[i]
				s.at += after
				s.keep = false
				return s
			}
			return append(p,
				dup(5, time.Millisecond),      // in the anchor window
				dup(60, time.Millisecond),     // already written
				dup(70, 200*time.Millisecond), // written long ago
				dup(81, 5*time.Millisecond),   // still buffered
				dup(99, 300*time.Millisecond)) // after the end
		}(), 1, expect{dup: 5, reordered: 1}},
		{"timestamp and sequence wrap-around", newGen(tone, 1, 65500, 1<<32-25*960).send(100).gap(time.Second).send(50).pkts,
			1, expect{}},
		{"SSRC change with a timestamp jump", newGen(tone, 1, 100, 5000).send(100).
			restart(2, 40000, 3_000_000_000).gap(300 * time.Millisecond).send(100).pkts, 1, expect{resyncs: 1}},
		{"SSRC change reusing numbers", newGen(tone, 1, 100, 5000).send(100).
			restart(2, 100, 5000).gap(300 * time.Millisecond).send(100).pkts, 1, expect{resyncs: 1}},
		{"timestamps jump 10 s ahead", newGen(tone, 1, 100, 5000).send(100).jump(10 * 48000).send(100).pkts,
			1, expect{resyncs: 1}},
		{"timestamps jump 10 s back", newGen(tone, 1, 100, 500*48000).send(100).jump(-10 * 48000).send(100).pkts,
			1, expect{resyncs: 1}},
		{"timestamps stand still across a 5 s pause", newGen(tone, 1, 100, 5000).send(50).pause(5 * time.Second).send(100).pkts,
			1, expect{resyncs: 1}},
		{"3 s delivery stall then a burst", func() []sent {
			p := newGen(tone, 1, 100, 5000).send(250).pkts
			for i := range p {
				if p[i].wall >= time.Second && p[i].wall < 4*time.Second { // all in the 1 ms before 4 s
					p[i].at = 4*time.Second + latency - time.Duration(200-i)*5*time.Microsecond
				}
			}
			return p
		}(), 1, expect{}},
		{"jitter", func() []sent {
			p := newGen(tone, 1, 100, 5000).send(250).pkts
			r := rand.New(rand.NewPCG(3, 4))
			var last time.Duration
			for i := range p {
				p[i].at += time.Duration(r.IntN(80)) * time.Millisecond
				p[i].at = max(p[i].at, last) // one flow: no overtaking
				last = p[i].at
			}
			return p
		}(), 1, expect{}},
		{"sender clock 0.1% slow", drift(tone, 0.999, 1500, 0), 1, expect{resyncs: 3, plc: true, tol: 20 * time.Millisecond}},
		{"sender clock 0.1% slow with pauses", drift(tone, 0.999, 100, time.Second), 1,
			expect{resyncs: 3, plc: true, tol: 20 * time.Millisecond}},
		{"sender clock 0.1% fast with pauses", drift(tone, 1.001, 100, time.Second), 1,
			expect{resyncs: 5, tol: 20 * time.Millisecond, anchorTol: 2 * time.Millisecond}},
		{"1-byte packets", func() []sent {
			g := newGen(tone, 1, 100, 5000).send(40)
			for range 5 {
				g.sendPayload([]byte{tone[0][0] &^ 3})
			}
			return g.send(40).gap(500 * time.Millisecond).sendPayload([]byte{0x08}).send(10).pkts
		}(), 1, expect{}},
		{"packets over 255 bytes", func() []sent {
			p := newGen(loud, 1, 100, 5000).send(50).gap(200 * time.Millisecond).send(30).pkts
			return append(p[:60], p[63:]...) // a 60 ms loss
		}(), 1, expect{plc: true}},
		{"stereo", func() []sent {
			p := newGen(stereo, 1, 100, 5000).send(50).gap(time.Second).send(50).pkts
			return append(p[:70], p[72:]...) // a 40 ms loss
		}(), 2, expect{plc: true}},
	}
}

// drift is a minute of a sender whose clock runs at rate times the
// recorder's: talk for n packets, pause, and so on.
func drift(payload [][]byte, rate float64, n int, pause time.Duration) []sent {
	g := newGen(payload, 1, 100, 5000)
	g.rate = rate
	for g.wall < time.Minute {
		g.send(n).gap(pause)
	}
	return g.pkts
}

func TestTimeline(t *testing.T) {
	for _, sc := range scenarios(t) {
		for _, format := range formats {
			t.Run(format+"/"+sc.name, func(t *testing.T) {
				t.Parallel()
				k, st := record(t, format, muxer.Options{}, sc.pkts)
				check(t, format, k, st, sc.pkts, sc.channels, sc.want)
			})
		}
	}
}

func TestLifecycle(t *testing.T) {
	silence := []byte{0xF8, 0xFF, 0xFE}
	t.Run("no packet opens nothing", func(t *testing.T) {
		tr := newTrack(t, muxer.Options{Open: func(time.Time, int) (io.WriteCloser, error) {
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
	t.Run("open waits for the anchor window", func(t *testing.T) {
		opens := 0
		var out closeBuffer
		tr := newTrack(t, muxer.Options{Open: func(time.Time, int) (io.WriteCloser, error) {
			opens++
			return &out, nil
		}})
		for i := range 60 {
			p := &rtp.Packet{Header: rtp.Header{SequenceNumber: uint16(i), Timestamp: uint32(i * 960)}, Payload: silence}
			if err := tr.WriteRTP(p, origin.Add(time.Duration(i)*20*time.Millisecond)); err != nil {
				t.Fatal(err)
			}
			if want := i >= 50; (opens == 1) != want {
				t.Fatalf("after packet %d (%d ms): opened %v", i, i*20, opens == 1)
			}
		}
		if err := tr.Close(); err != nil || !out.closed || opens != 1 {
			t.Fatalf("Close: %v, output closed %v, %d opens", err, out.closed, opens)
		}
	})
	t.Run("open error is returned and sticks", func(t *testing.T) {
		errNoDisk := errors.New("no disk")
		opens := 0
		tr := newTrack(t, muxer.Options{AnchorWindow: -1, Open: func(time.Time, int) (io.WriteCloser, error) {
			opens++
			return nil, errNoDisk
		}})
		p := &rtp.Packet{Payload: silence}
		for range 3 {
			if err := tr.WriteRTP(p, origin); !errors.Is(err, errNoDisk) {
				t.Errorf("WriteRTP: %v", err)
			}
		}
		if err := tr.Close(); !errors.Is(err, errNoDisk) {
			t.Errorf("Close: %v", err)
		}
		if opens != 1 {
			t.Errorf("Open called %d times", opens)
		}
	})
	t.Run("open error at Close", func(t *testing.T) {
		errNoDisk := errors.New("no disk")
		tr := newTrack(t, muxer.Options{Open: func(time.Time, int) (io.WriteCloser, error) { return nil, errNoDisk }})
		if err := tr.WriteRTP(&rtp.Packet{Payload: silence}, origin); err != nil {
			t.Fatal(err)
		}
		if err := tr.Close(); !errors.Is(err, errNoDisk) {
			t.Errorf("Close: %v", err)
		}
	})
	t.Run("options are checked at construction", func(t *testing.T) {
		open := func(time.Time, int) (io.WriteCloser, error) {
			t.Fatal("Open called")
			return nil, nil
		}
		for _, tc := range []struct {
			name string
			o    muxer.Options
		}{
			{"unknown format", muxer.Options{Format: "mp3", Open: open}},
			{"format in capitals", muxer.Options{Format: "OGG", Open: open}},
			{"no Open", muxer.Options{Format: muxer.FormatWebM}},
		} {
			if tr, err := muxer.NewTrack(tc.o); err == nil || tr != nil {
				t.Errorf("%s: accepted (%v)", tc.name, err)
			}
		}
		for _, format := range []string{"", muxer.FormatOgg, muxer.FormatWebM} {
			if _, err := muxer.NewTrack(muxer.Options{Format: format, Open: open}); err != nil {
				t.Errorf("format %q: %v", format, err)
			}
		}
	})
	t.Run("bad packets are dropped, empty ones ignored, write after close fails", func(t *testing.T) {
		var out closeBuffer
		tr := newTrack(t, muxer.Options{Open: func(time.Time, int) (io.WriteCloser, error) { return &out, nil }})
		if err := tr.WriteRTP(&rtp.Packet{Payload: []byte{0xF9, 1, 2, 3}}, origin); err != nil {
			t.Errorf("malformed packet: %v, want it dropped", err)
		}
		if st := tr.Stats(); st.Malformed != 1 || st.Packets != 0 {
			t.Errorf("malformed packet not counted as dropped: %+v", st)
		}
		if err := tr.WriteRTP(&rtp.Packet{}, origin); err != nil {
			t.Errorf("padding-only packet: %v", err)
		}
		if err := tr.WriteRTP(&rtp.Packet{Payload: silence}, origin); err != nil {
			t.Fatal(err)
		}
		if err := tr.Close(); err != nil || !out.closed {
			t.Fatalf("Close: %v, output closed %v", err, out.closed)
		}
		if err := tr.WriteRTP(&rtp.Packet{Header: rtp.Header{SequenceNumber: 1, Timestamp: 960}, Payload: silence}, origin); !errors.Is(err, muxer.ErrClosed) {
			t.Errorf("write after Close: %v", err)
		}
		st := tr.Stats()
		if st.Packets != 1 || st.Samples != (st.Anchor.Sub(st.Start).Microseconds()*48+500)/1000+960 || st.Bytes != int64(out.Len()) {
			t.Errorf("stats %+v", st)
		}
	})
	t.Run("write error sticks", func(t *testing.T) {
		tr := newTrack(t, muxer.Options{AnchorWindow: -1, Open: func(time.Time, int) (io.WriteCloser, error) {
			return &failWriter{ok: 2}, nil
		}})
		var err error
		for i := 0; i < 200 && err == nil; i++ {
			p := &rtp.Packet{Header: rtp.Header{SequenceNumber: uint16(i), Timestamp: uint32(i * 960)}, Payload: silence}
			err = tr.WriteRTP(p, origin.Add(time.Duration(i)*20*time.Millisecond))
		}
		if !errors.Is(err, errDiskFull) {
			t.Fatalf("WriteRTP: %v", err)
		}
		if err := tr.WriteRTP(&rtp.Packet{Payload: silence}, origin); !errors.Is(err, errDiskFull) {
			t.Errorf("after failure: %v", err)
		}
		if err := tr.Close(); !errors.Is(err, errDiskFull) {
			t.Errorf("Close: %v", err)
		}
	})
}

var errDiskFull = errors.New("disk full")

type failWriter struct{ ok int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.ok == 0 {
		return 0, errDiskFull
	}
	f.ok--
	return len(p), nil
}
func (f *failWriter) Close() error { return nil }

type closeBuffer struct {
	bytes.Buffer
	closed bool
}

func (c *closeBuffer) Close() error { c.closed = true; return nil }

// Stats may be read while another goroutine writes (run with -race).
func TestStatsConcurrent(t *testing.T) {
	tr := newTrack(t, muxer.Options{Open: func(time.Time, int) (io.WriteCloser, error) { return &closeBuffer{}, nil }})
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
		if err := tr.WriteRTP(p, origin.Add(time.Duration(i)*20*time.Millisecond)); err != nil {
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

// newTrack is muxer.NewTrack for options that must be valid.
func newTrack(t testing.TB, o muxer.Options) *muxer.Track {
	t.Helper()
	tr, err := muxer.NewTrack(o)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

type discardCloser struct{}

func (discardCloser) Write(p []byte) (int, error) { return len(p), nil }
func (discardCloser) Close() error                { return nil }

// idleTap is a Tap nobody listens to, as live.Stream is then.
type idleTap struct{ listening atomic.Bool }

func (*idleTap) Begin(time.Time, int, int) {}
func (t *idleTap) Wrote([]byte) {
	if t.listening.Load() {
		panic("listening")
	}
}
func (t *idleTap) Packet([]byte, int64, int) {
	if t.listening.Load() {
		panic("listening")
	}
}

// BenchmarkTrackWriteRTP measures the write path per publisher packet
// (ns/op = ns/packet, allocs/op = allocs/packet) once the anchor window has
// passed: in order, with DTX holes (silence), with 5% loss (concealment) and
// with every tenth pair swapped (the jitter buffer copies); and steady with
// a Tap nobody listens to (a live stream's idle cost).
func BenchmarkTrackWriteRTP(b *testing.B) {
	payload := bytes.Repeat([]byte{0x55}, 80) // 32 kbit/s at 20 ms
	payload[0] = 0x78                         // SILK WB 20 ms
	for _, format := range formats {
		for _, bc := range []string{"steady", "dtx", "loss", "reorder", "tapped"} {
			b.Run(format+"/"+bc, func(b *testing.B) {
				o := muxer.Options{Format: format,
					Open: func(time.Time, int) (io.WriteCloser, error) { return discardCloser{}, nil }}
				if bc == "tapped" {
					o.Tap = &idleTap{}
				}
				tr := newTrack(b, o)
				p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SSRC: 1}, Payload: payload}
				var seq uint16
				var ts uint32
				var at time.Duration
				write := func(seq uint16, ts uint32, at time.Duration) {
					p.SequenceNumber, p.Timestamp = seq, ts
					if err := tr.WriteRTP(p, origin.Add(at)); err != nil {
						b.Fatal(err)
					}
				}
				for range 100 { // past the anchor window
					write(seq, ts, at)
					seq, ts, at = seq+1, ts+960, at+20*time.Millisecond
				}
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					switch {
					case bc == "dtx" && i%10 == 0:
						ts += 400 * ms
						at += 400 * time.Millisecond
					case bc == "loss" && i%20 == 0:
						seq, ts, at = seq+1, ts+960, at+20*time.Millisecond
					case bc == "reorder" && i%20 == 0:
						write(seq+1, ts+960, at+20*time.Millisecond) // overtakes seq
						continue
					case bc == "reorder" && i%20 == 1:
						write(seq, ts, at+25*time.Millisecond)
						seq, ts, at = seq+2, ts+1920, at+40*time.Millisecond
						continue
					}
					write(seq, ts, at)
					seq, ts, at = seq+1, ts+960, at+20*time.Millisecond
				}
				b.StopTimer()
				if err := tr.Close(); err != nil {
					b.Fatal(err)
				}
				if st := tr.Stats(); st.Late+st.Duplicates+st.Resyncs > 0 {
					b.Fatalf("stats %+v", st)
				}
			})
		}
	}
}
