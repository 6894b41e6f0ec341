package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/labstack/echo/v4"

	"github.com/trackrec/trackrec/live"
)

// Live streams (GET /recordings/live): see the live package and the README.
const (
	// CloseBehind is the WebSocket close code of a consumer that fell
	// behind the live edge by more than its buffer (LIVE_MAX_LAG).
	CloseBehind = 4001
	// livePing is how often a WebSocket session pings: often enough for
	// proxies that cut idle connections at 30 s or more.
	livePing = 15 * time.Second
	// liveWriteTimeout ends a session whose client has stopped reading
	// altogether (no window for even a close frame).
	liveWriteTimeout = 30 * time.Second
	// liveSendBuffer bounds the kernel's share of a WebSocket consumer's
	// buffer, so falling behind shows in the session, not in megabytes of
	// socket buffer.
	liveSendBuffer = 32 << 10
)

// LiveHub is what the live endpoint needs of the live streams.
type LiveHub interface {
	Open(req live.Request) (*live.Session, error)
}

func (h *handlers) live(c echo.Context) error {
	if h.liveHub == nil {
		return echo.NewHTTPError(http.StatusNotFound, "live streams are not served here")
	}
	req, err := liveRequest(c)
	if err != nil {
		return err
	}
	ws := websocket.IsWebSocketUpgrade(c.Request())
	req.Follow = ws
	sess, err := h.liveHub.Open(req)
	switch {
	case errors.Is(err, live.ErrNotFound):
		if h.liveOwner != nil && c.Request().Header.Get(forwardedHeader) == "" {
			// In a fleet: the instance that records the participant serves it.
			base, ferr := h.liveOwner(c.Request().Context(), req.Room, req.Participant)
			if ferr == nil && base != "" {
				return h.forwardLive(c, base)
			}
		}
		return echo.NewHTTPError(http.StatusNotFound, "no recording of that participant (and track) is running here")
	case errors.Is(err, live.ErrFormat):
		return echo.NewHTTPError(http.StatusConflict, err.Error())
	case err != nil:
		return echo.NewHTTPError(http.StatusBadRequest, err.Error())
	}
	log := h.log.With("room", req.Room, "participant", req.Participant, "track", req.Track, "format", req.Format)
	if ws {
		return h.liveWebSocket(c, sess, log)
	}
	return h.liveHTTP(c, sess, log)
}

// forwardedHeader marks a live request one instance passed to another,
// which then never passes it on again.
const forwardedHeader = "X-Trackrec-Forwarded"

// forwardLive passes the request, WebSocket upgrade included, to the
// instance at base and streams its answer back.
func (h *handlers) forwardLive(c echo.Context, base string) error {
	target, err := url.Parse(base)
	if err != nil || target.Host == "" {
		return echo.NewHTTPError(http.StatusBadGateway, "the instance that records the participant announced no usable address")
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Header.Set(forwardedHeader, "1")
		},
		FlushInterval: -1, // every chunk at once: it is live audio
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			// Not the request's URL: its query may hold the token.
			h.log.Warn("live stream not forwarded", "to", target.Host, "err", errors.Unwrap(err))
			w.Header().Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
			w.WriteHeader(http.StatusBadGateway)
			_ = json.NewEncoder(w).Encode(errorBody{Error: "the instance that records the participant did not answer"})
		},
	}
	rp.ServeHTTP(c.Response(), c.Request())
	return nil
}

// liveRequest reads and checks the query.
func liveRequest(c echo.Context) (live.Request, error) {
	q := c.QueryParams()
	req := live.Request{
		Room: q.Get("room"), Participant: q.Get("participant"), Track: q.Get("track"),
		Format: q.Get("format"),
	}
	for _, f := range []struct{ name, value string }{{"room", req.Room}, {"participant", req.Participant}} {
		if err := checkName(f.name, f.value); err != nil {
			return req, echo.NewHTTPError(http.StatusBadRequest, err.Error())
		}
	}
	if req.Track != "" {
		if err := checkName("track", req.Track); err != nil {
			return req, echo.NewHTTPError(http.StatusBadRequest, err.Error())
		}
	}
	for _, f := range []struct {
		name string
		dst  *int
	}{{"rate", &req.Rate}, {"channels", &req.Channels}} {
		v := q.Get(f.name)
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return req, echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("%s must be a whole number, not %q", f.name, v))
		}
		if req.Format != live.FormatPCM {
			return req, echo.NewHTTPError(http.StatusBadRequest, f.name+" applies to format=pcm only")
		}
		*f.dst = n
	}
	if v := q.Get("from"); v != "" {
		s, err := strconv.ParseFloat(v, 64)
		if err != nil || s < 0 || s > 1e7 {
			return req, echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("from must be seconds into the track's file (0 or more), not %q", v))
		}
		// Rounded: a position printed from a granule must not land a
		// nanosecond before it.
		d := time.Duration(math.Round(s * float64(time.Second)))
		req.From = &d
	}
	return req, nil
}

