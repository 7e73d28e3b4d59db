package issuer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mipay-oss/mipay"
)

const miPay = "50110030273"

// reqFor is a correct binding request for a test card.
func (th *testHost) reqFor(name string) DecisionRequest {
	c := th.cards[name]
	return DecisionRequest{PAN: c.PAN, Expiry: c.Expiry, CVN2: c.CVN2, Phone: c.Phone, Name: c.Name,
		DeviceID: "dev-" + name, SEID: "se-" + name, TokenRequestorID: miPay, AccountAgeDays: 30, DeviceScore: 4}
}

func (th *testHost) decide(t *testing.T, name string, mutate func(*DecisionRequest)) Decision {
	t.Helper()
	req := th.reqFor(name)
	if mutate != nil {
		mutate(&req)
	}
	d, err := th.Decide(context.Background(), th.cards[name].issuer, req)
	if err != nil {
		t.Fatalf("Decide: %v", err)
	}
	return d
}

func TestDecisionPaths(t *testing.T) {
	th := MustOpenHost(t)
	cases := []struct {
		name, card string
		mutate     func(*DecisionRequest)
		decision   string
		reason     string
	}{
		{"green", "credit", nil, DecisionApproved, ""},
		{"green debit without cvn2", "debit", nil, DecisionApproved, ""},
		{"phone with country code", "credit", func(r *DecisionRequest) { r.Phone = "+86 " + r.Phone }, DecisionApproved, ""},
		{"unknown device score is neutral", "credit", func(r *DecisionRequest) { r.DeviceScore = 0 }, DecisionApproved, ""},
		{"yellow by bank policy", "yellow", nil, DecisionRequireAA, ""},
		{"yellow by device score", "credit", func(r *DecisionRequest) { r.DeviceScore = 2 }, DecisionRequireAA, ""},
		{"risk", "credit", func(r *DecisionRequest) { r.DeviceScore = 1 }, DecisionDeclined, ReasonRisk},
		{"wrong expiry", "credit2", func(r *DecisionRequest) { r.Expiry = "3101" }, DecisionDeclined, ReasonDetailsMismatch},
		{"wrong cvn2", "credit2", func(r *DecisionRequest) { r.CVN2 = "999" }, DecisionDeclined, ReasonDetailsMismatch},
		{"unknown card", "credit", func(r *DecisionRequest) { r.PAN = makePAN(r.PAN[:6], len(r.PAN), 123456) }, DecisionDeclined, ReasonDetailsMismatch},
		{"other bank's BIN", "credit", func(r *DecisionRequest) { r.PAN = th.cards["debit"].PAN }, DecisionDeclined, ReasonNotSupported},
		{"phone mismatch", "debit", func(r *DecisionRequest) { r.Phone = "13700000000" }, DecisionDeclined, ReasonPhoneMismatch},
		{"blocked", "blocked", nil, DecisionDeclined, ReasonInactive},
		{"lost", "lost", nil, DecisionDeclined, ReasonInactive},
		{"expired", "expired", nil, DecisionDeclined, ReasonExpired},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := th.decide(t, c.card, c.mutate)
			if d.Decision != c.decision || d.Reason != c.reason {
				t.Fatalf("decision %s/%s (%q); want %s/%s", d.Decision, d.Reason, d.Message, c.decision, c.reason)
			}
			if d.DecisionID == "" || d.Message == "" || d.ExpiresAt.IsZero() {
				t.Fatalf("incomplete decision %+v", d)
			}
			if c.reason != "" && d.Message != reasonMessage[c.reason] {
				t.Fatalf("message %q", d.Message)
			}
			if c.decision == DecisionRequireAA {
				if len(d.Methods) != 1 || d.Methods[0].Type != "SMS" || d.Methods[0].Value != maskPhone(th.cards[c.card].Phone) {
					t.Fatalf("methods %+v", d.Methods)
				}
			} else if len(d.Methods) != 0 {
				t.Fatalf("methods on %s: %+v", c.decision, d.Methods)
			}
		})
	}
	t.Run("mismatch messages do not tell which field failed", func(t *testing.T) {
		a := th.decide(t, "credit2", func(r *DecisionRequest) { r.Expiry = "3102" })
		b := th.decide(t, "credit2", func(r *DecisionRequest) { r.PAN = makePAN(r.PAN[:6], len(r.PAN), 654321) })
		if a.Message != b.Message || a.Reason != b.Reason || a.PANLast4 != "" || a.CardType != "" {
			t.Fatalf("wrong expiry %+v vs unknown card %+v", a, b)
		}
	})
}

