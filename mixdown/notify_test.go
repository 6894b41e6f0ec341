package mixdown

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"github.com/trackrec/trackrec/spool"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/webhook"
)

const (
	testKey    = "devkey"
	testSecret = "secret-that-is-long-enough-for-hs256"
)

// delivery is what the receiver saw on one attempt.
type delivery struct {
	headerID    string
	bodyID      string
	contentType string
	verifyErr   error
	status      int
}

// receiver is an httptest webhook endpoint that verifies each request with
// LiveKit's webhook.Receive, then answers with the next status of its script
// (the last one repeating); a verification failure is answered 401.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	secret string // the receiver's idea of the secret
	script []int
	// before, if set, runs first and may alter the request (tamper) or
	// take over the connection (return false).
	before func(attempt int, w http.ResponseWriter, r *http.Request) bool

	mu         sync.Mutex
	deliveries []delivery
	accepted   []RoomEvent
}

func newReceiver(t *testing.T, script ...int) *receiver {
	rc := &receiver{t: t, secret: testSecret, script: script}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	attempt := len(rc.deliveries)
	if rc.before != nil && !rc.before(attempt, w, r) {
		rc.deliveries = append(rc.deliveries, delivery{status: -1})
		return
	}
	d := delivery{headerID: r.Header.Get(EventIDHeader), contentType: r.Header.Get("Content-Type")}
	body, err := webhook.Receive(r, auth.NewSimpleKeyProvider(testKey, rc.secret))
	d.verifyErr = err
	var ev RoomEvent
	if err == nil {
		if err := json.Unmarshal(body, &ev); err != nil {
			rc.t.Errorf("receiver: body: %v", err)
		}
		d.bodyID = ev.ID
	}
	switch {
	case err != nil:
		d.status = http.StatusUnauthorized
	case attempt < len(rc.script):
		d.status = rc.script[attempt]
	default:
		d.status = rc.script[len(rc.script)-1]
	}
	if d.status/100 == 2 {
		rc.accepted = append(rc.accepted, ev)
	}
	rc.deliveries = append(rc.deliveries, d)
	if d.status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "0")
	}
	http.Error(w, http.StatusText(d.status), d.status)
}

func (rc *receiver) seen() ([]delivery, []RoomEvent) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]delivery(nil), rc.deliveries...), append([]RoomEvent(nil), rc.accepted...)
}

func testEvent(t *testing.T) (RoomEvent, []byte) {
	t.Helper()
	track := json.RawMessage(`{"version":1,"room":"standup","file":{"key":"livekit/standup/alice-2026-11-21T100000-TR_AAA.ogg"}}`)
	ev := RoomEvent{
		Event:     EventRecordingsComplete,
		ID:        EventID("standup", "RM_1", []string{"livekit/standup/alice-2026-11-21T100000-TR_AAA.ogg"}),
		Room:      "standup",
		RoomSID:   "RM_1",
		CreatedAt: t0.Unix(),
		Tracks:    []json.RawMessage{track},
	}
	body, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return ev, body
}

func testNotifier(url string) *Notifier {
	return &Notifier{
		URL: url, APIKey: testKey, APISecret: testSecret,
		MaxAttempts: 5, MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
	}
}

