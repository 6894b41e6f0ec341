package api

import (
	"github.com/trackrec/trackrec/completion"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/trackrec/trackrec/recorder"
)

// StatsSource is a Recorder that also reports counters (recorder.Supervisor
// does). It is separate from Recorder so a recorder without it still serves
// the API; the metrics it feeds are then absent.
type StatsSource interface {
	Stats() recorder.Stats
}

// Metrics counts what happens outside the recorder's own state: upload
// attempts (fed by the upload queue through ObserveUpload) and webhooks.
// Everything else is read from the recorder at scrape time, so nothing is
// counted twice. One Metrics may be shared by the queue and api.New.
type Metrics struct {
	uploads       *prometheus.CounterVec
	uploadSeconds prometheus.Histogram
	webhooks      *prometheus.CounterVec
	extra         []prometheus.Collector
}

// Add serves c's metrics too (capacity.Guard's load and bounds). Call it
// before api.New.
func (m *Metrics) Add(c prometheus.Collector) { m.extra = append(m.extra, c) }

// NewMetrics returns zeroed metrics, registered nowhere until api.New.
func NewMetrics() *Metrics {
	m := &Metrics{
		uploads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trackrec_uploads_total",
			Help: "Attempts to store a file (track, manifest, mixdown), by result; failed ones are retried.",
		}, []string{"result"}),
		uploadSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "trackrec_upload_duration_seconds",
			Help: "Time taken by successful attempts to store a file.",
			// Manifests take tens of milliseconds, an hour of audio to a
			// far store up to a minute.
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trackrec_webhook_events_total",
			Help: "LiveKit webhooks received, by event and outcome (accepted, ignored, duplicate, unauthorized, unavailable).",
		}, []string{"event", "outcome"}),
	}
	// Both series exist from the start, so rate() and alerts on failures
	// work before the first one.
	m.uploads.WithLabelValues("success")
	m.uploads.WithLabelValues("failure")
	return m
}

// ObserveUpload records one attempt to store a file; it matches
// uploader.QueueOptions.Observe. The key is not a label: keys are unbounded.
func (m *Metrics) ObserveUpload(key string, took time.Duration, err error) {
	if err != nil {
		m.uploads.WithLabelValues("failure").Inc()
		return
	}
	m.uploads.WithLabelValues("success").Inc()
	m.uploadSeconds.Observe(took.Seconds())
}

// webhook counts one webhook. An unverified one's event is "unknown": its
// body is not to be believed.
func (m *Metrics) webhook(event, outcome string) {
	if outcome == "unauthorized" {
		event = "unknown"
	} else {
		event = webhookEventLabel(event)
	}
	m.webhooks.WithLabelValues(event, outcome).Inc()
}

// webhookEventLabel keeps the event label to LiveKit's known events: the
// event name comes from the request body, so it must not mint series.
func webhookEventLabel(event string) string {
	switch event {
	case "room_started", "room_finished",
		"participant_joined", "participant_left", "participant_connection_aborted",
		"track_published", "track_unpublished",
		"egress_started", "egress_updated", "egress_ended",
		"ingress_started", "ingress_ended":
		return event
	}
	return "other"
}

// handler serves a registry of this API's own: tests and several servers in
// one process each see only their own recorder.
func (m *Metrics) handler(rec Recorder) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.uploads, m.uploadSeconds, m.webhooks,
		newRecorderCollector(rec),
	)
	reg.MustRegister(m.extra...)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// recorderCollector reads the recorder's state at scrape time.
type recorderCollector struct {
	rec                            Recorder
	recordings, uploads, pipelines *prometheus.Desc
	active, bots, tracks           *prometheus.Desc
	packets, bytes, gapFill, drops *prometheus.Desc
	reordered, resyncs             *prometheus.Desc
}

func newRecorderCollector(rec Recorder) *recorderCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &recorderCollector{
		rec:        rec,
		recordings: d("trackrec_recordings", "Recordings known to this instance, by state (stopped ones are the recent history).", "state"),
		uploads:    d("trackrec_track_uploads", "Track files by upload state; failed ones stay in the spool and are retried.", "state"),
		pipelines:  d("trackrec_room_pipelines", "Complete rooms' mixdown and webhook runs, by state.", "state"),
		active:     d("trackrec_active_recordings", "Recordings not stopped yet."),
		bots:       d("trackrec_bots", "Rooms this instance's bot is in."),
		tracks:     d("trackrec_tracks", "Track files open and being written."),
		packets:    d("trackrec_packets_written_total", "Publisher packets written to track files."),
		bytes:      d("trackrec_bytes_written_total", "Container bytes written to track files."),
		gapFill:    d("trackrec_gap_fill_packets_total", "Packets inserted for gaps: concealment (lost packets) or silence (no audio sent).", "kind"),
		drops:      d("trackrec_dropped_packets_total", "Publisher packets not written, by reason.", "reason"),
		reordered:  d("trackrec_reordered_packets_total", "Packets written that arrived after a later one."),
		resyncs:    d("trackrec_resyncs_total", "Times a track's timeline was re-based on arrival (SSRC change, jump, drift)."),
	}
}

func (c *recorderCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.recordings, c.uploads, c.pipelines, c.active, c.bots, c.tracks,
		c.packets, c.bytes, c.gapFill, c.drops, c.reordered, c.resyncs} {
		ch <- d
	}
}

func (c *recorderCollector) Collect(ch chan<- prometheus.Metric) {
	// Known states are shown at zero too: a series that appears only when
	// something fails cannot be alerted on reliably.
	recordings := zeros(string(recorder.StateStarting), string(recorder.StateWaiting), string(recorder.StateRecording),
		string(recorder.StateAway), string(recorder.StateStopping), string(recorder.StateStopped))
	uploads := zeros("pending", "uploading", "uploaded", "failed")
	pipelines := zeros(completion.StateWaiting, completion.StateQueued, completion.StateRunning, completion.StateRetrying, completion.StateDone, completion.StateFailed)
	for _, r := range c.rec.List() {
		recordings[string(r.State)]++
		for _, t := range r.Tracks {
			if t.Upload != "" {
				uploads[t.Upload]++
			}
		}
	}
	for _, f := range c.rec.Recovered() {
		for _, u := range f.Uploads {
			uploads[u.State]++
		}
	}
	for _, p := range c.rec.Completions() {
		pipelines[p.State]++
	}
	for desc, m := range map[*prometheus.Desc]map[string]int{c.recordings: recordings, c.uploads: uploads, c.pipelines: pipelines} {
		for state, n := range m {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(n), state)
		}
	}

	src, ok := c.rec.(StatsSource)
	if !ok {
		return
	}
	st := src.Stats()
	gauge := func(d *prometheus.Desc, v int) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	counter := func(d *prometheus.Desc, v int64, label ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), label...)
	}
	gauge(c.active, st.ActiveRecordings)
	gauge(c.bots, st.Bots)
	gauge(c.tracks, st.OpenTracks)
	t := st.Tracks
	counter(c.packets, t.Packets)
	counter(c.bytes, t.Bytes)
	counter(c.gapFill, t.ConcealmentPackets, "concealment")
	counter(c.gapFill, t.SilencePackets, "silence")
	counter(c.drops, t.Late, "late")
	counter(c.drops, t.Duplicates, "duplicate")
	counter(c.drops, t.Malformed, "malformed")
	counter(c.reordered, t.Reordered)
	counter(c.resyncs, t.Resyncs)
}

func zeros(keys ...string) map[string]int {
	m := make(map[string]int, len(keys))
	for _, k := range keys {
		m[k] = 0
	}
	return m
}
