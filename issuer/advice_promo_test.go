package issuer

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/mipay-oss/mipay/iso8583"
)

// promoDE124 is the DE124 the switch puts in a 0200 (and now in the advice
// of its stand-in approval) for a campaign's discount and multiplier.
func promoDE124(tb testing.TB, r AuthRequest, discount, multiplier int64) string {
	tb.Helper()
	orig, err := iso8583.FormatAmount(r.AmountMinor)
	if err != nil {
		tb.Fatal(err)
	}
	disc, err := iso8583.FormatAmount(discount)
	if err != nil {
		tb.Fatal(err)
	}
	f, err := iso8583.Promotion{OriginalAmount: orig, DiscountAmount: disc, CampaignID: "icbc-test",
		Points: fmt.Sprint(multiplier)}.Encode()
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

// withDE124 returns m with DE124 set.
func withDE124(m *iso8583.Message, de124 string) *iso8583.Message {
	m.SetString(iso8583.FieldPromotion, de124)
	return m
}

// postingsOf lists an authorization's postings by identity, with the
// authorization id replaced by "ID" and the card id by "CARD", as "kind entry leg account amount",
// sorted: two authorizations booked alike list the same lines.
func (th *testHost) postingsOf(t *testing.T, r AuthRequest) []string {
	t.Helper()
	var id, card string
	if err := th.DB().DB.QueryRow(`SELECT id, card_id FROM authorizations WHERE ident = $1`,
		identOf(r.Acquirer, r.Terminal, r.STAN, r.Transmission)).Scan(&id, &card); err != nil {
		t.Fatalf("authorization of %s: %v", r.STAN, err)
	}
	rows, err := th.DB().DB.Query(`SELECT kind, entry_id, leg, account, amount_minor FROM postings WHERE auth_id = $1`, id)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var kind, entry, account string
		var leg int
		var amount int64
		if err := rows.Scan(&kind, &entry, &leg, &account, &amount); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s %s %d %s %d", kind, strings.ReplaceAll(entry, id, "ID"), leg,
			strings.ReplaceAll(account, card, "CARD"), amount))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// wantPromoBooked checks what a 60.00 payment with a 10.00 discount and
