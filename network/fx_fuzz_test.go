package network

import (
	"math/big"
	"testing"
)

// FuzzParseRate: a rate from the admin API either is refused or round-trips
// through DE10 to the same value.
func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"0.04712", "7.1030", "23.125", "0.0002714", "1", "", "0", "1e5", "-1", "0.0000000001", "99999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRate(s)
		if err != nil {
			return
		}
		back, err := ParseDE10(r.DE10())
		if err != nil || back != r {
			t.Fatalf("%q: DE10 %s does not round-trip: %+v %v", s, r.DE10(), back, err)
		}
		want, ok := new(big.Rat).SetString(s)
		got, _ := new(big.Rat).SetString(r.String())
		if !ok || got == nil || want.Cmp(got) != 0 {
			t.Fatalf("%q parsed as %s", s, r.String())
		}
	})
}

// FuzzParseDE10 reads field 10 from the wire.
func FuzzParseDE10(f *testing.F) {
	for _, s := range []string{"84712000", "00000000", "9999999", "x1234567", "123456789"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseDE10(s)
		if err != nil {
			return
		}
		if r.DE10() != s {
			t.Fatalf("%q → %s", s, r.DE10())
		}
	})
}

// FuzzConvert checks the integer conversion against exact rational
// arithmetic with half-up rounding.
func FuzzConvert(f *testing.F) {
	f.Add(int64(1200), 0, uint8(8), uint32(4712000))
	f.Add(int64(12345), 3, uint8(5), uint32(2312500))
	f.Add(int64(999999999999), 2, uint8(0), uint32(9999999))
	f.Fuzz(func(t *testing.T, amount int64, minor int, dec uint8, mant uint32) {
		r := Rate{Decimals: dec, Mantissa: mant}
		got, err := Convert(amount, minor, r)
		if amount < 0 || amount > MaxAmountMinor || minor < 0 || minor > 4 || dec > 9 || mant == 0 || mant > 9_999_999 {
			if err == nil {
				t.Fatalf("out-of-range input accepted")
			}
			return
		}
		// exact = amount × mant × 100 / 10^(minor+dec), rounded half up.
		num := new(big.Int).Mul(big.NewInt(amount), big.NewInt(int64(mant)))
		num.Mul(num, big.NewInt(100))
		den := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(minor)+int64(dec)), nil)
		q, rem := new(big.Int).QuoRem(num, den, new(big.Int))
		if new(big.Int).Mul(rem, big.NewInt(2)).Cmp(den) >= 0 {
			q.Add(q, big.NewInt(1))
		}
		if q.Cmp(big.NewInt(MaxAmountMinor)) > 0 {
			if err == nil {
				t.Fatalf("billing %s over 12 digits accepted as %d", q, got)
			}
			return
		}
		if err != nil || got != q.Int64() {
			t.Fatalf("Convert(%d, %d, %+v) = %d, %v; want %s", amount, minor, r, got, err, q)
		}
	})
}