func TestNotify(t *testing.T) {
	tests := []struct {
		name         string
		script       []int
		secret       string // the receiver's; empty: the right one
		before       func(attempt int, w http.ResponseWriter, r *http.Request) bool
		maxAttempts  int
		wantAttempts int
		wantAccepted int
		wantStatus   int  // of the returned *StatusError; 0: none
		wantErr      bool // Notify fails
		wantVerified bool // every attempt that reached the receiver verified
	}{
		{name: "500, 500, then 200", script: []int{500, 500, 200},
			wantAttempts: 3, wantAccepted: 1, wantVerified: true},
		{name: "200 at once", script: []int{200},
			wantAttempts: 1, wantAccepted: 1, wantVerified: true},
		{name: "429 and 503 are retried", script: []int{429, 503, 204},
			wantAttempts: 3, wantAccepted: 1, wantVerified: true},
		{name: "400 is not retried", script: []int{400, 200},
			wantAttempts: 1, wantStatus: 400, wantErr: true, wantVerified: true},
		{name: "404 is not retried", script: []int{404},
			wantAttempts: 1, wantStatus: 404, wantErr: true, wantVerified: true},
		{name: "gives up after MaxAttempts", script: []int{502}, maxAttempts: 4,
			wantAttempts: 4, wantStatus: 502, wantErr: true, wantVerified: true},
		{name: "network error is retried", script: []int{200},
			before: func(attempt int, w http.ResponseWriter, r *http.Request) bool {
				if attempt > 0 {
					return true
				}
				conn, _, err := http.NewResponseController(w).Hijack()
				if err == nil {
					conn.Close() // the client sees the connection drop
				}
				return false
			},
			wantAttempts: 2, wantAccepted: 1},
		{name: "tampered body fails verification", script: []int{200},
			before: func(_ int, _ http.ResponseWriter, r *http.Request) bool {
				b, _ := io.ReadAll(r.Body)
				r.Body = io.NopCloser(bytes.NewReader(bytes.Replace(b, []byte("standup"), []byte("standuP"), 1)))
				return true
			},
			wantAttempts: 1, wantStatus: 401, wantErr: true},
		{name: "wrong secret fails verification", script: []int{200}, secret: "another-secret-that-is-long-enough",
			wantAttempts: 1, wantStatus: 401, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rc := newReceiver(t, tc.script...)
			rc.before = tc.before
			if tc.secret != "" {
				rc.secret = tc.secret
			}
			n := testNotifier(rc.srv.URL + "/pipeline")
			if tc.maxAttempts > 0 {
				n.MaxAttempts = tc.maxAttempts
			}
			ev, body := testEvent(t)

			err := n.Notify(t.Context(), ev.ID, body)
			t.Logf("Notify: %v", err)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error %v", err, tc.wantErr)
			}
			var se *StatusError
			if tc.wantStatus != 0 && (!errors.As(err, &se) || se.StatusCode != tc.wantStatus) {
				t.Errorf("error %v, want a *StatusError %d", err, tc.wantStatus)
			}
			// Only a receiver that never answered well is worth a later try.
			if later := tc.maxAttempts > 0; errors.Is(err, ErrUndelivered) != later {
				t.Errorf("error %v: ErrUndelivered %v, want %v", err, errors.Is(err, ErrUndelivered), later)
			}

			deliveries, accepted := rc.seen()
			if len(deliveries) != tc.wantAttempts {
				t.Errorf("%d attempts, want %d: %+v", len(deliveries), tc.wantAttempts, deliveries)
			}
			if len(accepted) != tc.wantAccepted {
				t.Errorf("%d accepted deliveries, want %d", len(accepted), tc.wantAccepted)
			}
			for i, d := range deliveries {
				if d.status == -1 {
					continue // the connection was dropped
				}
				if d.headerID != ev.ID {
					t.Errorf("attempt %d: %s header %q, want %q", i+1, EventIDHeader, d.headerID, ev.ID)
				}
				if d.contentType != WebhookContentType {
					t.Errorf("attempt %d: Content-Type %q", i+1, d.contentType)
				}
				if tc.wantVerified && d.verifyErr != nil {
					t.Errorf("attempt %d: signature: %v", i+1, d.verifyErr)
				}
				if d.verifyErr == nil && d.bodyID != ev.ID {
					t.Errorf("attempt %d: body id %q, want %q", i+1, d.bodyID, ev.ID)
				}
				if !tc.wantVerified && tc.wantStatus == 401 && d.verifyErr == nil {
					t.Errorf("attempt %d verified, want a verification failure", i+1)
				}
				if d.verifyErr != nil {
					t.Logf("attempt %d: receiver rejected: %v", i+1, d.verifyErr)
				}
			}
			for _, got := range accepted {
				if got.ID != ev.ID || got.Event != EventRecordingsComplete || got.Room != "standup" || len(got.Tracks) != 1 {
					t.Errorf("accepted %+v", got)
				}
			}
		})
	}
}

