package promreg

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegister(t *testing.T) {
	reg := prometheus.NewRegistry()
	newCounter := func() prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "mipay_test_total", Help: "test"})
	}
	first, err := Register(reg, newCounter())
	if err != nil {
		t.Fatal(err)
	}
	t.Run("same metric again: the first is shared", func(t *testing.T) {
		second, err := Register(reg, newCounter())
		if err != nil {
			t.Fatal(err)
		}
		second.Inc()
		if second != first {
			t.Fatal("a second collector of the same metric was not the first")
		}
	})
	t.Run("conflicting descriptor: an error and an unexported collector", func(t *testing.T) {
		other := prometheus.NewGauge(prometheus.GaugeOpts{Name: "mipay_test_total", Help: "other help"})
		got, err := Register(reg, other)
		if err == nil {
			t.Fatal("a conflicting descriptor was registered")
		}
		if got != other {
			t.Fatal("the caller did not get its own collector back")
		}
	})
}
