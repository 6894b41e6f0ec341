package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/trackrec/trackrec/completion"
	"github.com/trackrec/trackrec/spool"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/trackrec/trackrec/bot"
	"github.com/trackrec/trackrec/muxer"
	"github.com/trackrec/trackrec/recorder"
)

// fakeRecorder records calls and answers with a preset error.
type fakeRecorder struct {
	err   error
	calls []string
	panic bool
}

func (f *fakeRecorder) Start(_ context.Context, room, p string, opts ...recorder.StartOption) (recorder.RecordingInfo, bool, error) {
	if f.panic {
		panic("boom")
	}
	call := "start " + room + " " + p
	if len(opts) > 0 {
		call += " wait"
	}
	f.calls = append(f.calls, call)
	if f.err != nil {
		return recorder.RecordingInfo{}, false, f.err
	}
	return recorder.RecordingInfo{Room: room, Participant: p, State: recorder.StateWaiting}, true, nil
}

func (f *fakeRecorder) Stop(_ context.Context, room, p string) (recorder.RecordingInfo, error) {
	f.calls = append(f.calls, "stop "+room+" "+p)
	if f.err != nil {
		return recorder.RecordingInfo{}, f.err
	}
	return recorder.RecordingInfo{Room: room, Participant: p, State: recorder.StateStopped}, nil
}

func (f *fakeRecorder) List() []recorder.RecordingInfo   { return nil }
func (f *fakeRecorder) Recovered() []spool.RecoveredFile { return nil }
func (f *fakeRecorder) Completions() []completion.Run    { return nil }

