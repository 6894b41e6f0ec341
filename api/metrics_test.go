package api

import (
	"bytes"
	"errors"
	"github.com/trackrec/trackrec/completion"
	"github.com/trackrec/trackrec/spool"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/trackrec/trackrec/muxer"
	"github.com/trackrec/trackrec/recorder"
	"github.com/trackrec/trackrec/uploader"
	"google.golang.org/protobuf/encoding/protojson"
)

// statsRecorder answers List, Recovered, Completions and Stats with preset
// values.
type statsRecorder struct {
	fakeRecorder
	recs        []recorder.RecordingInfo
	recovered   []spool.RecoveredFile
	completions []completion.Run
	stats       recorder.Stats
}

func (s *statsRecorder) List() []recorder.RecordingInfo   { return s.recs }
func (s *statsRecorder) Recovered() []spool.RecoveredFile { return s.recovered }
func (s *statsRecorder) Completions() []completion.Run    { return s.completions }
func (s *statsRecorder) Stats() recorder.Stats            { return s.stats }

// scrape GETs /metrics and parses the text exposition.
func scrape(t *testing.T, e *echo.Echo) map[string]*dto.MetricFamily {
	t.Helper()
	w := httptest.NewRecorder()
	e.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %d %q", w.Code, w.Header().Get("Content-Type"))
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(w.Body)
	if err != nil {
		t.Fatalf("parse metrics: %v", err)
	}
	return fams
}

// sample finds the series of family name with exactly labels ("k=v").
func sample(fams map[string]*dto.MetricFamily, name string, labels ...string) (*dto.Metric, bool) {
	f := fams[name]
	if f == nil {
		return nil, false
	}
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		match := true
		for i, l := range m.GetLabel() { // the exposition sorts labels
			if l.GetName()+"="+l.GetValue() != labels[i] {
				match = false
			}
		}
		if match {
			return m, true
		}
	}
	return nil, false
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	}
	return m.GetUntyped().GetValue()
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestMetricsReadTheRecorder(t *testing.T) {
	rec := &statsRecorder{
		recs: []recorder.RecordingInfo{
			{State: recorder.StateRecording, Tracks: []recorder.TrackInfo{{Upload: ""}}},
			{State: recorder.StateStopped, Tracks: []recorder.TrackInfo{{Upload: "uploading"}, {Upload: "failed"}}},
			{State: recorder.StateStopped, Tracks: []recorder.TrackInfo{{Upload: "uploaded"}}},
		},
		recovered: []spool.RecoveredFile{{Uploads: []uploader.UploadInfo{{State: "uploaded"}, {State: "failed"}}}},
		completions: []completion.Run{
			{State: completion.StateDone}, {State: completion.StateDone}, {State: completion.StateFailed},
		},
		stats: recorder.Stats{ActiveRecordings: 1, Bots: 2, OpenTracks: 3, Tracks: recorder.TrackTotals{Bytes: 123456, Counts: muxer.Counts{
			Packets: 1000, ConcealmentPackets: 7, SilencePackets: 11,
			Reordered: 4, Duplicates: 5, Late: 6, Malformed: 2, Resyncs: 1}}},
	}
	fams := scrape(t, New(rec, quiet()))
	gauge, counter := dto.MetricType_GAUGE, dto.MetricType_COUNTER
	for _, tc := range []struct {
		name   string
		labels []string
		typ    dto.MetricType
		want   float64
	}{
		{"trackrec_recordings", []string{"state=starting"}, gauge, 0},
		{"trackrec_recordings", []string{"state=waiting"}, gauge, 0},
		{"trackrec_recordings", []string{"state=recording"}, gauge, 1},
		{"trackrec_recordings", []string{"state=away"}, gauge, 0},
		{"trackrec_recordings", []string{"state=stopping"}, gauge, 0},
		{"trackrec_recordings", []string{"state=stopped"}, gauge, 2},
		{"trackrec_track_uploads", []string{"state=pending"}, gauge, 0},
		{"trackrec_track_uploads", []string{"state=uploading"}, gauge, 1},
		{"trackrec_track_uploads", []string{"state=uploaded"}, gauge, 2},
		{"trackrec_track_uploads", []string{"state=failed"}, gauge, 2},
		{"trackrec_room_pipelines", []string{"state=waiting_uploads"}, gauge, 0},
		{"trackrec_room_pipelines", []string{"state=running"}, gauge, 0},
		{"trackrec_room_pipelines", []string{"state=done"}, gauge, 2},
		{"trackrec_room_pipelines", []string{"state=failed"}, gauge, 1},
		{"trackrec_active_recordings", nil, gauge, 1},
		{"trackrec_bots", nil, gauge, 2},
		{"trackrec_tracks", nil, gauge, 3},
		{"trackrec_packets_written_total", nil, counter, 1000},
		{"trackrec_bytes_written_total", nil, counter, 123456},
		{"trackrec_gap_fill_packets_total", []string{"kind=concealment"}, counter, 7},
		{"trackrec_gap_fill_packets_total", []string{"kind=silence"}, counter, 11},
		{"trackrec_dropped_packets_total", []string{"reason=late"}, counter, 6},
		{"trackrec_dropped_packets_total", []string{"reason=duplicate"}, counter, 5},
		{"trackrec_dropped_packets_total", []string{"reason=malformed"}, counter, 2},
		{"trackrec_reordered_packets_total", nil, counter, 4},
		{"trackrec_resyncs_total", nil, counter, 1},
		{"trackrec_uploads_total", []string{"result=success"}, counter, 0},
		{"trackrec_uploads_total", []string{"result=failure"}, counter, 0},
	} {
		m, ok := sample(fams, tc.name, tc.labels...)
		if !ok {
			t.Errorf("%s%v missing", tc.name, tc.labels)
			continue
		}
		if typ := fams[tc.name].GetType(); typ != tc.typ {
			t.Errorf("%s is a %v, want %v", tc.name, typ, tc.typ)
		}
		if got := value(m); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	// Only the states above: nothing else appears in the families.
	for name, n := range map[string]int{"trackrec_recordings": 6, "trackrec_track_uploads": 4, "trackrec_room_pipelines": 6,
		"trackrec_gap_fill_packets_total": 2, "trackrec_dropped_packets_total": 3} {
		if got := len(fams[name].GetMetric()); got != n {
			t.Errorf("%s has %d series, want %d", name, got, n)
		}
	}
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "trackrec_upload_duration_seconds"} {
		if fams[name] == nil {
			t.Errorf("%s missing", name)
		}
	}
}

