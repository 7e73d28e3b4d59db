package issuer

import (
	"context"
	"sync"
	"testing"

	"github.com/mipay-oss/mipay/iso8583"
)

// isoAdvice is the network's advice of a stand-in approval of r, as the
// switch sends it: the original's identity in DE90, its own DE7, the
// network's approval code in DE38 and 00 in DE39.
func isoAdvice(tb testing.TB, r AuthRequest, mti, code string) *iso8583.Message {
	tb.Helper()
	m := isoAuth(tb, r, nil)
	m.SetMTI(mti)
	od, err := iso8583.OriginalData{MTI: r.MTI, STAN: r.STAN, TransmissionTime: r.Transmission, AcquirerID: r.Acquirer}.Format()
	if err != nil {
		tb.Fatal(err)
	}
	m.SetString(iso8583.FieldTransmissionTime, "1126035959")
	m.SetString(iso8583.FieldAuthCode, code)
	m.SetString(iso8583.FieldResponseCode, "00")
	m.SetString(iso8583.FieldOriginalData, od)
	return m
}

// isoReversal is the switch's 0400 of the original r.
func isoReversal(tb testing.TB, r AuthRequest) *iso8583.Message {
	tb.Helper()
	od, err := iso8583.OriginalData{MTI: r.MTI, STAN: r.STAN, TransmissionTime: r.Transmission, AcquirerID: r.Acquirer}.Format()
	if err != nil {
		tb.Fatal(err)
	}
	amt, _ := iso8583.FormatAmount(r.AmountMinor)
	m := iso8583.NewMessage("0400")
	m.SetString(iso8583.FieldPAN, r.PAN)
	m.SetString(iso8583.FieldProcessingCode, r.ProcessingCode)
	m.SetString(iso8583.FieldAmount, amt)
	m.SetString(iso8583.FieldTransmissionTime, "1126040000")
	m.SetString(iso8583.FieldSTAN, r.STAN)
	m.SetString(iso8583.FieldAcquirerID, r.Acquirer)
	m.SetString(iso8583.FieldRRN, r.RRN)
	m.SetString(iso8583.FieldTerminalID, r.Terminal)
	m.SetString(iso8583.FieldOriginalData, od)
	return m
}

// wantAck checks an advice's answer: the advice's response MTI and 00.
func wantAck(t *testing.T, resp *iso8583.Message, mti string) {
	t.Helper()
	if resp.MTI() != mti || resp.String(iso8583.FieldResponseCode) != "00" {
		t.Fatalf("advice answered %s %s, want %s 00", resp.MTI(), resp.String(iso8583.FieldResponseCode), mti)
	}
}

// holdsOf counts the hold entries and the approved authorizations of r's
// identity.
func (th *testHost) holdsOf(t *testing.T, r AuthRequest) (holds, approved int, code, authCode, mti string) {
	t.Helper()
	var id string
	err := th.DB().DB.QueryRow(`SELECT id, approved, response_code, auth_code, mti FROM authorizations WHERE ident = $1`,
		identOf(r.Acquirer, r.Terminal, r.STAN, r.Transmission)).Scan(&id, &approved, &code, &authCode, &mti)
	if err != nil {
		t.Fatalf("authorization of the advice: %v", err)
	}
	if err := th.DB().DB.QueryRow(`SELECT COUNT(DISTINCT entry_id) FROM postings WHERE kind = 'HOLD' AND auth_id = $1`, id).Scan(&holds); err != nil {
		t.Fatal(err)
	}
	return holds, approved, code, authCode, mti
}

func (th *testHost) checkLedger(t *testing.T) {
	t.Helper()
	rep, err := th.CheckLedger(context.Background())
	if err != nil || !rep.OK {
		t.Fatalf("ledger: %+v, %v", rep, err)
	}
}

