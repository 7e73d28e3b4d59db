package network

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/store/storetest"
)

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		in, de10, str string
	}{
		{"0.04712", "84712000", "0.04712000"},
		{"7.1030", "67103000", "7.103000"},
		{"23.125", "52312500", "23.12500"},
		{"0.0002714", "90271400", "0.000271400"},
		{"1", "61000000", "1.000000"},
		{"1234567", "01234567", "1234567"},
	} {
		r, err := ParseRate(tc.in)
		if err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if r.DE10() != tc.de10 || r.String() != tc.str {
			t.Errorf("%s: DE10 %s string %s, want %s %s", tc.in, r.DE10(), r.String(), tc.de10, tc.str)
		}
		back, err := ParseDE10(r.DE10())
		if err != nil || back != r {
			t.Errorf("%s: DE10 round trip %+v %v", tc.in, back, err)
		}
	}
	for _, bad := range []string{"", "0", "0.000", "abc", "1.2.3", "-1", "12345678", "0.12345678", "0.0000000001"} {
		if _, err := ParseRate(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func mustRate(t testing.TB, s string) Rate {
	t.Helper()
	r, err := ParseRate(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestConvert checks the billing amount exact to the fen for currencies of
// 0, 2 and 3 minor units, and the half-up rule.
func TestConvert(t *testing.T) {
	for _, tc := range []struct {
		name   string
		amount int64
		minor  int
		rate   string
		want   int64
	}{
		{"JPY 1200 at 0.04712", 1200, 0, "0.04712", 5654},         // 56.544 CNY → 56.54
		{"JPY 1201 at 0.04712", 1201, 0, "0.04712", 5659},         // 56.59112 → 56.59
		{"JPY 10 at 0.04715 half up", 10, 0, "0.04715", 47},       // 0.4715 → 0.47
		{"JPY 100 at 0.04715 half up", 100, 0, "0.04715", 472},    // 4.715 → 4.72 (exactly half)
		{"USD 12.34 at 7.1030", 1234, 2, "7.1030", 8765},          // 87.65102 → 87.65
		{"USD 0.01 at 7.1030", 1, 2, "7.1030", 7},                 // 0.07103 → 0.07
		{"EUR 99.99 at 8.2140", 9999, 2, "8.2140", 82132},         // 821.31786 → 821.32
		{"EUR 0.50 at 9.0000 exactly", 50, 2, "9", 450},           // 4.50
		{"HKD 88.80 at 0.9125", 8880, 2, "0.9125", 8103},          // 81.03 exactly
		{"HKD 1.10 at 0.9125 half up", 110, 2, "0.9125", 100},     // 1.00375 → 1.00
		{"KWD 12.345 at 23.125", 12345, 3, "23.125", 28548},       // 285.478125 → 285.48
		{"KWD 0.001 at 23.125", 1, 3, "23.125", 2},                // 0.023125 → 0.02
		{"KWD 0.002 at 2.5 half up", 2, 3, "2.5", 1},              // 0.005 → 0.01
		{"max JPY", 999_999_999_999, 0, "0.0000010", 100_000_000}, // 999999.999999 → 1e6.00
		{"VND 250000 at 0.0002714", 250000, 0, "0.0002714", 6785}, // 67.85
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Convert(tc.amount, tc.minor, mustRate(t, tc.rate))
			if err != nil || got != tc.want {
				t.Fatalf("Convert = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
	t.Run("billing amount over 12 digits refused", func(t *testing.T) {
		if _, err := Convert(999_999_999_999, 2, mustRate(t, "9999999")); !errors.Is(err, ErrAmountRange) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("negative refused", func(t *testing.T) {
		if _, err := Convert(-1, 2, mustRate(t, "1")); !errors.Is(err, ErrAmountRange) {
			t.Fatalf("err %v", err)
		}
	})
}

func TestRateTable(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	tab := NewRateTable(24 * time.Hour)
	add := func(ver int64, eff time.Time, jpy string) {
		v, err := RateVersionOf(config.RateSet{Version: ver, EffectiveFrom: eff, Rates: map[string]string{"JPY": jpy}})
		if err != nil {
			t.Fatal(err)
		}
		if err := tab.add(v); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := tab.Lookup("392", t0); !errors.Is(err, ErrNoRate) {
		t.Fatalf("empty table: %v", err)
	}
	add(1, t0, "0.04700")
	add(2, t0.Add(time.Hour), "0.04800")
	for _, tc := range []struct {
		name string
		at   time.Time
		want string
		ver  int64
		err  error
	}{
		{"before any version", t0.Add(-time.Second), "", 0, ErrNoRate},
		{"first version", t0.Add(time.Minute), "0.04700000", 1, nil},
		{"the second never before it takes effect", t0.Add(time.Hour - time.Millisecond), "0.04700000", 1, nil},
		{"second version", t0.Add(time.Hour), "0.04800000", 2, nil},
		{"stale past the maximum age", t0.Add(25*time.Hour + time.Second), "", 2, ErrRateStale},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, ver, err := tab.Lookup("392", tc.at)
			if !errors.Is(err, tc.err) || (tc.err == nil && (r.String() != tc.want || ver != tc.ver)) {
				t.Fatalf("Lookup = %s v%d %v", r, ver, err)
			}
		})
	}
	t.Run("currency not in the version", func(t *testing.T) {
		if _, _, err := tab.Lookup("840", t0.Add(2*time.Hour)); !errors.Is(err, ErrNoRate) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("unknown currency code refused", func(t *testing.T) {
		if _, err := RateVersionOf(config.RateSet{Version: 9, Rates: map[string]string{"XYZ": "1"}}); err == nil {
			t.Fatal("accepted")
		}
	})
}

// capturingLink is an issuer link that approves and keeps what it got.
type capturingLink struct {
	mu   sync.Mutex
	msgs []*iso8583.Message
}

func (l *capturingLink) Send(_ context.Context, m *iso8583.Message) (*iso8583.Message, error) {
	l.mu.Lock()
	l.msgs = append(l.msgs, m.Clone())
	l.mu.Unlock()
	resp := m.Response(2, 3, 4, 6, 7, 10, 11, 32, 37, 41, 49, 51, 90)
	resp.SetString(39, "00")
	if m.MTI() == "0200" {
		resp.SetString(38, "A12345")
	}
	return resp, nil
}

func (l *capturingLink) last(mti string) *iso8583.Message {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.msgs) - 1; i >= 0; i-- {
		if l.msgs[i].MTI() == mti {
			return l.msgs[i]
		}
	}
	return nil
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// mustFXSwitch is a switch with a capturing issuer link and a clock the
// test moves.
func mustFXSwitch(t testing.TB) (*harness, *capturingLink, *clock) {
	t.Helper()
	ref, err := config.Default()
	if err != nil {
		t.Fatal(err)
	}
	is, _ := ref.Issuer("icbc-debit")
	h := &harness{ref: ref, bus: &fakeBus{}, tokens: &fakeTokens{pan: is.Cardholders[0].PAN, state: "ACTIVE"}}
	h.tokens.token = luhnComplete(is.TokenBINs[0] + "123456789")
	link := &capturingLink{}
	clk := &clock{t: time.Now().UTC()}
	db := storetest.Open(t, "network", Migrations())
	sw, err := New(context.Background(), Config{
		Ref: ref, DB: db, Tokens: h.tokens, Bus: h.bus, ReversalRetry: 20 * time.Millisecond, PANSealer: testSealer(t), Now: clk.now,
		RateMaxAge: 24 * time.Hour, Issuers: func(string) (IssuerLink, bool) { return link, true },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sw.Close() })
	h.sw = sw
	return h, link, clk
}

// abroad makes a request from a terminal in country paying in currency.
func (h *harness) abroad(amount int64, country, currency string) *iso8583.Message {
	m := h.request(amount)
	m.SetString(19, country)
	m.SetString(49, currency)
	return m
}

func TestCrossBorderAuthorization(t *testing.T) {
	h, link, _ := mustFXSwitch(t)
	// The embedded default rates are in effect from the switch's start.
	for _, tc := range []struct {
		name              string
		country, currency string
		amount            int64
		de6, de10         string
	}{
		{"JPY in Tokyo", "392", "392", 1200, "000000005654", "84712000"},
		{"USD in New York", "840", "840", 1234, "000000008765", "67103000"},
		{"EUR in Paris", "250", "978", 9999, "000000082132", "68214000"},
		{"HKD in Hong Kong", "344", "344", 8880, "000000008103", "79125000"},
		{"KWD in Kuwait", "414", "414", 12345, "000000028548", "52312500"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := h.send(t, h.abroad(tc.amount, tc.country, tc.currency))
			if resp.String(39) != "00" {
				t.Fatalf("rc %s", resp.String(39))
			}
			out := link.last("0200")
			if out.String(6) != tc.de6 || out.String(10) != tc.de10 || out.String(51) != "156" || out.String(19) != tc.country {
				t.Fatalf("issuer got DE6 %s DE10 %s DE51 %s DE19 %s", out.String(6), out.String(10), out.String(51), out.String(19))
			}
			if resp.String(6) != tc.de6 || resp.String(10) != tc.de10 || resp.String(51) != "156" {
				t.Fatalf("acquirer got DE6 %s DE10 %s DE51 %s", resp.String(6), resp.String(10), resp.String(51))
			}
		})
	}
	t.Run("domestic: no conversion fields", func(t *testing.T) {
		resp := h.send(t, h.request(1250))
		out := link.last("0200")
		if resp.String(39) != "00" || out.Has(6) || out.Has(10) || out.Has(51) {
			t.Fatalf("rc %s, DE6 present %v", resp.String(39), out.Has(6))
		}
	})
	t.Run("country without acceptance declined 58", func(t *testing.T) {
		n := len(link.msgs)
		resp := h.send(t, h.abroad(1000, "408", "840"))
		if resp.String(39) != RCNotPermittedTerminal || len(link.msgs) != n {
			t.Fatalf("rc %s, issuer asked %d times", resp.String(39), len(link.msgs)-n)
		}
	})
	t.Run("unknown currency refused 12", func(t *testing.T) {
		resp := h.send(t, h.abroad(1000, "392", "999"))
		if resp.String(39) != RCInvalidTxn {
			t.Fatalf("rc %s", resp.String(39))
		}
	})
	t.Run("currency without a rate declined 91", func(t *testing.T) {
		if _, err := h.sw.PublishRates(context.Background(), config.RateSet{Version: 50, Rates: map[string]string{"USD": "7.2"}}); err != nil {
			t.Fatal(err)
		}
		resp := h.send(t, h.abroad(1000, "392", "392"))
		if resp.String(39) != RCIssuerUnavailable {
			t.Fatalf("rc %s", resp.String(39))
		}
	})
}

func TestCrossBorderEvent(t *testing.T) {
	h, _, _ := mustFXSwitch(t)
	resp := h.send(t, h.abroad(1200, "392", "392"))
	if resp.String(39) != "00" {
		t.Fatalf("rc %s", resp.String(39))
	}
	waitUntil(t, func() bool {
		h.bus.mu.Lock()
		defer h.bus.mu.Unlock()
		return len(h.bus.events) == 1
	})
	e := h.bus.events[0]
	if e.AmountMinor != 1200 || e.Currency != "392" || e.BillingAmountMinor != 5654 || e.BillingCurrency != "156" ||
		e.ConversionRate != "0.04712000" || e.Country != "392" {
		t.Fatalf("event %+v", e)
	}
}

func waitUntil(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReversalUsesOriginalRate: rates change between the authorization and
// its reversal; the issuer's reversal carries the original DE6 and DE10.
func TestReversalUsesOriginalRate(t *testing.T) {
	h, link, clk := mustFXSwitch(t)
	orig := h.abroad(1200, "392", "392")
	if resp := h.send(t, orig); resp.String(39) != "00" || resp.String(6) != "000000005654" {
		t.Fatalf("auth rc %s DE6 %s", resp.String(39), resp.String(6))
	}
	clk.add(time.Minute)
	if _, err := h.sw.PublishRates(context.Background(), config.RateSet{Version: 2, Rates: map[string]string{"JPY": "0.05"}}); err != nil {
		t.Fatal(err)
	}
	// A new payment takes the new rate.
	if resp := h.send(t, h.abroad(1200, "392", "392")); resp.String(6) != "000000006000" || resp.String(10) != "85000000" {
		t.Fatalf("new rate: DE6 %s DE10 %s", resp.String(6), resp.String(10))
	}
	rev := orig.Clone()
	rev.SetMTI("0400")
	de90, _ := iso8583.OriginalData{MTI: "0200", STAN: orig.String(11), TransmissionTime: orig.String(7), AcquirerID: orig.String(32)}.Format()
	rev.SetString(90, de90)
	rev.SetString(11, "999999")
	rev.Unset(55)
	if resp := h.send(t, rev); resp.String(39) != "00" {
		t.Fatalf("reversal rc %s", resp.String(39))
	}
	waitUntil(t, func() bool { return link.last("0420") != nil || link.last("0400") != nil })
	out := link.last("0400")
	if out == nil {
		out = link.last("0420")
	}
	if out.String(6) != "000000005654" || out.String(10) != "84712000" || out.String(51) != "156" || out.String(4) != "000000001200" {
		t.Fatalf("issuer reversal DE4 %s DE6 %s DE10 %s DE51 %s", out.String(4), out.String(6), out.String(10), out.String(51))
	}
}

func TestStaleRatesDeclined(t *testing.T) {
	h, link, clk := mustFXSwitch(t)
	clk.add(25 * time.Hour)
	n := len(link.msgs)
	if resp := h.send(t, h.abroad(1200, "392", "392")); resp.String(39) != RCIssuerUnavailable || len(link.msgs) != n {
		t.Fatalf("stale: rc %s", resp.String(39))
	}
	// Domestic payments need no rate.
	if resp := h.send(t, h.request(100)); resp.String(39) != "00" {
		t.Fatalf("domestic rc %s", resp.String(39))
	}
	t.Run("a version from the future is not used", func(t *testing.T) {
		if _, err := h.sw.PublishRates(context.Background(), config.RateSet{Version: 3, EffectiveFrom: clk.now().Add(time.Hour),
			Rates: map[string]string{"JPY": "0.05"}}); err != nil {
			t.Fatal(err)
		}
		if resp := h.send(t, h.abroad(1200, "392", "392")); resp.String(39) != RCIssuerUnavailable {
			t.Fatalf("rc %s", resp.String(39))
		}
		clk.add(time.Hour)
		if resp := h.send(t, h.abroad(1200, "392", "392")); resp.String(39) != "00" || resp.String(6) != "000000006000" {
			t.Fatalf("rc %s DE6 %s", resp.String(39), resp.String(6))
		}
	})
	t.Run("publishing an old version number refused", func(t *testing.T) {
		if _, err := h.sw.PublishRates(context.Background(), config.RateSet{Version: 2, Rates: map[string]string{"JPY": "0.05"}}); err == nil {
			t.Fatal("accepted")
		}
	})
}

// BenchmarkAuthorize compares a domestic authorization through the switch
// with a cross-border one (JPY in Tokyo): the difference is the
// conversion's cost.
func BenchmarkAuthorize(b *testing.B) {
	for _, bc := range []struct{ name, country, currency string }{{"domestic", "156", "156"}, {"cross-border", "392", "392"}} {
		b.Run(bc.name, func(b *testing.B) {
			h, _, _ := mustFXSwitch(b)
			reqs := make([]*iso8583.Message, b.N)
			for i := range reqs {
				reqs[i] = h.abroad(1200, bc.country, bc.currency)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				resp, err := h.sw.Handle(context.Background(), reqs[i])
				if err != nil || resp.String(39) != "00" {
					b.Fatalf("rc %s %v", resp.String(39), err)
				}
			}
		})
	}
}

// BenchmarkConversion is the conversion step alone (acceptance, rate
// lookup, exact arithmetic, DE6/DE10/DE51).
func BenchmarkConversion(b *testing.B) {
	h, _, _ := mustFXSwitch(b)
	m := h.abroad(1200, "392", "392")
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		bill, dec := h.sw.crossBorder(m, now)
		if dec != nil {
			b.Fatal(dec.reason)
		}
		out := m.Clone()
		if err := setBilling(out, bill); err != nil {
			b.Fatal(err)
		}
	}
}

// adminDo sends a request to the network's admin API with the secret auth
// ("": none) and returns the status and body.
func adminDo(t *testing.T, method, url, auth, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestRatesAdminAPI(t *testing.T) {
	h, _, _ := mustFXSwitch(t)
	srv := httptest.NewServer(h.sw.AdminHandler("s3cret"))
	defer srv.Close()
	do := func(method, auth, body string) (int, string) {
		return adminDo(t, method, srv.URL+"/v1/admin/rates", auth, body)
	}
	if code, _ := do("GET", "", ""); code != http.StatusUnauthorized {
		t.Fatalf("no secret: %d", code)
	}
	if code, _ := do("GET", "wrong", ""); code != http.StatusUnauthorized {
		t.Fatalf("wrong secret: %d", code)
	}
	code, body := do("GET", "s3cret", "")
	if code != http.StatusOK || !strings.Contains(body, `"current":1`) || !strings.Contains(body, `"JPY":"0.04712000"`) {
		t.Fatalf("GET %d %s", code, body)
	}
	if code, body := do("POST", "s3cret", `{"version":2,"rates":{"JPY":"0.05"}}`); code != http.StatusCreated {
		t.Fatalf("POST %d %s", code, body)
	}
	for name, bad := range map[string]string{
		"old version":      `{"version":2,"rates":{"JPY":"0.05"}}`,
		"unknown currency": `{"version":3,"rates":{"XXX":"0.05"}}`,
		"bad rate":         `{"version":3,"rates":{"JPY":"-1"}}`,
		"backdated":        `{"version":3,"effectiveFrom":"2020-01-01T00:00:00Z","rates":{"JPY":"0.05"}}`,
		"unknown field":    `{"version":3,"rate":{}}`,
	} {
		if code, body := do("POST", "s3cret", bad); code < 400 || code >= 500 {
			t.Errorf("%s: %d %s", name, code, body)
		}
	}
	if _, body := do("GET", "s3cret", ""); !strings.Contains(body, `"current":2`) {
		t.Fatalf("GET after POST %s", body)
	}
}

// TestRatesFromAnotherNode: a version another switch node stored is read
// by this one.
func TestRatesFromAnotherNode(t *testing.T) {
	h, _, clk := mustFXSwitch(t)
	_, err := h.sw.db.DB.Exec(`INSERT INTO fx_rates (version, effective_from, rates, created_at) VALUES ($1, $2, $3, $4)`,
		7, clk.now().UnixMilli(), []byte(`{"JPY":"0.05"}`), clk.now().UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	if err := h.sw.refreshRates(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r, v, err := h.sw.Rates().Lookup("392", clk.now()); err != nil || v != 7 || r.String() != "0.05000000" {
		t.Fatalf("Lookup = %s v%d %v", r, v, err)
	}
	if _, err := h.sw.PublishRates(context.Background(), config.RateSet{Version: 7, Rates: map[string]string{"JPY": "0.06"}}); err == nil {
		t.Fatal("a version another node published was published again")
	}
}
