package config

import (
	"errors"

	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func MustDefault(tb testing.TB) *Reference {
	tb.Helper()
	ref, err := Default()
	if err != nil {
		tb.Fatalf("Default: %v", err)
	}
	return ref
}

func TestDefaultContents(t *testing.T) {
	ref := MustDefault(t)
	var debit, credit int
	banks := map[string]bool{}
	for _, is := range ref.Issuers {
		switch is.CardType {
		case Debit:
			debit++
		case Credit:
			credit++
		}
		banks[is.Bank] = true
		if n := len(is.Cardholders); n < 2 || n > 3 {
			t.Errorf("issuer %s: %d demo cardholders, want 2–3", is.ID, n)
		}
		if is.Timeout.D() != 2*time.Second {
			t.Errorf("issuer %s: timeout %v, want 2s", is.ID, is.Timeout.D())
		}
		if is.OTP.Digits != 6 || is.OTP.TTL.D() != 5*time.Minute || is.OTP.MaxAttempts != 5 || is.OTP.MaxResends != 3 {
			t.Errorf("issuer %s: OTP policy %+v", is.ID, is.OTP)
		}
		if is.Limits.CVN2MaxAttempts != 3 {
			t.Errorf("issuer %s: cvn2MaxAttempts %d, want 3", is.ID, is.Limits.CVN2MaxAttempts)
		}
		for _, b := range is.BINs {
			if !strings.HasPrefix(b, "62") {
				t.Errorf("issuer %s: BIN %s is not a UnionPay 62 BIN", is.ID, b)
			}
		}
	}
	if len(ref.Issuers) != 32 || debit != 12 || credit != 20 {
		t.Errorf("issuers: %d (%d debit, %d credit), want 32 (12, 20)", len(ref.Issuers), debit, credit)
	}
	for _, b := range []string{"Bank of China", "Industrial and Commercial Bank of China", "China Construction Bank", "Bank of Communications", "China Merchants Bank"} {
		if !banks[b] {
			t.Errorf("bank %q missing", b)
		}
	}
	if ref.NoCVMLimitMinor != 100000 {
		t.Errorf("noCvmLimitMinor = %d", ref.NoCVMLimitMinor)
	}
	if len(ref.TokenRequestors) != 1 || ref.TokenRequestors[0].ID != "50110030273" {
		t.Errorf("token requestors = %+v", ref.TokenRequestors)
	}
}

func TestDefaultDemoCards(t *testing.T) {
	ref := MustDefault(t)
	var always, lowBalance, noted int
	for _, is := range ref.Issuers {
		if is.OTP.AlwaysOTP {
			always++
		}
		for _, c := range is.Cardholders {
			if c.Note != "" {
				noted++
			}
			if is.CardType == Debit && c.BalanceMinor > 0 && c.BalanceMinor <= 10000 {
				lowBalance++
			}
		}
	}
	if always < 3 {
		t.Errorf("%d issuers always ask for an OTP, want several", always)
	}
	if lowBalance == 0 {
		t.Error("no low-balance debit card for the insufficient-funds demo")
	}
	if noted < 3 {
		t.Errorf("%d cards with a note for `mipay up` to print, want at least 3", noted)
	}
}

func TestDefaultIsFreshCopy(t *testing.T) {
	a, b := MustDefault(t), MustDefault(t)
	a.Issuers[0].Bank = "changed"
	if b.Issuers[0].Bank == "changed" {
		t.Fatal("Default returned shared data")
	}
}

func TestLookups(t *testing.T) {
	ref := MustDefault(t)
	for _, is := range ref.Issuers {
		for _, c := range is.Cardholders {
			got, ok := ref.IssuerByPAN(c.PAN)
			if !ok || got.ID != is.ID {
				t.Errorf("IssuerByPAN(%s) = %v, %v; want %s", MaskPAN(c.PAN), got, ok, is.ID)
			}
			gi, gc, ok := ref.Cardholder(c.PAN)
			if !ok || gi.ID != is.ID || gc.Name != c.Name {
				t.Errorf("Cardholder(%s) wrong", MaskPAN(c.PAN))
			}
		}
		tok := is.TokenBINs[0] + strings.Repeat("0", 16-len(is.TokenBINs[0]))
		if got, ok := ref.IssuerByToken(tok); !ok || got.ID != is.ID {
			t.Errorf("IssuerByToken(%s) = %v, %v; want %s", tok, got, ok, is.ID)
		}
		if _, ok := ref.IssuerByPAN(tok); ok {
			t.Errorf("token %s found as a PAN", tok)
		}
		if got, ok := ref.Issuer(is.ID); !ok || got.ID != is.ID {
			t.Errorf("Issuer(%s) not found", is.ID)
		}
	}
	for _, pan := range []string{"4111111111111111", "", "6"} {
		if is, ok := ref.IssuerByPAN(pan); ok {
			t.Errorf("IssuerByPAN(%q) = %s, want none", pan, is.ID)
		}
	}
	if _, ok := ref.Issuer("nope"); ok {
		t.Error("Issuer(nope) found")
	}
}

func TestIssuerByPANLongestPrefix(t *testing.T) {
	ref := &Reference{Issuers: []Issuer{
		{ID: "short", BINs: []string{"6210"}},
		{ID: "long", BINs: []string{"62101234"}},
	}}
	if is, _ := ref.IssuerByPAN("6210123400000000"); is.ID != "long" {
		t.Errorf("got %s, want long", is.ID)
	}
	if is, _ := ref.IssuerByPAN("6210990000000000"); is.ID != "short" {
		t.Errorf("got %s, want short", is.ID)
	}
}

func TestLuhn(t *testing.T) {
	for _, tc := range []struct {
		n  string
		ok bool
	}{
		{"79927398713", true},
		{"4111111111111111", true},
		{"4111111111111112", false},
		{"6212345678901232", true},
		{"6212345678901234", false},
		{"", false},
		{"0", false},
		{"41111111111111a1", false},
	} {
		t.Run(tc.n, func(t *testing.T) {
			if got := LuhnValid(tc.n); got != tc.ok {
				t.Errorf("LuhnValid(%q) = %v, want %v", tc.n, got, tc.ok)
			}
		})
	}
}

func TestMaskPAN(t *testing.T) {
	if got := MaskPAN("6210102803651527"); got != "621010******1527" {
		t.Errorf("MaskPAN = %s", got)
	}
	if got := MaskPAN("123"); got != "***" {
		t.Errorf("MaskPAN short = %s", got)
	}
}

func TestValidateRejects(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(r *Reference)
		want   string
	}{
		{"duplicate issuer id", func(r *Reference) { r.Issuers[1].ID = r.Issuers[0].ID }, "duplicate id"},
		{"BIN overlap across issuers", func(r *Reference) { r.Issuers[1].BINs = append(r.Issuers[1].BINs, r.Issuers[0].BINs[0][:5]) }, "overlaps"},
		{"token BIN overlaps PAN BIN", func(r *Reference) { r.Issuers[3].TokenBINs = []string{r.Issuers[0].BINs[1]} }, "overlaps"},
		{"token BINs overlap", func(r *Reference) { r.Issuers[3].TokenBINs = r.Issuers[4].TokenBINs }, "overlaps"},
		{"BIN not digits", func(r *Reference) { r.Issuers[0].BINs[0] = "62A010" }, "must be"},
		{"bad card type", func(r *Reference) { r.Issuers[0].CardType = "prepaid" }, "cardType"},
		{"PAN not Luhn", func(r *Reference) {
			p := []byte(r.Issuers[0].Cardholders[0].PAN)
			p[len(p)-1] = '0' + (p[len(p)-1]-'0'+1)%10
			r.Issuers[0].Cardholders[0].PAN = string(p)
		}, "Luhn"},
		{"PAN under another issuer's BIN", func(r *Reference) { r.Issuers[0].Cardholders[0].PAN = r.Issuers[1].Cardholders[0].PAN }, "not under"},
		{"PAN wrong length", func(r *Reference) { r.Issuers[0].Cardholders[0].PAN += "0" }, "digits"},
		{"credit without CVN2", func(r *Reference) { creditHolder(r).CVN2 = "" }, "cvn2"},
		{"bad expiry", func(r *Reference) { r.Issuers[0].Cardholders[0].Expiry = "3013" }, "expiry"},
		{"bad phone", func(r *Reference) { r.Issuers[0].Cardholders[0].Phone = "12345" }, "phone"},
		{"zero daily limit", func(r *Reference) { r.Issuers[0].Limits.DailyMinor = 0 }, "dailyMinor"},
		{"negative cvn2 attempts", func(r *Reference) { r.Issuers[0].Limits.CVN2MaxAttempts = -1 }, "cvn2MaxAttempts"},
		{"zero OTP TTL", func(r *Reference) { r.Issuers[0].OTP.TTL = 0 }, "ttl"},
		{"stand-in without max", func(r *Reference) { r.Issuers[0].StandIn = StandIn{Enabled: true} }, "standIn"},
		{"zero timeout", func(r *Reference) { r.Issuers[0].Timeout = 0 }, "timeout"},
		{"bad art", func(r *Reference) { r.Issuers[0].Products[0].Art = "red" }, "art"},
		{"unknown product", func(r *Reference) { r.Issuers[0].Cardholders[0].Product = "black" }, "product"},
		{"no token requestor", func(r *Reference) { r.TokenRequestors = nil }, "tokenRequestors"},
		{"bad token requestor id", func(r *Reference) { r.TokenRequestors[0].ID = "123" }, "11 digits"},
		{"zero no-CVM limit", func(r *Reference) { r.NoCVMLimitMinor = 0 }, "noCvmLimitMinor"},
		{"no issuers", func(r *Reference) { r.Issuers = nil }, "issuers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := MustDefault(t)
			tc.mutate(ref)
			err := ref.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.want)
			}
			for _, is := range MustDefault(t).Issuers {
				for _, c := range is.Cardholders {
					if strings.Contains(err.Error(), c.PAN) {
						t.Fatalf("error shows a full PAN: %v", err)
					}
				}
			}
		})
	}
}