// The issuer never saw the original (it was down): the advice posts the
// approval with the network's code and holds; repeats (0221, also after a
// restart) and the original arriving late hold nothing more.
func TestAdviceOfUnseenOriginal(t *testing.T) {
	th := MustOpenHost(t)
	cl := MustServeISO(t, th.Host)
	req := th.auth("debit", 60_00)
	wantAck(t, send(t, cl, isoAdvice(t, req, "0220", "S12345")), "0230")
	if v := th.account(t, "debit"); v.HeldMinor != 60_00 || v.AvailableMinor != 100000-60_00 || v.DaySpentMinor != 60_00 {
		t.Fatalf("after the advice %+v", v)
	}
	if holds, approved, code, authCode, mti := th.holdsOf(t, req); holds != 1 || approved != 1 || code != "00" || authCode != "S12345" || mti != "0220" {
		t.Fatalf("recorded: %d holds, approved %d, %s %s %s", holds, approved, code, authCode, mti)
	}
	for i := range 2 {
		resp := send(t, cl, isoAdvice(t, req, "0221", "S12345"))
		wantAck(t, resp, "0230")
		if v := th.account(t, "debit"); v.HeldMinor != 60_00 {
			t.Fatalf("repeat %d held %d", i+1, v.HeldMinor)
		}
	}
	// The slow original itself, arriving after its advice: a duplicate.
	late := send(t, cl, isoAuth(t, req, nil))
	if late.String(iso8583.FieldResponseCode) != "00" || late.String(iso8583.FieldAuthCode) != "S12345" {
		t.Fatalf("late original answered %s/%s", late.String(iso8583.FieldResponseCode), late.String(iso8583.FieldAuthCode))
	}
	th.reopen(t)
	cl = MustServeISO(t, th.Host)
	wantAck(t, send(t, cl, isoAdvice(t, req, "0221", "S12345")), "0230")
	if holds, _, _, _, _ := th.holdsOf(t, req); holds != 1 {
		t.Fatalf("%d holds after a repeat past a restart", holds)
	}
	if v := th.account(t, "debit"); v.HeldMinor != 60_00 {
		t.Fatalf("after restart held %d", v.HeldMinor)
	}
	th.checkLedger(t)
	// An 0120 (the advice of an 0100) is answered 0130.
	r2 := th.auth("debit", 100)
	r2.MTI = "0100"
	wantAck(t, send(t, cl, isoAdvice(t, r2, "0120", "S00001")), "0130")
	wantAck(t, send(t, cl, isoAdvice(t, r2, "0121", "S00001")), "0130")
	if v := th.account(t, "debit"); v.HeldMinor != 61_00 {
		t.Fatalf("held %d after the 0120", v.HeldMinor)
	}
}

// An advice is posted whatever the balance: the network's approval stands.
// The ledger check allows the negative available balance it leaves.
func TestAdviceOverBalance(t *testing.T) {
	th := MustOpenHost(t)
	cl := MustServeISO(t, th.Host)
	req := th.auth("poor", 80_00) // balance 50.00
	wantAck(t, send(t, cl, isoAdvice(t, req, "0220", "S54321")), "0230")
	if v := th.account(t, "poor"); v.HeldMinor != 80_00 || v.AvailableMinor != -30_00 {
		t.Fatalf("after an advice over the balance %+v", v)
	}
	th.checkLedger(t)
	if r := th.Authorize(context.Background(), th.auth("poor", 1)); r.Code != RCInsufficientFunds {
		t.Fatalf("a request after it: %s", r.Code)
	}
	// Released, the balance is whole again.
	wantRev(t, send(t, cl, isoReversal(t, req)))
	if v := th.account(t, "poor"); v.HeldMinor != 0 || v.AvailableMinor != 50_00 {
		t.Fatalf("after the reversal %+v", v)
	}
}

func wantRev(t *testing.T, resp *iso8583.Message) {
	t.Helper()
	if resp.MTI() != "0410" || resp.String(iso8583.FieldResponseCode) != "00" {
		t.Fatalf("reversal answered %s %s", resp.MTI(), resp.String(iso8583.FieldResponseCode))
	}
}