func TestRequests(t *testing.T) {
	long := strings.Repeat("a", MaxNameBytes+1)
	cases := []struct {
		name       string
		method     string
		path       string
		body       string
		err        error
		panic      bool
		want       int
		wantCalls  int
		wantInErr  string
		retryAfter string // the Retry-After header wanted, "" for none
	}{
		{"start ok", "POST", "/recordings/start", `{"room":"r","participant":"p"}`, nil, false, 201, 1, "", ""},
		{"stop ok", "POST", "/recordings/stop", `{"room":"r","participant":"p"}`, nil, false, 200, 1, "", ""},
		{"malformed json", "POST", "/recordings/start", `{"room":`, nil, false, 400, 0, "JSON", ""},
		{"not an object", "POST", "/recordings/start", `["r","p"]`, nil, false, 400, 0, "JSON", ""},
		{"two objects", "POST", "/recordings/start", `{"room":"r","participant":"p"}{}`, nil, false, 400, 0, "one JSON object", ""},
		{"unknown field", "POST", "/recordings/start", `{"room":"r","participant":"p","x":1}`, nil, false, 400, 0, "unknown field", ""},
		{"wrong type", "POST", "/recordings/start", `{"room":1,"participant":"p"}`, nil, false, 400, 0, "JSON", ""},
		{"empty body", "POST", "/recordings/start", ``, nil, false, 400, 0, "JSON", ""},
		{"missing room", "POST", "/recordings/start", `{"participant":"p"}`, nil, false, 400, 0, "room is required", ""},
		{"blank participant", "POST", "/recordings/stop", `{"room":"r","participant":"  "}`, nil, false, 400, 0, "participant is required", ""},
		{"long room", "POST", "/recordings/start", `{"room":"` + long + `","participant":"p"}`, nil, false, 400, 0, "longer than", ""},
		{"control chars", "POST", "/recordings/start", `{"room":"a\u0000b","participant":"p"}`, nil, false, 400, 0, "control", ""},
		{"newline", "POST", "/recordings/start", `{"room":"r","participant":"p\nq"}`, nil, false, 400, 0, "control", ""},
		{"huge body", "POST", "/recordings/start", `{"room":"` + strings.Repeat("x", 100<<10) + `"}`, nil, false, 413, 0, "", ""},
		{"unknown recording", "POST", "/recordings/stop", `{"room":"r","participant":"p"}`, recorder.ErrNotFound, false, 404, 1, "not found", ""},
		{"room not on LiveKit", "POST", "/recordings/start", `{"room":"r","participant":"p"}`, fmt.Errorf("%w on LiveKit: %q", recorder.ErrNoRoom, "r"), false, 404, 1, "does not exist", ""},
		{"participant not in room", "POST", "/recordings/start", `{"room":"r","participant":"p"}`, recorder.ErrNoParticipant, false, 404, 1, "not in the room", ""},
		{"room check failed", "POST", "/recordings/start", `{"room":"r","participant":"p"}`, recorder.ErrLookup, false, 502, 1, "cannot check", ""},
		{"room check timed out", "POST", "/recordings/start", `{"room":"r","participant":"p"}`, fmt.Errorf("%w: %w", recorder.ErrLookup, context.DeadlineExceeded), false, 504, 1, "in time", ""},
		{"room check cut by the client", "POST", "/recordings/start", `{"room":"r","participant":"p"}`, fmt.Errorf("%w: %w", recorder.ErrLookup, context.Canceled), false, 499, 1, "canceled", ""},
		{"wait on stop", "POST", "/recordings/stop", `{"room":"r","participant":"p","wait_for_participant":true}`, nil, false, 400, 0, "start only", ""},
		{"wait not a bool", "POST", "/recordings/start", `{"room":"r","participant":"p","wait_for_participant":"yes"}`, nil, false, 400, 0, "JSON", ""},
		{"owned elsewhere", "POST", "/recordings/start", `{"room":"r","participant":"p"}`, recorder.ErrOwned, false, 409, 1, "another instance", ""},
		{"shutting down", "POST", "/recordings/start", `{"room":"r","participant":"p"}`, recorder.ErrShuttingDown, false, 503, 1, "shutting down", "10"},
		{"at capacity", "POST", "/recordings/start", `{"room":"r","participant":"p"}`, fmt.Errorf("start: %w", recorder.ErrFull), false, 503, 1, "capacity", "5"},
		{"fleet state unavailable", "POST", "/recordings/start", `{"room":"r","participant":"p"}`, fmt.Errorf("claim: %w", recorder.ErrUnavailable), false, 503, 1, "unavailable", "5"},
		{"webhook", "POST", "/recordings/webhooks", webhookBody, nil, false, 200, 1, "", ""},
		{"webhook dedup down", "POST", "/recordings/webhooks", webhookBody, errors.New("redis: connection refused"), false, 503, 0, "send it again", ""},
		{"livekit down", "POST", "/recordings/start", `{"room":"r","participant":"p"}`, fmt.Errorf("join: %w: refused", bot.ErrUnreachable), false, 502, 1, "could not join LiveKit", ""},
		{"livekit slow", "POST", "/recordings/start", `{"room":"r","participant":"p"}`, fmt.Errorf("join: %w", context.DeadlineExceeded), false, 504, 1, "in time", ""},
		{"panic", "POST", "/recordings/start", `{"room":"r","participant":"p"}`, nil, true, 500, 0, "", ""},
		{"unknown path", "GET", "/nope", ``, nil, false, 404, 0, "", ""},
		{"wrong method", "GET", "/recordings/start", ``, nil, false, 405, 0, "", ""},
		{"health", "GET", "/healthz", ``, nil, false, 200, 0, "", ""},
		{"deeply nested", "POST", "/recordings/start", `{"room":` + strings.Repeat(`{"a":`, 500) + `1` + strings.Repeat(`}`, 500) + `,"participant":"p"}`, nil, false, 400, 0, "JSON", ""},
		{"null body", "POST", "/recordings/start", `null`, nil, false, 400, 0, "room is required", ""},
		{"number body", "POST", "/recordings/start", `42`, nil, false, 400, 0, "JSON", ""},
		{"string body", "POST", "/recordings/stop", `"room"`, nil, false, 400, 0, "JSON", ""},
		{"array participant", "POST", "/recordings/start", `{"room":"r","participant":["p"]}`, nil, false, 400, 0, "JSON", ""},
		{"invalid utf-8", "POST", "/recordings/start", "{\"room\":\"r\xff\",\"participant\":\"p\"}", nil, false, 400, 0, "", ""},
		{"tab in name", "POST", "/recordings/start", `{"room":"r\tx","participant":"p"}`, nil, false, 400, 0, "control", ""},
		{"long participant", "POST", "/recordings/stop", `{"room":"r","participant":"` + long + `"}`, nil, false, 400, 0, "longer than", ""},
		{"trailing garbage", "POST", "/recordings/stop", `{"room":"r","participant":"p"} x`, nil, false, 400, 0, "one JSON object", ""},
		{"path tricks are names", "POST", "/recordings/start", `{"room":"../../etc","participant":"a/b"}`, nil, false, 201, 1, "", ""},
		{"delete method", "DELETE", "/recordings/start", ``, nil, false, 405, 0, "", ""},
		{"put on list", "PUT", "/recordings", ``, nil, false, 405, 0, "", ""},
		{"list", "GET", "/recordings", ``, nil, false, 200, 0, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// tc.err is what the recorder answers, or on the webhook route
			// the Dedup.
			f := &fakeRecorder{err: tc.err, panic: tc.panic}
			events := &eventLog{}
			hooks := Webhooks{Keys: auth.NewSimpleKeyProvider("devkey", "secret"), Events: events, Dedup: failingDedup{tc.err}}
			e := New(f, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{Webhooks: hooks})
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			if tc.path == "/recordings/webhooks" {
				req.Header.Set("Authorization", signature(t, []byte(tc.body)))
			}
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.want, rec.Body)
			}
			if calls := len(f.calls) + len(events.events); calls != tc.wantCalls {
				t.Errorf("recorder called %d times (%v) and %d events handed on, want %d", len(f.calls), f.calls, len(events.events), tc.wantCalls)
			}
			if got := rec.Header().Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tc.retryAfter)
			}
			if !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
				t.Errorf("content type %q", rec.Header().Get("Content-Type"))
			}
			var body map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body is not JSON: %q", rec.Body)
			}
			if rec.Code >= 400 {
				msg, _ := body["error"].(string)
				if msg == "" || !strings.Contains(msg, tc.wantInErr) {
					t.Errorf("error %q should mention %q", msg, tc.wantInErr)
				}
			}
		})
	}
}

