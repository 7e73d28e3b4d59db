package network

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/promo"
	"github.com/mipay-oss/mipay/store/storetest"
)

// recordingLink keeps what the switch sent the issuer.
type recordingLink struct {
	IssuerLink
	mu   sync.Mutex
	sent []*iso8583.Message
}

func (l *recordingLink) Send(ctx context.Context, m *iso8583.Message) (*iso8583.Message, error) {
	l.mu.Lock()
	l.sent = append(l.sent, m.Clone())
	l.mu.Unlock()
	return l.IssuerLink.Send(ctx, m)
}

func (l *recordingLink) last(t *testing.T, mti string) *iso8583.Message {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.sent) - 1; i >= 0; i-- {
		if l.sent[i].MTI() == mti {
			return l.sent[i]
		}
	}
	t.Fatalf("nothing %s sent to the issuer", mti)
	return nil
}

// mustPromoSwitch is a switch with a promotions engine holding one ICBC
// campaign: 10 CNY off from 50 CNY, budget for budgetOffers discounts.
func mustPromoSwitch(t *testing.T, budgetOffers int64, mutate func(*config.Reference)) (*harness, *promo.Engine, *recordingLink) {
	t.Helper()
	h := mustSwitch(t, mutate)
	eng := newTestPromoEngine(t, budgetOffers)
	orig := h.sw.cfg.Issuers
	link0, _ := orig("icbc-debit")
	link := &recordingLink{IssuerLink: link0}
	// Set before any request: the switch reads its config per request.
	h.sw.cfg.Promotions = eng
	h.sw.cfg.Issuers = func(string) (IssuerLink, bool) { return link, true }
	return h, eng, link
}

