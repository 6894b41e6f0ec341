package egress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/proto"

	"github.com/trackrec/trackrec/live"
)

// A track egress with a websocket_url is served as livekit/egress serves
// it: binary frames of signed 16-bit little-endian PCM and text frames
// {"muted": true|false} as the publisher mutes and unmutes, over a
// connection the worker dials with Content-Type audio/x-raw. Unlike
// livekit/egress: 48 kHz mono (its is stereo), the PCM of the recorded
// timeline (mute, DTX and loss keep their time as silence or concealment),
// a ping every wsPing so idle proxies keep the connection, and no audio
// dropped: a connection that fails or falls behind is dialled again and
// resumes from the track's file where the last one stopped. The track is
// recorded as every track egress is (its file in the recorder's storage,
// listed with the stream's result).

// Live is what the worker needs of the live streams (live.Hub).
type Live interface {
	Open(req live.Request) (*live.Session, error)
}

const (
	wsRate     = 48000
	wsChannels = 1
	wsPing     = 15 * time.Second
	wsDial     = 5 * time.Second
	wsWrite    = 10 * time.Second
	// wsFilepath names the egress's file: the recorder's own layout.
	wsFilepath = "{room_name}/{publisher_identity}-{time}-{track_id}"
	// wsTrackWait is how long a new egress waits for its track's first
	// packets to reach the live stream.
	wsTrackWait = 20 * time.Second
)

// checkWebsocketURL refuses what the worker will not dial.
func checkWebsocketURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return fmt.Errorf("%w: websocket_url is not a URL", ErrInvalid)
	case u.Scheme != "ws" && u.Scheme != "wss":
		return fmt.Errorf("%w: websocket_url must be ws:// or wss://, not %q", ErrInvalid, u.Scheme)
	case u.Host == "":
		return fmt.Errorf("%w: websocket_url names no host", ErrInvalid)
	}
	return nil
}

// redactURL keeps a URL's scheme, host and path: its query, fragment and
// user information may hold a token (a token in the path is shown).
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return redacted
	}
	if u.User != nil {
		u.User = url.User(redacted)
	}
	if u.RawQuery != "" {
		u.RawQuery = redacted
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}

// dialWebsocket opens the egress's connection.
func dialWebsocket(ctx context.Context, raw string) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, wsDial)
	defer cancel()
	h := http.Header{}
	h.Set("Content-Type", "audio/x-raw")
	conn, resp, err := websocket.DefaultDialer.DialContext(ctx, raw, h)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		// The dialer's error names the URL, which may hold a token.
		if resp != nil {
			return nil, fmt.Errorf("websocket %s answered %s", redactURL(raw), resp.Status)
		}
		return nil, fmt.Errorf("websocket %s: could not connect", redactURL(raw))
	}
	return conn, nil
}

// wsStream is the egress's stream: its connection and where it is.
type wsStream struct {
	j      *job
	url    string
	conn   *websocket.Conn // the first connection, dialled at the start
	done   chan struct{}   // closed when run returns
	cancel func()          // ends run

	mu   sync.Mutex
	info *livekit.StreamInfo
}

