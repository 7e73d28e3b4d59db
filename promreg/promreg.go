// Package promreg registers Prometheus collectors the way every mipay party
// shares them: a collector already registered under the same name and
// labels (a second node, writer or bus in one process, on one registry) is
// reused rather than refused, so their counts add up in one series.
package promreg

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c with reg and returns the collector to use: c, or the
// one of the same type registered before it. Any other failure (a
// descriptor that conflicts with one registered) returns c, which then
// counts but is not exported, and the error, for the caller to decide
// whether metrics are worth failing over.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
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
	return c, err
}
