package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"

	"github.com/trackrec/trackrec/live"
	"github.com/trackrec/trackrec/live/resample"
	"github.com/trackrec/trackrec/muxer/ogg"
	"github.com/trackrec/trackrec/muxer/opus"
	"github.com/trackrec/trackrec/testbed"
)

// chunk is one piece of a live stream as a client got it.
type chunk struct {
	data []byte
	at   time.Time
}

// liveClient is one consumer of GET /recordings/live.
type liveClient struct {
	name   string
	audio  []chunk
	msgs   []live.Message
	closed *websocket.CloseError // how a WebSocket session ended
	err    error
	text   bool          // the last message read was a JSON one
	done   chan struct{} // closed when its reader returned
}

func (c *liveClient) bytes() []byte {
	var b []byte
	for _, ch := range c.audio {
		b = append(b, ch.data...)
	}
	return b
}

func (c *liveClient) msg(typ string) *live.Message {
	for i := range c.msgs {
		if c.msgs[i].Type == typ {
			return &c.msgs[i]
		}
	}
	return nil
}

func (c *liveClient) types() []string {
	var out []string
	for _, m := range c.msgs {
		if m.Type != "position" {
			out = append(out, m.Type)
		}
	}
	return out
}

func liveURL(s *service, scheme string, q url.Values) string {
	u, _ := url.Parse(s.url)
	u.Scheme = scheme
	u.Path = "/recordings/live"
	u.RawQuery = q.Encode()
	return u.String()
}

// dialLive opens a WebSocket session, the token in the query as a browser
// would pass it. rcvbuf, if set, shrinks the client's socket buffer.
func dialLive(t *testing.T, s *service, q url.Values, rcvbuf int) *websocket.Conn {
	t.Helper()
	q.Set("access_token", s.token)
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	if rcvbuf > 0 {
		nd := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf) })
			return errors.Join(err, serr)
		}}
		d.NetDialContext = nd.DialContext
	}
	conn, resp, err := d.Dial(liveURL(s, "ws", q), nil)
	if err != nil {
		body := ""
		if resp != nil {
			b, _ := io.ReadAll(resp.Body)
			body = fmt.Sprintf("%d %s", resp.StatusCode, b)
		}
		t.Fatalf("live WebSocket %v: %v %s", q, err, body)
	}
	return conn
}

// readWS reads a session until it closes, or until stop says so.
func readWS(conn *websocket.Conn, c *liveClient, stop func(*liveClient) bool) {
	defer conn.Close()
	for {
		kind, b, err := conn.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				c.closed = ce
			} else {
				c.err = err
			}
			return
		}
		now := time.Now()
		c.text = kind == websocket.TextMessage
		if kind == websocket.BinaryMessage {
			c.audio = append(c.audio, chunk{b, now})
		} else {
			var m live.Message
			if err := json.Unmarshal(b, &m); err != nil {
				c.err = fmt.Errorf("message %q: %w", b, err)
				return
			}
			c.msgs = append(c.msgs, m)
		}
		if stop != nil && stop(c) {
			return
		}
	}
}

// pcm16 reads little-endian 16-bit samples.
func pcm16(b []byte) []int16 {
	out := make([]int16, len(b)/2)
	for i := range out {
		out[i] = int16(uint16(b[2*i]) | uint16(b[2*i+1])<<8)
	}
	return out
}