// newTestPromoEngine is a promotions engine holding one ICBC campaign: 10
// CNY off from 50 CNY, budget for budgetOffers discounts.
func newTestPromoEngine(t *testing.T, budgetOffers int64) *promo.Engine {
	t.Helper()
	eng, err := promo.Open(context.Background(), promo.Config{DB: storetest.Open(t, promo.Party, promo.Migrations())})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	now := time.Now()
	_, err = eng.Create(context.Background(), promo.Campaign{
		ID: "icbc-test", BankName: "ICBC", IssuerID: "icbc-debit", Currency: promo.Currency,
		Eligibility: promo.Eligibility{Channel: promo.ChannelMiPay, MinAmountMinor: 5000},
		Benefit:     promo.Benefit{Kind: promo.BenefitFixed, AmountMinor: 1000},
		Limits:      promo.Limits{BudgetMinor: budgetOffers * 1000},
		Window:      promo.Window{Start: now.Add(-time.Hour), End: now.Add(time.Hour)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return eng
}

func stats(t *testing.T, eng *promo.Engine) promo.Stats {
	t.Helper()
	st, err := eng.Stats(context.Background(), "", "icbc-test")
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestPromotionApplied(t *testing.T) {
	h, eng, link := mustPromoSwitch(t, 10, nil)
	resp := h.send(t, h.request(6000))
	if resp.String(39) != "00" {
		t.Fatalf("rc %s", resp.String(39))
	}
	sent := link.last(t, "0200")
	if sent.String(4) != "000000006000" {
		t.Fatalf("issuer DE4 %s: the merchant is paid in full", sent.String(4))
	}
	p, err := iso8583.ParsePromotion(sent.String(iso8583.FieldPromotion))
	if err != nil {
		t.Fatal(err)
	}
	if p.OriginalAmount != "000000006000" || p.DiscountAmount != "000000001000" || p.CampaignID != "icbc-test" || p.Points != "1" {
		t.Fatalf("issuer DE124 %+v", p)
	}
	if resp.String(4) != "000000006000" || resp.String(iso8583.FieldPromotion) != sent.String(iso8583.FieldPromotion) {
		t.Fatalf("POS answer DE4 %s DE124 %q", resp.String(4), resp.String(iso8583.FieldPromotion))
	}
	if st := stats(t, eng); st.Redemptions != 1 || st.BudgetUsedMinor != 1000 {
		t.Fatalf("stats %+v", st)
	}
	// Confirmed durably before the answer: a crash after it cannot leave
	// the discount "reserved" for the sweeper to give back.
	if st := stats(t, eng); st.Confirmed != 1 {
		t.Fatalf("confirmed %d when the approval was answered, want 1", st.Confirmed)
	}
	if n, err := eng.Sweep(context.Background(), time.Nanosecond); err != nil || n != 0 {
		t.Fatalf("sweep after the approval released %d (%v), want 0", n, err)
	}
	t.Run("the event tells the wallet of the saving", func(t *testing.T) {
		waitFor(t, func() bool { h.bus.mu.Lock(); defer h.bus.mu.Unlock(); return len(h.bus.events) >= 1 })
		h.bus.mu.Lock()
		e := h.bus.events[0]
		h.bus.mu.Unlock()
		if e.AmountMinor != 6000 || e.DiscountMinor != 1000 || e.OfferBank != "ICBC" || e.CampaignID != "icbc-test" {
			t.Fatalf("event %+v", e)
		}
		if got := promo.SavingText(e.OfferBank, e.DiscountMinor); got != "Saved 10.00 CNY with ICBC offer" {
			t.Fatalf("notification %q", got)
		}
	})
	t.Run("below the minimum amount: no DE124", func(t *testing.T) {
		resp := h.send(t, h.request(4999))
		if resp.String(39) != "00" || resp.Has(iso8583.FieldPromotion) || link.last(t, "0200").Has(iso8583.FieldPromotion) {
			t.Fatal("a promotion was applied below its minimum amount")
		}
	})
	t.Run("duplicate reserves once", func(t *testing.T) {
		m := h.request(6000)
		a, b := h.send(t, m), h.send(t, m)
		if a.String(iso8583.FieldPromotion) != b.String(iso8583.FieldPromotion) {
			t.Fatal("duplicate answered differently")
		}
		if st := stats(t, eng); st.Redemptions != 2 {
			t.Fatalf("redemptions %d, want 2", st.Redemptions)
		}
	})
}

func TestPromotionReleasedOnDecline(t *testing.T) {
	h, eng, _ := mustPromoSwitch(t, 10, nil)
	h.iss.rc.Store("51")
	resp := h.send(t, h.request(6000))
	if resp.String(39) != "51" || resp.Has(iso8583.FieldPromotion) {
		t.Fatalf("rc %s, DE124 %q", resp.String(39), resp.String(iso8583.FieldPromotion))
	}
	if st := stats(t, eng); st.Redemptions != 0 || st.BudgetUsedMinor != 0 || st.Released != 1 {
		t.Fatalf("stats after a decline %+v", st)
	}
}

func TestPromotionReleasedOnTimeout(t *testing.T) {
	h, eng, _ := mustPromoSwitch(t, 10, func(r *config.Reference) {
		is, _ := r.Issuer("icbc-debit")
		is.Timeout = config.Duration(50 * time.Millisecond)
		is.StandIn.Enabled = false
	})
	h.iss.delay.Store(int64(200 * time.Millisecond))
	if r := h.send(t, h.request(6000)); r.String(39) != "91" {
		t.Fatalf("rc %s", r.String(39))
	}
	if st := stats(t, eng); st.Redemptions != 0 || st.Released != 1 {
		t.Fatalf("stats after a timeout %+v", st)
	}
}

func TestPromotionReleasedOnceOnReversal(t *testing.T) {
	h, eng, _ := mustPromoSwitch(t, 1, nil)
	orig := h.request(6000)
	if r := h.send(t, orig); r.String(39) != "00" || !r.Has(iso8583.FieldPromotion) {
		t.Fatalf("rc %s", r.String(39))
	}
	if r := h.send(t, h.request(6000)); r.Has(iso8583.FieldPromotion) {
		t.Fatal("a second discount past a budget of one")
	}
	de90, _ := iso8583.OriginalData{MTI: "0200", STAN: orig.String(11), TransmissionTime: orig.String(7), AcquirerID: orig.String(32)}.Format()
	for i, stan := range []uint32{900001, 900002, 900002} {
		m := orig.Clone()
		m.SetMTI("0400")
		m.Unset(55)
		m.SetString(11, iso8583.FormatSTAN(stan))
		m.SetString(90, de90)
		if r := h.send(t, m); r.String(39) != "00" {
			t.Fatalf("reversal %d: rc %s", i, r.String(39))
		}
	}
	if st := stats(t, eng); st.Redemptions != 0 || st.Released != 1 || st.BudgetUsedMinor != 0 {
		t.Fatalf("stats after reversals %+v", st)
	}
	if r := h.send(t, h.request(6000)); !r.Has(iso8583.FieldPromotion) {
		t.Fatal("the released budget was not granted again")
	}
}

func TestPromotionFirstPaymentAfterBinding(t *testing.T) {
	h, eng, _ := mustPromoSwitch(t, 10, nil)
	now := time.Now()
	if _, err := eng.Create(context.Background(), promo.Campaign{
		ID: "first", BankName: "ICBC", IssuerID: "icbc-debit", Currency: promo.Currency, Priority: 9,
		Eligibility: promo.Eligibility{Channel: promo.ChannelMiPay, FirstPaymentOnly: true},
		Benefit:     promo.Benefit{Kind: promo.BenefitFixed, AmountMinor: 888},
		Limits:      promo.Limits{BudgetMinor: 100_000, PerCard: 1},
		Window:      promo.Window{Start: now.Add(-time.Hour), End: now.Add(time.Hour)},
	}); err != nil {
		t.Fatal(err)
	}
	campaign := func(r *iso8583.Message) string {
		p, _ := iso8583.ParsePromotion(r.String(iso8583.FieldPromotion))
		return p.CampaignID
	}
	if r := h.send(t, h.request(6000)); campaign(r) != "first" { // ATC 1
		t.Fatalf("first payment got %q", campaign(r))
	}
	if r := h.send(t, h.request(6000)); campaign(r) != "icbc-test" { // ATC 2
		t.Fatalf("second payment got %q", campaign(r))
	}
}

// BenchmarkAuthorizePromotions compares the switch path (fake TSP, issuer on
// loopback) without an engine and with one holding 1,000 active campaigns
// none of which matches (the common case: evaluation, no write), and with a
// matching one (a durable reservation per payment).
func BenchmarkAuthorizePromotions(b *testing.B) {
	for _, mode := range []string{"none", "1000-no-match", "1000-match"} {
		b.Run(mode, func(b *testing.B) {
			h := mustSwitchTB(b)
			if mode != "none" {
				eng, err := promo.Open(context.Background(), promo.Config{DB: storetest.Open(b, promo.Party, promo.Migrations())})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { eng.Close() })
				now := time.Now()
				for i := range 1000 {
					c := promo.Campaign{
						ID: fmt.Sprintf("c%04d", i), BankName: "B", IssuerID: "icbc-debit", Currency: promo.Currency,
						Eligibility: promo.Eligibility{MCCs: []string{fmt.Sprintf("%04d", 6000+i%1000)}},
						Benefit:     promo.Benefit{Kind: promo.BenefitFixed, AmountMinor: 100},
						Limits:      promo.Limits{BudgetMinor: 100_000_000_000},
						Window:      promo.Window{Start: now.Add(-time.Hour), End: now.Add(time.Hour)},
					}
					if mode == "1000-match" && i == 0 {
						c.Eligibility.MCCs = nil
					}
					if _, err := eng.Create(context.Background(), c); err != nil {
						b.Fatal(err)
					}
				}
				h.sw.cfg.Promotions = eng
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				resp, err := h.sw.Handle(context.Background(), h.request(6000))
				if err != nil || resp.String(39) != "00" {
					b.Fatal(err)
				}
			}
		})
	}
}

// mustSwitchTB is mustSwitch for benchmarks: an always-approving issuer on
// loopback, the fake TSP, no bus.
func mustSwitchTB(tb testing.TB) *harness {
	tb.Helper()
	ref, err := config.Default()
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := iso8583.NewServer(iso8583.ServerConfig{}, func(_ context.Context, req *iso8583.Message) (*iso8583.Message, error) {
		resp := req.Response(2, 3, 4, 7, 11, 32, 37, 41, 49, 90)
		resp.SetString(39, "00")
		resp.SetString(38, "A12345")
		return resp, nil
	})
	go srv.Serve(ln)
	tb.Cleanup(func() { ln.Close() })
	client, err := iso8583.Dial(context.Background(), iso8583.ClientConfig{Addr: ln.Addr().String()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { client.Close() })
	is, _ := ref.Issuer("icbc-debit")
	h := &harness{ref: ref, tokens: &fakeTokens{pan: is.Cardholders[0].PAN, state: "ACTIVE"}}
	h.tokens.token = luhnComplete(is.TokenBINs[0] + "123456789")
	sw, err := New(context.Background(), Config{Ref: ref, DB: storetest.Open(tb, "network", Migrations()), Tokens: h.tokens,
		Issuers: func(string) (IssuerLink, bool) { return client, true }, PANSealer: testSealer(tb)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { sw.Close() })
	h.sw = sw
	return h
}

func TestPromotionPlainCardKeepsNoPAN(t *testing.T) {
	h := mustSwitch(t, nil)
	db := storetest.Open(t, promo.Party, promo.Migrations())
	eng, err := promo.Open(context.Background(), promo.Config{DB: db})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	now := time.Now()
	if _, err := eng.Create(context.Background(), promo.Campaign{
		ID: "any-card", BankName: "ICBC", IssuerID: "icbc-debit", Currency: promo.Currency,
		Benefit: promo.Benefit{Kind: promo.BenefitPercent, PercentBP: 1000, CapMinor: 500},
		Limits:  promo.Limits{BudgetMinor: 100_000, PerCardPerDay: 1},
		Window:  promo.Window{Start: now.Add(-time.Hour), End: now.Add(time.Hour)},
	}); err != nil {
		t.Fatal(err)
	}
	h.sw.cfg.Promotions = eng
	plain := func() *iso8583.Message {
		m := h.request(3000)
		m.SetString(2, h.tokens.pan)
		return m
	}
	r := h.send(t, plain())
	p, err := iso8583.ParsePromotion(r.String(iso8583.FieldPromotion))
	if r.String(39) != "00" || err != nil || p.DiscountAmount != "000000000300" {
		t.Fatalf("plain card: rc %s DE124 %+v (%v)", r.String(39), p, err)
	}
	if r := h.send(t, plain()); r.Has(iso8583.FieldPromotion) {
		t.Fatal("the plain card's per-day limit did not hold")
	}
	var key string
	if err := db.DB.QueryRow(`SELECT card_key FROM reservations`).Scan(&key); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(key, h.tokens.pan) || strings.Contains(key, h.tokens.pan[6:len(h.tokens.pan)-4]) {
		t.Fatalf("the promotions store keeps the PAN: %q", key)
	}
}