// liveHTTP streams the audio as a chunked response until the track ends.
func (h *handlers) liveHTTP(c echo.Context, sess *live.Session, log *slog.Logger) error {
	req := sess.Request() // with its defaults: the type names what is sent
	res := c.Response()
	ct := "audio/ogg"
	if req.Format == live.FormatPCM {
		ct = fmt.Sprintf("audio/L16;rate=%d;channels=%d", req.Rate, req.Channels)
	}
	res.Header().Set(echo.HeaderContentType, ct)
	res.Header().Set("Cache-Control", "no-store")
	res.Header().Set("X-Content-Type-Options", "nosniff")
	res.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(res.Writer)
	_ = rc.Flush()
	err := sess.Run(c.Request().Context(), httpSink{res: res, rc: rc})
	switch {
	case err == nil:
	case errors.Is(err, live.ErrBehind):
		log.Warn("live consumer fell behind: closed")
		// Cut the response short (no final chunk): the client sees an
		// error, not a clean end.
		panic(http.ErrAbortHandler)
	case errors.Is(err, context.Canceled):
	default:
		log.Info("live stream ended", "err", err)
	}
	return nil
}

type httpSink struct {
	res *echo.Response
	rc  *http.ResponseController
}

func (s httpSink) Audio(b []byte) error {
	_ = s.rc.SetWriteDeadline(time.Now().Add(liveWriteTimeout))
	if _, err := s.res.Write(b); err != nil {
		return err
	}
	return s.rc.Flush()
}

func (httpSink) Message(live.Message) error { return nil }

var upgrader = websocket.Upgrader{
	// Browsers send an Origin; the token, not the origin, is the guard.
	CheckOrigin:     func(*http.Request) bool { return true },
	ReadBufferSize:  1024,
	WriteBufferSize: 16 << 10,
}

// liveWebSocket serves a session over a WebSocket: audio as binary
// messages, the session's messages as JSON text, pings every livePing.
func (h *handlers) liveWebSocket(c echo.Context, sess *live.Session, log *slog.Logger) error {
	conn, err := upgrader.Upgrade(c.Response(), c.Request(), nil)
	if err != nil {
		return nil // the upgrader answered the client
	}
	defer conn.Close()
	if tc, ok := conn.NetConn().(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(liveSendBuffer)
	}
	ctx, cancel := context.WithCancel(c.Request().Context())
	defer cancel()
	ws := &wsSink{conn: conn}
	// The reader answers pings and hears the client close.
	go func() {
		defer cancel()
		conn.SetReadLimit(4 << 10)
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				return
			}
		}
	}()
	go func() {
		t := time.NewTicker(livePing)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := ws.ping(); err != nil {
					cancel()
					return
				}
			}
		}
	}()
	err = sess.Run(ctx, ws)
	code, reason := websocket.CloseNormalClosure, "stream ended"
	switch {
	case err == nil:
	case errors.Is(err, live.ErrBehind):
		code, reason = CloseBehind, "consumer fell behind the live stream"
		log.Warn("live consumer fell behind: closed")
	case errors.Is(err, context.Canceled):
		return nil
	default:
		code, reason = websocket.CloseInternalServerErr, "stream failed"
		log.Info("live stream ended", "err", err)
	}
	ws.close(code, reason)
	return nil
}

// wsSink writes a session to a WebSocket; writes from the session and the
// pinger are serialised, as gorilla/websocket requires.
type wsSink struct {
	mu   sync.Mutex
	conn *websocket.Conn
}

func (s *wsSink) write(kind int, b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.conn.SetWriteDeadline(time.Now().Add(liveWriteTimeout))
	return s.conn.WriteMessage(kind, b)
}

func (s *wsSink) Audio(b []byte) error { return s.write(websocket.BinaryMessage, b) }

func (s *wsSink) Message(m live.Message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return s.write(websocket.TextMessage, b)
}

func (s *wsSink) ping() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(10*time.Second))
}

func (s *wsSink) close(code int, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	msg := websocket.FormatCloseMessage(code, reason)
	_ = s.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(5*time.Second))
	// Give the client a moment to answer the close before the socket goes.
	_ = s.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
}

// tokenFromQuery lets a WebSocket client that cannot set headers pass its
// token as access_token; the header wins when both are there.
func tokenFromQuery(r *http.Request) string {
	if h := r.Header.Get(echo.HeaderAuthorization); h != "" {
		return h
	}
	if t := strings.TrimSpace(r.URL.Query().Get("access_token")); t != "" {
		return "Bearer " + t
	}
	return ""
}
