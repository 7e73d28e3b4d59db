package issuer

import (
	"context"
	"testing"

	"github.com/mipay-oss/mipay/iso8583"
)

func withPromotion(r AuthRequest, discount, multiplier int64) AuthRequest {
	r.Promotion = &Promotion{OriginalMinor: r.AmountMinor, DiscountMinor: discount, CampaignID: "icbc-test", Multiplier: multiplier}
	return r
}

func TestPromotionBooking(t *testing.T) {
	ctx := context.Background()
	th := MustOpenHost(t) // checks the ledger invariants at the end
	before := th.account(t, "debit")
	req := withPromotion(th.auth("debit", 6000), 1000, 3)
	res := th.Authorize(ctx, req)
	if res.Code != RCApproved {
		t.Fatalf("rc %s", res.Code)
	}
	v := th.account(t, "debit")
	if v.HeldMinor != 5000 || v.AvailableMinor != before.AvailableMinor-5000 {
		t.Fatalf("held %d available %d: the cardholder pays the discounted 50.00", v.HeldMinor, v.AvailableMinor)
	}
	if spent, err := th.MarketingSpent(ctx, "icbc-debit"); err != nil || spent != 1000 {
		t.Fatalf("marketing spent %d (%v), want 1000", spent, err)
	}
	if pts, err := th.PointsBalance(ctx, v.CardID); err != nil || pts != 50*3 {
		t.Fatalf("points %d (%v), want 50 CNY × 3", pts, err)
	}
	rep, err := th.CheckLedger(ctx)
	if err != nil || !rep.OK || rep.PostingsSum != 0 {
		t.Fatalf("ledger %+v %v", rep, err)
	}

	t.Run("plain approval earns base points", func(t *testing.T) {
		if res := th.Authorize(ctx, th.auth("debit", 1999)); res.Code != RCApproved {
			t.Fatal(res.Code)
		}
		if pts, _ := th.PointsBalance(ctx, v.CardID); pts != 150+19 {
			t.Fatalf("points %d, want 169", pts)
		}
	})

	t.Run("reversal takes discount booking and points back, once", func(t *testing.T) {
		rev := ReversalRequest{MTI: "0400", PAN: req.PAN, AmountMinor: req.AmountMinor, Transmission: "1126030000",
			STAN: "999001", RRN: req.RRN, Terminal: req.Terminal, Acquirer: req.Acquirer,
			Original: &OriginalData{MTI: "0200", STAN: req.STAN, Transmission: req.Transmission, Acquirer: "000" + req.Acquirer}}
		for i := range 3 {
			r := th.Reverse(ctx, rev)
			if r.Code != RCApproved || r.Released != (i == 0) {
				t.Fatalf("reversal %d: %+v", i, r)
			}
			// Every answer (a repeat after a lost 0410 too) tells what the
			// reversal took back and the balance after it (DE124 of the 0410).
			if !r.Points || r.PointsTaken != 150 || r.PointsBalance != 19 || r.DiscountMinor != 1000 {
				t.Fatalf("reversal %d points: %+v", i, r)
			}
		}
		if spent, _ := th.MarketingSpent(ctx, "icbc-debit"); spent != 0 {
			t.Fatalf("marketing spent %d after the reversal", spent)
		}
		if pts, _ := th.PointsBalance(ctx, v.CardID); pts != 19 {
			t.Fatalf("points %d after the reversal, want 19", pts)
		}
		rep, err := th.CheckLedger(ctx)
		if err != nil || !rep.OK {
			t.Fatalf("ledger %+v %v", rep, err)
		}
	})

	t.Run("a promotion that does not fit is refused", func(t *testing.T) {
		bad := withPromotion(th.auth("debit", 6000), 6000, 1)
		if res := th.Authorize(ctx, bad); res.Code != RCFormatError {
			t.Fatalf("discount = amount: rc %s", res.Code)
		}
		bad = withPromotion(th.auth("debit", 6000), 1000, 1)
		bad.Promotion.OriginalMinor = 7000
		if res := th.Authorize(ctx, bad); res.Code != RCFormatError {
			t.Fatalf("original amount ≠ DE4: rc %s", res.Code)
		}
	})

	t.Run("insufficient for the full amount but enough for the discounted one", func(t *testing.T) {
		poor := th.account(t, "poor") // 50.00
		req := withPromotion(th.auth("poor", 5500), 1000, 1)
		if res := th.Authorize(ctx, req); res.Code != RCApproved {
			t.Fatalf("rc %s", res.Code)
		}
		if v := th.account(t, "poor"); v.AvailableMinor != poor.AvailableMinor-4500 {
			t.Fatalf("available %d", v.AvailableMinor)
		}
	})
}

