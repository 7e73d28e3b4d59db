package events

import (
	"errors"
	"fmt"
	"time"

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
	if m.published, err = register(reg, m.published); err != nil {
		return nil, err
	}
	if m.handled, err = register(reg, m.handled); err != nil {
		return nil, err
	}
	if m.latency, err = register(reg, m.latency); err != nil {
		return nil, err
	}
	return m, nil
}

// register adds c to reg, or returns the collector registered before it (a
// second bus on one registry shares the metrics).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("events: metrics: %w", err)
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