func TestDecisionBadInput(t *testing.T) {
	th := MustOpenHost(t)
	cases := []struct {
		name   string
		mutate func(*DecisionRequest)
	}{
		{"pan not digits", func(r *DecisionRequest) { r.PAN = "62501x" }},
		{"pan luhn", func(r *DecisionRequest) { r.PAN = r.PAN[:len(r.PAN)-1] + string('0'+(r.PAN[len(r.PAN)-1]-'0'+1)%10) }},
		{"pan too long", func(r *DecisionRequest) { r.PAN = strings.Repeat("6", 20) }},
		{"expiry", func(r *DecisionRequest) { r.Expiry = "3013" }},
		{"cvn2", func(r *DecisionRequest) { r.CVN2 = "12" }},
		{"missing cvn2 on credit", func(r *DecisionRequest) { r.CVN2 = "" }},
		{"missing cvn2 on an unknown credit card", func(r *DecisionRequest) { r.CVN2, r.PAN = "", makePAN(r.PAN[:6], len(r.PAN), 777777) }},
		{"no phone", func(r *DecisionRequest) { r.Phone = "" }},
		{"no device", func(r *DecisionRequest) { r.DeviceID = "" }},
		{"huge device", func(r *DecisionRequest) { r.DeviceID = strings.Repeat("d", 200) }},
		{"no se", func(r *DecisionRequest) { r.SEID = "" }},
		{"token requestor", func(r *DecisionRequest) { r.TokenRequestorID = "123" }},
		{"account age", func(r *DecisionRequest) { r.AccountAgeDays = -1 }},
		{"device score", func(r *DecisionRequest) { r.DeviceScore = 6 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := th.reqFor("credit")
			c.mutate(&req)
			_, err := th.Decide(context.Background(), "icbc-credit", req)
			if mipay.ErrorCode(err) != mipay.EINVALID {
				t.Fatalf("err = %v; want invalid", err)
			}
			if strings.Contains(err.Error(), th.cards["credit"].PAN) {
				t.Fatalf("PAN in error: %v", err)
			}
		})
	}
	t.Run("unknown issuer", func(t *testing.T) {
		_, err := th.Decide(context.Background(), "nobank", th.reqFor("credit"))
		if mipay.ErrorCode(err) != mipay.ENOTFOUND {
			t.Fatalf("err = %v", err)
		}
	})
	var n int
	th.DB().DB.QueryRow(`SELECT COUNT(*) FROM decisions`).Scan(&n)
	if n != 0 {
		t.Fatalf("%d decisions stored from bad input", n)
	}
}

func TestCVN2AttemptLimit(t *testing.T) {
	th := MustOpenHost(t)
	bank, _ := th.Bank("icbc-credit")
	limit := bank.Limits.CVN2MaxAttempts
	if limit < 1 || limit >= bank.Limits.BindingsPerCardPerDay {
		t.Fatalf("test needs 1 <= cvn2MaxAttempts < bindingsPerCardPerDay, got %d/%d", limit, bank.Limits.BindingsPerCardPerDay)
	}
	for i := range limit {
		d := th.decide(t, "credit", func(r *DecisionRequest) { r.CVN2 = fmt.Sprintf("%03d", 900+i) })
		if d.Reason != ReasonDetailsMismatch {
			t.Fatalf("attempt %d: %s", i+1, d.Reason)
		}
	}
	d := th.decide(t, "credit", nil) // right CVN2, but locked for today
	if d.Decision != DecisionDeclined || d.Reason != ReasonTooManyAttempts || d.Message != "Too many attempts today, try again tomorrow." {
		t.Fatalf("after %d failures: %+v", limit, d)
	}
	t.Run("other cards unaffected", func(t *testing.T) {
		if d := th.decide(t, "credit2", nil); d.Decision != DecisionApproved {
			t.Fatalf("credit2: %+v", d)
		}
	})
	t.Run("next day", func(t *testing.T) {
		th.clock.add(24 * time.Hour)
		if d := th.decide(t, "credit", nil); d.Decision != DecisionApproved {
			t.Fatalf("next day: %+v", d)
		}
	})
}

