package issuer

import (
	"context"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/store/storetest"
)

// mustOpenCountryHost is MustOpenHost with country rules: icbc-debit keeps
// a "home only" product in China and blocks 643; icbc-credit charges a
// 1.5% cross-border fee.
func mustOpenCountryHost(t *testing.T) *testHost {
	t.Helper()
	ref, cards := testRef(t)
	debit, _ := ref.Issuer("icbc-debit")
	debit.Products = append(debit.Products, config.Product{Code: "HOMEONLY", Name: "Home only debit", Art: "#112233/#445566"})
	debit.CrossBorder = config.CrossBorder{DomesticOnlyProducts: []string{"HOMEONLY"}, BlockedCountries: []string{"643"}}
	ch := config.Cardholder{PAN: makePAN(debit.BINs[0], debit.PANLength, 980001), Expiry: "3012", Name: "HOME ONLY",
		Phone: "13900009999", BalanceMinor: 100000, Product: "HOMEONLY"}
	debit.Cardholders = append(debit.Cardholders, ch)
	cards["homeonly"] = testCard{issuer: "icbc-debit", Cardholder: ch}
	credit, _ := ref.Issuer("icbc-credit")
	credit.CrossBorder = config.CrossBorder{FeeBasisPoints: 150}
	if err := ref.Validate(); err != nil {
		t.Fatal(err)
	}
	th := &testHost{cards: cards, sms: &sentSMS{}, clock: &clock{t: time.Date(2026, 11, 26, 2, 0, 0, 0, time.UTC)},
		cfg: storetest.Config(t), hash: newKeyHasher()}
	th.Host = th.open(t, ref)
	t.Cleanup(func() {
		rep, err := th.Host.CheckLedger(context.Background())
		if err != nil || !rep.OK {
			t.Errorf("ledger invariant after test: %+v, %v", rep, err)
		}
		th.closeHost(t)
	})
	return th
}

// abroadReq is a purchase in Tokyo of yen billed in CNY.
func (th *testHost) abroadReq(name, country string, yen, fen int64) AuthRequest {
	r := th.auth(name, yen)
	r.Currency, r.Country, r.BillingAmountMinor, r.BillingCurrency = "392", country, fen, "156"
	return r
}

func TestCountryRules(t *testing.T) {
	ctx := context.Background()
	th := mustOpenCountryHost(t)
	for _, c := range []struct {
		name string
		req  AuthRequest
		code ResponseCode
	}{
		{"00 debit in Tokyo", th.abroadReq("debit", "392", 1200, 5654), RCApproved},
		{"57 domestic-only card abroad", th.abroadReq("homeonly", "392", 1200, 5654), RCNotPermitted},
		{"00 domestic-only card at home", th.auth("homeonly", 100), RCApproved},
		{"00 domestic-only card at home with DE19", func() AuthRequest { r := th.auth("homeonly", 100); r.Country = "156"; return r }(), RCApproved},
		{"57 country the bank blocks", th.abroadReq("debit", "643", 1200, 5654), RCNotPermitted},
		{"00 another bank does not block it", th.abroadReq("credit", "643", 1200, 5654), RCApproved},
	} {
		t.Run(c.name, func(t *testing.T) {
			if res := th.Authorize(ctx, c.req); res.Code != c.code {
				t.Fatalf("code %s (%s); want %s", res.Code, res.Code.Text(), c.code)
			}
		})
	}
}

func TestCrossBorderFee(t *testing.T) {
	ctx := context.Background()
	th := mustOpenCountryHost(t)
	before := th.account(t, "credit2")
	req := th.abroadReq("credit2", "392", 1200, 5654)
	res := th.Authorize(ctx, req)
	if res.Code != RCApproved {
		t.Fatalf("code %s", res.Code)
	}
	// 56.54 CNY + 1.5% = 0.8481 → 0.85 (half up): 57.39 held.
	after := th.account(t, "credit2")
	if got := before.AvailableMinor - after.AvailableMinor; got != 5654+85 {
		t.Fatalf("held %d, want %d", got, 5654+85)
	}
	feeBooked := func() int64 {
		t.Helper()
		var sum int64
		if err := th.Host.DB().DB.QueryRow(`SELECT COALESCE(SUM(amount_minor), 0) FROM postings WHERE account = $1`,
			feeAccount("icbc-credit")).Scan(&sum); err != nil {
			t.Fatal(err)
		}
		return sum
	}
	if got := feeBooked(); got != 85 {
		t.Fatalf("fee account %d, want 85", got)
	}
	t.Run("no fee at home", func(t *testing.T) {
		b := th.account(t, "credit2")
		r := th.auth("credit2", 1000)
		if res := th.Authorize(ctx, r); res.Code != RCApproved {
			t.Fatalf("code %s", res.Code)
		}
		if got := b.AvailableMinor - th.account(t, "credit2").AvailableMinor; got != 1000 {
			t.Fatalf("held %d", got)
		}
		th.Reverse(ctx, ReversalRequest{MTI: "0400", PAN: r.PAN, Transmission: r.Transmission, STAN: r.STAN, RRN: r.RRN,
			Terminal: r.Terminal, Acquirer: r.Acquirer})
	})
	rev := th.Reverse(ctx, ReversalRequest{MTI: "0400", PAN: req.PAN, AmountMinor: req.AmountMinor, Transmission: req.Transmission,
		STAN: req.STAN, RRN: req.RRN, Terminal: req.Terminal, Acquirer: req.Acquirer})
	if rev.Code != RCApproved || !rev.Released {
		t.Fatalf("reversal %+v", rev)
	}
	if got := th.account(t, "credit2"); got.AvailableMinor != before.AvailableMinor || got.HeldMinor != before.HeldMinor {
		t.Fatalf("after reversal %+v, before %+v: fee not released", got, before)
	}
	if got := feeBooked(); got != 0 {
		t.Fatalf("fee account %d after the reversal, want 0", got)
	}
	t.Run("a reversal after a restart reverses the fee too", func(t *testing.T) {
		r := th.abroadReq("credit2", "392", 1200, 5654)
		if res := th.Authorize(ctx, r); res.Code != RCApproved {
			t.Fatalf("code %s", res.Code)
		}
		th.reopen(t)
		if rev := th.Reverse(ctx, ReversalRequest{MTI: "0400", PAN: r.PAN, Transmission: r.Transmission, STAN: r.STAN, RRN: r.RRN,
			Terminal: r.Terminal, Acquirer: r.Acquirer}); !rev.Released {
			t.Fatalf("reversal %+v", rev)
		}
		if got := feeBooked(); got != 0 {
			t.Fatalf("fee account %d", got)
		}
		if got := th.account(t, "credit2"); got.AvailableMinor != before.AvailableMinor {
			t.Fatalf("available %d, want %d", got.AvailableMinor, before.AvailableMinor)
		}
	})
}

func TestCrossBorderFeeRounding(t *testing.T) {
	bank := &config.Issuer{CrossBorder: config.CrossBorder{FeeBasisPoints: 150}}
	for _, c := range []struct {
		billing, fee int64
		country      string
	}{{5654, 85, "392"}, {100, 2, "392"}, {33, 0, "392"}, {34, 1, "392"}, {10000, 150, "392"}, {10000, 0, "156"}, {10000, 0, ""}} {
		if got := crossBorderFee(bank, c.billing, c.country); got != c.fee {
			t.Errorf("fee(%d, %q) = %d, want %d", c.billing, c.country, got, c.fee)
		}
	}
}
