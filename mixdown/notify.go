package mixdown

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/livekit/protocol/auth"
)

// EventRecordingsComplete is RoomEvent.Event when every recording of a room
// has stopped and every file of it is uploaded.
const EventRecordingsComplete = "recordings_complete"

// EventRecordingsUpdated is RoomEvent.Event for files of a completed room
// that arrived after its recordings_complete listed them as missing (they
// were on an instance of the fleet that died, stored once it came back).
const EventRecordingsUpdated = "recordings_updated"

// RoomEvent is the body of a pipeline webhook: what a room's recordings
// produced. Its JSON keys are chosen so that LiveKit's
// webhook.ReceiveWebhookEvent also accepts it (filling Event, Id and
// CreatedAt, and dropping the rest); receivers that want the tracks verify
// with webhook.Receive and decode the body into a RoomEvent. Example:
//
//	{
//	  "event": "recordings_complete",
//	  "id": "EV_3f1c0a9d2b7e4c5a8d6f0e1b",
//	  "room_name": "standup",
//	  "room_sid": "RM_xyz",
//	  "created_at": 1795255210,
//	  "tracks": [ {...track manifest, as stored beside the track file...} ],
//	  "mixdown": {...mixdown manifest (see ManifestDoc), with its key...}
//	}
type RoomEvent struct {
	Event     string            `json:"event"` // EventRecordingsComplete
	ID        string            `json:"id"`    // stable across retries and restarts (see EventID)
	Room      string            `json:"room_name"`
	RoomSID   string            `json:"room_sid,omitempty"`
	CreatedAt int64             `json:"created_at"` // Unix seconds, as LiveKit's webhooks
	Tracks    []json.RawMessage `json:"tracks"`     // the track manifests
	Mixdown   json.RawMessage   `json:"mixdown,omitempty"`
	// Missing (in a fleet) lists the files known to have been written that
	// are not stored: their instance died and COMPLETION_WAIT passed. Each
	// that arrives later comes in a recordings_updated event.
	Missing []json.RawMessage `json:"missing,omitempty"`
}

// EventID derives a room event's id from what identifies the event: the
// room, its sid and the object keys of its files. The same recordings give
// the same id whichever process sends them, so a receiver can drop
// duplicates, including ones sent again after a restart.
func EventID(room, roomSID string, keys []string) string {
	return eventID(EventRecordingsComplete, room, roomSID, keys)
}

func eventID(event, room, roomSID string, keys []string) string {
	keys = slices.Clone(keys)
	slices.Sort(keys)
	h := sha256.New()
	for _, s := range append([]string{event, room, roomSID}, keys...) {
		// Length-prefixed, so that no two lists hash alike.
		fmt.Fprintf(h, "%d:%s\n", len(s), s)
	}
	return "EV_" + hex.EncodeToString(h.Sum(nil))[:24]
}

// EventIDHeader carries the event id on every delivery attempt (the id is
// also in the body), so a receiver can drop duplicates.
const EventIDHeader = "Webhook-Id"

// WebhookContentType is the Content-Type of a delivery: LiveKit's, which
// tells receivers to check the signature before parsing.
const WebhookContentType = "application/webhook+json"

// Notifier delivers pipeline webhooks, signed the way LiveKit signs its own:
// the Authorization header is an access token (JWT, HS256) made with APIKey and
// APISecret, whose sha256 claim is the base64 SHA-256 of the body. A receiver
// verifies a delivery with
//
//	body, err := webhook.Receive(r, auth.NewSimpleKeyProvider(apiKey, apiSecret))
type Notifier struct {
	URL       string
	APIKey    string
	APISecret string
	// Client sends the requests; nil means a client with a 30 s timeout.
	// Redirects are never followed (a 3xx answer is a failure).
	Client *http.Client
	// MaxAttempts bounds the deliveries tried; 0 means 8.
	MaxAttempts int
	// Logger receives one line per failed attempt and per delivery; nil
	// means slog.Default().
	Logger *slog.Logger
	// MinBackoff and MaxBackoff bound the wait between attempts, which
	// doubles from MinBackoff up to MaxBackoff, with jitter (half fixed, half
	// random), and honours a Retry-After up to MaxBackoff. Zero means 500 ms
	// and 30 s.
	MinBackoff, MaxBackoff time.Duration
}

const (
	defaultMaxAttempts = 8
	defaultMinBackoff  = 500 * time.Millisecond
	defaultMaxBackoff  = 30 * time.Second
	defaultHTTPTimeout = 30 * time.Second
	tokenValidity      = 5 * time.Minute // as LiveKit's notifier
	errorBodyLimit     = 512
)

// StatusError is a delivery answered with a non-2xx status.
type StatusError struct {
	StatusCode int
	Body       string // the start of the response body
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("HTTP %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if b := strings.TrimSpace(e.Body); b != "" {
		msg += ": " + b
	}
	return msg
}

// Retryable reports whether the status is worth another attempt: 5xx and 429.
func (e *StatusError) Retryable() bool {
	return e.StatusCode >= 500 || e.StatusCode == http.StatusTooManyRequests
}

// NotifyEvent encodes ev and delivers it with [Notifier.Notify].
func (n *Notifier) NotifyEvent(ctx context.Context, ev RoomEvent) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("webhook %s: encode: %w", ev.ID, err)
	}
	return n.Notify(ctx, ev.ID, body)
}