const webhookBody = `{"event":"participant_joined","id":"EV_1","room":{"name":"r"},"participant":{"identity":"alice"}}`

// failingDedup answers every id as a first delivery, or err.
type failingDedup struct{ err error }

func (d failingDedup) First(context.Context, string) (bool, error) { return d.err == nil, d.err }

// signature is the Authorization header livekit-server sends with body.
func signature(t testing.TB, body []byte) string {
	t.Helper()
	sum := sha256.Sum256(body)
	tok, err := auth.NewAccessToken("devkey", "secret").SetValidFor(time.Minute).SetSha256(base64.StdEncoding.EncodeToString(sum[:])).ToJWT()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestListShape(t *testing.T) {
	e := New(&fakeRecorder{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/recordings", nil))
	if got := strings.TrimSpace(rec.Body.String()); got != `{"recordings":[],"recovered":[],"rooms":[]}` {
		t.Errorf("empty list = %s", got)
	}
}

func TestMetricsCountFailedUploads(t *testing.T) {
	f := &listRecorder{recs: []recorder.RecordingInfo{{State: recorder.StateStopped, Tracks: []recorder.TrackInfo{
		{Upload: "failed", Counts: muxer.Counts{Packets: 10}}, {Upload: "uploaded", Counts: muxer.Counts{Packets: 5}},
	}}}}
	e := New(f, slog.New(slog.NewTextHandler(io.Discard, nil)))
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`trackrec_track_uploads{state="failed"} 1`,
		`trackrec_track_uploads{state="uploaded"} 1`,
		`trackrec_track_uploads{state="pending"} 0`,
		`trackrec_recordings{state="stopped"} 1`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
}

type listRecorder struct {
	fakeRecorder
	recs []recorder.RecordingInfo
}

func (l *listRecorder) List() []recorder.RecordingInfo { return l.recs }

func TestReadiness(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{{nil, 200}, {fmt.Errorf("livekit: connection refused"), 503}} {
		e := New(&fakeRecorder{}, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{Ready: func(context.Context) error { return tc.err }})
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		if rec.Code != tc.want || (tc.err != nil && !strings.Contains(rec.Body.String(), "connection refused")) {
			t.Errorf("readyz with %v: %d %s", tc.err, rec.Code, rec.Body)
		}
	}
}

func TestContentType(t *testing.T) {
	for ct, want := range map[string]int{
		"application/json":                  201,
		"application/json; charset=utf-8":   201,
		"application/merge-patch+json":      201,
		"text/plain":                        415,
		"application/x-www-form-urlencoded": 415,
		"":                                  415,
		"application/xml":                   415,
		"json":                              415,
	} {
		f := &fakeRecorder{}
		e := New(f, slog.New(slog.NewTextHandler(io.Discard, nil)))
		req := httptest.NewRequest(http.MethodPost, "/recordings/start", strings.NewReader(`{"room":"r","participant":"p"}`))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code != want || (want == 415 && len(f.calls) != 0) {
			t.Errorf("Content-Type %q: %d (calls %v), want %d", ct, rec.Code, f.calls, want)
		}
	}
}

// FuzzRequests throws arbitrary bodies, content types and paths at the API:
// never a panic, never a 5xx, and the recorder is only reached with names
// that passed the checks.
func FuzzRequests(f *testing.F) {
	f.Add("/recordings/start", "application/json", []byte(`{"room":"r","participant":"p"}`), false)
	f.Add("/recordings/stop", "application/json", []byte(`{"room":`), false)
	f.Add("/recordings/webhooks", "application/webhook+json", []byte(`{"event":"participant_joined"}`), false)
	// Signed: the body gets past the signature check to the decoding.
	f.Add("/recordings/webhooks", "application/webhook+json", []byte(`{"event":"participant_joined","id":"EV_1","room":{"name":"r"},"participant":{"identity":"a","kind":"EGRESS"}}`), true)
	f.Add("/recordings/webhooks", "application/webhook+json", []byte(`{"event":"track_published","track":{"type":"AUDIO"},"createdAt":"9999999999999"}`), true)
	f.Fuzz(func(t *testing.T, path, ct string, body []byte, sign bool) {
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " ?#%\x00") {
			return
		}
		if _, err := url.Parse("http://x" + path); err != nil {
			return // not a request a client can send
		}
		rec := &recordingRecorder{}
		e := New(rec, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{Webhooks: Webhooks{Keys: auth.NewSimpleKeyProvider("devkey", "secret"), Events: &eventLog{}}})
		req := httptest.NewRequest(http.MethodPost, "http://x"+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		if sign {
			req.Header.Set("Authorization", signature(t, body))
		}
		w := httptest.NewRecorder()
		e.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%s %q: %d %s", path, body, w.Code, w.Body)
		}
		for _, n := range rec.names {
			if checkName("name", n) != nil {
				t.Fatalf("recorder reached with unchecked name %q", n)
			}
		}
	})
}

type recordingRecorder struct {
	fakeRecorder
	names []string
}

func (r *recordingRecorder) Start(ctx context.Context, room, p string, _ ...recorder.StartOption) (recorder.RecordingInfo, bool, error) {
	r.names = append(r.names, room, p)
	return recorder.RecordingInfo{}, true, nil
}

func TestStartWaitForParticipant(t *testing.T) {
	for body, want := range map[string]string{
		`{"room":"r","participant":"p"}`:                              "start r p",
		`{"room":"r","participant":"p","wait_for_participant":false}`: "start r p",
		`{"room":"r","participant":"p","wait_for_participant":true}`:  "start r p wait",
	} {
		f := &fakeRecorder{}
		e := New(f, slog.New(slog.NewTextHandler(io.Discard, nil)))
		req := httptest.NewRequest("POST", "/recordings/start", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code != 201 || len(f.calls) != 1 || f.calls[0] != want {
			t.Errorf("%s: %d %v, want 201 [%s]", body, rec.Code, f.calls, want)
		}
	}
}

// fleetRecorder lists a whole fleet, one instance not answering.
type fleetRecorder struct {
	fakeRecorder
	recs []recorder.RecordingInfo
}

func (f *fleetRecorder) ListFleet(context.Context) ([]recorder.RecordingInfo, []string) {
	return f.recs, []string{"host-b"}
}

// In a fleet GET /recordings lists every instance's recordings and names
// the instances that did not answer, while /metrics counts this instance's
// own recordings only (Options.Local).
func TestFleetListingAndLocalMetrics(t *testing.T) {
	fleet := &fleetRecorder{recs: []recorder.RecordingInfo{
		{ID: "RC_a", Instance: "host-a", State: recorder.StateRecording},
		{ID: "RC_c", Instance: "host-c", State: recorder.StateRecording},
	}}
	local := &listRecorder{recs: []recorder.RecordingInfo{{ID: "RC_a", Instance: "host-a", State: recorder.StateRecording}}}
	e := New(fleet, quiet(), Options{Local: local})
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/recordings", nil))
	var body struct {
		Recordings []recorder.RecordingInfo `json:"recordings"`
		Unanswered []string                 `json:"unanswered_instances"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if len(body.Recordings) != 2 || body.Recordings[1].Instance != "host-c" || len(body.Unanswered) != 1 || body.Unanswered[0] != "host-b" {
		t.Errorf("fleet listing %s", rec.Body)
	}
	rec = httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if want := `trackrec_recordings{state="recording"} 1` + "\n"; !strings.Contains(rec.Body.String(), want) {
		t.Errorf("metrics should count this instance's one recording (%q):\n%s", want, rec.Body)
	}
}
