package logmask

import (
	"strings"
	"testing"
)

func FuzzMask(f *testing.F) {
	for _, s := range []string{pan16, "6225 8812 3456 7898", "3782-822463-10005", "2026-11-26 01:28:31",
		"?pan=" + pan19 + "&x", "", "0000 0000 0000 0", "1111 11111 111111 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m := Mask(s)
		if len(m) != len(s) {
			t.Fatalf("Mask changed length: %q -> %q", s, m)
		}
		for _, run := range digitsRun.FindAllStringIndex(m, -1) {
			// A maximal run of 13–19 digits left in the output must not be Luhn-valid.
			start, end := run[0], run[1]
			if (start > 0 && isDigit(m[start-1])) || (end < len(m) && isDigit(m[end])) {
				continue
			}
			if LuhnValid(m[start:end]) {
				t.Fatalf("Luhn-valid run survived: %q -> %q", s, m)
			}
		}
		for k := 0; k < len(s); k++ {
			if m[k] != s[k] && (m[k] != '*' || !isDigit(s[k])) {
				t.Fatalf("Mask changed a non-digit or wrote other than '*': %q -> %q", s, m)
			}
		}
		if Mask(m) != m && strings.Count(m, "*") == strings.Count(s, "*") {
			t.Fatalf("Mask not stable: %q -> %q -> %q", s, m, Mask(m))
		}
	})
}
