package events

import (
	"fmt"
	"time"

	"github.com/mipay-oss/mipay/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics of a bus; nil when Config.Metrics is nil.
type metrics struct {
	published *prometheus.CounterVec   // subject
	handled   *prometheus.CounterVec   // subject, durable, result
	latency   *prometheus.HistogramVec // subject, durable
}

// Handler results counted in mipay_events_handled_total.
const (
	resultOK      = "ok"
	resultRetry   = "retry"   // failed; will be redelivered
	resultDropped = "dropped" // failed for the last time, or malformed
	resultFailed  = "failed"  // fan-out handler failed (no redelivery)
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mipay", Subsystem: "events", Name: "published_total",
			Help: "Events stored in the stream, by subject.",
		}, []string{"subject"}),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mipay", Subsystem: "events", Name: "handled_total",
			Help: "Handler calls by subject, durable (empty for fan-out) and result (ok, retry, dropped, failed).",
		}, []string{"subject", "durable", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "mipay", Subsystem: "events", Name: "handler_duration_seconds",
			Help:    "Handler latency by subject and durable.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"subject", "durable"}),
	}
	var err error
	if m.published, err = promreg.Register(reg, m.published); err != nil {
		return nil, fmt.Errorf("events: metrics: %w", err)
	}
	if m.handled, err = promreg.Register(reg, m.handled); err != nil {
		return nil, fmt.Errorf("events: metrics: %w", err)
	}
	if m.latency, err = promreg.Register(reg, m.latency); err != nil {
		return nil, fmt.Errorf("events: metrics: %w", err)
	}
	return m, nil
}

func (m *metrics) publish(subject string) {
	if m != nil {
		m.published.WithLabelValues(subject).Inc()
	}
}

func (m *metrics) handle(subject, durable, result string, took time.Duration) {
	if m != nil {
		m.handled.WithLabelValues(subject, durable, result).Inc()
		if took > 0 {
			m.latency.WithLabelValues(subject, durable).Observe(took.Seconds())
		}
	}
}