func TestDailyCaps(t *testing.T) {
	th := MustOpenHost(t)
	bank, _ := th.Bank("icbc-debit")
	t.Run("per card", func(t *testing.T) {
		for i := range bank.Limits.BindingsPerCardPerDay {
			d := th.decide(t, "debit", func(r *DecisionRequest) { r.DeviceID = fmt.Sprint("dev-card-", i) })
			if d.Decision != DecisionApproved {
				t.Fatalf("binding %d: %+v", i+1, d)
			}
		}
		d := th.decide(t, "debit", func(r *DecisionRequest) { r.DeviceID = "dev-card-last" })
		if d.Reason != ReasonTooManyAttempts {
			t.Fatalf("over the per-card cap: %+v", d)
		}
	})
	t.Run("per device", func(t *testing.T) {
		for i := range bank.Limits.BindingsPerDevicePerDay {
			th.decide(t, "poor", func(r *DecisionRequest) {
				r.DeviceID = "dev-many"
				if i%2 == 0 { // unknown cards count for the device too
					r.PAN = makePAN(r.PAN[:6], len(r.PAN), 500000+i)
				}
			})
		}
		d := th.decide(t, "blocked", func(r *DecisionRequest) { r.DeviceID = "dev-many" })
		if d.Reason != ReasonTooManyAttempts {
			t.Fatalf("over the per-device cap: %+v", d)
		}
	})
}

// yellow returns a decision on the yellow path.
func (th *testHost) yellow(t *testing.T) Decision {
	t.Helper()
	d := th.decide(t, "yellow", nil)
	if d.Decision != DecisionRequireAA {
		t.Fatalf("not yellow: %+v", d)
	}
	return d
}