// points ×3 books on the debit card: 50.00 held, 10.00 marketing, 150
// points, and that its postings are those of the same payment authorized
// normally (want).
func (th *testHost) wantPromoBooked(t *testing.T, r AuthRequest, want []string, before AccountView, beforePoints int64) {
	t.Helper()
	ctx := context.Background()
	v := th.account(t, "debit")
	if v.HeldMinor-before.HeldMinor != 50_00 || before.AvailableMinor-v.AvailableMinor != 50_00 {
		t.Fatalf("held %d → %d, available %d → %d: the cardholder is held for the discounted 50.00",
			before.HeldMinor, v.HeldMinor, before.AvailableMinor, v.AvailableMinor)
	}
	if spent, err := th.MarketingSpent(ctx, "icbc-debit"); err != nil || spent != 10_00 {
		t.Fatalf("marketing spent %d (%v), want 1000: the discount is booked once", spent, err)
	}
	if pts, err := th.PointsBalance(ctx, v.CardID); err != nil || pts-beforePoints != 150 {
		t.Fatalf("points %d → %d (%v), want +150 (50 CNY × 3)", beforePoints, pts, err)
	}
	got := th.postingsOf(t, r)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("advice postings:\n%s\nwant those of the authorization path:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	th.checkLedger(t)
}

// referencePostings authorizes, on a host of its own, the payment the
// advices below stand for, and returns its postings: what the normal
// authorization path books for a 60.00 payment, 10.00 off, points ×3.
func referencePostings(t *testing.T) []string {
	t.Helper()
	ref := MustOpenHost(t)
	req := ref.auth("debit", 60_00)
	cl := MustServeISO(t, ref.Host)
	if r := send(t, cl, withDE124(isoAuth(t, req, nil), promoDE124(t, req, 10_00, 3))); r.String(iso8583.FieldResponseCode) != "00" {
		t.Fatalf("reference authorization: %s", r.String(iso8583.FieldResponseCode))
	}
	p := ref.postingsOf(t, req)
	if len(p) != 6 {
		t.Fatalf("reference postings %v: want hold, promotion and points, two legs each", p)
	}
	return p
}

// sendPromoOriginal sends the original of req with de124 and wants rc.
func sendPromoOriginal(t *testing.T, cl *iso8583.Client, req AuthRequest, de124, rc string) {
	t.Helper()
	if r := send(t, cl, withDE124(isoAuth(t, req, nil), de124)); r.String(iso8583.FieldResponseCode) != rc {
		t.Fatalf("original answered %s, want %s", r.String(iso8583.FieldResponseCode), rc)
	}
}

// adviseAndRepeat sends the advice of req's stand-in approval (authCode)
// with de124 and its repeat, and wants each acknowledged.
func adviseAndRepeat(t *testing.T, cl *iso8583.Client, req AuthRequest, de124, authCode string) {
	t.Helper()
	for _, mti := range []string{"0220", "0221"} {
		wantAck(t, send(t, cl, withDE124(isoAdvice(t, req, mti, authCode), de124)), "0230")
	}
}

// The advice of a stand-in approval with a bank promotion carries the
// DE124 the original carried; the issuer books it as its authorization
// path does (the discounted hold, the discount to marketing, the points),
// once per original identity, whatever arrived before or after it.
func TestAdvicePromotion(t *testing.T) {
	want := referencePostings(t)

	t.Run("original never arrived", func(t *testing.T) {
		th := MustOpenHost(t)
		cl := MustServeISO(t, th.Host)
		before := th.account(t, "debit")
		req := th.auth("debit", 60_00)
		de124 := promoDE124(t, req, 10_00, 3)
		wantAck(t, send(t, cl, withDE124(isoAdvice(t, req, "0220", "S10001"), de124)), "0230")
		th.wantPromoBooked(t, req, want, before, 0)
		// Repeats, the late original, and a repeat past a restart book nothing more.
		wantAck(t, send(t, cl, withDE124(isoAdvice(t, req, "0221", "S10001"), de124)), "0230")
		if r := send(t, cl, withDE124(isoAuth(t, req, nil), de124)); r.String(iso8583.FieldResponseCode) != "00" ||
			r.String(iso8583.FieldAuthCode) != "S10001" {
			t.Fatalf("late original answered %s/%s", r.String(iso8583.FieldResponseCode), r.String(iso8583.FieldAuthCode))
		}
		th.wantPromoBooked(t, req, want, before, 0)
		th.reopen(t)
		cl = MustServeISO(t, th.Host)
		wantAck(t, send(t, cl, withDE124(isoAdvice(t, req, "0221", "S10001"), de124)), "0230")
		th.wantPromoBooked(t, req, want, before, 0)
		// The reversal takes the discount and the points back with the hold.
		wantRev(t, send(t, cl, isoReversal(t, req)))
		if spent, _ := th.MarketingSpent(context.Background(), "icbc-debit"); spent != 0 {
			t.Fatalf("marketing spent %d after the reversal", spent)
		}
		if v := th.account(t, "debit"); v.HeldMinor != 0 || v.AvailableMinor != before.AvailableMinor {
			t.Fatalf("after the reversal %+v", v)
		}
		if pts, _ := th.PointsBalance(context.Background(), before.CardID); pts != 0 {
			t.Fatalf("points %d after the reversal", pts)
		}
		th.checkLedger(t)
	})

	t.Run("original approved late", func(t *testing.T) {
		th := MustOpenHost(t)
		cl := MustServeISO(t, th.Host)
		before := th.account(t, "debit")
		req := th.auth("debit", 60_00)
		de124 := promoDE124(t, req, 10_00, 3)
		sendPromoOriginal(t, cl, req, de124, "00")
		adviseAndRepeat(t, cl, req, de124, "S10002")
		th.wantPromoBooked(t, req, want, before, 0)
	})

	t.Run("original declined late", func(t *testing.T) {
		th := MustOpenHost(t)
		cl := MustServeISO(t, th.Host)
		// Debit holds 1000.00: spend all but 40.00 so the original (50.00
		// after its discount) is declined 51.
		spend := th.auth("debit", 1000_00-40_00)
		if r := th.Authorize(context.Background(), spend); r.Code != RCApproved {
			t.Fatalf("spend: %s", r.Code)
		}
		before := th.account(t, "debit")
		pointsBefore, _ := th.PointsBalance(context.Background(), before.CardID)
		req := th.auth("debit", 60_00)
		de124 := promoDE124(t, req, 10_00, 3)
		sendPromoOriginal(t, cl, req, de124, "51")
		adviseAndRepeat(t, cl, req, de124, "S10003")
		th.wantPromoBooked(t, req, want, before, pointsBefore)
		th.reopen(t)
		cl = MustServeISO(t, th.Host)
		wantAck(t, send(t, cl, withDE124(isoAdvice(t, req, "0221", "S10003"), de124)), "0230")
		th.wantPromoBooked(t, req, want, before, pointsBefore)
	})

	t.Run("advice without the promotion the original was approved with", func(t *testing.T) {
		// A switch of before this change advised no DE124: the issuer that
		// approved the original with its discount keeps that booking.
		th := MustOpenHost(t)
		cl := MustServeISO(t, th.Host)
		before := th.account(t, "debit")
		req := th.auth("debit", 60_00)
		sendPromoOriginal(t, cl, req, promoDE124(t, req, 10_00, 3), "00")
		wantAck(t, send(t, cl, isoAdvice(t, req, "0221", "S10004")), "0230")
		th.wantPromoBooked(t, req, want, before, 0)
	})
}
