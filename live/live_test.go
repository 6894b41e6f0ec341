package live

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/trackrec/trackrec/live/libopus"
	"github.com/trackrec/trackrec/live/resample"
	"github.com/trackrec/trackrec/muxer"
	"github.com/trackrec/trackrec/muxer/ogg"
	"github.com/trackrec/trackrec/testbed"
)

// recorded is a track being written through a real muxer, its stream
// published on a hub.
type recorded struct {
	t      *testing.T
	stream *Stream
	mux    *muxer.Track
	path   string
	pkts   [][]byte
	seq    uint16
	ts     uint32
	at     time.Time
	k      int
}

func newRecorded(t *testing.T, h *Hub, participant, track string) *recorded {
	t.Helper()
	tone, err := testbed.ReadOpusFile("../testdata/tone.ogg")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorded{t: t, pkts: tone.Packets, seq: 100, ts: 9000, at: time.Now()}
	r.stream = h.NewStream(TrackInfo{Room: "room", Participant: participant, TrackSID: track, Source: "microphone", Format: muxer.FormatOgg})
	dir := t.TempDir()
	r.mux, err = muxer.NewTrack(muxer.Options{
		Tap: r.stream,
		Open: func(start time.Time, _ int) (io.WriteCloser, error) {
			r.path = filepath.Join(dir, track+".ogg")
			r.stream.SetPath(r.path)
			return os.Create(r.path)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	r.stream.Publish(nil)
	return r
}

// send writes n packets of 20 ms, arriving 20 ms apart (faster than real
// time: the test does not wait).
func (r *recorded) send(n int) {
	for range n {
		p := &rtp.Packet{Header: rtp.Header{SSRC: 7, SequenceNumber: r.seq, Timestamp: r.ts}, Payload: r.pkts[r.k%len(r.pkts)]}
		if err := r.mux.WriteRTP(p, r.at); err != nil {
			r.t.Fatal(err)
		}
		r.k++
		r.seq++
		r.ts += 960
		r.at = r.at.Add(20 * time.Millisecond)
	}
}

// gap lets d pass with no packet (a mute): both clocks run.
func (r *recorded) gap(d time.Duration) {
	r.at = r.at.Add(d)
	r.ts += uint32(d.Seconds() * 48000)
}

func (r *recorded) close() []byte {
	if err := r.mux.Close(); err != nil {
		r.t.Fatal(err)
	}
	r.stream.End()
	b, err := os.ReadFile(r.path)
	if err != nil {
		r.t.Fatal(err)
	}
	return b
}

// keeper is a Sink that keeps everything.
type keeper struct {
	mu    sync.Mutex
	audio []byte
	msgs  []Message
	block chan struct{} // if set, Audio waits for it once
}

func (c *keeper) Audio(b []byte) error {
	if c.block != nil {
		<-c.block
		c.block = nil
	}
	c.mu.Lock()
	c.audio = append(c.audio, b...)
	c.mu.Unlock()
	return nil
}

func (c *keeper) Message(m Message) error {
	c.mu.Lock()
	c.msgs = append(c.msgs, m)
	c.mu.Unlock()
	return nil
}

func (c *keeper) types() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, m := range c.msgs {
		if m.Type != "position" {
			out = append(out, m.Type)
		}
	}
	return out
}

// run starts a session and waits until it listens.
func run(t *testing.T, h *Hub, s *Stream, req Request, sink Sink) <-chan error {
	t.Helper()
	sess, err := h.Open(req)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	before := h.Stats().Consumers
	go func() { done <- sess.Run(context.Background(), sink) }()
	for deadline := time.Now().Add(5 * time.Second); !s.listening.Load() || h.Stats().Consumers == before; {
		if time.Now().After(deadline) {
			t.Fatal("session never attached")
		}
		time.Sleep(time.Millisecond)
	}
	return done
}

func wait(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("session did not end")
		return nil
	}
}

// decodeFile decodes every audio packet of an Ogg Opus file continuously
// at 48 kHz, drops the pre-skip and resamples to rate: what a PCM session
// of the whole track must send.
func decodeFile(t *testing.T, file []byte, rate, channels int) []int16 {
	t.Helper()
	d, err := libopus.NewDecoder(48000, channels)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	r := bytes.NewReader(file)
	var off int64
	var out []int16
	pcm := make([]int16, 48000*channels*libopus.MaxFrameMs/1000)
	preSkip := 0
	var granule int64
	for {
		p, err := ogg.ReadPageAt(r, off, nil)
		if err != nil {
			break
		}
		off += int64(len(p.Raw))
		if p.Granule > 0 {
			granule = p.Granule
		}
		pk := p.Packets(nil)
		if p.Seq == 0 {
			preSkip = int(pk[0][10]) | int(pk[0][11])<<8
			continue
		}
		if p.Granule == 0 {
			continue
		}
		for _, x := range pk {
			n, err := d.Decode(x, pcm)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, pcm[:n*channels]...)
		}
	}
	// RFC 7845 end trimming: the last granule is the stream's end (a
	// filler Close may add past it does not play).
	out = out[preSkip*channels : granule*int64(channels)]
	if rate == 48000 {
		return out
	}
	rs, err := resample.New(rate, channels, 0)
	if err != nil {
		t.Fatal(err)
	}
	return rs.Flush(int64(len(out)/channels), rs.Write(out, nil))
}

