package config

import (
	"strings"
	"testing"
)

// TestDeviceCardLimit: unset is Mi Pay's 8; a file may raise it (a bench
// device) within bounds; out of bounds is refused with the field named.
func TestDeviceCardLimit(t *testing.T) {
	ref, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	if ref.MaxCardsPerDevice != 0 || ref.DeviceCardLimit() != DefaultMaxCardsPerDevice || DefaultMaxCardsPerDevice != 8 {
		t.Fatalf("default %d / %d", ref.MaxCardsPerDevice, ref.DeviceCardLimit())
	}
	ref.MaxCardsPerDevice = 1000
	if err := ref.Validate(); err != nil || ref.DeviceCardLimit() != 1000 {
		t.Fatalf("1000: %v %d", err, ref.DeviceCardLimit())
	}
	for _, bad := range []int{-1, MaxCardsPerDeviceLimit + 1} {
		ref.MaxCardsPerDevice = bad
		if err := ref.Validate(); err == nil || !strings.Contains(err.Error(), "maxCardsPerDevice") {
			t.Errorf("%d: %v", bad, err)
		}
	}
	var none *Reference
	if none.DeviceCardLimit() != DefaultMaxCardsPerDevice {
		t.Error("a nil reference has no default")
	}
}