// The slow issuer did process the original, after the network had stood
// in: an approval holds once; a decline becomes the network's approval
// (00, the network's code) with its hold, once.
func TestAdviceAfterLateOriginal(t *testing.T) {
	t.Run("approved late", func(t *testing.T) {
		th := MustOpenHost(t)
		cl := MustServeISO(t, th.Host)
		req := th.auth("debit", 30_00)
		orig := send(t, cl, isoAuth(t, req, nil))
		if orig.String(iso8583.FieldResponseCode) != "00" {
			t.Fatal(orig.String(iso8583.FieldResponseCode))
		}
		for _, mti := range []string{"0220", "0221"} {
			wantAck(t, send(t, cl, isoAdvice(t, req, mti, "S11111")), "0230")
		}
		if holds, approved, _, authCode, _ := th.holdsOf(t, req); holds != 1 || approved != 1 || authCode != orig.String(iso8583.FieldAuthCode) {
			t.Fatalf("%d holds, approved %d, code %s", holds, approved, authCode)
		}
		if v := th.account(t, "debit"); v.HeldMinor != 30_00 {
			t.Fatalf("held %d", v.HeldMinor)
		}
	})
	t.Run("declined late", func(t *testing.T) {
		th := MustOpenHost(t)
		cl := MustServeISO(t, th.Host)
		req := th.auth("poor", 60_00)
		if orig := send(t, cl, isoAuth(t, req, nil)); orig.String(iso8583.FieldResponseCode) != "51" {
			t.Fatalf("original answered %s", orig.String(iso8583.FieldResponseCode))
		}
		wantAck(t, send(t, cl, isoAdvice(t, req, "0220", "S22222")), "0230")
		wantAck(t, send(t, cl, isoAdvice(t, req, "0221", "S22222")), "0230")
		if holds, approved, code, authCode, _ := th.holdsOf(t, req); holds != 1 || approved != 1 || code != "00" || authCode != "S22222" {
			t.Fatalf("%d holds, approved %d, %s %s", holds, approved, code, authCode)
		}
		if v := th.account(t, "poor"); v.HeldMinor != 60_00 || v.AvailableMinor != -10_00 {
			t.Fatalf("after the advice %+v", v)
		}
		// A duplicate of the original now gets the approval.
		if d := send(t, cl, isoAuth(t, req, nil)); d.String(iso8583.FieldResponseCode) != "00" {
			t.Fatalf("duplicate original answered %s", d.String(iso8583.FieldResponseCode))
		}
		th.checkLedger(t)
		th.reopen(t)
		cl = MustServeISO(t, th.Host)
		wantAck(t, send(t, cl, isoAdvice(t, req, "0221", "S22222")), "0230")
		wantRev(t, send(t, cl, isoReversal(t, req)))
		if v := th.account(t, "poor"); v.HeldMinor != 0 || v.AvailableMinor != 50_00 {
			t.Fatalf("after the reversal %+v", v)
		}
	})
}

// A reversal of the stand-in approval that reaches the issuer before the
// advice: nothing is left held, however the original fared.
func TestAdviceAfterReversal(t *testing.T) {
	cases := []struct {
		name string
		card string
		orig string // "" never arrived; else its expected answer
	}{
		{"original never arrived", "debit", ""},
		{"original declined late", "poor", "51"},
		{"original approved late", "debit", "00"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			th := MustOpenHost(t)
			cl := MustServeISO(t, th.Host)
			before := th.account(t, c.card)
			req := th.auth(c.card, 60_00)
			if c.orig != "" {
				if r := send(t, cl, isoAuth(t, req, nil)); r.String(iso8583.FieldResponseCode) != c.orig {
					t.Fatalf("original answered %s", r.String(iso8583.FieldResponseCode))
				}
			}
			wantRev(t, send(t, cl, isoReversal(t, req)))
			for _, mti := range []string{"0220", "0221"} {
				wantAck(t, send(t, cl, isoAdvice(t, req, mti, "S33333")), "0230")
			}
			if v := th.account(t, c.card); v.HeldMinor != 0 || v.AvailableMinor != before.AvailableMinor {
				t.Fatalf("after reversal then advice %+v (before %+v)", v, before)
			}
			th.checkLedger(t)
			th.reopen(t)
			cl = MustServeISO(t, th.Host)
			wantAck(t, send(t, cl, isoAdvice(t, req, "0221", "S33333")), "0230")
			if v := th.account(t, c.card); v.HeldMinor != 0 {
				t.Fatalf("after a repeat past a restart held %d", v.HeldMinor)
			}
		})
	}
}