func TestOggLiveIsTheFile(t *testing.T) {
	h := NewHub(Options{})
	r := newRecorded(t, h, "alice", "TR_a")
	var c keeper
	done := run(t, h, r.stream, Request{Room: "room", Participant: "alice"}, &c)
	r.send(150)
	r.gap(3 * time.Second)
	r.send(150)
	file := r.close()
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c.audio, file) {
		t.Fatalf("live Ogg (%d bytes) differs from the file (%d bytes)", len(c.audio), len(file))
	}
	if got := c.types(); len(got) != 3 || got[0] != "start" || got[1] != "track_ended" || got[2] != "end" {
		t.Fatalf("messages %v, want start, track_ended, end", got)
	}
}

func TestPCMFromStartMatchesDecodeOfFile(t *testing.T) {
	for _, tc := range []struct{ rate, channels int }{{16000, 1}, {48000, 2}, {24000, 1}} {
		h := NewHub(Options{})
		r := newRecorded(t, h, "alice", "TR_a")
		r.send(150) // 3 s on disk (and in the pending page) before the consumer comes
		zero := time.Duration(0)
		var c keeper
		done := run(t, h, r.stream, Request{Room: "room", Participant: "alice", Format: FormatPCM, Rate: tc.rate, Channels: tc.channels, From: &zero}, &c)
		r.send(50)
		r.gap(2 * time.Second)
		r.send(100)
		file := r.close()
		if err := wait(t, done); err != nil {
			t.Fatal(err)
		}
		want := decodeFile(t, file, tc.rate, tc.channels)
		got := pcmOf(c.audio)
		if len(got) != len(want) {
			t.Fatalf("%d Hz x%d: %d samples, the file decodes to %d", tc.rate, tc.channels, len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%d Hz x%d: sample %d is %d, the file's decode %d", tc.rate, tc.channels, i, got[i], want[i])
			}
		}
	}
}

func pcmOf(b []byte) []int16 {
	out := make([]int16, len(b)/2)
	for i := range out {
		out[i] = int16(uint16(b[2*i]) | uint16(b[2*i+1])<<8)
	}
	return out
}

