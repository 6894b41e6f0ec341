package api

import (
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/trackrec/trackrec/recorder"
)

// metrics serves the recorder's state in the Prometheus text format, so an
// upload that keeps failing (the file waits in the spool) shows on a
// dashboard and can page someone.
func (h *handlers) metrics(c echo.Context) error {
	recs := h.rec.List()
	recordings := map[string]int{}
	uploads := map[string]int{}
	var packets, silence, conceal, late, dups int64
	for _, r := range recs {
		recordings[r.State]++
		for _, t := range r.Tracks {
			if t.Upload != "" {
				uploads[t.Upload]++
			}
			packets += t.Packets
			silence += t.SilencePackets
			conceal += t.PLCPackets
			late += t.Late
			dups += t.Duplicates
		}
	}
	for _, f := range h.rec.Recovered() {
		for _, u := range f.Uploads {
			uploads[u.State]++
		}
	}
	rooms := map[string]int{}
	for _, c := range h.rec.Completions() {
		rooms[c.State]++
	}
	var b strings.Builder
	gauge := func(name, help, label string, m map[string]int, states ...string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name)
		for _, s := range states {
			if _, ok := m[s]; !ok {
				m[s] = 0
			}
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "%s{%s=%q} %d\n", name, label, k, m[k])
		}
	}
	gauge("trackrec_recordings", "Recordings known to this instance, by state (stopped ones are the recent history).", "state", recordings,
		recorder.StateStarting, recorder.StateWaiting, recorder.StateRecording, recorder.StateAway, recorder.StateStopping, recorder.StateStopped)
	gauge("trackrec_track_uploads", "Track files by upload state; failed ones stay in the spool and are retried.", "state", uploads,
		"pending", "uploading", "uploaded", "failed")
	gauge("trackrec_room_pipelines", "Complete rooms' mixdown and webhook runs, by state.", "state", rooms,
		recorder.CompletionWaiting, recorder.CompletionRunning, recorder.CompletionDone, recorder.CompletionFailed)
	counter := func(name, help string, v int64) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n%s %d\n", name, help, name, name, v)
	}
	counter("trackrec_track_packets", "Publisher packets written by the listed recordings.", packets)
	counter("trackrec_track_silence_packets", "Silence packets inserted by the listed recordings.", silence)
	counter("trackrec_track_concealment_packets", "Loss-concealment packets inserted by the listed recordings.", conceal)
	counter("trackrec_track_late_packets", "Packets dropped as too late by the listed recordings.", late)
	counter("trackrec_track_duplicate_packets", "Duplicate packets dropped by the listed recordings.", dups)
	return c.Blob(http.StatusOK, "text/plain; version=0.0.4; charset=utf-8", []byte(b.String()))
}
