package sms

import (
	"strings"
	"testing"
)

func FuzzNormalizePhone(f *testing.F) {
	for _, s := range []string{"13800138000", "+8613800138000", "0086 138-0013-8000", "+4915112345678", "", "+", "++86", "1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := NormalizePhone(s)
		if err != nil {
			return
		}
		// A normalized number is canonical: normalizing it again is a no-op,
		// and it is short and made of digits (and a leading +).
		again, err := NormalizePhone(n)
		if err != nil || again != n {
			t.Fatalf("NormalizePhone(%q) = %q, but again = %q, %v", s, n, again, err)
		}
		if len(n) > 16 || strings.Trim(n, "+0123456789") != "" {
			t.Fatalf("NormalizePhone(%q) = %q", s, n)
		}
	})
}
