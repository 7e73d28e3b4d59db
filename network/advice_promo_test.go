package network

import (
	"context"
	"errors"
	"testing"

	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/promo"
	"github.com/mipay-oss/mipay/store"
	"github.com/mipay-oss/mipay/store/storetest"
)

// advicePromotion is the DE124 stored with the one queued advice.
func advicePromotion(t *testing.T, db *store.DB) string {
	t.Helper()
	var p string
	if err := db.DB.QueryRow(`SELECT promotion FROM issuer_advices`).Scan(&p); err != nil {
		t.Fatal(err)
	}
	return p
}

// promoStandIn is a stand-in switch over db (issuer link given) with a
// promotions engine holding the test campaign (10 CNY off from 50 CNY).
func promoStandIn(t *testing.T, db *store.DB, link *adviceIssuer, promos Promotions) *harness {
	t.Helper()
	return standInSwitchConfig(t, db, func(string) (IssuerLink, bool) { return link, true },
		func(c *Config) { c.Promotions = promos })
}

// A stand-in approval with a bank promotion keeps the campaign's budget, so
// its advice must have the issuer book the discount: every advice (0220,
// each 0221, and one sent after a restart) carries the DE124 the original
// 0200 carried, byte for byte, from the queued row.
func TestStandInAdviceCarriesPromotion(t *testing.T) {
	db := storetest.Open(t, "network", Migrations())
	eng := newTestPromoEngine(t, 10)
	link := &adviceIssuer{}
	h := promoStandIn(t, db, link, eng)
	req := h.request(6000)
	if r := h.send(t, req); r.String(39) != "00" || r.Has(iso8583.FieldPromotion) {
		t.Fatalf("stand-in answer: rc %s, DE124 %q (no saving shown)", r.String(39), r.String(iso8583.FieldPromotion))
	}
	orig := link.last("0200")
	want := orig.String(iso8583.FieldPromotion)
	if p, err := iso8583.ParsePromotion(want); err != nil || p.DiscountAmount != "000000001000" || p.CampaignID != "icbc-test" {
		t.Fatalf("the original's DE124 %q (%v): the test needs a discount", want, err)
	}
	if got := advicePromotion(t, db); got != want {
		t.Fatalf("queued advice keeps DE124 %q, want the original's %q", got, want)
	}
	waitFor(t, func() bool { return len(link.mtis()) >= 2 })
	if err := h.sw.Close(); err != nil {
		t.Fatal(err)
	}
	for _, mti := range []string{"0220", "0221"} {
		if m := link.last(mti); m == nil || m.String(iso8583.FieldPromotion) != want {
			t.Fatalf("%s carries DE124 %q, want the original's %q", mti, m.String(iso8583.FieldPromotion), want)
		}
	}
	// After a restart the advice comes from the row, not the engine: the
	// same bytes even with no promotions engine at all.
	sent := len(link.mtis())
	link.set("00")
	h2 := promoStandIn(t, db, link, nil)
	defer h2.sw.Close()
	waitFor(t, func() bool { a := advices(t, db); return len(a) == 1 && a[0].done == adviceAcked })
	got := link.mtis()
	if len(got) != sent+1 {
		t.Fatalf("after the restart the issuer got %v (had %d)", got, sent)
	}
	if m := link.last("0221"); m.String(iso8583.FieldPromotion) != want {
		t.Fatalf("advice after the restart carries DE124 %q, want %q", m.String(iso8583.FieldPromotion), want)
	}
	if st := stats(t, eng); st.Confirmed != 1 || st.BudgetUsedMinor != 1000 {
		t.Fatalf("campaign after the advice %+v: the budget stays used", st)
	}
}

// A stand-in approval without a promotion advises no DE124.
func TestStandInAdviceWithoutPromotion(t *testing.T) {
	db := storetest.Open(t, "network", Migrations())
	link := &adviceIssuer{adviceRC: "00"}
	h := promoStandIn(t, db, link, newTestPromoEngine(t, 10))
	defer h.sw.Close()
	if r := h.send(t, h.request(4000)); r.String(39) != "00" { // below the campaign's 50 CNY
		t.Fatalf("rc %s", r.String(39))
	}
	waitFor(t, func() bool { a := advices(t, db); return len(a) == 1 && a[0].done == adviceAcked })
	if m := link.last("0220"); m == nil || m.Has(iso8583.FieldPromotion) {
		t.Fatalf("advice of a payment without a promotion: %v", m)
	}
}

// standInPromoAdvised approves a payment the campaign discounts in stand-in,
// through the promotions wrap makes of a fresh engine, and waits for its
// advice to be acknowledged. It returns the issuer's link and the engine.
func standInPromoAdvised(t *testing.T, wrap func(*promo.Engine) Promotions) (*adviceIssuer, *promo.Engine) {
	t.Helper()
	db := storetest.Open(t, "network", Migrations())
	eng := newTestPromoEngine(t, 10)
	link := &adviceIssuer{adviceRC: "00"}
	h := promoStandIn(t, db, link, wrap(eng))
	t.Cleanup(func() { h.sw.Close() })
	h.approve(t, h.request(6000))
	if !link.last("0200").Has(iso8583.FieldPromotion) {
		t.Fatal("the original carried no DE124: the test needs a reservation")
	}
	waitFor(t, func() bool { a := advices(t, db); return len(a) == 1 && a[0].done == adviceAcked })
	return link, eng
}

// confirmFails is a promotions engine whose confirmations fail.
type confirmFails struct{ Promotions }

func (confirmFails) Confirm(context.Context, string) (bool, error) {
	return false, errors.New("promo store down")
}

// A stand-in approval whose reservation could not be confirmed leaves it
// reserved, for the sweeper to give back: its advice then carries no
// discount, or the issuer would book one the campaign's budget no longer
// pays for.
func TestStandInAdviceNoPromotionUnconfirmed(t *testing.T) {
	link, eng := standInPromoAdvised(t, func(eng *promo.Engine) Promotions { return confirmFails{eng} })
	if m := link.last("0220"); m.Has(iso8583.FieldPromotion) {
		t.Fatalf("advice carries DE124 %q for an unconfirmed reservation", m.String(iso8583.FieldPromotion))
	}
	if st := stats(t, eng); st.Confirmed != 0 {
		t.Fatalf("campaign %+v: the reservation was to stay unconfirmed", st)
	}
}
