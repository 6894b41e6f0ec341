package e2e

import (
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// One instance alone with MAX_TRACKS=1: a second start is 503 with
// Retry-After and a JSON error, and records nothing; /metrics shows the
// bound, the refusal and the load. Once the first stops, the second starts.
func TestMaxTracksAlone(t *testing.T) {
	t.Parallel()
	s := startService(t, map[string]string{"MIXDOWN": "none", "MAX_TRACKS": "1"})
	room := "capacity-room"
	publish(t, room, "uma")
	publish(t, room, "vic")
	s.mustStart(room, "uma")
	code, header, body := s.postHeader("/recordings/start", room, "vic")
	if code != http.StatusServiceUnavailable {
		t.Fatalf("start beyond MAX_TRACKS: %d %s, want 503", code, body)
	}
	if secs, err := strconv.Atoi(header.Get("Retry-After")); err != nil || secs <= 0 {
		t.Errorf("Retry-After %q, want whole seconds", header.Get("Retry-After"))
	}
	var answer struct{ Error string }
	if err := json.Unmarshal([]byte(body), &answer); err != nil || answer.Error == "" {
		t.Errorf("answer %q is not a JSON error", body)
	}
	t.Logf("refused: %s", answer.Error)
	for _, r := range s.list() {
		if r.Participant == "vic" {
			t.Errorf("vic recorded though refused: %+v", r)
		}
	}
	if got := s.metric("trackrec_max_tracks"); got != 1 {
		t.Errorf("trackrec_max_tracks %v, want 1", got)
	}
	if got := s.metric("trackrec_starts_refused_total"); got != 1 {
		t.Errorf("trackrec_starts_refused_total %v, want 1", got)
	}
	s.mustStop(room, "uma")
	s.mustStart(room, "vic")
	waitFor(t, 10*time.Second, "vic's track written", func() bool {
		for _, r := range s.list() {
			if r.Participant == "vic" && len(r.Tracks) == 1 && r.Tracks[0].Packets > 0 {
				return true
			}
		}
		return false
	})
	if got := s.metric("trackrec_tracks"); got != 1 {
		t.Errorf("trackrec_tracks %v, want 1", got)
	}
}
