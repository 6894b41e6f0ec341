package api

import (
	"net/http"
	"sync"

	"github.com/labstack/echo/v4"
	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	"github.com/livekit/protocol/webhook"
)

// Events is what the webhook receiver hands verified events to.
type Events interface {
	// HandleEvent acts on ev (in the background) and reports whether it is
	// an event the recorder acts on.
	HandleEvent(ev *livekit.WebhookEvent) bool
}

// Webhooks configures the LiveKit webhook receiver.
type Webhooks struct {
	Keys   auth.KeyProvider // LiveKit's API key and secret
	Events Events
}

// recentIDs remembers the last event ids, so LiveKit's retries and replays
// act once.
type recentIDs struct {
	mu    sync.Mutex
	seen  map[string]struct{}
	order []string
	max   int
}

func newRecentIDs(max int) *recentIDs {
	return &recentIDs{seen: map[string]struct{}{}, max: max}
}

// add reports false if id was seen already.
func (r *recentIDs) add(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.seen[id]; ok {
		return false
	}
	r.seen[id] = struct{}{}
	r.order = append(r.order, id)
	if len(r.order) > r.max {
		delete(r.seen, r.order[0])
		r.order = r.order[1:]
	}
	return true
}

// webhook receives LiveKit's webhooks: a request whose signature (JWT over
// the body's SHA-256, made with our API key and secret) does not verify is
// 401 and changes nothing.
func (h *handlers) webhook(c echo.Context) error {
	if h.hooks.Keys == nil || h.hooks.Events == nil {
		return echo.NewHTTPError(http.StatusNotFound, "webhooks are not configured")
	}
	ev, err := webhook.ReceiveWebhookEvent(c.Request(), h.hooks.Keys)
	if err != nil {
		h.log.Warn("webhook refused", "err", err, "remote", c.RealIP())
		h.metrics.webhook("", "unauthorized")
		return echo.NewHTTPError(http.StatusUnauthorized, "webhook not verified: "+err.Error())
	}
	if ev.GetId() != "" && !h.seen.add(ev.GetId()) {
		h.metrics.webhook(ev.GetEvent(), "duplicate")
		return c.JSON(http.StatusOK, map[string]string{"status": "duplicate", "id": ev.GetId()})
	}
	status := "ignored"
	if h.hooks.Events.HandleEvent(ev) {
		status = "accepted"
	}
	h.metrics.webhook(ev.GetEvent(), status)
	h.log.Info("webhook", "event", ev.GetEvent(), "id", ev.GetId(), "room", ev.GetRoom().GetName(),
		"participant", ev.GetParticipant().GetIdentity(), "status", status)
	return c.JSON(http.StatusOK, map[string]string{"status": status, "id": ev.GetId()})
}