// ffmpegPCM decodes a file with ffmpeg through libopus at 48 kHz mono and
// resamples it to 16 kHz the way live streams are (package resample).
func ffmpegPCM(t *testing.T, path string) []int16 {
	t.Helper()
	out, err := exec.Command("ffmpeg", "-v", "error", "-c:a", "libopus", "-i", path, "-ac", "1", "-f", "s16le", "-").Output()
	if err != nil {
		t.Fatalf("ffmpeg decode %s: %v", path, err)
	}
	in := pcm16(out)
	rs, err := resample.New(16000, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	return rs.Flush(int64(len(in)), rs.Write(in, nil))
}

// snrAt is the signal-to-noise ratio of got against want[at:], in dB.
func snrAt(want, got []int16, at int) float64 {
	var sig, noise float64
	for i := range got {
		if at+i >= len(want) {
			break
		}
		d := float64(want[at+i]) - float64(got[i])
		sig += float64(want[at+i]) * float64(want[at+i])
		noise += d * d
	}
	if noise == 0 {
		return math.Inf(1)
	}
	return 10 * math.Log10(sig/noise)
}

// bestSNR compares got with want[at:] at offsets within ±3 samples (two
// resamplers may place a sample a fraction apart) and returns the best
// signal-to-noise ratio in dB and its offset.
func bestSNR(want, got []int16, at int) (float64, int) {
	best, bestOff := math.Inf(-1), 0
	for off := -3; off <= 3; off++ {
		var sig, noise float64
		n := 0
		for i := range got {
			j := at + off + i
			if j < 0 || j >= len(want) {
				continue
			}
			d := float64(want[j]) - float64(got[i])
			sig += float64(want[j]) * float64(want[j])
			noise += d * d
			n++
		}
		if n < len(got)/2 || noise == 0 && sig == 0 {
			continue
		}
		snr := math.Inf(1)
		if noise > 0 {
			snr = 10 * math.Log10(sig/noise)
		}
		if snr > best {
			best, bestOff = snr, off
		}
	}
	return best, bestOff
}

// lags returns, for each PCM message, how long after the instant of its
// first sample it arrived (the start message names the instant of the
// session's first sample).
func lags(c *liveClient, rate int) []time.Duration {
	st := c.msg("start")
	var out []time.Duration
	var n int64
	for _, ch := range c.audio {
		at := st.At.Add(time.Duration(n) * time.Second / time.Duration(rate))
		out = append(out, ch.at.Sub(at))
		n += int64(len(ch.data) / 2)
	}
	return out
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestLiveStreams: while a participant speaks, mutes for 3 s and speaks
// again, 20 live clients on its track get the recording as it is written:
// Ogg bytes identical to the file, PCM at 16 kHz that keeps pace with the
// wall clock and matches ffmpeg's decode of the file; a client that
// reconnects with from= loses and repeats nothing; one that stops reading
// is closed with 4001 and nothing else is touched.
func TestLiveStreams(t *testing.T) {
	s := startService(t, map[string]string{"LIVE_MAX_LAG": "2s"})
	room := "live-room"
	p := publish(t, room, "ann")
	s.mustStart(room, "ann")

	base := url.Values{"room": {room}, "participant": {"ann"}}
	with := func(kv ...string) url.Values { return withQuery(base, kv...) }
	var wg sync.WaitGroup
	var mu sync.Mutex
	var clients []*liveClient
	add := func(name string, run func(c *liveClient)) *liveClient {
		c := &liveClient{name: name, done: make(chan struct{})}
		mu.Lock()
		clients = append(clients, c)
		mu.Unlock()
		wg.Add(1)
		go func() { defer wg.Done(); defer close(c.done); run(c) }()
		return c
	}

	// Plain HTTP, Ogg: what curl or ffmpeg -i URL would read.
	req, _ := http.NewRequest(http.MethodGet, liveURL(s, "http", base), nil)
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "audio/ogg" {
		t.Fatalf("GET live: %v %v", err, resp)
	}
	httpOgg := add("http-ogg", func(c *liveClient) {
		defer resp.Body.Close()
		buf := make([]byte, 64<<10)
		for {
			n, err := resp.Body.Read(buf)
			if n > 0 {
				c.audio = append(c.audio, chunk{append([]byte(nil), buf[:n]...), time.Now()})
			}
			if err != nil {
				if err != io.EOF {
					c.err = err
				}
				return
			}
		}
	})
	pcm := add("ws-pcm", func(c *liveClient) {
		readWS(dialLive(t, s, with("format", "pcm", "rate", "16000", "channels", "1"), 0), c, nil)
	})
	var oggs, pcms []*liveClient
	for i := range 11 {
		oggs = append(oggs, add(fmt.Sprintf("ws-ogg-%d", i), func(c *liveClient) { readWS(dialLive(t, s, with(), 0), c, nil) }))
		if i < 4 {
			pcms = append(pcms, add(fmt.Sprintf("ws-pcm-%d", i), func(c *liveClient) { readWS(dialLive(t, s, with("format", "pcm"), 0), c, nil) }))
		}
	}
	// Reconnecting clients: each goes after a while and comes back at its
	// position.
	oggCut := add("ws-ogg-cut", func(c *liveClient) {
		readWS(dialLive(t, s, with(), 0), c, func(c *liveClient) bool {
			return len(c.audio) >= 6 && c.text && c.msgs[len(c.msgs)-1].Type == "position"
		})
	})
	pcmCut := add("ws-pcm-cut", func(c *liveClient) {
		readWS(dialLive(t, s, with("format", "pcm"), 0), c, func(c *liveClient) bool { return len(c.bytes()) >= 2*16000*6 })
	})
	// The stalled client: 48 kHz stereo into a small socket buffer, not
	// read for 6 s.
	stalledConn := dialLive(t, s, with("format", "pcm", "rate", "48000", "channels", "2"), 4096)
	stalled := add("ws-stalled", func(c *liveClient) {
		time.Sleep(6 * time.Second)
		readWS(stalledConn, c, nil)
	})

	// Speak, mute for 3 s, speak; then stop.
	waitFor(t, 10*time.Second, "the track's file", func() bool {
		return len(s.list()) > 0 && len(s.list()[0].Tracks) > 0 && s.list()[0].Tracks[0].File != ""
	})
	time.Sleep(4 * time.Second)
	if err := p.Mute(); err != nil {
		t.Fatal(err)
	}
	mutedAt := time.Now()
	time.Sleep(3 * time.Second)
	if err := p.Unmute(); err != nil {
		t.Fatal(err)
	}
	unmutedAt := time.Now()
	time.Sleep(3 * time.Second)

	// The cut clients come back where they left.
	for _, c := range []*liveClient{oggCut, pcmCut} {
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s did not go", c.name)
		}
	}
	fromOgg := *oggCut.msgs[len(oggCut.msgs)-1].Position
	oggResumed := add("ws-ogg-resumed", func(c *liveClient) {
		readWS(dialLive(t, s, with("from", fmt.Sprint(fromOgg)), 0), c, nil)
	})
	pcmStart := pcmCut.msg("start")
	pcmGot := len(pcmCut.bytes()) / 2
	fromPCM := *pcmStart.Position + float64(pcmGot)/16000
	pcmResumed := add("ws-pcm-resumed", func(c *liveClient) {
		readWS(dialLive(t, s, with("format", "pcm", "from", fmt.Sprintf("%.7f", fromPCM)), 0), c, nil)
	})
	time.Sleep(3 * time.Second)
	final := s.mustStop(room, "ann")
	wg.Wait()
	// 20 at once, then the two reconnects.
	if len(clients) != 22 {
		t.Fatalf("%d clients", len(clients))
	}

	tr := fileOf(t, final, p.TrackSID())
	file, err := os.ReadFile(tr.Path)
	if err != nil {
		t.Fatal(err)
	}
	// The recording is the publisher's, whatever its consumers did.
	checkTrackFile(t, tr.Path, p, p.TrackSID(), 0)

	// Ogg: byte for byte the file; ffmpeg decodes the live stream.
	for _, c := range append([]*liveClient{httpOgg}, oggs...) {
		if c.err != nil || c.closed != nil && c.closed.Code != websocket.CloseNormalClosure {
			t.Errorf("%s ended with %v %v", c.name, c.err, c.closed)
		}
		if !bytes.Equal(c.bytes(), file) {
			t.Errorf("%s: %d live bytes are not the file's %d", c.name, len(c.bytes()), len(file))
		}
	}
	liveOgg := filepath.Join(t.TempDir(), "live.ogg")
	if err := os.WriteFile(liveOgg, httpOgg.bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	within(t, "live Ogg decoded duration", decodedDuration(t, liveOgg), decodedDuration(t, tr.Path), time.Millisecond)
	if got := oggs[0].types(); !slices.Equal(got, []string{"start", "muted", "unmuted", "track_ended", "end"}) {
		t.Errorf("Ogg WebSocket messages %v", got)
	}

	// PCM: the samples of the file from the session's first one, each
	// session exactly; close to ffmpeg's decode.
	decodedDuration(t, tr.Path) // ffmpeg decodes it without a complaint
	ref := ffmpegPCM(t, tr.Path)
	for _, c := range append([]*liveClient{pcm}, pcms...) {
		st := c.msg("start")
		if st == nil || c.closed == nil || c.closed.Code != websocket.CloseNormalClosure {
			t.Errorf("%s: start %v, closed %v %v", c.name, st, c.closed, c.err)
			continue
		}
		first := int64(math.Round(*st.Position * 16000))
		want := int64(len(ref)) - first
		if got := int64(len(c.bytes()) / 2); got != want {
			t.Errorf("%s: %d samples from %.4f s; the file holds %d from there", c.name, got, *st.Position, want)
		}
		if !st.At.Equal(st.FileStart.Add(time.Duration(*st.Position*float64(time.Second))).Round(time.Microsecond)) && math.Abs(st.At.Sub(*st.FileStart).Seconds()-*st.Position) > 1e-4 {
			t.Errorf("%s: start instant %v is not file start %v + %.4f s", c.name, st.At, st.FileStart, *st.Position)
		}
	}
	// A session that began with the file is its decode, sample for sample.
	for _, c := range append([]*liveClient{pcm}, pcms...) {
		samples := pcm16(c.bytes())
		first := int(math.Round(*c.msg("start").Position * 16000))
		diff := -1
		for i := range samples {
			if first+i >= len(ref) || samples[i] != ref[first+i] {
				diff = i
				break
			}
		}
		if first != 0 || diff >= 0 || len(samples) != len(ref) {
			snr, _ := bestSNR(ref, samples, first)
			t.Errorf("%s: from sample %d, %d samples; ffmpeg's decode has %d; first difference at %d (%.1f dB)", c.name, first, len(samples), len(ref), diff, snr)
		}
	}
	// Keeping pace: how late each message came after the instant of its
	// first sample, in the second before the mute and the second after the
	// unmute; a mute compressed out of time would move the second by its
	// length.
	l := lags(pcm, 16000)
	var before, soon, after []time.Duration
	for i, ch := range pcm.audio {
		switch {
		case ch.at.Before(mutedAt) && ch.at.After(mutedAt.Add(-time.Second)):
			before = append(before, l[i])
		case ch.at.After(unmutedAt.Add(time.Second)) && ch.at.Before(unmutedAt.Add(2*time.Second)):
			soon = append(soon, l[i])
		case ch.at.After(unmutedAt.Add(4*time.Second)) && ch.at.Before(unmutedAt.Add(5500*time.Millisecond)):
			after = append(after, l[i])
		}
	}
	if len(soon) > 0 {
		t.Logf("PCM latency in the second after the unmute: least %v, median %v (the SFU's timestamps across a mute can be a frame short of the wall clock; the muxer's drift bound re-syncs within 5 s)",
			slices.Min(soon), median(soon))
	}
	if len(before) < 10 || len(after) < 10 {
		t.Fatalf("PCM messages around the mute: %d before, %d after", len(before), len(after))
	}
	mb, ma := slices.Min(before), slices.Min(after)
	t.Logf("PCM latency (receipt minus the sample's instant): median %v, max %v before the mute; median %v, max %v 4 s after; least %v / %v",
		median(before), slices.Max(before), median(after), slices.Max(after), mb, ma)
	if d := ma - mb; d > 20*time.Millisecond || d < -20*time.Millisecond {
		t.Errorf("across the 3 s mute the sample clock moved %v against the wall clock (want within 20 ms)", d)
	}
	if got := pcm.types(); !slices.Contains(got, "muted") || !slices.Contains(got, "unmuted") || got[len(got)-1] != "end" {
		t.Errorf("PCM messages %v", got)
	}
	oggLatency(t, httpOgg, p)
	pcmLatency(t, file, pcm, p)
	for _, line := range outputLines(s.logs.String()) {
		if strings.Contains(line, "re-sync") {
			t.Log(line)
		}
	}

	// Reconnects: nothing lost, nothing twice.
	head := oggHeadLen(t, file)
	joined := append(oggCut.bytes(), oggResumed.bytes()[head:]...)
	if !bytes.Equal(joined, file) {
		t.Errorf("Ogg: %d bytes before the cut and %d after are not the file's %d", len(oggCut.bytes()), len(oggResumed.bytes())-head, len(file))
	}
	rs := pcmResumed.msg("start")
	if rs == nil || math.Abs(*rs.Position-fromPCM) > 1.0/16000 {
		t.Fatalf("resumed PCM start %+v, want position %.5f", rs, fromPCM)
	}
	firstCut := int64(math.Round(*pcmStart.Position * 16000))
	total := int64(pcmGot) + int64(len(pcmResumed.bytes())/2)
	if want := int64(len(ref)) - firstCut; total != want {
		t.Errorf("PCM: %d samples before the cut and %d after; the file holds %d from the first start", pcmGot, len(pcmResumed.bytes())/2, want)
	}
	// The resumed decoder starts 80 ms before the position, not at the
	// file's start: its samples are the file's up to a rounding.
	resumed := pcm16(pcmResumed.bytes())
	at := int(firstCut) + pcmGot
	snr2 := snrAt(ref, resumed, at)
	same, firstDiff, lastDiff := 0, -1, -1
	for i := range resumed {
		if at+i < len(ref) && resumed[i] == ref[at+i] {
			same++
		} else {
			if firstDiff < 0 {
				firstDiff = i
			}
			lastDiff = i
		}
	}
	t.Logf("resumed at %.4f s: samples differ from %d to %d", fromPCM, firstDiff, lastDiff)
	t.Logf("resumed PCM vs ffmpeg's decode: %.1f dB, %d of %d samples identical", snr2, same, len(resumed))
	if snr2 < 60 || *rs.Position < 4 {
		t.Errorf("resumed at %.3f s: %.1f dB from ffmpeg's decode (want at least 60 dB, resuming 4 s or more into the file)", *rs.Position, snr2)
	}

	// The stalled client was closed with the documented code; the others
	// kept up.
	if stalled.closed == nil || stalled.closed.Code != 4001 {
		t.Errorf("stalled client ended with %v %v, want close code 4001", stalled.closed, stalled.err)
	}
	if got := s.metric("trackrec_live_consumers_dropped_total"); got != 1 {
		t.Errorf("trackrec_live_consumers_dropped_total %v, want 1", got)
	}
	if got := s.metric("trackrec_live_consumers"); got != 0 {
		t.Errorf("trackrec_live_consumers %v after the end, want 0", got)
	}
	if got := s.metric("trackrec_live_bytes_sent_total"); got < float64(len(file)*9) {
		t.Errorf("trackrec_live_bytes_sent_total %v", got)
	}
}

// oggLatency prints how long after the publisher sent a packet its page
// reached the HTTP client: at most a page (0.5 s) plus delivery.
func oggLatency(t *testing.T, c *liveClient, p *testbed.Publisher) {
	t.Helper()
	sent := map[string]time.Time{}
	for _, s := range p.Sent() {
		if _, ok := sent[string(s.Payload)]; !ok || s.At.After(sent[string(s.Payload)]) {
			sent[string(s.Payload)] = s.At // the latest send of a looped payload
		}
	}
	var lastOfPage, firstOfPage []time.Duration
	var off int64
	all := c.bytes()
	r := bytes.NewReader(all)
	// The receipt time of each byte offset.
	var ends []int64
	n := int64(0)
	for _, ch := range c.audio {
		n += int64(len(ch.data))
		ends = append(ends, n)
	}
	for {
		pg, err := ogg.ReadPageAt(r, off, nil)
		if err != nil {
			break
		}
		off += int64(len(pg.Raw))
		i := sort.Search(len(ends), func(i int) bool { return ends[i] >= off })
		got := c.audio[i].at
		pk := pg.Packets(nil)
		if len(pk) == 0 {
			continue
		}
		if at, ok := sent[string(pk[len(pk)-1])]; ok && got.After(at) && got.Sub(at) < 10*time.Second {
			lastOfPage = append(lastOfPage, got.Sub(at))
		}
		if at, ok := sent[string(pk[0])]; ok && got.After(at) && got.Sub(at) < 10*time.Second {
			firstOfPage = append(firstOfPage, got.Sub(at))
		}
	}
	if len(lastOfPage) == 0 {
		t.Error("no Ogg page ends on a publisher packet")
		return
	}
	t.Logf("Ogg latency from the publisher's send of a page's last packet to its receipt: median %v, max %v over %d pages; of its first packet: median %v, max %v (pages are at most 0.5 s)",
		median(lastOfPage), slices.Max(lastOfPage), len(lastOfPage), median(firstOfPage), slices.Max(firstOfPage))
}

// pcmLatency prints how long after the publisher sent a packet the PCM
// message that carries its first sample reached the client.
func pcmLatency(t *testing.T, file []byte, c *liveClient, p *testbed.Publisher) {
	t.Helper()
	type placed struct {
		raw     int64
		n       int
		payload []byte
	}
	var pkts []placed
	r := bytes.NewReader(file)
	var off, raw int64
	preSkip := int64(0)
	for {
		pg, err := ogg.ReadPageAt(r, off, nil)
		if err != nil {
			break
		}
		off += int64(len(pg.Raw))
		if pg.Seq == 0 {
			h := pg.Packets(nil)[0]
			preSkip = int64(h[10]) | int64(h[11])<<8
			continue
		}
		if pg.Granule == 0 {
			continue
		}
		for _, pk := range pg.Packets(nil) {
			n, err := opus.PacketSamples(pk)
			if err != nil {
				t.Fatal(err)
			}
			pkts = append(pkts, placed{raw, n, pk})
			raw += int64(n)
		}
	}
	sends := map[string][]time.Time{}
	for _, s := range p.Sent() {
		sends[string(s.Payload)] = append(sends[string(s.Payload)], s.At)
	}
	var lat []time.Duration
	var k int64
	// The first second of a track waits for its anchor window: steady
	// latency is measured after it.
	steady := c.audio[0].at.Add(2 * time.Second)
	for _, ch := range c.audio {
		at := k*3 + preSkip // the message's first sample on the raw timeline
		k += int64(len(ch.data) / 2)
		i := sort.Search(len(pkts), func(i int) bool { return pkts[i].raw+int64(pkts[i].n) > at })
		if i == len(pkts) {
			continue
		}
		var sent time.Time
		for _, s := range sends[string(pkts[i].payload)] {
			if s.Before(ch.at) && s.After(sent) {
				sent = s
			}
		}
		if !sent.IsZero() && ch.at.Sub(sent) < 5*time.Second && ch.at.After(steady) {
			lat = append(lat, ch.at.Sub(sent))
		}
	}
	if len(lat) < 100 {
		t.Errorf("only %d PCM messages carry a publisher packet", len(lat))
		return
	}
	sorted := slices.Clone(lat)
	slices.Sort(sorted)
	t.Logf("PCM latency from the publisher's send to receipt, after the anchor window: median %v, 95th percentile %v, max %v over %d messages",
		median(lat), sorted[len(sorted)*95/100], sorted[len(sorted)-1], len(lat))
}

func oggHeadLen(t *testing.T, file []byte) int {
	t.Helper()
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

// TestLiveErrors: what a client gets wrong is a 4xx with a JSON body.
func TestLiveErrors(t *testing.T) {
	s := startService(t, nil)
	room := "live-errors"
	publish(t, room, "bea")
	s.mustStart(room, "bea")
	for _, tc := range []struct {
		query string
		token bool
		want  int
	}{
		{"room=" + room + "&participant=bea", false, 401},
		{"room=" + room + "&participant=nobody", true, 404},
		{"room=" + room + "&participant=bea&track=TR_none", true, 404},
		{"room=" + room + "&participant=bea&format=mp3", true, 400},
		{"room=" + room + "&participant=bea&format=pcm&rate=44100", true, 400},
		{"room=" + room + "&participant=bea&format=pcm&channels=3", true, 400},
		{"room=" + room + "&participant=bea&rate=16000", true, 400},
		{"room=" + room + "&participant=bea&from=-1", true, 400},
		{"room=" + room + "&participant=bea&from=soon", true, 400},
		{"participant=bea", true, 400},
	} {
		req, _ := http.NewRequest(http.MethodGet, s.url+"/recordings/live?"+tc.query, nil)
		if tc.token {
			req.Header.Set("Authorization", "Bearer "+s.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Error string `json:"error"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != tc.want || err != nil || body.Error == "" {
			t.Errorf("%s: %d %q (%v), want %d with a JSON error", tc.query, resp.StatusCode, body.Error, err, tc.want)
		}
	}
}

// wsReceiver is a test WebSocket server in the role of a transcription
// service that a track egress streams to.
type wsReceiver struct {
	url string

	mu          sync.Mutex
	contentType string
	conns       int
	pings       int
	audio       []chunk
	texts       []string
	closeCode   int
}

func newWSReceiver(t *testing.T) *wsReceiver {
	t.Helper()
	r := &wsReceiver{}
	up := websocket.Upgrader{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		conn, err := up.Upgrade(w, req, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		r.mu.Lock()
		r.contentType = req.Header.Get("Content-Type")
		r.conns++
		r.mu.Unlock()
		conn.SetPingHandler(func(data string) error {
			r.mu.Lock()
			r.pings++
			r.mu.Unlock()
			return conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
		})
		for {
			kind, b, err := conn.ReadMessage()
			if err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					r.mu.Lock()
					r.closeCode = ce.Code
					r.mu.Unlock()
				}
				return
			}
			r.mu.Lock()
			if kind == websocket.BinaryMessage {
				r.audio = append(r.audio, chunk{b, time.Now()})
			} else {
				r.texts = append(r.texts, string(b))
			}
			r.mu.Unlock()
		}
	}))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	r.url = "ws://" + l.Addr().String() + "/pcm?token=WS-SECRET-TOKEN"
	return r
}

// TestEgressWebsocket: StartTrackEgress with a websocket_url, through
// livekit-server, streams the track's PCM to a WebSocket server for its
// whole length, over two minutes and across a mute: 48 kHz mono, sample
// for sample the decode of the track's file, {"muted": ...} frames,
// pings, and an EgressInfo with the stream's result and no token.
func TestEgressWebsocket(t *testing.T) {
	// Not parallel: two minutes of streaming beside the other tests' would
	// only add to their load.
	e := newEgressBed(t)
	rec := startService(t, withDir(t, map[string]string{
		"LIVEKIT_URL": e.server.URL, "LIVEKIT_API_KEY": e.server.APIKey, "LIVEKIT_API_SECRET": e.server.APISecret,
		"REDIS_ADDRESS": e.redis.Addr(), "EGRESS_WORKER": "true", "AUTO_RECORD": "false", "MIXDOWN": "none",
	}))
	recv := newWSReceiver(t)
	p := publishOn(t, e.server, "ws-egress-room", "wes")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ec := lksdk.NewEgressClient(e.server.HTTPURL, e.server.APIKey, e.server.APISecret)
	started, err := ec.StartTrackEgress(ctx, &livekit.TrackEgressRequest{RoomName: "ws-egress-room", TrackId: p.TrackSID(),
		Output: &livekit.TrackEgressRequest_WebsocketUrl{WebsocketUrl: recv.url}})
	if err != nil {
		t.Fatalf("StartTrackEgress: %v", err)
	}
	began := time.Now()
	time.Sleep(60 * time.Second)
	if err := p.Mute(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if err := p.Unmute(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(began.Add(125 * time.Second)))
	if _, err := ec.StopEgress(ctx, &livekit.StopEgressRequest{EgressId: started.EgressId}); err != nil {
		t.Fatal(err)
	}
	final := e.hooks.waitEnded(t, started.EgressId, time.Minute)
	waitFor(t, 10*time.Second, "the WebSocket closed", func() bool {
		recv.mu.Lock()
		defer recv.mu.Unlock()
		return recv.closeCode != 0
	})

	recv.mu.Lock()
	defer recv.mu.Unlock()
	if recv.contentType != "audio/x-raw" || recv.conns != 1 || recv.closeCode != websocket.CloseNormalClosure {
		t.Errorf("content type %q, %d connections, closed with %d", recv.contentType, recv.conns, recv.closeCode)
	}
	if !slices.Equal(recv.texts, []string{`{"muted":true}`, `{"muted":false}`}) {
		t.Errorf("text frames %q", recv.texts)
	}
	if recv.pings < 7 {
		t.Errorf("%d pings in %v", recv.pings, time.Since(began).Round(time.Second))
	}
	if final.Status != livekit.EgressStatus_EGRESS_COMPLETE || len(final.StreamResults) != 1 || len(final.FileResults) != 1 {
		t.Fatalf("egress ended %s (%s) with streams %v, files %v", final.Status, final.Error, final.StreamResults, final.FileResults)
	}
	sr := final.StreamResults[0]
	if sr.Status != livekit.StreamInfo_FINISHED || strings.Contains(sr.Url, "WS-SECRET-TOKEN") || !strings.Contains(sr.Url, "/pcm") {
		t.Errorf("stream result %v", sr)
	}
	if strings.Contains(rec.logs.String(), "WS-SECRET-TOKEN") {
		t.Error("the recorder logged the WebSocket URL's token")
	}
	// The stream is the file, decoded: 48 kHz mono, every sample.
	path := filepath.Join(rec.dir, final.FileResults[0].Filename)
	checkTrackFile(t, path, p, p.TrackSID(), 0)
	out, err := exec.Command("ffmpeg", "-v", "error", "-c:a", "libopus", "-i", path, "-ac", "1", "-f", "s16le", "-").Output()
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for _, c := range recv.audio {
		got = append(got, c.data...)
	}
	streamed := time.Duration(len(got)/2) * time.Second / 48000
	t.Logf("streamed %v of PCM in %d frames to the WebSocket; the file decodes to %v", streamed, len(recv.audio), time.Duration(len(out)/2)*time.Second/48000)
	if !bytes.Equal(got, out) {
		t.Errorf("the stream (%d bytes) is not the file's decode (%d bytes)", len(got), len(out))
	}
	if streamed < 2*time.Minute {
		t.Errorf("streamed %v, want at least 2 minutes", streamed)
	}
}

// TestLiveAnyInstanceAnswers: in a fleet, a live stream asked of the
// instance that does not record the participant is served through it by
// the one that does, plain HTTP and WebSocket alike, for longer than the
// servers' 30 s ReadTimeout.
func TestLiveAnyInstanceAnswers(t *testing.T) {
	t.Parallel()
	rd := startRedis(t)
	env := func() map[string]string {
		return map[string]string{"REDIS_ADDRESS": rd.Addr(), "MIXDOWN": "none", "LOCAL_DIRECTORY": t.TempDir(), "AUTO_RECORD": "false"}
	}
	fleet := []*service{startService(t, env()), startService(t, env())}
	room := "live-fleet-room"
	p := publish(t, room, "fay")
	first := fleet[0].mustStart(room, "fay")
	other := fleet[1]
	if other.instance() == first.Instance {
		other = fleet[0]
	}
	q := url.Values{"room": {room}, "participant": {"fay"}}
	req, _ := http.NewRequest(http.MethodGet, liveURL(other, "http", q), nil)
	req.Header.Set("Authorization", "Bearer "+other.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET live from the other instance: %v %v", err, resp)
	}
	var viaHTTP liveClient
	httpDone := make(chan struct{})
	go func() {
		defer close(httpDone)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		viaHTTP.audio, viaHTTP.err = []chunk{{b, time.Now()}}, err
	}()
	var viaWS liveClient
	wsDone := make(chan struct{})
	conn := dialLive(t, other, withQuery(q, "format", "pcm"), 0)
	go func() { defer close(wsDone); readWS(conn, &viaWS, nil) }()
	time.Sleep(35 * time.Second)
	holder := fleet[0]
	if holder == other {
		holder = fleet[1]
	}
	final := holder.mustStop(room, "fay")
	<-httpDone
	<-wsDone
	tr := fileOf(t, final, p.TrackSID())
	file, err := os.ReadFile(tr.Path)
	if err != nil {
		t.Fatal(err)
	}
	if viaHTTP.err != nil || !bytes.Equal(viaHTTP.bytes(), file) {
		t.Errorf("forwarded Ogg: %d bytes (%v), the file %d", len(viaHTTP.bytes()), viaHTTP.err, len(file))
	}
	if st := viaWS.msg("start"); st == nil || viaWS.closed == nil || viaWS.closed.Code != websocket.CloseNormalClosure || len(viaWS.bytes()) < 16000*2*34 {
		t.Errorf("forwarded PCM WebSocket: start %v, closed %v (%v), %d bytes", st, viaWS.closed, viaWS.err, len(viaWS.bytes()))
	}
	if strings.Contains(other.logs.String(), other.token) {
		t.Error("the forwarding instance logged the token")
	}
}

// withQuery is q with the key-value pairs kv set.
func withQuery(q url.Values, kv ...string) url.Values {
	out := url.Values{}
	for k, v := range q {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		out.Set(kv[i], kv[i+1])
	}
	return out
}