func TestOTPFlow(t *testing.T) {
	ctx := context.Background()
	th := MustOpenHost(t)
	d := th.yellow(t)
	sent, err := th.SendOTP(ctx, "boc-credit", d.DecisionID, "sms-1")
	if err != nil {
		t.Fatal(err)
	}
	msg := th.sms.last(t)
	if msg.to != th.cards["yellow"].Phone || msg.sender != "BOC" || sent.Destination != maskPhone(msg.to) {
		t.Fatalf("sent %+v via %+v", sent, msg)
	}
	code := codeIn(t, msg.text)
	if len(code) != 6 {
		t.Fatalf("code %q", code)
	}
	var stored []byte
	th.DB().DB.QueryRow(`SELECT otp_hash FROM decisions WHERE id = $1`, d.DecisionID).Scan(&stored)
	if len(stored) != 32 || strings.Contains(string(stored), code) {
		t.Fatalf("code not stored as a hash")
	}
	t.Run("notice ACTIVE before verification refused", func(t *testing.T) {
		err := th.RecordNotice(ctx, "boc-credit", TokenNotice{TokenRef: "DNITHE1", DecisionID: d.DecisionID, PANLast4: d.PANLast4, Event: "STATE_CHANGED", State: "ACTIVE"})
		if mipay.ErrorCode(err) != mipay.ECONFLICT {
			t.Fatalf("err = %v", err)
		}
	})
	wrong := "000000"
	if wrong == code {
		wrong = "111111"
	}
	v, err := th.VerifyOTP(ctx, "boc-credit", d.DecisionID, wrong)
	if err != nil || v.Result != OTPWrong || v.AttemptsLeft != 4 {
		t.Fatalf("wrong code: %+v, %v", v, err)
	}
	v, err = th.VerifyOTP(ctx, "boc-credit", d.DecisionID, code)
	if err != nil || v.Result != OTPVerified {
		t.Fatalf("right code: %+v, %v", v, err)
	}
	t.Run("verify again is safe", func(t *testing.T) {
		v, err := th.VerifyOTP(ctx, "boc-credit", d.DecisionID, code)
		if err != nil || v.Result != OTPVerified {
			t.Fatalf("%+v, %v", v, err)
		}
	})
	t.Run("no send after verified", func(t *testing.T) {
		_, err := th.SendOTP(ctx, "boc-credit", d.DecisionID, "sms-1")
		if mipay.ErrorCode(err) != mipay.ECONFLICT {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("notices", func(t *testing.T) {
		for _, n := range []TokenNotice{
			{TokenRef: "DNITHE1", DecisionID: d.DecisionID, PANLast4: d.PANLast4, Event: "TOKEN_CREATED", State: "INACTIVE"},
			{TokenRef: "DNITHE1", DecisionID: d.DecisionID, PANLast4: d.PANLast4, Event: "STATE_CHANGED", State: "ACTIVE"},
			{TokenRef: "DNITHE1", DecisionID: d.DecisionID, PANLast4: d.PANLast4, Event: "STATE_CHANGED", State: "ACTIVE"},
		} {
			if err := th.RecordNotice(ctx, "boc-credit", n); err != nil {
				t.Fatal(err)
			}
		}
		var count int
		th.DB().DB.QueryRow(`SELECT COUNT(*) FROM token_notices WHERE token_ref = 'DNITHE1'`).Scan(&count)
		if count != 2 {
			t.Fatalf("%d notices stored; want 2 (repeat ignored)", count)
		}
	})
}

func TestOTPWrongFiveTimesLocks(t *testing.T) {
	ctx := context.Background()
	th := MustOpenHost(t)
	d := th.yellow(t)
	if _, err := th.SendOTP(ctx, "boc-credit", d.DecisionID, "sms-1"); err != nil {
		t.Fatal(err)
	}
	code := codeIn(t, th.sms.last(t).text)
	wrong := fmt.Sprintf("%06d", (int(code[5]-'0')+1)%10)
	bank, _ := th.Bank("boc-credit")
	for i := 1; i <= bank.OTP.MaxAttempts; i++ {
		v, err := th.VerifyOTP(ctx, "boc-credit", d.DecisionID, wrong)
		if err != nil {
			t.Fatal(err)
		}
		want := OTPWrong
		if i == bank.OTP.MaxAttempts {
			want = OTPLocked
		}
		if v.Result != want || v.AttemptsLeft != bank.OTP.MaxAttempts-i {
			t.Fatalf("attempt %d: %+v; want %s", i, v, want)
		}
	}
	if v, _ := th.VerifyOTP(ctx, "boc-credit", d.DecisionID, code); v.Result != OTPLocked {
		t.Fatalf("right code after lock: %+v", v)
	}
	if _, err := th.SendOTP(ctx, "boc-credit", d.DecisionID, "sms-1"); mipay.ErrorCode(err) != mipay.ELOCKED {
		t.Fatalf("send after lock: %v", err)
	}
	t.Run("a resend does not reset attempts", func(t *testing.T) {
		d := th.yellow(t)
		th.SendOTP(ctx, "boc-credit", d.DecisionID, "sms-1")
		for range 3 {
			th.VerifyOTP(ctx, "boc-credit", d.DecisionID, "12345678")
		}
		th.SendOTP(ctx, "boc-credit", d.DecisionID, "sms-1")
		v, _ := th.VerifyOTP(ctx, "boc-credit", d.DecisionID, "12345678")
		if v.AttemptsLeft != 1 {
			t.Fatalf("%+v", v)
		}
	})
}

func TestOTPExpired(t *testing.T) {
	ctx := context.Background()
	th := MustOpenHost(t)
	d := th.yellow(t)
	if _, err := th.SendOTP(ctx, "boc-credit", d.DecisionID, "sms-1"); err != nil {
		t.Fatal(err)
	}
	code := codeIn(t, th.sms.last(t).text)
	bank, _ := th.Bank("boc-credit")
	th.clock.add(bank.OTP.TTL.D() + time.Second)
	v, err := th.VerifyOTP(ctx, "boc-credit", d.DecisionID, code)
	if err != nil || v.Result != OTPExpired {
		t.Fatalf("%+v, %v", v, err)
	}
	t.Run("a new code works", func(t *testing.T) {
		if _, err := th.SendOTP(ctx, "boc-credit", d.DecisionID, "sms-1"); err != nil {
			t.Fatal(err)
		}
		code2 := codeIn(t, th.sms.last(t).text)
		if code2 != code {
			if v, _ := th.VerifyOTP(ctx, "boc-credit", d.DecisionID, code); v.Result != OTPWrong {
				t.Fatalf("old code after resend: %+v", v)
			}
		}
		if v, _ := th.VerifyOTP(ctx, "boc-credit", d.DecisionID, code2); v.Result != OTPVerified {
			t.Fatalf("new code: %+v", v)
		}
	})
	t.Run("decision expired", func(t *testing.T) {
		d := th.yellow(t)
		th.clock.add(DefaultDecisionTTL + time.Second)
		if _, err := th.SendOTP(ctx, "boc-credit", d.DecisionID, "sms-1"); mipay.ErrorCode(err) != mipay.ECONFLICT {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestOTPResendLimit(t *testing.T) {
	ctx := context.Background()
	th := MustOpenHost(t)
	d := th.yellow(t)
	bank, _ := th.Bank("boc-credit")
	for i := 0; i <= bank.OTP.MaxResends; i++ {
		s, err := th.SendOTP(ctx, "boc-credit", d.DecisionID, "sms-1")
		if err != nil {
			t.Fatalf("send %d: %v", i+1, err)
		}
		if s.ResendsLeft != bank.OTP.MaxResends-i {
			t.Fatalf("send %d: resendsLeft %d", i+1, s.ResendsLeft)
		}
	}
	if _, err := th.SendOTP(ctx, "boc-credit", d.DecisionID, "sms-1"); mipay.ErrorCode(err) != mipay.ELIMIT {
		t.Fatalf("over the resend limit: %v", err)
	}
	t.Run("a failed send does not count", func(t *testing.T) {
		d := th.yellow(t)
		th.sms.fail = errors.New("gateway down")
		_, err := th.SendOTP(ctx, "boc-credit", d.DecisionID, "sms-1")
		th.sms.fail = nil
		if mipay.ErrorCode(err) != mipay.EUNAVAILABLE {
			t.Fatalf("err = %v", err)
		}
		s, err := th.SendOTP(ctx, "boc-credit", d.DecisionID, "sms-1")
		if err != nil || s.ResendsLeft != bank.OTP.MaxResends {
			t.Fatalf("%+v, %v", s, err)
		}
	})
	t.Run("errors", func(t *testing.T) {
		green := th.decide(t, "credit", nil)
		cases := []struct {
			name, issuer, id, method, code string
		}{
			{"green decision needs no code", "icbc-credit", green.DecisionID, "sms-1", mipay.ECONFLICT},
			{"unknown decision", "boc-credit", "dcs_nope", "sms-1", mipay.ENOTFOUND},
			{"other issuer's decision", "icbc-credit", d.DecisionID, "sms-1", mipay.ENOTFOUND},
			{"unknown method", "boc-credit", d.DecisionID, "email-1", mipay.ENOTFOUND},
			{"no decision id", "boc-credit", "", "sms-1", mipay.EINVALID},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				if _, err := th.SendOTP(ctx, c.issuer, c.id, c.method); mipay.ErrorCode(err) != c.code {
					t.Fatalf("err = %v; want %s", err, c.code)
				}
			})
		}
		if _, err := th.VerifyOTP(ctx, "boc-credit", d.DecisionID, "12a4"); mipay.ErrorCode(err) != mipay.EINVALID {
			t.Fatalf("non-digit code: %v", err)
		}
		d2 := th.yellow(t)
		if _, err := th.VerifyOTP(ctx, "boc-credit", d2.DecisionID, "123456"); mipay.ErrorCode(err) != mipay.ECONFLICT {
			t.Fatalf("verify before send: %v", err)
		}
	})
}

func TestNoticeRejects(t *testing.T) {
	th := MustOpenHost(t)
	d := th.decide(t, "credit", nil)
	red := th.decide(t, "credit", func(r *DecisionRequest) { r.Phone = "13700000000" })
	base := TokenNotice{TokenRef: "DNITHE2", DecisionID: d.DecisionID, PANLast4: d.PANLast4, Event: "TOKEN_CREATED", State: "ACTIVE"}
	cases := []struct {
		name   string
		mutate func(*TokenNotice)
		code   string
	}{
		{"no token ref", func(n *TokenNotice) { n.TokenRef = "" }, mipay.EINVALID},
		{"bad event", func(n *TokenNotice) { n.Event = "X" }, mipay.EINVALID},
		{"bad state", func(n *TokenNotice) { n.State = "X" }, mipay.EINVALID},
		{"bad caused by", func(n *TokenNotice) { n.CausedBy = "X" }, mipay.EINVALID},
		{"bad last4", func(n *TokenNotice) { n.PANLast4 = "12" }, mipay.EINVALID},
		{"created without decision", func(n *TokenNotice) { n.DecisionID = "" }, mipay.EINVALID},
		{"unknown decision", func(n *TokenNotice) { n.DecisionID = "dcs_x" }, mipay.ENOTFOUND},
		{"declined decision", func(n *TokenNotice) { n.DecisionID = red.DecisionID }, mipay.ECONFLICT},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := base
			c.mutate(&n)
			if err := th.RecordNotice(context.Background(), "icbc-credit", n); mipay.ErrorCode(err) != c.code {
				t.Fatalf("err = %v; want %s", err, c.code)
			}
		})
	}
	if err := th.RecordNotice(context.Background(), "icbc-credit", base); err != nil {
		t.Fatal(err)
	}
}

func TestSeedIdempotentAndNoPANStored(t *testing.T) {
	th := MustOpenHost(t)
	var before int
	th.DB().DB.QueryRow(`SELECT COUNT(*) FROM postings`).Scan(&before)
	th.reopen(t)
	var cards, after int
	th.DB().DB.QueryRow(`SELECT COUNT(*) FROM cards`).Scan(&cards)
	th.DB().DB.QueryRow(`SELECT COUNT(*) FROM postings`).Scan(&after)
	if after != before || cards == 0 {
		t.Fatalf("reopen: %d cards, postings %d → %d", cards, before, after)
	}
	rows, err := th.DB().DB.Query(`SELECT pan_first6 || pan_last4 || expiry || name || phone FROM cards`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var s string
		rows.Scan(&s)
		for _, c := range th.cards {
			if strings.Contains(s, c.PAN) || strings.Contains(s, c.PAN[6:len(c.PAN)-4]) {
				t.Fatalf("PAN middle digits stored")
			}
		}
	}
}

// BenchmarkDecide measures green-path tokenization decisions (the issuer's
// part of provisioning): counters read and the decision recorded in one
// group-commit write.
func BenchmarkDecide(b *testing.B) {
	ref, pans := benchRef(b, 1000)
	is, _ := ref.Issuer("icbc-debit")
	is.Limits.BindingsPerCardPerDay, is.Limits.BindingsPerDevicePerDay = 0, 0
	is.OTP.AlwaysOTP = false
	th := &testHost{sms: &sentSMS{}, clock: &clock{t: time.Now()}, cfg: storeConfigForBench(b), hash: newKeyHasher()}
	th.Host = th.open(b, ref)
	defer th.closeHost(b)
	var seq atomic.Uint64
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := seq.Add(1)
			d, err := th.Decide(context.Background(), "icbc-debit", DecisionRequest{PAN: pans[n%uint64(len(pans))], Expiry: "3012",
				Phone: "13900000000", DeviceID: fmt.Sprint("dev-", n), SEID: "se", TokenRequestorID: miPay, DeviceScore: 4})
			if err != nil || d.Decision != DecisionApproved {
				b.Errorf("%+v %v", d, err)
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "decisions/s")
}