func creditHolder(r *Reference) *Cardholder {
	for i := range r.Issuers {
		if r.Issuers[i].CardType == Credit {
			return &r.Issuers[i].Cardholders[0]
		}
	}
	panic("no credit issuer")
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ref.json")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadReplacesDefault(t *testing.T) {
	ref := MustDefault(t)
	ref.Issuers = ref.Issuers[:2]
	ref.Issuers[0].Bank = "Test Bank"
	b, err := jsonMarshal(ref)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Load(writeFile(t, string(b)))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(got.Issuers) != 2 || got.Issuers[0].Bank != "Test Bank" {
		t.Fatalf("Load did not replace the default: %d issuers, bank %q", len(got.Issuers), got.Issuers[0].Bank)
	}
}

func TestLoadErrors(t *testing.T) {
	valid, err := jsonMarshal(MustDefault(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		content string
		want    []string // substrings of the one-line error
	}{
		{"empty", "", []string{"empty"}},
		{"syntax", "{\n  \"version\": 1,\n  \"issuers\": [}\n", []string{"line 3, column 15", "invalid character"}},
		{"truncated", string(valid[:len(valid)/2]), []string{"line ", "unexpected end of file"}},
		{"wrong type", "{\n\"version\": \"one\"\n}", []string{"line 2", "version", "int"}},
		{"unknown field", "{\n  \"version\": 1,\n  \"issuerz\": []\n}", []string{"line 3, column 3", `unknown field "issuerz"`}},
		{"bad duration", strings.Replace(string(valid), `"timeout": "2s"`, `"timeout": "2 parsecs"`, 1), []string{"line ", `duration "2 parsecs"`}},
		{"trailing data", string(valid) + "{}", []string{"after the JSON object"}},
		{"invalid data", "{\"version\":1}", []string{"invalid reference data", "noCvmLimitMinor"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, tc.content)
			_, err := Load(path)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			msg := err.Error()
			if !strings.Contains(msg, path) {
				t.Errorf("error %q does not name the file", msg)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error %q is not one line", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.json")
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), path) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load(missing) = %v", err)
	}
}

func TestLoadTooLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.json")
	if err := os.WriteFile(path, make([]byte, MaxFileBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("Load(big) = %v", err)
	}
}

func BenchmarkIssuerByPAN(b *testing.B) {
	ref := MustDefault(b)
	pan := ref.Issuers[len(ref.Issuers)-1].Cardholders[0].PAN
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := ref.IssuerByPAN(pan); !ok {
			b.Fatal("not found")
		}
	}
}

func BenchmarkDefault(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Default(); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(defaultJSON)
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`{"issuers":[{"id":"x","timeout":"1s"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ref, err := Parse(data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error: %q", err)
			}
			return
		}
		if err := ref.Validate(); err != nil {
			t.Fatalf("Parse accepted data that Validate refuses: %v", err)
		}
	})
}
