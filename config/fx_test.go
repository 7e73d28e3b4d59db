package config

import (
	"strings"
	"testing"
)

func TestCurrencyTable(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range Currencies() {
		if len(c.Code) != 3 || len(c.Numeric) != 3 || !allDigits(c.Numeric) || c.MinorUnits < 0 || c.MinorUnits > 3 {
			t.Errorf("bad currency %+v", c)
		}
		if seen[c.Numeric] || seen[c.Code] {
			t.Errorf("duplicate currency %+v", c)
		}
		seen[c.Numeric], seen[c.Code] = true, true
	}
	for _, tc := range []struct {
		num, code string
		minor     int
	}{{"392", "JPY", 0}, {"840", "USD", 2}, {"414", "KWD", 3}, {"978", "EUR", 2}, {"344", "HKD", 2}, {"156", "CNY", 2}} {
		c, ok := CurrencyByNumeric(tc.num)
		if !ok || c.Code != tc.code || c.MinorUnits != tc.minor {
			t.Errorf("CurrencyByNumeric(%s) = %+v, %v", tc.num, c, ok)
		}
		if c2, ok := CurrencyByCode(tc.code); !ok || c2 != c {
			t.Errorf("CurrencyByCode(%s) = %+v", tc.code, c2)
		}
	}
	if _, ok := CurrencyByNumeric("999"); ok {
		t.Error("999 is not a currency")
	}
}

func TestAcceptanceTable(t *testing.T) {
	all := AcceptanceCountries()
	if len(all) < 150 {
		t.Fatalf("%d countries, want 150+", len(all))
	}
	seen := map[string]bool{}
	for _, c := range all {
		if len(c.Numeric) != 3 || !allDigits(c.Numeric) || len(c.Alpha2) != 2 || c.Name == "" || seen[c.Numeric] || seen[c.Alpha2] {
			t.Errorf("bad or duplicate country %+v", c)
		}
		seen[c.Numeric], seen[c.Alpha2] = true, true
	}
	for _, n := range []string{"156", "392", "840", "978" /* not a country */} {
		_, ok := AcceptanceCountry(n)
		if ok != (n != "978") {
			t.Errorf("AcceptanceCountry(%s) = %v", n, ok)
		}
	}
	if _, ok := AcceptanceCountry("408"); ok {
		t.Error("408 has no acceptance")
	}
}

func TestDefaultRates(t *testing.T) {
	rs, err := DefaultRates()
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Rates) < 30 {
		t.Fatalf("%d rates, want 30+", len(rs.Rates))
	}
	for code, r := range rs.Rates {
		if _, ok := CurrencyByCode(code); !ok || code == "CNY" {
			t.Errorf("rate for %q: not a foreign currency of the table", code)
		}
		if r == "" || strings.Trim(r, "0123456789.") != "" {
			t.Errorf("rate %s = %q", code, r)
		}
	}
}

func TestCrossBorderValidate(t *testing.T) {
	ref, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	is := &ref.Issuers[0]
	is.CrossBorder = CrossBorder{DomesticOnlyProducts: []string{is.Products[0].Code}, BlockedCountries: []string{"643"}, FeeBasisPoints: 100}
	if err := ref.Validate(); err != nil {
		t.Fatalf("valid rules refused: %v", err)
	}
	for name, cb := range map[string]CrossBorder{
		"unknown product": {DomesticOnlyProducts: []string{"nope"}},
		"bad country":     {BlockedCountries: []string{"JP"}},
		"fee too high":    {FeeBasisPoints: MaxFeeBasisPoints + 1},
		"negative fee":    {FeeBasisPoints: -1},
	} {
		t.Run(name, func(t *testing.T) {
			is.CrossBorder = cb
			if err := ref.Validate(); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
