package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/trackrec/trackrec/completion"
	"github.com/trackrec/trackrec/spool"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/livekit/protocol/auth"
	"github.com/trackrec/trackrec/bot"
	"github.com/trackrec/trackrec/dedup"
	"github.com/trackrec/trackrec/recorder"
)

// Seconds a refused start asks the client to wait (Retry-After): a full
// instance frees up as recordings stop; one shutting down is gone soon and a
// load balancer sends the retry elsewhere.
const (
	retryFullSeconds     = 5
	retryShutdownSeconds = 10
)

// MaxNameBytes bounds room names and identities, as LiveKit's own limits do
// in practice; longer values are refused rather than truncated.
const MaxNameBytes = 1024

// Recorder is what the API needs of the supervisor.
type Recorder interface {
	Start(ctx context.Context, room, participant string, opts ...recorder.StartOption) (recorder.RecordingInfo, bool, error)
	Stop(ctx context.Context, room, participant string) (recorder.RecordingInfo, error)
	List() []recorder.RecordingInfo
	Recovered() []spool.RecoveredFile
	Completions() []completion.Run
}

// Options configure the API beyond its recorder.
type Options struct {
	// Auth, if set, guards start, stop and the list with LiveKit access
	// tokens carrying the roomRecord grant; nil leaves them open.
	Auth auth.KeyProvider
	// Webhooks configures the LiveKit webhook receiver; without it the
	// receiver answers 404.
	Webhooks Webhooks
	// Ready, if set, tells GET /readyz whether the service can record
	// (LiveKit reachable, storage writable). The route is unauthenticated:
	// pass a rationed check such as probe.Readiness.Check.
	Ready func(ctx context.Context) error
	// Metrics, if set, is what GET /metrics serves besides the recorder's
	// state; pass the one the upload queue reports to. Nil makes a new one.
	Metrics *Metrics
	// Live, if set, serves GET /recordings/live from this instance's live
	// streams; without it the route answers 404.
	Live LiveHub
	// LiveOwner, in a fleet, says where the instance that records a
	// participant serves its API ("" when none does, or this one): a live
	// stream asked here is forwarded there.
	LiveOwner func(ctx context.Context, room, participant string) (string, error)
	// Local, if set, is this instance's own recorder, for /metrics, when
	// the Recorder given to New answers for a whole fleet (metrics stay per
	// instance; Prometheus adds them up).
	Local Recorder
}

// FleetLister is a Recorder that lists a whole fleet: GET /recordings then
// names the instances that did not answer in time, never leaving them out
// silently.
type FleetLister interface {
	ListFleet(ctx context.Context) ([]recorder.RecordingInfo, []string)
}

// New returns the HTTP handler.
func New(rec Recorder, log *slog.Logger, opts ...Options) *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = errorHandler(log)
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{
		LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
			log.Error("panic in handler", "path", c.Path(), "err", err, "stack", string(stack))
			return err
		},
	}))
	e.Use(middleware.BodyLimit("64K"))
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics()
	}
	if o.Webhooks.Dedup == nil {
		// Zero arguments are the defaults: NewMemory cannot fail.
		o.Webhooks.Dedup, _ = dedup.NewMemory(0, 0)
	}
	h := &handlers{rec: rec, log: log, hooks: o.Webhooks, ready: o.Ready, metrics: o.Metrics, liveHub: o.Live, liveOwner: o.LiveOwner}
	guard := func(next echo.HandlerFunc) echo.HandlerFunc { return next }
	liveGuard := guard
	if o.Auth != nil {
		guard = requireRecordGrant(o.Auth)
		liveGuard = recordGrant(o.Auth, tokenFromQuery)
	}
	e.GET("/healthz", h.health)
	e.GET("/readyz", h.readyz)
	e.GET("/recordings", h.list, guard)
	local := o.Local
	if local == nil {
		local = rec
	}
	e.GET("/metrics", echo.WrapHandler(o.Metrics.handler(local)))
	e.POST("/recordings/start", h.start, guard)
	e.POST("/recordings/stop", h.stop, guard)
	e.POST("/recordings/webhooks", h.webhook)
	e.GET("/recordings/live", h.live, liveGuard)
	return e
}

type handlers struct {
	rec   Recorder
	log   *slog.Logger
	hooks Webhooks
	ready func(ctx context.Context) error

	metrics   *Metrics
	liveHub   LiveHub
	liveOwner func(ctx context.Context, room, participant string) (string, error)
}

// Request is the body of start and stop, the payload livekit-recorder took.
type Request struct {
	Room        string `json:"room"`
	Participant string `json:"participant"`
	// WaitForParticipant (start only) arms a recording for someone who has
	// not joined yet; without it a start for a room or participant LiveKit
	// does not know is 404.
	WaitForParticipant bool `json:"wait_for_participant,omitempty"`
}

type errorBody struct {
	Error string `json:"error"`
}

