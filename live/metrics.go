package live

import "github.com/prometheus/client_golang/prometheus"

// Collector reports the hub's counters to Prometheus.
func Collector(h *Hub) prometheus.Collector { return collector{h} }

type collector struct{ h *Hub }

var (
	descConsumers = prometheus.NewDesc("trackrec_live_consumers", "Live stream consumers connected now (GET /recordings/live).", nil, nil)
	descBytes     = prometheus.NewDesc("trackrec_live_bytes_sent_total", "Audio bytes sent to live stream consumers.", nil, nil)
	descDropped   = prometheus.NewDesc("trackrec_live_consumers_dropped_total", "Live stream consumers closed for falling behind (LIVE_MAX_LAG).", nil, nil)
)

func (collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descConsumers
	ch <- descBytes
	ch <- descDropped
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.h.Stats()
	ch <- prometheus.MustNewConstMetric(descConsumers, prometheus.GaugeValue, float64(st.Consumers))
	ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(st.Bytes))
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(st.Dropped))
}