func TestMetricsWithoutStats(t *testing.T) {
	fams := scrape(t, New(&fakeRecorder{}, quiet()))
	if _, ok := sample(fams, "trackrec_recordings", "state=stopped"); !ok {
		t.Error("state gauges missing")
	}
	if fams["trackrec_packets_written_total"] != nil || fams["trackrec_bots"] != nil {
		t.Error("a recorder without Stats still has packet or bot metrics")
	}
}

func TestMetricsObserveUploads(t *testing.T) {
	m := NewMetrics()
	e := New(&fakeRecorder{}, quiet(), Options{Metrics: m})
	m.ObserveUpload("livekit/r/a.ogg", 200*time.Millisecond, nil)
	m.ObserveUpload("livekit/r/a.ogg", time.Second, errors.New("connection refused"))
	m.ObserveUpload("livekit/r/a.ogg", 2*time.Second, nil)
	fams := scrape(t, e)
	for result, want := range map[string]float64{"success": 2, "failure": 1} {
		if s, ok := sample(fams, "trackrec_uploads_total", "result="+result); !ok || value(s) != want {
			t.Errorf("uploads %s: %v, want %v", result, s, want)
		}
	}
	s, ok := sample(fams, "trackrec_upload_duration_seconds")
	if h := s.GetHistogram(); !ok || h.GetSampleCount() != 2 || h.GetSampleSum() != 2.2 {
		t.Errorf("upload durations: %v, want 2 successes summing to 2.2 s", s)
	}
}

// pickyEvents acts on participant_joined only.
type pickyEvents struct{}

func (pickyEvents) HandleEvent(ev *livekit.WebhookEvent) bool {
	return ev.GetEvent() == "participant_joined"
}

func TestMetricsCountWebhooks(t *testing.T) {
	e := New(&fakeRecorder{}, quiet(), Options{Webhooks: Webhooks{Keys: auth.NewSimpleKeyProvider("devkey", "secret"), Events: pickyEvents{}}})
	event := func(name, id string) *livekit.WebhookEvent {
		return &livekit.WebhookEvent{Event: name, Id: id, Room: &livekit.Room{Name: "r"}, Participant: &livekit.ParticipantInfo{Identity: "alice"}}
	}
	unsigned := func() *http.Request {
		body, _ := protojson.Marshal(event("participant_joined", "EV_u"))
		r := httptest.NewRequest(http.MethodPost, "/recordings/webhooks", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/webhook+json")
		return r
	}
	for _, req := range []*http.Request{
		signed(t, "devkey", "secret", event("participant_joined", "EV_1"), false),
		signed(t, "devkey", "secret", event("participant_joined", "EV_1"), false), // replay
		signed(t, "devkey", "secret", event("room_started", "EV_2"), false),
		signed(t, "devkey", "secret", event("made_up_event", "EV_3"), false),
		signed(t, "devkey", "secret", event("participant_joined", "EV_4"), true), // tampered
		unsigned(),
	} {
		e.ServeHTTP(httptest.NewRecorder(), req)
	}
	fams := scrape(t, e)
	want := []struct {
		event, outcome string
		n              float64
	}{
		{"participant_joined", "accepted", 1},
		{"participant_joined", "duplicate", 1},
		{"room_started", "ignored", 1},
		{"other", "ignored", 1},
		{"unknown", "unauthorized", 2},
	}
	for _, w := range want {
		s, ok := sample(fams, "trackrec_webhook_events_total", "event="+w.event, "outcome="+w.outcome)
		if !ok || value(s) != w.n {
			t.Errorf("webhooks %s/%s: %v, want %v", w.event, w.outcome, s, w.n)
		}
	}
	if got := len(fams["trackrec_webhook_events_total"].GetMetric()); got != len(want) {
		t.Errorf("%d webhook series, want %d", got, len(want))
	}
}