// A consumer that reconnects with the position of what it got last loses
// and repeats nothing: pages for Ogg, samples for PCM.
func TestResumeFrom(t *testing.T) {
	t.Run("ogg", func(t *testing.T) {
		h := NewHub(Options{})
		r := newRecorded(t, h, "alice", "TR_a")
		ctx, cancel := context.WithCancel(context.Background())
		first := &cutter{after: 4, cancel: cancel}
		sess, err := h.Open(Request{Room: "room", Participant: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- sess.Run(ctx, first) }()
		waitListening(t, r.stream)
		r.send(250)
		if err := wait(t, done); !errors.Is(err, context.Canceled) {
			t.Fatalf("first session: %v", err)
		}
		from := time.Duration(math.Round(*first.lastPos * float64(time.Second)))
		var second keeper
		done2 := run(t, h, r.stream, Request{Room: "room", Participant: "alice", From: &from}, &second)
		r.send(100)
		file := r.close()
		if err := wait(t, done2); err != nil {
			t.Fatal(err)
		}
		head := headLen(t, file)
		if !bytes.Equal(second.audio[:head], file[:head]) {
			t.Fatal("the resumed session did not start with the headers")
		}
		joined := append(append([]byte(nil), first.audio...), second.audio[head:]...)
		if !bytes.Equal(joined, file) {
			i := 0
			for i < len(joined) && i < len(file) && joined[i] == file[i] {
				i++
			}
			t.Fatalf("first session (%d bytes) + resumed (%d) is not the file (%d): they differ from byte %d", len(first.audio), len(second.audio)-head, len(file), i)
		}
	})
	t.Run("pcm", func(t *testing.T) {
		h := NewHub(Options{})
		r := newRecorded(t, h, "alice", "TR_a")
		r.send(100)
		var first keeper
		ctx, cancel := context.WithCancel(context.Background())
		sess, err := h.Open(Request{Room: "room", Participant: "alice", Format: FormatPCM})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- sess.Run(ctx, &first) }()
		waitListening(t, r.stream)
		r.send(60)
		// The first consumer goes once it has 1 s; the second resumes at its
		// position.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
			first.mu.Lock()
			n := len(first.audio)
			first.mu.Unlock()
			if n >= 32000 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the first consumer got no second of audio")
			}
		}
		cancel()
		if err := wait(t, done); !errors.Is(err, context.Canceled) {
			t.Fatalf("first session: %v", err)
		}
		first.mu.Lock()
		got1 := len(first.audio) / 2
		var start float64
		for _, m := range first.msgs {
			if m.Type == "start" {
				start = *m.Position
			}
		}
		first.mu.Unlock()
		from := time.Duration(math.Round((start + float64(got1)/16000) * float64(time.Second)))
		var second keeper
		done2 := run(t, h, r.stream, Request{Room: "room", Participant: "alice", Format: FormatPCM, From: &from}, &second)
		r.send(100)
		file := r.close()
		if err := wait(t, done2); err != nil {
			t.Fatal(err)
		}
		want := decodeFile(t, file, 16000, 1)
		first0 := int(math.Round(start * 16000))
		got := append(pcmOf(first.audio[:got1*2]), pcmOf(second.audio)...)
		if len(got) != len(want)-first0 {
			t.Fatalf("first %d + resumed %d samples; the file from the first's start holds %d", got1, len(second.audio)/2, len(want)-first0)
		}
		// The resumed decoder starts 80 ms early: its samples are the file's
		// up to rounding, not bit for bit.
		if snr := snrDB(want[first0+got1:], got[got1:]); snr < 30 {
			t.Fatalf("resumed samples %.1f dB from the file's decode", snr)
		}
	})
}

// cutter is a Sink that cancels its session after n audio pages.
type cutter struct {
	keeper
	after   int
	n       int
	lastPos *float64
	cancel  func()
}

func (c *cutter) Audio(b []byte) error {
	if c.n >= c.after+1 { // the headers, then after pages
		return context.Canceled
	}
	c.n++
	return c.keeper.Audio(b)
}

func (c *cutter) Message(m Message) error {
	if m.Type == "position" && c.n <= c.after+1 {
		p := *m.Position
		c.lastPos = &p
		if c.n == c.after+1 {
			c.cancel()
		}
	}
	return c.keeper.Message(m)
}

func waitListening(t *testing.T, s *Stream) {
	for deadline := time.Now().Add(5 * time.Second); !s.listening.Load(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("session never attached")
		}
	}
}

