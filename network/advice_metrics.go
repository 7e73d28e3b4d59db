package network

import (
	"github.com/mipay-oss/mipay/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

// Advice outcomes, the label of mipay_network_advices_total.
const (
	outcomeAcknowledged = "acknowledged"
	outcomeRefused      = "refused"
	outcomeFailed       = "failed"
)

// adviceMetrics counts how stand-in advices end. A refused or failed
// advice is an approval the issuer's ledger does not hold: operators alert
// on the rate of those two (and list them with Switch.UnsettledAdvices).
// Each row is counted once, by the node whose update ended it.
type adviceMetrics struct {
	settled *prometheus.CounterVec // by outcome
}

func newAdviceMetrics(reg prometheus.Registerer) *adviceMetrics {
	m := &adviceMetrics{settled: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mipay", Subsystem: "network", Name: "advices_total",
		Help: "Stand-in advices that ended, by outcome: acknowledged (0130/0230 00), refused (another final DE39), " +
			"failed (could not be built, see issuer_advices.last_error).",
	}, []string{"outcome"})}
	// Every outcome is exported from the start, at 0: an alert on the rate
	// of refusals needs the series before the first one.
	for _, o := range []string{outcomeAcknowledged, outcomeRefused, outcomeFailed} {
		m.settled.WithLabelValues(o)
	}
	if reg != nil {
		m.settled, _ = promreg.Register(reg, m.settled) // unexportable: counted anyway
	}
	return m
}

// outcomeName names the end state of an advice (issuer_advices.done) as
// the counter's label and UnsettledAdvice.State do; "" while pending.
func outcomeName(state int) string {
	switch state {
	case adviceAcked:
		return outcomeAcknowledged
	case adviceRefused:
		return outcomeRefused
	case adviceFailed:
		return outcomeFailed
	}
	return ""
}

// settle counts an advice that ended with state.
func (m *adviceMetrics) settle(state int) {
	if o := outcomeName(state); o != "" {
		m.settled.WithLabelValues(o).Inc()
	}
}
