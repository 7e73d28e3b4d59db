package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestPOSChargeCurrency(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown currency", []string{"--currency", "999", "--amount", "1"}, "not an ISO 4217 numeric code the network knows"},
		{"yen has no decimals", []string{"--currency", "392", "--amount", "12.5"}, "JPY has 0 decimals"},
		{"dinar has three", []string{"--currency", "414", "--amount", "1.2345"}, "KWD has 3 decimals"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := run(context.Background(), append([]string{"pos", "charge", "--data", t.TempDir()}, tc.args...), &out, &errb)
			if err == nil || !strings.Contains(err.Error()+errb.String(), tc.want) {
				t.Fatalf("err %v, stderr %s", err, errb.String())
			}
		})
	}
}

func TestFormatMinorExponent(t *testing.T) {
	for _, tc := range []struct {
		minor    int64
		currency string
		want     string
	}{{1250, "156", "12.50 CNY"}, {1200, "392", "1200 JPY"}, {12345, "414", "12.345 KWD"}, {5, "840", "0.05 USD"}, {1250, "999", "12.50 999"}} {
		if got := formatMinor(tc.minor, tc.currency); got != tc.want {
			t.Errorf("formatMinor(%d, %s) = %q, want %q", tc.minor, tc.currency, got, tc.want)
		}
	}
}