func TestPromotionOverISO(t *testing.T) {
	ctx := context.Background()
	th := MustOpenHost(t)
	cl := MustServeISO(t, th.Host)
	req := th.auth("debit", 6000)
	m := isoAuth(t, req, nil)
	de124, err := iso8583.Promotion{OriginalAmount: "000000006000", DiscountAmount: "000000001000", CampaignID: "icbc-test", Points: "2"}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	m.SetString(iso8583.FieldPromotion, de124)
	resp, err := cl.Send(ctx, m)
	if err != nil || resp.String(iso8583.FieldResponseCode) != "00" {
		t.Fatalf("answer %v %v", resp, err)
	}
	if v := th.account(t, "debit"); v.HeldMinor != 5000 {
		t.Fatalf("held %d, want 5000", v.HeldMinor)
	}
	// The answer's DE124 keeps the promotion and adds the points: 50 CNY
	// paid × 2 = 100 earned, the card's balance after it.
	f, err := iso8583.ParsePromotion(resp.String(iso8583.FieldPromotion))
	if err != nil || f.CampaignID != "icbc-test" || f.PointsEarned != "100" || f.PointsBalance != "100" {
		t.Fatalf("answer DE124 %+v %v", f, err)
	}
	t.Run("points without a campaign, then a reversal takes them back", func(t *testing.T) {
		m := isoAuth(t, th.auth("debit", 2550), nil)
		resp, err := cl.Send(ctx, m)
		if err != nil || resp.String(iso8583.FieldResponseCode) != "00" {
			t.Fatalf("answer %v %v", resp, err)
		}
		f, err := iso8583.ParsePromotion(resp.String(iso8583.FieldPromotion))
		if err != nil || f.CampaignID != "" || f.PointsEarned != "25" || f.PointsBalance != "125" {
			t.Fatalf("answer DE124 %+v %v", f, err)
		}
		r := th.Reverse(ctx, ReversalRequest{MTI: "0400", PAN: req.PAN, AmountMinor: 2550, Transmission: "1126021500",
			STAN: "880001", Terminal: req.Terminal, Acquirer: req.Acquirer,
			Original: &OriginalData{MTI: m.MTI(), STAN: m.String(iso8583.FieldSTAN), Transmission: m.String(iso8583.FieldTransmissionTime), Acquirer: req.Acquirer}})
		if r.Code != RCApproved || !r.Released {
			t.Fatalf("reversal %+v", r)
		}
		m2 := isoAuth(t, th.auth("debit", 100), nil)
		resp, err = cl.Send(ctx, m2)
		if err != nil || resp.String(iso8583.FieldResponseCode) != "00" {
			t.Fatalf("answer %v %v", resp, err)
		}
		if f, _ := iso8583.ParsePromotion(resp.String(iso8583.FieldPromotion)); f.PointsEarned != "1" || f.PointsBalance != "101" {
			t.Fatalf("after the reversal: DE124 %+v, want 1 earned and 101", f)
		}
		if n, err := th.PointsBalance(ctx, th.account(t, "debit").CardID); err != nil || n != 101 {
			t.Fatalf("ledger points %d %v, memory said 101", n, err)
		}
	})
	t.Run("malformed DE124 is a format error", func(t *testing.T) {
		m := isoAuth(t, th.auth("debit", 6000), nil)
		m.SetString(iso8583.FieldPromotion, "0101")
		resp, err := cl.Send(ctx, m)
		if err != nil || resp.String(iso8583.FieldResponseCode) != "30" {
			t.Fatalf("answer %v %v", resp, err)
		}
	})
}
