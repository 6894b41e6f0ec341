package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/trackrec/trackrec/dedup"
)

type eventLog struct {
	mu     sync.Mutex
	events []*livekit.WebhookEvent
}

func (l *eventLog) HandleEvent(ev *livekit.WebhookEvent) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, ev)
	return true
}

// signed builds a webhook request the way livekit-server sends one.
func signed(t *testing.T, key, secret string, ev *livekit.WebhookEvent, tamper bool) *http.Request {
	t.Helper()
	body, err := protojson.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	token, err := auth.NewAccessToken(key, secret).SetValidFor(5 * time.Minute).SetSha256(base64.StdEncoding.EncodeToString(sum[:])).ToJWT()
	if err != nil {
		t.Fatal(err)
	}
	if tamper {
		body = bytes.Replace(body, []byte("alice"), []byte("mallory"), 1)
	}
	req := httptest.NewRequest(http.MethodPost, "/recordings/webhooks", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/webhook+json")
	req.Header.Set("Authorization", token)
	return req
}

func TestWebhookVerification(t *testing.T) {
	joined := &livekit.WebhookEvent{Event: "participant_joined", Id: "EV_1", Room: &livekit.Room{Name: "r"}, Participant: &livekit.ParticipantInfo{Identity: "alice"}}
	unsigned := func() *http.Request {
		body, _ := protojson.Marshal(joined)
		r := httptest.NewRequest(http.MethodPost, "/recordings/webhooks", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/webhook+json")
		return r
	}
	cases := []struct {
		name string
		req  func() *http.Request
		want int
	}{
		{"signed", func() *http.Request { return signed(t, "devkey", "secret", joined, false) }, 200},
		{"unsigned", unsigned, 401},
		{"tampered body", func() *http.Request { return signed(t, "devkey", "secret", joined, true) }, 401},
		{"wrong secret", func() *http.Request { return signed(t, "devkey", "other", joined, false) }, 401},
		{"unknown key", func() *http.Request { return signed(t, "otherkey", "secret", joined, false) }, 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			events := &eventLog{}
			e := New(&fakeRecorder{}, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{Webhooks: Webhooks{Keys: auth.NewSimpleKeyProvider("devkey", "secret"), Events: events}})
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, tc.req())
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.want, rec.Body)
			}
			if got, want := len(events.events), map[bool]int{true: 1, false: 0}[tc.want == 200]; got != want {
				t.Errorf("%d events handed on, want %d", got, want)
			}
		})
	}
}

func TestWebhookReplaysActOnce(t *testing.T) {
	events := &eventLog{}
	e := New(&fakeRecorder{}, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{Webhooks: Webhooks{Keys: auth.NewSimpleKeyProvider("devkey", "secret"), Events: events}})
	ev := &livekit.WebhookEvent{Event: "participant_joined", Id: "EV_replayed", Room: &livekit.Room{Name: "r"}, Participant: &livekit.ParticipantInfo{Identity: "alice"}}
	for i := 0; i < 3; i++ {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, signed(t, "devkey", "secret", ev, false))
		if rec.Code != 200 {
			t.Fatalf("delivery %d: %d", i, rec.Code)
		}
	}
	if len(events.events) != 1 {
		t.Errorf("the same event id acted on %d times, want once", len(events.events))
	}
}

func TestWebhookNotConfigured(t *testing.T) {
	e := New(&fakeRecorder{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/recordings/webhooks", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("status %d", rec.Code)
	}
}

// The Dedup given is the one asked: two receivers sharing one act on an
// event once between them, as instances sharing a store would.
func TestWebhookSharedDedup(t *testing.T) {
	shared, err := dedup.NewMemory(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	events := &eventLog{}
	ev := &livekit.WebhookEvent{Event: "participant_joined", Id: "EV_shared", Room: &livekit.Room{Name: "r"}, Participant: &livekit.ParticipantInfo{Identity: "alice"}}
	var statuses []string
	for range 2 {
		e := New(&fakeRecorder{}, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{Webhooks: Webhooks{Keys: auth.NewSimpleKeyProvider("devkey", "secret"), Events: events, Dedup: shared}})
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, signed(t, "devkey", "secret", ev, false))
		var body struct{ Status string }
		if err := json.Unmarshal(rec.Body.Bytes(), &body); rec.Code != 200 || err != nil {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		statuses = append(statuses, body.Status)
	}
	if len(events.events) != 1 || statuses[0] != "accepted" || statuses[1] != "duplicate" {
		t.Errorf("statuses %v, %d events handed on; want [accepted duplicate] and 1", statuses, len(events.events))
	}
}
