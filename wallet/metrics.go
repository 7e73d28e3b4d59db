package wallet

import (
	"errors"

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
		m.bindings = registerShared(reg, m.bindings)
		m.events = registerShared(reg, m.events)
		m.transactions = registerShared(reg, m.transactions)
	}
	return m
}

// registerShared registers c, or returns the collector already registered
// under its name (two wallets on one registry share their counters).
func registerShared[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	return c // registered, or unregistrable: counted but not exported
}