func headLen(t *testing.T, file []byte) int {
	r := bytes.NewReader(file)
	off := int64(0)
	for {
		p, err := ogg.ReadPageAt(r, off, nil)
		if err != nil {
			t.Fatal(err)
		}
		if p.Granule != 0 {
			return int(off)
		}
		off += int64(len(p.Raw))
	}
}

func snrDB(want, got []int16) float64 {
	var sig, noise float64
	for i := range want {
		d := float64(want[i]) - float64(got[i])
		sig += float64(want[i]) * float64(want[i])
		noise += d * d
	}
	if noise == 0 {
		return math.Inf(1)
	}
	return 10 * math.Log10(sig/noise)
}

// A consumer that stops reading is closed once it is MaxLag behind; the
// others and the file are unaffected.
func TestSlowConsumerIsClosed(t *testing.T) {
	h := NewHub(Options{MaxLag: time.Second})
	r := newRecorded(t, h, "alice", "TR_a")
	stalled := &keeper{block: make(chan struct{})}
	var ok keeper
	doneStalled := run(t, h, r.stream, Request{Room: "room", Participant: "alice", Format: FormatPCM}, stalled)
	doneOK := run(t, h, r.stream, Request{Room: "room", Participant: "alice"}, &ok)
	r.send(100)
	time.Sleep(1500 * time.Millisecond)
	close(stalled.block)
	if err := wait(t, doneStalled); !errors.Is(err, ErrBehind) {
		t.Fatalf("stalled consumer: %v, want ErrBehind", err)
	}
	r.send(100)
	file := r.close()
	if err := wait(t, doneOK); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ok.audio, file) {
		t.Fatal("the consumer that kept up did not get the file")
	}
	if st := h.Stats(); st.Dropped != 1 || st.Consumers != 0 {
		t.Fatalf("stats %+v, want 1 dropped, 0 connected", st)
	}
}

func TestNotFoundAndBadRequests(t *testing.T) {
	h := NewHub(Options{})
	newRecorded(t, h, "alice", "TR_a")
	for _, tc := range []struct {
		req  Request
		want error
	}{
		{Request{Room: "room", Participant: "bob"}, ErrNotFound},
		{Request{Room: "other", Participant: "alice"}, ErrNotFound},
		{Request{Room: "room", Participant: "alice", Track: "TR_b"}, ErrNotFound},
	} {
		if _, err := h.Open(tc.req); !errors.Is(err, tc.want) {
			t.Errorf("%+v: %v, want %v", tc.req, err, tc.want)
		}
	}
	neg := -time.Second
	for _, req := range []Request{
		{Room: "room", Participant: "alice", Format: "mp3"},
		{Room: "room", Participant: "alice", Format: FormatPCM, Rate: 44100},
		{Room: "room", Participant: "alice", Format: FormatPCM, Channels: 6},
		{Room: "room", Participant: "alice", From: &neg},
	} {
		if _, err := h.Open(req); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("%+v accepted (%v)", req, err)
		}
	}
}