func (h *handlers) health(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers 200 when the service can record, 503 with the reason when
// it cannot: a load balancer takes the instance out until it can.
func (h *handlers) readyz(c echo.Context) error {
	if h.ready != nil {
		ctx, cancel := context.WithTimeout(c.Request().Context(), 5*time.Second)
		defer cancel()
		if err := h.ready(ctx); err != nil {
			return echo.NewHTTPError(http.StatusServiceUnavailable, "not ready: "+err.Error())
		}
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}

func (h *handlers) list(c echo.Context) error {
	var list []recorder.RecordingInfo
	var unanswered []string
	if fl, ok := h.rec.(FleetLister); ok {
		list, unanswered = fl.ListFleet(c.Request().Context())
	} else {
		list = h.rec.List()
	}
	// recovered: files an earlier process left in the spool, with their
	// uploads; rooms: each complete room's mixdown/pipeline run.
	body := map[string]any{
		"recordings": orEmpty(list),
		"recovered":  orEmpty(h.rec.Recovered()),
		"rooms":      orEmpty(h.rec.Completions()),
	}
	if len(unanswered) > 0 {
		body["unanswered_instances"] = unanswered
	}
	return c.JSON(http.StatusOK, body)
}

func (h *handlers) start(c echo.Context) error {
	req, err := bind(c)
	if err != nil {
		return err
	}
	var opts []recorder.StartOption
	if req.WaitForParticipant {
		opts = append(opts, recorder.WaitForParticipant())
	}
	info, created, err := h.rec.Start(c.Request().Context(), req.Room, req.Participant, opts...)
	if err != nil {
		return h.fail(c, req, err)
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return c.JSON(status, info)
}

func (h *handlers) stop(c echo.Context) error {
	req, err := bind(c)
	if err != nil {
		return err
	}
	if req.WaitForParticipant {
		return echo.NewHTTPError(http.StatusBadRequest, "wait_for_participant applies to start only")
	}
	info, err := h.rec.Stop(c.Request().Context(), req.Room, req.Participant)
	if err != nil {
		return h.fail(c, req, err)
	}
	return c.JSON(http.StatusOK, info)
}

// fail maps supervisor errors to status codes.
func (h *handlers) fail(c echo.Context, req Request, err error) error {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, recorder.ErrNoParticipant):
		status = http.StatusNotFound
		err = fmt.Errorf("%w (\"wait_for_participant\": true records them once they join)", err)
	case errors.Is(err, recorder.ErrNotFound), errors.Is(err, recorder.ErrNoRoom):
		status = http.StatusNotFound
	case errors.Is(err, recorder.ErrOwned):
		status = http.StatusConflict
	case errors.Is(err, recorder.ErrUnavailable):
		status = http.StatusServiceUnavailable
		c.Response().Header().Set("Retry-After", strconv.Itoa(retryFullSeconds))
	case errors.Is(err, recorder.ErrFull):
		status = http.StatusServiceUnavailable
		c.Response().Header().Set("Retry-After", strconv.Itoa(retryFullSeconds))
	case errors.Is(err, recorder.ErrShuttingDown):
		status = http.StatusServiceUnavailable
		c.Response().Header().Set("Retry-After", strconv.Itoa(retryShutdownSeconds))
	case errors.Is(err, context.DeadlineExceeded):
		status = http.StatusGatewayTimeout
		err = fmt.Errorf("LiveKit did not answer in time: %w", err)
	case errors.Is(err, context.Canceled):
		status = 499 // client closed the request
	case errors.Is(err, bot.ErrUnreachable), errors.Is(err, recorder.ErrLookup):
		status = http.StatusBadGateway
	}
	if status >= 500 {
		h.log.Error("request failed", "room", req.Room, "participant", req.Participant, "status", status, "err", err)
	}
	return echo.NewHTTPError(status, err.Error())
}

// bind reads and checks a start/stop body. The JSON must be one object with
// known fields; names must be non-empty UTF-8 without control characters.
func bind(c echo.Context) (Request, error) {
	var req Request
	if ct := c.Request().Header.Get(echo.HeaderContentType); !isJSON(ct) {
		return req, echo.NewHTTPError(http.StatusUnsupportedMediaType, "Content-Type must be application/json, not "+strconv.Quote(ct))
	}
	raw, err := io.ReadAll(c.Request().Body)
	if err != nil {
		return req, err // the body limit's 413, or a broken connection
	}
	if !utf8.Valid(raw) {
		// encoding/json would quietly turn it into U+FFFD: another name.
		return req, echo.NewHTTPError(http.StatusBadRequest, "body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, echo.NewHTTPError(http.StatusBadRequest, "body must be a JSON object {\"room\": ..., \"participant\": ...}: "+err.Error())
	}
	if dec.More() {
		return req, echo.NewHTTPError(http.StatusBadRequest, "body must hold one JSON object")
	}
	for _, f := range []struct{ name, value string }{{"room", req.Room}, {"participant", req.Participant}} {
		if err := checkName(f.name, f.value); err != nil {
			return req, echo.NewHTTPError(http.StatusBadRequest, err.Error())
		}
	}
	return req, nil
}

// isJSON accepts application/json and any +json type, with parameters.
func isJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

func checkName(field, v string) error {
	switch {
	case strings.TrimSpace(v) == "":
		return fmt.Errorf("%s is required", field)
	case len(v) > MaxNameBytes:
		return fmt.Errorf("%s is longer than %d bytes", field, MaxNameBytes)
	case !utf8.ValidString(v):
		return fmt.Errorf("%s is not valid UTF-8", field)
	case strings.IndexFunc(v, unicode.IsControl) >= 0:
		return fmt.Errorf("%s contains control characters", field)
	}
	return nil
}

// errorHandler writes every error, including echo's own 404/405/413, as JSON.
func errorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		status, msg := http.StatusInternalServerError, "internal error"
		var he *echo.HTTPError
		if errors.As(err, &he) {
			status = he.Code
			msg = fmt.Sprint(he.Message)
		} else {
			log.Error("unhandled error", "path", c.Path(), "err", err)
		}
		if c.Request().Method == http.MethodHead {
			err = c.NoContent(status)
		} else {
			err = c.JSON(status, errorBody{Error: msg})
		}
		if err != nil {
			log.Warn("write error response", "err", err)
		}
	}
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