// An advice for a card the issuer does not know, or another transaction
// under the same identity, is refused: nothing is held.
func TestAdviceRefused(t *testing.T) {
	th := MustOpenHost(t)
	cl := MustServeISO(t, th.Host)
	req := th.auth("debit", 10_00)
	unknown := th.auth("debit", 10_00)
	unknown.PAN = makePAN("622202", 16, 123)
	if r := send(t, cl, isoAdvice(t, unknown, "0220", "S44444")); r.String(iso8583.FieldResponseCode) != "14" {
		t.Fatalf("unknown card: %s", r.String(iso8583.FieldResponseCode))
	}
	if r := send(t, cl, isoAdvice(t, unknown, "0221", "S44444")); r.String(iso8583.FieldResponseCode) != "14" {
		t.Fatalf("unknown card, repeated: %s", r.String(iso8583.FieldResponseCode))
	}
	wantAck(t, send(t, cl, isoAdvice(t, req, "0220", "S44444")), "0230")
	other := req
	other.AmountMinor = 20_00
	if r := send(t, cl, isoAdvice(t, other, "0221", "S44444")); r.String(iso8583.FieldResponseCode) != "94" {
		t.Fatalf("other amount under the same identity: %s", r.String(iso8583.FieldResponseCode))
	}
	if v := th.account(t, "debit"); v.HeldMinor != 10_00 {
		t.Fatalf("held %d", v.HeldMinor)
	}
}

// Races: an advice, its repeat and the late original at once hold once; an
// advice and the reversal at once (of a declined original, the subtlest
// order) leave nothing held, whichever wins.
func TestAdviceRaces(t *testing.T) {
	ctx := context.Background()
	th := MustOpenHost(t)
	for i := range 20 {
		req := th.auth("rich", 10_00)
		adv := req
		adv.MTI = "0220"
		var wg sync.WaitGroup
		codes := make([]ResponseCode, 3)
		wg.Add(3)
		go func() { defer wg.Done(); codes[0] = th.Advise(ctx, adv, "S00100").Code }()
		go func() { defer wg.Done(); codes[1] = th.Advise(ctx, adv, "S00100").Code }()
		go func() { defer wg.Done(); codes[2] = th.Authorize(ctx, req).Code }()
		wg.Wait()
		if codes[0] != RCApproved || codes[1] != RCApproved || codes[2] != RCApproved {
			t.Fatalf("round %d: answers %v", i, codes)
		}
		if holds, approved, _, _, _ := th.holdsOf(t, req); holds != 1 || approved != 1 {
			t.Fatalf("round %d: %d holds, approved %d", i, holds, approved)
		}
	}
	if v := th.account(t, "rich"); v.HeldMinor != 20*10_00 {
		t.Fatalf("held %d after 20 advised payments", v.HeldMinor)
	}
	for i := range 20 {
		req := th.auth("poor", 60_00) // over the balance: declined
		if r := th.Authorize(ctx, req); r.Code != RCInsufficientFunds {
			t.Fatalf("round %d: original %s", i, r.Code)
		}
		adv := req
		adv.MTI = "0220"
		rev := ReversalRequest{MTI: "0400", PAN: req.PAN, AmountMinor: req.AmountMinor, Transmission: "1126040000",
			STAN: req.STAN, RRN: req.RRN, Terminal: req.Terminal, Acquirer: req.Acquirer,
			Original: &OriginalData{MTI: "0200", STAN: req.STAN, Transmission: req.Transmission, Acquirer: req.Acquirer}}
		var wg sync.WaitGroup
		var ac, rc ResponseCode
		wg.Add(2)
		go func() { defer wg.Done(); ac = th.Advise(ctx, adv, "S00200").Code }()
		go func() { defer wg.Done(); rc = th.Reverse(ctx, rev).Code }()
		wg.Wait()
		if ac != RCApproved || rc != RCApproved {
			t.Fatalf("round %d: advice %s, reversal %s", i, ac, rc)
		}
		if v := th.account(t, "poor"); v.HeldMinor != 0 || v.AvailableMinor != 50_00 {
			t.Fatalf("round %d: after advice and reversal %+v", i, v)
		}
	}
	th.checkLedger(t)
}