// A participant who publishes again: a PCM session says so and goes on
// with the new track, the time between the tracks as silence; one for a
// named track ends with it; an Ogg session that follows starts a new
// logical stream.
func TestRepublishContinues(t *testing.T) {
	h := NewHub(Options{})
	done := h.Recording("room", "alice")
	defer done()
	first := newRecorded(t, h, "alice", "TR_a")
	var pcm, named, oggs keeper
	donePCM := run(t, h, first.stream, Request{Room: "room", Participant: "alice", Format: FormatPCM}, &pcm)
	doneNamed := run(t, h, first.stream, Request{Room: "room", Participant: "alice", Track: "TR_a", Format: FormatPCM}, &named)
	doneOgg := run(t, h, first.stream, Request{Room: "room", Participant: "alice", Follow: true}, &oggs)
	first.send(100)
	file1 := first.close()
	if err := wait(t, doneNamed); err != nil {
		t.Fatal(err)
	}
	// The new track starts 1.5 s after the first one's last packet.
	second := newRecorded(t, h, "alice", "TR_b")
	second.at = first.at.Add(1500 * time.Millisecond)
	waitListening(t, second.stream) // both following sessions attach
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		second.stream.mu.Lock()
		n := len(second.stream.cursors)
		second.stream.mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions follow the new track", n)
		}
	}
	second.send(100)
	file2 := second.close()
	done()
	for _, d := range []<-chan error{donePCM, doneOgg} {
		if err := wait(t, d); err != nil {
			t.Fatal(err)
		}
	}
	if got := pcm.types(); !slices.Equal(got, []string{"start", "track_ended", "track", "track_ended", "end"}) {
		t.Fatalf("PCM messages %v", got)
	}
	if got := named.types(); !slices.Equal(got, []string{"start", "track_ended", "end"}) {
		t.Fatalf("named-track messages %v", got)
	}
	if got := oggs.types(); !slices.Equal(got, []string{"start", "track_ended", "track", "track_ended", "end"}) {
		t.Fatalf("Ogg messages %v", got)
	}
	if !bytes.Equal(oggs.audio, append(append([]byte(nil), file1...), file2...)) {
		t.Fatal("the following Ogg session is not the two files, one after the other")
	}
	// PCM: the first track, the silence between, the second track; sample
	// n of the session plays at start.at + n/rate.
	d1, d2 := decodeFile(t, file1, 16000, 1), decodeFile(t, file2, 16000, 1)
	got := pcmOf(pcm.audio)
	if !slices.Equal(got[:len(d1)], d1) {
		i := 0
		for i < len(d1) && got[i] == d1[i] {
			i++
		}
		t.Fatalf("the session does not begin with the first track: differs from sample %d of %d; messages %+v", i, len(d1), pcm.msgs[:2])
	}
	var start, next Message
	for _, m := range pcm.msgs {
		switch m.Type {
		case "start":
			start = m
		case "track":
			next = m
		}
	}
	at := start.At.Add(time.Duration(*next.Samples) * time.Second / 16000)
	if d := at.Sub(next.At); d > 100*time.Microsecond || d < -100*time.Microsecond || next.Track != "TR_b" {
		t.Fatalf("second track at sample %d (%v), its message says %v", *next.Samples, at, next.At)
	}
	gap := got[len(d1):*next.Samples]
	for i, v := range gap {
		if v != 0 {
			t.Fatalf("sample %d between the tracks is %d", i, v)
		}
	}
	// The second file starts on its second; the session takes it from its
	// own first sample's instant on.
	skip := int(math.Round(*next.Position * 16000))
	if !slices.Equal(got[*next.Samples:], d2[skip:]) {
		t.Fatalf("the session's second track (%d samples) is not the second file from %d (%d)", len(got)-int(*next.Samples), skip, len(d2)-skip)
	}
}

// A long silence is written at once when its end arrives (120 ms packets,
// half-second pages): the ring grows rather than close consumers that
// keep up.
func TestLongSilenceKeepsConsumers(t *testing.T) {
	for _, tc := range []struct {
		format string
		gap    time.Duration
	}{{FormatOgg, 150 * time.Second}, {FormatPCM, 30 * time.Second}} {
		h := NewHub(Options{})
		r := newRecorded(t, h, "alice", "TR_a")
		var k keeper
		done := run(t, h, r.stream, Request{Room: "room", Participant: "alice", Format: tc.format}, &k)
		r.send(100)
		r.gap(tc.gap)
		r.send(100)
		file := r.close()
		if err := wait(t, done); err != nil {
			t.Fatalf("%s: a consumer that kept up: %v", tc.format, err)
		}
		if tc.format == FormatOgg && !bytes.Equal(k.audio, file) {
			t.Fatal("the Ogg consumer did not get the file")
		}
		if got, want := len(k.audio)/2, len(decodeFile(t, file, 16000, 1)); tc.format == FormatPCM && got != want {
			t.Fatalf("PCM: %d samples, the file %d", got, want)
		}
	}
}
