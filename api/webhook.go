package api

import (
	"context"
	"net/http"

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

// Dedup tells a webhook's first delivery from LiveKit's retries and
// replays; dedup.Memory is the in-process one.
type Dedup interface {
	// First reports whether id is seen for the first time, and remembers
	// it. An error means it cannot tell: the webhook is refused with 503
	// and LiveKit sends it again.
	First(ctx context.Context, id string) (bool, error)
}

// Webhooks configures the LiveKit webhook receiver.
type Webhooks struct {
	Keys   auth.KeyProvider // LiveKit's API key and secret
	Events Events
	// Dedup, if set, remembers event ids so that each acts once; nil is a
	// dedup.Memory with its defaults.
	Dedup Dedup
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
	if ev.GetId() != "" {
		first, err := h.hooks.Dedup.First(c.Request().Context(), ev.GetId())
		if err != nil {
			// Acting on a repeat could start a recording twice; LiveKit
			// retries a 503. The body does not echo the store's error.
			h.log.Error("webhook dedup failed", "event", ev.GetEvent(), "id", ev.GetId(), "room", ev.GetRoom().GetName(),
				"participant", ev.GetParticipant().GetIdentity(), "err", err)
			h.metrics.webhook(ev.GetEvent(), "unavailable")
			return echo.NewHTTPError(http.StatusServiceUnavailable, "cannot check the event id for a repeat; send it again")
		}
		if !first {
			h.metrics.webhook(ev.GetEvent(), "duplicate")
			return c.JSON(http.StatusOK, map[string]string{"status": "duplicate", "id": ev.GetId()})
		}
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