// TestNotifyTamperedChecksum shows the receiver's check on its own: a body
// changed after signing fails webhook.Receive with ErrInvalidChecksum.
func TestNotifyTamperedChecksum(t *testing.T) {
	var errs []error
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		for _, body := range [][]byte{b, append(bytes.Clone(b[:len(b)-1]), ' ', '}')} {
			req := r.Clone(r.Context())
			req.Body = io.NopCloser(bytes.NewReader(body))
			_, err := webhook.Receive(req, auth.NewSimpleKeyProvider(testKey, testSecret))
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
	}))
	defer srv.Close()
	ev, body := testEvent(t)
	if err := testNotifier(srv.URL).Notify(t.Context(), ev.ID, body); err != nil {
		t.Fatal(err)
	}
	if len(errs) != 2 || errs[0] != nil || !errors.Is(errs[1], webhook.ErrInvalidChecksum) {
		t.Errorf("receiver results %v, want [nil, %v]", errs, webhook.ErrInvalidChecksum)
	}
}

// TestNotifyLiveKitEventParser: LiveKit's own ReceiveWebhookEvent accepts a
// RoomEvent, so an existing LiveKit webhook handler can route it.
func TestNotifyLiveKitEventParser(t *testing.T) {
	type parsed struct {
		event, id string
		createdAt int64
		err       error
	}
	got := make(chan parsed, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e, err := webhook.ReceiveWebhookEvent(r, auth.NewSimpleKeyProvider(testKey, testSecret))
		if err != nil {
			got <- parsed{err: err}
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		got <- parsed{event: e.Event, id: e.Id, createdAt: e.CreatedAt}
	}))
	defer srv.Close()
	ev, _ := testEvent(t)
	ev.Mixdown = json.RawMessage(`{"version":1,"kind":"mixdown","key":"mixdown/standup/x.mp3"}`)
	if err := testNotifier(srv.URL).NotifyEvent(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	p := <-got
	if p.err != nil || p.event != EventRecordingsComplete || p.id != ev.ID || p.createdAt != ev.CreatedAt {
		t.Errorf("ReceiveWebhookEvent gave %+v", p)
	}
}

func TestNotifyCancelDuringBackoff(t *testing.T) {
	rc := newReceiver(t, 503)
	n := testNotifier(rc.srv.URL)
	n.MinBackoff, n.MaxBackoff = time.Minute, time.Minute
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	ev, body := testEvent(t)
	began := time.Now()
	err := n.Notify(ctx, ev.ID, body)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v, want context.DeadlineExceeded", err)
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("returned after %v", took)
	}
	if d, _ := rc.seen(); len(d) != 1 {
		t.Errorf("%d attempts, want 1", len(d))
	}
}