// Notify POSTs body, a JSON object whose "id" is eventID, to n.URL, signed,
// with eventID in the EventIDHeader header. Answers 5xx and 429 and network
// errors are retried with exponential backoff and jitter, up to MaxAttempts
// deliveries; any other answer outside 2xx fails at once with a
// *StatusError. Every attempt carries the same body and event id and a
// freshly signed token. Notify returns when a delivery is accepted (2xx),
// when it gives up, or when ctx ends.
func (n *Notifier) Notify(ctx context.Context, eventID string, body []byte) error {
	if err := n.check(eventID, body); err != nil {
		return fmt.Errorf("webhook %s: %w", eventID, err)
	}
	log := n.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("event_id", eventID, "url", redactURL(n.URL))
	client := n.client()
	sum := sha256.Sum256(body)
	bodyHash := base64.StdEncoding.EncodeToString(sum[:])
	maxAttempts := n.MaxAttempts
	if maxAttempts <= 0 {
		maxAttempts = defaultMaxAttempts
	}

	var lastErr error
	for attempt := 1; ; attempt++ {
		began := time.Now()
		retryAfter, err := n.deliver(ctx, client, eventID, bodyHash, body)
		if err == nil {
			log.InfoContext(ctx, "webhook delivered", "attempt", attempt, "took", time.Since(began))
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("webhook %s: attempt %d: %w", eventID, attempt, ctx.Err())
		}
		var se *StatusError
		if errors.As(err, &se) && !se.Retryable() {
			log.WarnContext(ctx, "webhook rejected", "attempt", attempt, "err", err)
			return fmt.Errorf("webhook %s: attempt %d: %w", eventID, attempt, err)
		}
		lastErr = err
		if attempt >= maxAttempts {
			break
		}
		wait := n.backoff(attempt, retryAfter)
		log.WarnContext(ctx, "webhook attempt failed, retrying", "attempt", attempt, "err", err, "wait", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("webhook %s: %w (after %d attempts, last: %v)", eventID, ctx.Err(), attempt, lastErr)
		case <-t.C:
		}
	}
	log.ErrorContext(ctx, "webhook undelivered", "attempts", maxAttempts, "err", lastErr)
	return fmt.Errorf("webhook %s: %w after %d attempts: %w", eventID, ErrUndelivered, maxAttempts, lastErr)
}

// ErrUndelivered marks a delivery that failed only for now (the receiver
// was down or overloaded through every attempt): worth another try later,
// unlike an answer that rejects the event.
var ErrUndelivered = errors.New("not delivered yet")

// check validates the configuration and that body is a JSON object carrying
// eventID as its "id".
func (n *Notifier) check(eventID string, body []byte) error {
	if n.APIKey == "" || n.APISecret == "" {
		return errors.New("no API key or secret")
	}
	u, err := url.Parse(n.URL)
	if err != nil {
		return fmt.Errorf("bad URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("bad URL %q: want http(s)://host/...", redactURL(n.URL))
	}
	if eventID == "" {
		return errors.New("no event id")
	}
	var probe struct {
		ID *string `json:"id"`
	}
	if err := json.Unmarshal(body, &probe); err != nil {
		return fmt.Errorf("body is not a JSON object: %w", err)
	}
	if probe.ID == nil || *probe.ID != eventID {
		return errors.New(`body's "id" is not the event id`)
	}
	return nil
}

func (n *Notifier) client() *http.Client {
	c := http.Client{Timeout: defaultHTTPTimeout}
	if n.Client != nil {
		c = *n.Client
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// deliver makes one attempt. It returns the server's Retry-After hint, if
// any, with the error.
func (n *Notifier) deliver(ctx context.Context, client *http.Client, eventID, bodyHash string, body []byte) (time.Duration, error) {
	token, err := auth.NewAccessToken(n.APIKey, n.APISecret).
		SetValidFor(tokenValidity).
		SetSha256(bodyHash).
		ToJWT()
	if err != nil {
		return 0, fmt.Errorf("sign: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.URL, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("request: %w", err)
	}
	req.Header.Set("Authorization", token)
	req.Header.Set("Content-Type", WebhookContentType)
	req.Header.Set(EventIDHeader, eventID)
	req.Header.Set("User-Agent", "trackrec")
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			return 0, fmt.Errorf("%s %s: %w", ue.Op, redactURL(ue.URL), ue.Err)
		}
		return 0, err
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, errorBodyLimit))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // reuse the connection
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return 0, nil
	}
	return retryAfter(resp.Header.Get("Retry-After")), &StatusError{StatusCode: resp.StatusCode, Body: string(snippet)}
}

// backoff is the wait after failed attempt number attempt (from 1):
// MinBackoff doubled per attempt, capped at MaxBackoff, half of it random;
// at least hint (capped at MaxBackoff).
func (n *Notifier) backoff(attempt int, hint time.Duration) time.Duration {
	lo, hi := n.MinBackoff, n.MaxBackoff
	if lo <= 0 {
		lo = defaultMinBackoff
	}
	if hi <= 0 {
		hi = defaultMaxBackoff
	}
	if hi < lo {
		hi = lo
	}
	d := hi
	if shift := attempt - 1; shift < 32 {
		if x := lo << shift; x > 0 && x < hi {
			d = x
		}
	}
	d = d/2 + rand.N(d/2+1)
	if hint > d {
		d = min(hint, hi)
	}
	return d
}

// retryAfter parses a Retry-After header: seconds or an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// redactURL drops credentials and the query (which may hold a token) from a
// URL for logs and errors.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparseable URL)"
	}
	u.User = nil
	if u.RawQuery != "" {
		u.RawQuery = "..."
	}
	return u.String()
}