// run sends the track until it ends, dialling again after a failure: the
// next connection resumes from the file after the last frame the peer
// acknowledged. A session that fails without progress backs off.
func (s *wsStream) run(ctx context.Context) {
	j := s.j
	var from *time.Duration
	conn := s.conn
	backoff := time.Second
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			if conn != nil {
				_ = conn.Close()
			}
			s.end(livekit.StreamInfo_FAILED, "the egress ended before its stream did")
			return
		}
		// Is the track still there? Only then dial.
		sess, err := s.open(ctx, from, attempt == 0)
		if err != nil {
			if conn != nil {
				_ = conn.Close()
			}
			switch {
			case errors.Is(err, live.ErrNotFound) && from != nil:
				s.end(livekit.StreamInfo_FAILED, "the track ended while the WebSocket was reconnecting: its last part is in the file only")
			case errors.Is(err, live.ErrNotFound) && attempt == 0:
				s.end(livekit.StreamInfo_FAILED, "no audio of the track reached the stream")
			case errors.Is(err, live.ErrNotFound):
				s.end(livekit.StreamInfo_FINISHED, "")
			default:
				s.end(livekit.StreamInfo_FAILED, err.Error())
			}
			return
		}
		if conn == nil {
			if conn, err = dialWebsocket(ctx, s.url); err != nil {
				j.log.Warn("egress websocket: dial again", "err", err, "in", backoff)
				if !sleep(ctx, backoff) {
					continue
				}
				backoff = min(2*backoff, maxBackoff)
				continue
			}
		}
		capSendBuffer(conn)
		sink := &wsSink{conn: conn}
		done := make(chan struct{})
		go sink.keepalive(done)
		began := time.Now()
		err = sess.Run(ctx, sink)
		close(done)
		if err == nil {
			sink.close(websocket.CloseNormalClosure, "track ended")
			_ = conn.Close()
			s.end(livekit.StreamInfo_FINISHED, "")
			return
		}
		if p, ok := sink.acked(); ok {
			from = &p
		}
		_ = conn.Close()
		conn = nil
		j.log.Warn("egress websocket: connection lost; resuming from the file", "err", err, "from", from)
		if sink.progress() == 0 || time.Since(began) < time.Second {
			// The peer takes the connection and drops it: do not hammer it.
			if !sleep(ctx, backoff) {
				continue
			}
			backoff = min(2*backoff, maxBackoff)
		} else {
			backoff = time.Second
		}
	}
}

// maxBackoff bounds the wait between two connections.
const maxBackoff = 10 * time.Second

// wsSendBuffer caps the kernel's send buffer, so what a dropped
// connection may have lost (and is sent again) stays small.
const wsSendBuffer = 64 << 10

func capSendBuffer(c *websocket.Conn) {
	if tc, ok := c.NetConn().(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(wsSendBuffer)
	}
}

// open finds the track's live stream, waiting for its first packets when
// the egress is new.
func (s *wsStream) open(ctx context.Context, from *time.Duration, first bool) (*live.Session, error) {
	req := live.Request{Room: s.j.req.RoomName, Participant: s.j.pub.Identity, Track: s.j.req.TrackID,
		Format: live.FormatPCM, Rate: wsRate, Channels: wsChannels, From: from}
	if from == nil {
		zero := time.Duration(0)
		req.From = &zero // the whole file, until a connection got some of it
	}
	deadline := time.Now().Add(wsTrackWait)
	for {
		sess, err := s.j.w.o.Live.Open(req)
		if !errors.Is(err, live.ErrNotFound) || !first || time.Now().After(deadline) {
			return sess, err
		}
		if !sleep(ctx, 100*time.Millisecond) {
			return nil, ctx.Err()
		}
	}
}

// end records the stream's final state for the egress's end.
func (s *wsStream) end(status livekit.StreamInfo_Status, why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.info.Status, s.info.Error = status, why
	s.info.EndedAt = time.Now().UnixNano()
	s.info.Duration = s.info.EndedAt - s.info.StartedAt
}

// result is the stream's StreamInfo now.
func (s *wsStream) result() *livekit.StreamInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return proto.Clone(s.info).(*livekit.StreamInfo)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// wsSink writes a live session as livekit/egress's WebSocket frames and
// keeps, for a resume, where the peer has acknowledged them up to.
type wsSink struct {
	mu   sync.Mutex
	conn *websocket.Conn

	start   float64 // position of the session's first sample (s)
	started bool
	// frames are the last frames written: the bytes on the wire up to the
	// end of each (header included) and the samples sent with it.
	frames  []wsFrame
	wire    int64
	samples int64
	// ackSamples is the samples the peer had acknowledged when last
	// measured (after each write): the bound when the socket can no longer
	// tell (a reset empties its queue).
	ackSamples int64
}

