package wallet

import (
	"github.com/mipay-oss/mipay/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the wallet's own counters (HTTP ones come from httpx).
type metrics struct {
	bindings     *prometheus.CounterVec // by decision, or "error"
	events       *prometheus.CounterVec // by subject and result
	transactions prometheus.Counter     // recorded (first delivery only)
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		bindings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mipay", Subsystem: "wallet", Name: "bindings_total",
			Help: "Card bindings started, by the TSP's decision (or error).",
		}, []string{"decision"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mipay", Subsystem: "wallet", Name: "events_total",
			Help: "Events handled, by subject and result (ok, ignored, retry).",
		}, []string{"subject", "result"}),
		transactions: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "mipay", Subsystem: "wallet", Name: "transactions_recorded_total",
			Help: "Card transactions recorded (redeliveries not counted).",
		}),
	}
	if reg != nil {
		m.bindings, _ = promreg.Register(reg, m.bindings) // unexportable: counted anyway
		m.events, _ = promreg.Register(reg, m.events)
		m.transactions, _ = promreg.Register(reg, m.transactions)
	}
	return m
}
