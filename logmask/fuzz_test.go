package logmask

import (
	"testing"
)

func FuzzMask(f *testing.F) {
	for _, s := range []string{pan16, "6225 8812 3456 7898", "3782-822463-10005", "2026-11-26 01:28:31",
		"?pan=" + pan19 + "&x", "", "0000 0000 0000 0", "1111 11111 111111 1",
		"5A08" + pan16 + "5F34", "16" + pan16 + "000000001000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m := Mask(s)
		if len(m) != len(s) {
			t.Fatalf("Mask changed length: %q -> %q", s, m)
		}
		for k := 0; k < len(s); k++ {
			if m[k] != s[k] && (m[k] != '*' || !isDigit(s[k])) {
				t.Fatalf("Mask changed a non-digit or wrote other than '*': %q -> %q", s, m)
			}
		}
		checkRuns(t, s, m)
	})
}

// checkRuns checks, for every maximal digit run of the input, that a
// Luhn-valid run of 13–19 digits is masked to first 6 / last 4 at most, and
// that inside longer runs every Luhn-valid window not starting with 0 is.
func checkRuns(t *testing.T, s, m string) {
	for i := 0; i < len(s); {
		if !isDigit(s[i]) {
			i++
			continue
		}
		end := runEnd(s, i)
		n := end - i
		switch {
		case n >= MinPANDigits && n <= MaxPANDigits && luhnValid(s[i:end]):
			assertMasked(t, s, m, i, end)
		case n > MaxPANDigits:
			for a := i; a+MinPANDigits <= end; a++ {
				for b := a + MinPANDigits; b <= end && b-a <= MaxPANDigits; b++ {
					if s[a] != '0' && luhnValid(s[a:b]) {
						assertMasked(t, s, m, a, b)
					}
				}
			}
		}
		i = end
	}
}

func assertMasked(t *testing.T, s, m string, a, b int) {
	t.Helper()
	for k := a + keepFirst; k < b-keepLast; k++ {
		if m[k] != '*' {
			t.Fatalf("digits %d–%d of %q are Luhn-valid but not masked: %q", a, b, s, m)
		}
	}
}