type wsFrame struct{ wire, samples int64 }

// maxFrames covers a full send buffer of 20 ms frames, and then some.
const maxFrames = 512

func (s *wsSink) write(kind int, b []byte, samples int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.conn.SetWriteDeadline(time.Now().Add(wsWrite))
	if err := s.conn.WriteMessage(kind, b); err != nil {
		return err
	}
	s.wire += frameSize(len(b))
	s.samples += samples
	s.frames = append(s.frames, wsFrame{s.wire, s.samples})
	if len(s.frames) > maxFrames {
		s.frames = s.frames[len(s.frames)-maxFrames/2:]
	}
	if q, ok := unsent(s.conn.NetConn()); ok {
		s.ackSamples = s.samplesAt(s.wire - int64(q))
	} else {
		s.ackSamples = s.samples
	}
	return nil
}

// samplesAt (under mu) is the samples of the frames wholly within the
// first got bytes on the wire: a frame cut short is not a message.
func (s *wsSink) samplesAt(got int64) int64 {
	if got >= s.wire {
		return s.samples
	}
	var n int64
	if len(s.frames) > 0 && s.frames[0].wire > got {
		// Older than the frames kept (the send buffer is capped far below
		// them): count back by bytes, rounding toward resending.
		return max(0, s.frames[0].samples-(s.frames[0].wire-got)/2)
	}
	for _, f := range s.frames {
		if f.wire <= got {
			n = f.samples
		}
	}
	return n
}

// frameSize is a client frame on the wire: header, mask key, payload.
func frameSize(n int) int64 {
	h := 2 + 4
	switch {
	case n >= 1<<16:
		h += 8
	case n >= 126:
		h += 2
	}
	return int64(h + n)
}

func (s *wsSink) Audio(b []byte) error {
	return s.write(websocket.BinaryMessage, b, int64(len(b)/2/wsChannels))
}

func (s *wsSink) Message(m live.Message) error {
	switch m.Type {
	case "start":
		s.mu.Lock()
		if m.Position != nil {
			s.start, s.started = *m.Position, true
		}
		s.mu.Unlock()
		if m.Muted != nil && *m.Muted {
			return s.muted(true)
		}
	case "muted", "unmuted":
		return s.muted(m.Type == "muted")
	}
	return nil
}

// progress is the samples written.
func (s *wsSink) progress() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples
}

// acked is the position (into the file) after the last frame the peer
// acknowledged: where the next connection resumes.
func (s *wsSink) acked() (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return 0, false
	}
	samples := s.ackSamples
	if q, ok := unsent(s.conn.NetConn()); ok && q > 0 {
		samples = s.samplesAt(s.wire - int64(q))
	}
	return time.Duration(s.start*float64(time.Second)) + time.Duration(samples)*time.Second/wsRate, true
}

func (s *wsSink) muted(muted bool) error {
	b, err := json.Marshal(struct {
		Muted bool `json:"muted"`
	}{muted})
	if err != nil {
		return err
	}
	return s.write(websocket.TextMessage, b, 0)
}

// position is where the next sample is, in seconds into the file.
func (s *wsSink) position() (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return 0, false
	}
	// In samples, so the resume is exact: from= rounds to the sample.
	return time.Duration(s.start*float64(time.Second)) + time.Duration(s.samples)*time.Second/wsRate, true
}

// keepalive pings until done, and reads (pongs, the peer's close).
func (s *wsSink) keepalive(done <-chan struct{}) {
	go func() {
		for {
			if _, _, err := s.conn.ReadMessage(); err != nil {
				return
			}
		}
	}()
	t := time.NewTicker(wsPing)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			s.mu.Lock()
			err := s.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(wsWrite))
			s.mu.Unlock()
			if err != nil {
				return
			}
		}
	}
}

func (s *wsSink) close(code int, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(2*time.Second))
}
