package api

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/livekit/protocol/auth"
)

func token(t *testing.T, key, secret string, grant *auth.VideoGrant, valid time.Duration) string {
	t.Helper()
	at := auth.NewAccessToken(key, secret).SetIdentity("ops").SetValidFor(valid)
	if grant != nil {
		at.SetVideoGrant(grant)
	}
	tok, err := at.ToJWT()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// expired is a roomRecord token that expired an hour ago (LiveKit's own
// builder cannot make one).
func expired(t *testing.T, key, secret string) string {
	t.Helper()
	now := time.Now()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"iss": key, "sub": "ops", "nbf": now.Add(-2 * time.Hour).Unix(), "exp": now.Add(-time.Hour).Unix(),
		"video": map[string]any{"roomRecord": true},
	}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestAPIAuthentication(t *testing.T) {
	record := &auth.VideoGrant{RoomRecord: true}
	cases := []struct {
		name   string
		header string
		want   int
	}{
		{"no header", "", 401},
		{"not bearer", "Basic dXNlcjpwYXNz", 401},
		{"empty bearer", "Bearer ", 401},
		{"garbage", "Bearer not.a.jwt", 401},
		{"wrong secret", "Bearer " + token(t, "devkey", "other", record, time.Hour), 401},
		{"unknown key", "Bearer " + token(t, "stranger", "secret", record, time.Hour), 401},
		{"expired", "Bearer " + expired(t, "devkey", "secret"), 401},
		{"no grant", "Bearer " + token(t, "devkey", "secret", &auth.VideoGrant{RoomJoin: true, Room: "r"}, time.Hour), 403},
		{"no video grant at all", "Bearer " + token(t, "devkey", "secret", nil, time.Hour), 403},
		{"room record", "Bearer " + token(t, "devkey", "secret", record, time.Hour), 201},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeRecorder{}
			e := New(f, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{Auth: auth.NewSimpleKeyProvider("devkey", "secret")})
			req := httptest.NewRequest(http.MethodPost, "/recordings/start", strings.NewReader(`{"room":"r","participant":"p"}`))
			req.Header.Set("Content-Type", "application/json")
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.want, rec.Body)
			}
			if tc.want != 201 && len(f.calls) != 0 {
				t.Errorf("an unauthorized request reached the recorder: %v", f.calls)
			}
			if tc.want >= 400 && !strings.Contains(rec.Body.String(), `"error"`) {
				t.Errorf("error body %s", rec.Body)
			}
		})
	}
	// The list is guarded too; health and the webhook receiver (which has
	// its own signature) are not.
	e := New(&fakeRecorder{}, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{Auth: auth.NewSimpleKeyProvider("devkey", "secret")})
	for path, want := range map[string]int{"/recordings": 401, "/healthz": 200} {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != want {
			t.Errorf("GET %s: %d, want %d", path, rec.Code, want)
		}
	}
}
