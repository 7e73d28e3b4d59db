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

// A reversal reaches the wallet: the POS reverses (0400) a payment that got
// a bank offer and earned points; the issuer answers its 0410 with the points
// taken back and the card's balance, the switch publishes
// transaction.reversed once, and the wallet shows the transaction reversed
// (no points), the card's balance as before and "Payment of 60.00 CNY
// reversed". A second reversal changes nothing.
func TestPromoRewardsReversal(t *testing.T) {
	s := mustStart(t, "", nil)
	ctx := context.Background()
	p, _ := s.boundPhone(t, "rewards-rev", "icbc-debit", 0)
	cardID := onlyCardID(t, p)

	groc := s.newTerminal(t, "GROC0201")
	// 30.00 at a grocery: no offer, 30 points, kept.
	if rec := tap(t, groc, p, 3000, phone.FingerOK); rec.ResponseCode != "00" {
		t.Fatalf("receipt %+v", rec)
	}
	term := s.mccTerminal(t, "REST0201", "5812")
	// 60.00 at a restaurant: 10.00 off, the cardholder pays 50.00 → 50 points.
	if rec := tap(t, term, p, 6000, phone.FingerOK); rec.ResponseCode != "00" || rec.DiscountMinor != 1000 {
		t.Fatalf("receipt %+v", rec)
	}
	var (
		r   phone.Rewards
		err error
	)
	waitFor(t, func() bool {
		r, err = p.Rewards(ctx, cardID)
		return err == nil && r.Points != nil && r.Points.Balance == 80
	})

	orig := term.link.last(iso8583.MTIFinancialRequest)
	rev := orig.Clone()
	rev.SetMTI(iso8583.MTIReversalRequest)
	rev.Unset(35)
	rev.Unset(55)
	rev.Unset(iso8583.FieldPromotion)
	rev.SetString(11, "900201")
	de90, _ := iso8583.OriginalData{MTI: orig.MTI(), STAN: orig.String(11), TransmissionTime: orig.String(7), AcquirerID: orig.String(32)}.Format()
	rev.SetString(90, de90)
	if resp, err := term.link.c.Send(ctx, rev); err != nil || resp.String(39) != "00" {
		t.Fatalf("reversal: %v %v", err, resp)
	}

	var txs []phone.Transaction
	waitFor(t, func() bool {
		txs, err = p.Transactions(ctx, cardID)
		if err != nil || len(txs) != 2 {
			return false
		}
		for _, tx := range txs {
			if tx.Reversed {
				return true
			}
		}
		return false
	})
	for _, tx := range txs {
		switch tx.DiscountMinor {
		case 1000:
			if !tx.Reversed || tx.PointsEarned == nil || *tx.PointsEarned != 0 || tx.PointsReversed == nil || *tx.PointsReversed != 50 {
				t.Fatalf("reversed transaction %+v", tx)
			}
		default:
			if tx.Reversed || tx.PointsEarned == nil || *tx.PointsEarned != 30 {
				t.Fatalf("the other transaction %+v", tx)
			}
		}
	}
	waitFor(t, func() bool {
		r, err = p.Rewards(ctx, cardID)
		return err == nil && r.Points != nil && r.Points.Balance == 30
	})
	reversedNotes := func() int {
		ns, err := p.Notifications(ctx, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, x := range ns {
			if x.Kind == "transaction_reversed" {
				if x.Payload["text"] != "Payment of 60.00 CNY reversed" || x.Payload["pointsReversed"] != float64(50) ||
					x.Payload["discountMinor"] != float64(1000) {
					t.Fatalf("notification %+v", x)
				}
				n++
			}
		}
		return n
	}
	waitFor(t, func() bool { return reversedNotes() == 1 })

	// The POS repeats the reversal: answered as the first, nothing released
	// twice, no second event.
	rev.SetString(11, "900202")
	if resp, err := term.link.c.Send(ctx, rev); err != nil || resp.String(39) != "00" {
		t.Fatalf("second reversal: %v %v", err, resp)
	}
	if resp, err := term.link.c.Send(ctx, rev); err != nil || resp.String(39) != "00" {
		t.Fatalf("repeated reversal: %v %v", err, resp)
	}
	// A later payment's event is the marker that the bus delivered what
	// came before it.
	if rec := tap(t, groc, p, 1000, phone.FingerOK); rec.ResponseCode != "00" {
		t.Fatalf("receipt %+v", rec)
	}
	waitFor(t, func() bool {
		r, err = p.Rewards(ctx, cardID)
		return err == nil && r.Points != nil && r.Points.Balance == 40
	})
	if n := reversedNotes(); n != 1 {
		t.Fatalf("%d reversal notifications after a second reversal", n)
	}
	s.ledgerOK(t)
}

// mccTerminal is a terminal of a merchant category that records what it
// sends (for building its reversal).
func (s *system) mccTerminal(tb testing.TB, id, mcc string) *terminal {
	tb.Helper()
	c, err := iso8583.Dial(context.Background(), iso8583.ClientConfig{Addr: s.Addr(node.RoleNetwork, "iso8583")})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	link := &recordingLink{c: c}
	pt, err := pos.OpenTerminal(context.Background(), pos.TerminalConfig{ID: id, MCC: mcc}, store.Config{Dir: tb.TempDir()}, link)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { pt.Close() })
	return &terminal{Terminal: pt, link: link}
}
