package e2e

import (
	"context"
	"testing"

	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/phone"
	"github.com/mipay-oss/mipay/pos"
	"github.com/mipay-oss/mipay/store"
)

// The wallet shows, per card, the bank offers it qualifies for now and its
// points balance, and per transaction the points it earned: the issuer
// answers each approval with the points earned and the card's new balance
// (DE124 of its 0210), the switch carries them to the wallet in
// transaction.authorized and keeps them off the terminal's answer.
func TestWalletShowsOffersAndPoints(t *testing.T) {
	s := mustStart(t, "", nil)
	ctx := context.Background()
	p, _ := s.boundPhone(t, "rewards", "icbc-debit", 0)
	cardID := onlyCardID(t, p)

	r, err := p.Rewards(ctx, cardID)
	if err != nil {
		t.Fatal(err)
	}
	if r.Points != nil {
		t.Fatalf("points before any payment: %+v", r.Points)
	}
	if !hasOffer(r.Offers, "icbc-mipay-10off50") || hasOffer(r.Offers, "boc-credit-dining-10pct") || hasOffer(r.Offers, "abc-points-x3") {
		t.Fatalf("an ICBC debit card's offers: %+v", r)
	}
	for _, o := range r.Offers {
		if o.CampaignID == "icbc-mipay-10off50" && o.Text != "10.00 CNY off from 50.00 CNY" {
			t.Fatalf("offer text %q", o.Text)
		}
	}

	link, term := s.answerTerminal(t, "REST0101", "5812")
	// 60.00 at a restaurant: 10.00 off, the cardholder pays 50.00 → 50 points.
	if rec := tap(t, term, p, 6000, phone.FingerOK); rec.ResponseCode != "00" {
		t.Fatalf("receipt %+v", rec)
	}
	if f, err := iso8583.ParsePromotion(link.last(t).String(iso8583.FieldPromotion)); err != nil || f.PointsEarned != "" || f.PointsBalance != "" {
		t.Fatalf("the terminal's answer carries the cardholder's points: %+v %v", f, err)
	}
	groc := s.newTerminal(t, "GROC0101")
	// 60.00 at a grocery: no offer → 60 points.
	if rec := tap(t, groc, p, 6000, phone.FingerOK); rec.ResponseCode != "00" {
		t.Fatalf("receipt %+v", rec)
	}
	var txs []phone.Transaction
	waitFor(t, func() bool {
		txs, err = p.Transactions(ctx, cardID)
		return err == nil && len(txs) == 2 && txs[0].PointsEarned != nil && txs[1].PointsEarned != nil
	})
	earned := map[int64]int64{}
	for _, tx := range txs {
		earned[tx.DiscountMinor] = *tx.PointsEarned
	}
	if earned[1000] != 50 || earned[0] != 60 {
		t.Fatalf("points earned by discount %v, want 50 on the discounted payment and 60 on the other", earned)
	}
	waitFor(t, func() bool {
		r, err = p.Rewards(ctx, cardID)
		return err == nil && r.Points != nil && r.Points.Balance == 110
	})
	s.ledgerOK(t)

	t.Run("a points campaign multiplies", func(t *testing.T) {
		pa, _ := s.boundPhone(t, "abc-rewards", "abc-debit", 0)
		cs, err := pa.Cards(ctx)
		if err != nil || len(cs) != 1 {
			t.Fatalf("cards %+v %v", cs, err)
		}
		r, err := pa.Rewards(ctx, cs[0].ID)
		if err != nil || !hasOffer(r.Offers, "abc-points-x3") {
			t.Fatalf("ABC offers %+v %v", r.Offers, err)
		}
		if rec := tap(t, groc, pa, 2000, phone.FingerOK); rec.ResponseCode != "00" {
			t.Fatalf("receipt %+v", rec)
		}
		waitFor(t, func() bool {
			r, err = pa.Rewards(ctx, cs[0].ID)
			return err == nil && r.Points != nil && r.Points.Balance == 60
		})
	})
}

func hasOffer(os []phone.Offer, id string) bool {
	for _, o := range os {
		if o.CampaignID == id {
			return true
		}
	}
	return false
}

// answerTerminal is a terminal of a merchant category whose link keeps the
// network's answers.
func (s *system) answerTerminal(tb testing.TB, id, mcc string) (*answerLink, *terminal) {
	tb.Helper()
	c, err := iso8583.Dial(context.Background(), iso8583.ClientConfig{Addr: s.Addr(node.RoleNetwork, "iso8583")})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	link := &answerLink{c: c}
	pt, err := pos.OpenTerminal(context.Background(), pos.TerminalConfig{ID: id, MCC: mcc}, store.Config{Dir: tb.TempDir()}, link)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { pt.Close() })
	return link, &terminal{Terminal: pt}
}