func TestNotifyRejectsBadInput(t *testing.T) {
	ev, body := testEvent(t)
	tests := []struct {
		name    string
		n       Notifier
		id      string
		body    []byte
		wantMsg string
	}{
		{"no key", Notifier{URL: "http://127.0.0.1:1/", APISecret: testSecret}, ev.ID, body, "API key"},
		{"bad scheme", Notifier{URL: "ftp://127.0.0.1/", APIKey: testKey, APISecret: testSecret}, ev.ID, body, "bad URL"},
		{"no event id", Notifier{URL: "http://127.0.0.1:1/", APIKey: testKey, APISecret: testSecret}, "", body, "no event id"},
		{"body not JSON", Notifier{URL: "http://127.0.0.1:1/", APIKey: testKey, APISecret: testSecret}, ev.ID, []byte("x"), "JSON"},
		{"body id differs", Notifier{URL: "http://127.0.0.1:1/", APIKey: testKey, APISecret: testSecret}, "EV_other", body, `"id"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.n.Notify(t.Context(), tc.id, tc.body)
			if err == nil || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %v, want one mentioning %q", err, tc.wantMsg)
			}
		})
	}
}

func TestNotifyRedirectIsNotFollowed(t *testing.T) {
	target := newReceiver(t, 200)
	srv := httptest.NewServer(http.RedirectHandler(target.srv.URL, http.StatusFound))
	defer srv.Close()
	ev, body := testEvent(t)
	err := testNotifier(srv.URL).Notify(t.Context(), ev.ID, body)
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusFound {
		t.Errorf("error %v, want a *StatusError 302", err)
	}
	if d, _ := target.seen(); len(d) != 0 {
		t.Errorf("redirect followed: %d deliveries", len(d))
	}
}

func TestBackoff(t *testing.T) {
	n := Notifier{MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	tests := []struct {
		attempt int
		hint    time.Duration
		lo, hi  time.Duration
	}{
		{1, 0, 50 * time.Millisecond, 100 * time.Millisecond},
		{2, 0, 100 * time.Millisecond, 200 * time.Millisecond},
		{4, 0, 400 * time.Millisecond, 800 * time.Millisecond},
		{5, 0, 500 * time.Millisecond, time.Second}, // capped
		{60, 0, 500 * time.Millisecond, time.Second},
		{1, 700 * time.Millisecond, 700 * time.Millisecond, 700 * time.Millisecond}, // Retry-After
		{1, time.Hour, time.Second, time.Second},                                    // Retry-After, capped
	}
	for _, tc := range tests {
		for range 50 {
			if d := n.backoff(tc.attempt, tc.hint); d < tc.lo || d > tc.hi {
				t.Errorf("backoff(%d, %v) = %v, want %v..%v", tc.attempt, tc.hint, d, tc.lo, tc.hi)
			}
		}
	}
}

func TestEventID(t *testing.T) {
	a := EventID("r", "RM_1", []string{"k1", "k2"})
	if b := EventID("r", "RM_1", []string{"k2", "k1"}); a != b {
		t.Errorf("order changes the id: %s %s", a, b)
	}
	for _, other := range []string{
		EventID("r", "RM_2", []string{"k1", "k2"}),
		EventID("r", "RM_1", []string{"k1"}),
		EventID("r", "RM_1", []string{"k1k2"}),
		EventID("r2", "RM_1", []string{"k1", "k2"}),
	} {
		if other == a {
			t.Errorf("different events share id %s", a)
		}
	}
	if !strings.HasPrefix(a, "EV_") || len(a) != 27 {
		t.Errorf("id %q", a)
	}
}

// A fleet's room that completed without a dead instance's file lists it
// as missing; when the file arrives, a signed recordings_updated event,
// with an id of its own, carries it. Neither mixes anything.
func TestMissingAndUpdatedEvents(t *testing.T) {
	rc := newReceiver(t, 200, 200)
	p := &Pipeline{Notifier: testNotifier(rc.srv.URL + "/pipeline")}
	stored := spool.Sealed{Manifest: spool.Manifest{Room: "standup", RoomSID: "RM_1", File: spool.ManifestFile{Key: "livekit/standup/bob-2026-11-21T100001-TR_BBB.ogg"}}}
	late := spool.Sealed{Manifest: spool.Manifest{Room: "standup", RoomSID: "RM_1", File: spool.ManifestFile{Key: "livekit/standup/ann-2026-11-21T100000-TR_AAA.ogg"}}}
	missing := []json.RawMessage{json.RawMessage(`{"key":"livekit/standup/ann-2026-11-21T100000-TR_AAA.ogg","instance":"gone"}`)}
	if _, err := p.CompleteMissing(t.Context(), "standup", []spool.Sealed{stored}, missing); err != nil {
		t.Fatal(err)
	}
	if err := p.Updated(t.Context(), "standup", []spool.Sealed{late}, nil); err != nil {
		t.Fatal(err)
	}
	deliveries, events := rc.seen()
	if len(events) != 2 || len(deliveries) != 2 {
		t.Fatalf("%d events (%d deliveries), want 2", len(events), len(deliveries))
	}
	for _, d := range deliveries {
		if d.verifyErr != nil || d.headerID != d.bodyID {
			t.Errorf("delivery %s: %v (body id %s)", d.headerID, d.verifyErr, d.bodyID)
		}
	}
	done, upd := events[0], events[1]
	if done.Event != EventRecordingsComplete || len(done.Tracks) != 1 || len(done.Missing) != 1 || !bytes.Equal(done.Missing[0], missing[0]) {
		t.Errorf("completion: %+v", done)
	}
	if upd.Event != EventRecordingsUpdated || len(upd.Tracks) != 1 || !bytes.Contains(upd.Tracks[0], []byte("TR_AAA")) || len(upd.Missing) != 0 || upd.Mixdown != nil {
		t.Errorf("update: %+v", upd)
	}
	if upd.ID == done.ID || upd.ID == EventID("standup", "RM_1", []string{late.Manifest.File.Key}) {
		t.Errorf("the update's id %s is not its own", upd.ID)
	}
}
