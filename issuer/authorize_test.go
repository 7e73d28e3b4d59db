package issuer

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/store"
	"github.com/mipay-oss/mipay/store/storetest"
)

var stanSeq atomic.Int64

// auth is a valid purchase request for a test card with a fresh identity.
func (th *testHost) auth(name string, amount int64) AuthRequest {
	n := stanSeq.Add(1)
	c := th.cards[name]
	return AuthRequest{MTI: "0200", PAN: c.PAN, ProcessingCode: "000000", AmountMinor: amount, Currency: "156",
		Transmission: th.clock.now().UTC().Format("0102150405"), STAN: fmt.Sprintf("%06d", n%1000000),
		RRN: fmt.Sprintf("%012d", n), Terminal: "TERM0001", Acquirer: "48020000"}
}

func (th *testHost) account(t *testing.T, name string) AccountView {
	t.Helper()
	c := th.cards[name]
	v, err := th.Accounts(c.issuer, c.PAN[len(c.PAN)-4:])
	if err != nil || len(v) != 1 {
		t.Fatalf("accounts of %s: %v, %v", name, v, err)
	}
	return v[0]
}

func TestAuthorizationResponseCodes(t *testing.T) {
	ctx := context.Background()
	th := MustOpenHost(t)
	debit, _ := th.Bank("icbc-debit")
	cases := []struct {
		name string
		req  func() AuthRequest
		code ResponseCode
	}{
		{"00 approved", func() AuthRequest { return th.auth("debit", 1250) }, RCApproved},
		{"00 credit", func() AuthRequest { return th.auth("credit", 99900) }, RCApproved},
		{"00 token data kept", func() AuthRequest {
			r := th.auth("debit", 100)
			r.TokenRef, r.TokenLast4 = "DNITHE0000001", "4321"
			r.Expiry = "2912" // a token's expiry is not the card's
			return r
		}, RCApproved},
		{"05 lost card", func() AuthRequest { return th.auth("lost", 100) }, RCDoNotHonor},
		{"13 zero amount", func() AuthRequest { return th.auth("debit", 0) }, RCInvalidAmount},
		{"14 unknown card", func() AuthRequest {
			r := th.auth("debit", 100)
			r.PAN = makePAN(r.PAN[:6], len(r.PAN), 424242)
			return r
		}, RCInvalidCard},
		{"14 not a PAN", func() AuthRequest { r := th.auth("debit", 100); r.PAN = "1234"; return r }, RCInvalidCard},
		{"30 no STAN", func() AuthRequest { r := th.auth("debit", 100); r.STAN = ""; return r }, RCFormatError},
		{"51 insufficient funds", func() AuthRequest { return th.auth("poor", 5001) }, RCInsufficientFunds},
		{"54 expired card", func() AuthRequest { return th.auth("expired", 100) }, RCExpiredCard},
		{"54 wrong DE14", func() AuthRequest { r := th.auth("debit", 100); r.Expiry = "2912"; return r }, RCExpiredCard},
		{"57 cash withdrawal", func() AuthRequest { r := th.auth("debit", 100); r.ProcessingCode = "010000"; return r }, RCNotPermitted},
		{"57 foreign currency without billing amount", func() AuthRequest { r := th.auth("debit", 100); r.Currency = "840"; return r }, RCNotPermitted},
		{"00 foreign currency with CNY billing amount", func() AuthRequest {
			r := th.auth("debit", 100)
			r.Currency, r.BillingAmountMinor, r.BillingCurrency = "840", 720, "156"
			return r
		}, RCApproved},
		{"61 over per-transaction limit", func() AuthRequest { return th.auth("rich", debit.Limits.PerTransactionMinor+1) }, RCExceedsAmount},
		{"62 blocked card", func() AuthRequest { return th.auth("blocked", 100) }, RCRestrictedCard},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := th.Authorize(ctx, c.req())
			if res.Code != c.code {
				t.Fatalf("code %s (%s); want %s", res.Code, res.Code.Text(), c.code)
			}
			if c.code == RCApproved && (len(res.AuthCode) != 6 || !allDigits(res.AuthCode)) {
				t.Fatalf("auth code %q", res.AuthCode)
			}
			if c.code != RCApproved && res.AuthCode != "" {
				t.Fatalf("auth code on decline: %q", res.AuthCode)
			}
		})
	}
	t.Run("61 over daily limit", func(t *testing.T) {
		per, daily := debit.Limits.PerTransactionMinor, debit.Limits.DailyMinor
		spent := int64(0)
		for spent+per <= daily {
			if r := th.Authorize(ctx, th.auth("rich", per)); r.Code != RCApproved {
				t.Fatalf("under the daily limit: %s", r.Code)
			}
			spent += per
		}
		if r := th.Authorize(ctx, th.auth("rich", daily-spent+1)); r.Code != RCExceedsAmount {
			t.Fatalf("over the daily limit: %s", r.Code)
		}
		th.clock.add(24 * time.Hour)
		if r := th.Authorize(ctx, th.auth("rich", per)); r.Code != RCApproved {
			t.Fatalf("next day: %s", r.Code)
		}
	})
	t.Run("65 velocity", func(t *testing.T) {
		for i := range debit.Limits.VelocityPerHour {
			if r := th.Authorize(ctx, th.auth("velocity", 100)); r.Code != RCApproved {
				t.Fatalf("approval %d: %s", i+1, r.Code)
			}
		}
		if r := th.Authorize(ctx, th.auth("velocity", 100)); r.Code != RCExceedsFrequency {
			t.Fatalf("over velocity: %s", r.Code)
		}
		th.clock.add(time.Hour + time.Second)
		if r := th.Authorize(ctx, th.auth("velocity", 100)); r.Code != RCApproved {
			t.Fatalf("an hour later: %s", r.Code)
		}
	})
	t.Run("token data stored", func(t *testing.T) {
		var n int
		th.DB().DB.QueryRow(`SELECT COUNT(*) FROM authorizations WHERE token_ref = 'DNITHE0000001' AND token_last4 = '4321'`).Scan(&n)
		if n != 1 {
			t.Fatalf("%d authorizations with the token", n)
		}
	})
}

func TestAuthorizationHoldsFunds(t *testing.T) {
	ctx := context.Background()
	th := MustOpenHost(t)
	before := th.account(t, "poor")
	if r := th.Authorize(ctx, th.auth("poor", 3000)); r.Code != RCApproved {
		t.Fatal(r.Code)
	}
	after := th.account(t, "poor")
	if after.AvailableMinor != before.AvailableMinor-3000 || after.HeldMinor != 3000 || after.BalanceMinor != before.BalanceMinor {
		t.Fatalf("before %+v after %+v", before, after)
	}
	if r := th.Authorize(ctx, th.auth("poor", 2001)); r.Code != RCInsufficientFunds {
		t.Fatalf("second: %s", r.Code)
	}
	if r := th.Authorize(ctx, th.auth("poor", 2000)); r.Code != RCApproved {
		t.Fatalf("rest: %s", r.Code)
	}
	t.Run("survives restart", func(t *testing.T) {
		th.reopen(t)
		v := th.account(t, "poor")
		if v.AvailableMinor != 0 || v.HeldMinor != 5000 || v.DaySpentMinor != 5000 {
			t.Fatalf("after restart %+v", v)
		}
		if r := th.Authorize(ctx, th.auth("poor", 1)); r.Code != RCInsufficientFunds {
			t.Fatalf("after restart: %s", r.Code)
		}
	})
}

func TestDuplicateAuthorization(t *testing.T) {
	ctx := context.Background()
	th := MustOpenHost(t)
	req := th.auth("dup", 1000)
	first := th.Authorize(ctx, req)
	if first.Code != RCApproved {
		t.Fatal(first.Code)
	}
	second := th.Authorize(ctx, req)
	if second.Code != RCApproved || second.AuthCode != first.AuthCode || second.AuthID != first.AuthID || !second.Duplicate {
		t.Fatalf("duplicate: %+v; first %+v", second, first)
	}
	if v := th.account(t, "dup"); v.HeldMinor != 1000 {
		t.Fatalf("held %d after a duplicate", v.HeldMinor)
	}
	t.Run("same identity, other amount", func(t *testing.T) {
		other := req
		other.AmountMinor = 2000
		if r := th.Authorize(ctx, other); r.Code != RCDuplicate {
			t.Fatalf("%s", r.Code)
		}
	})
	t.Run("declines are stored answers too", func(t *testing.T) {
		d := th.auth("poor", 999999)
		a, b := th.Authorize(ctx, d), th.Authorize(ctx, d)
		if a.Code != RCInsufficientFunds || b.Code != RCInsufficientFunds || !b.Duplicate || a.AuthID != b.AuthID {
			t.Fatalf("%+v %+v", a, b)
		}
	})
	t.Run("concurrent copies", func(t *testing.T) {
		req := th.auth("dup", 500)
		var wg sync.WaitGroup
		res := make([]AuthResult, 16)
		for i := range res {
			wg.Add(1)
			go func() { defer wg.Done(); res[i] = th.Authorize(ctx, req) }()
		}
		wg.Wait()
		for _, r := range res {
			if r.Code != RCApproved || r.AuthID != res[0].AuthID {
				t.Fatalf("copies answered differently: %+v", res)
			}
		}
		if v := th.account(t, "dup"); v.HeldMinor != 1500 {
			t.Fatalf("held %d", v.HeldMinor)
		}
	})
	t.Run("after restart and eviction", func(t *testing.T) {
		th.reopen(t)
		th.Host.dedup = newDedupIndex(1) // forget everything: the store's unique index must answer
		if r := th.Authorize(ctx, req); r.Code != RCApproved || r.AuthCode != first.AuthCode || !r.Duplicate {
			t.Fatalf("after restart: %+v", r)
		}
		if v := th.account(t, "dup"); v.HeldMinor != 1500 {
			t.Fatalf("held %d", v.HeldMinor)
		}
	})
}

func TestReversal(t *testing.T) {
	ctx := context.Background()
	th := MustOpenHost(t)
	before := th.account(t, "rev")
	req := th.auth("rev", 7000)
	res := th.Authorize(ctx, req)
	if res.Code != RCApproved {
		t.Fatal(res.Code)
	}
	byDE90 := ReversalRequest{MTI: "0400", PAN: req.PAN, AmountMinor: req.AmountMinor, Transmission: "1126030000",
		STAN: "999001", RRN: req.RRN, Terminal: req.Terminal, Acquirer: req.Acquirer,
		Original: &OriginalData{MTI: "0200", STAN: req.STAN, Transmission: req.Transmission, Acquirer: "000" + req.Acquirer}}
	r1 := th.Reverse(ctx, byDE90)
	if r1.Code != RCApproved || !r1.Released || r1.AuthID != res.AuthID {
		t.Fatalf("first reversal %+v", r1)
	}
	if v := th.account(t, "rev"); v.AvailableMinor != before.AvailableMinor || v.HeldMinor != 0 || v.DaySpentMinor != 0 {
		t.Fatalf("after reversal %+v", v)
	}
	t.Run("twice releases once", func(t *testing.T) {
		byAlt := ReversalRequest{MTI: "0420", PAN: req.PAN, AmountMinor: req.AmountMinor, Transmission: req.Transmission,
			STAN: req.STAN, RRN: req.RRN, Terminal: req.Terminal, Acquirer: req.Acquirer}
		for _, rr := range []ReversalRequest{byDE90, byAlt} {
			r := th.Reverse(ctx, rr)
			if r.Code != RCApproved || r.Released {
				t.Fatalf("repeat %+v", r)
			}
		}
		if v := th.account(t, "rev"); v.AvailableMinor != before.AvailableMinor {
			t.Fatalf("released twice: %+v", v)
		}
	})
	t.Run("a repeat racing the first is answered only once the release is durable", func(t *testing.T) {
		for i := range 20 {
			req := th.auth("rev", int64(100+i))
			a := th.Authorize(ctx, req)
			if a.Code != RCApproved {
				t.Fatal(a.Code)
			}
			rr := ReversalRequest{MTI: "0400", PAN: req.PAN, Transmission: req.Transmission, STAN: req.STAN,
				RRN: req.RRN, Terminal: req.Terminal, Acquirer: req.Acquirer}
			results := make(chan ReversalResult, 2)
			for range 2 {
				go func() { results <- th.Reverse(ctx, rr) }()
			}
			released := 0
			for range 2 {
				r := <-results
				if r.Code != RCApproved {
					t.Fatalf("reversal %d answered %s", i, r.Code)
				}
				if r.Released {
					released++
				}
				// Whichever answer comes first, the release is in the store.
				var n int
				if err := th.db.DB.QueryRow("SELECT COUNT(*) FROM postings WHERE entry_id = $1", "release/"+a.AuthID).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n == 0 {
					t.Fatalf("reversal %d answered %s before its release was stored", i, r.Code)
				}
			}
			if released != 1 {
				t.Fatalf("reversal %d released %d times", i, released)
			}
		}
	})
	t.Run("without DE90", func(t *testing.T) {
		req := th.auth("rev", 300)
		th.Authorize(ctx, req)
		r := th.Reverse(ctx, ReversalRequest{MTI: "0420", PAN: req.PAN, Transmission: req.Transmission, STAN: req.STAN,
			RRN: req.RRN, Terminal: req.Terminal, Acquirer: req.Acquirer})
		if !r.Released {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("after restart", func(t *testing.T) {
		req := th.auth("rev", 400)
		th.Authorize(ctx, req)
		th.reopen(t)
		th.Host.dedup = newDedupIndex(1)
		rr := ReversalRequest{MTI: "0400", PAN: req.PAN, Transmission: req.Transmission, STAN: req.STAN, RRN: req.RRN, Terminal: req.Terminal, Acquirer: req.Acquirer}
		if r := th.Reverse(ctx, rr); !r.Released {
			t.Fatalf("%+v", r)
		}
		th.reopen(t)
		if r := th.Reverse(ctx, rr); r.Released || r.Code != RCApproved {
			t.Fatalf("again after restart: %+v", r)
		}
		if v := th.account(t, "rev"); v.AvailableMinor != before.AvailableMinor || v.HeldMinor != 0 {
			t.Fatalf("%+v", v)
		}
	})
	t.Run("declined original releases nothing", func(t *testing.T) {
		req := th.auth("poor", 999999)
		th.Authorize(ctx, req)
		r := th.Reverse(ctx, ReversalRequest{MTI: "0400", PAN: req.PAN, Transmission: req.Transmission, STAN: req.STAN, RRN: req.RRN, Terminal: req.Terminal, Acquirer: req.Acquirer})
		if r.Released || r.Code != RCApproved {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("reversal before its original", func(t *testing.T) {
		req := th.auth("rev", 500)
		r := th.Reverse(ctx, ReversalRequest{MTI: "0400", PAN: req.PAN, Transmission: "1126030001", STAN: "999002",
			Terminal: req.Terminal, Acquirer: req.Acquirer,
			Original: &OriginalData{MTI: "0200", STAN: req.STAN, Transmission: req.Transmission, Acquirer: req.Acquirer}})
		if r.Code != RCApproved || r.Released {
			t.Fatalf("%+v", r)
		}
		th.reopen(t) // the early reversal is durable
		a := th.Authorize(ctx, req)
		if a.Code != RCDoNotHonor {
			t.Fatalf("original after its reversal: %s", a.Code)
		}
		if b := th.Authorize(ctx, req); b.Code != RCDoNotHonor || !b.Duplicate {
			t.Fatalf("its duplicate: %+v", b)
		}
	})
	t.Run("format error", func(t *testing.T) {
		if r := th.Reverse(ctx, ReversalRequest{MTI: "0400", PAN: req.PAN}); r.Code != RCFormatError {
			t.Fatalf("%+v", r)
		}
	})
}

func TestConcurrentAuthorizationsKeepLedger(t *testing.T) {
	ctx := context.Background()
	th := MustOpenHost(t)
	const workers, each = 8, 40
	var wg sync.WaitGroup
	var approved atomic.Int64
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				card := []string{"credit", "credit2", "debit", "poor"}[(w+i)%4]
				req := th.auth(card, int64(100+i))
				r := th.Authorize(ctx, req)
				if r.Code == RCApproved {
					approved.Add(1)
					if i%3 == 0 {
						th.Reverse(ctx, ReversalRequest{MTI: "0400", PAN: req.PAN, Transmission: req.Transmission, STAN: req.STAN, RRN: req.RRN, Terminal: req.Terminal, Acquirer: req.Acquirer})
					}
				}
			}
		}()
	}
	wg.Wait()
	rep, err := th.CheckLedger(ctx)
	if err != nil || !rep.OK || rep.Approvals != approved.Load() {
		t.Fatalf("%+v, %v (approved %d)", rep, err, approved.Load())
	}
}

func TestIssuerUnavailableAndSystemError(t *testing.T) {
	ctx := context.Background()
	t.Run("96 write fails", func(t *testing.T) {
		if storetest.Postgres() != "" {
			t.Skip("the failure trigger is SQLite syntax")
		}
		th := MustOpenHost(t)
		if _, err := th.DB().DB.Exec(`CREATE TRIGGER fail_auth BEFORE INSERT ON authorizations WHEN NEW.amount_minor = 4242
			BEGIN SELECT RAISE(ABORT, 'injected failure'); END`); err != nil {
			t.Fatal(err)
		}
		before := th.account(t, "debit")
		if r := th.Authorize(ctx, th.auth("debit", 4242)); r.Code != RCSystemError {
			t.Fatalf("%s", r.Code)
		}
		if v := th.account(t, "debit"); v != before {
			t.Fatalf("reservation not undone: %+v → %+v", before, v)
		}
		if r := th.Authorize(ctx, th.auth("debit", 4241)); r.Code != RCApproved {
			t.Fatalf("next: %s", r.Code)
		}
	})
	t.Run("91 closing", func(t *testing.T) {
		th := MustOpenHost(t)
		live := th.w
		closed := store.NewWriter(th.DB(), store.WriterConfig{})
		closed.Close() // what the host's writer is during shutdown
		th.w = closed
		r := th.Authorize(ctx, th.auth("debit", 100))
		th.w = live
		if r.Code != RCIssuerUnavailable {
			t.Fatalf("%s", r.Code)
		}
	})
}

func TestGroupWriteIsolatesPoisonRow(t *testing.T) {
	if storetest.Postgres() != "" {
		t.Skip("the failure trigger is SQLite syntax")
	}
	ctx := context.Background()
	th := MustOpenHost(t)
	if _, err := th.DB().DB.Exec(`CREATE TRIGGER fail_auth BEFORE INSERT ON authorizations WHEN NEW.amount_minor = 4242
		BEGIN SELECT RAISE(ABORT, 'injected failure'); END`); err != nil {
		t.Fatal(err)
	}
	// Decide (and reserve) each authorization, then write them as one group.
	var group []*authJob
	amounts := []int64{100, 4242, 200, 300, 400, 500}
	for _, amt := range amounts {
		req := th.auth("debit", amt)
		rec, prev := th.claim(identOf(req.Acquirer, req.Terminal, req.STAN, req.Transmission), altOf(req.Terminal, req.STAN, req.RRN, req.Transmission), "fp")
		if prev != nil {
			t.Fatal("identity reused")
		}
		now := th.clock.now()
		acct := th.cardByPAN(ctx, req.PAN)
		rec.id, rec.acct, rec.cardID, rec.issuerID, rec.day, rec.amount = th.ids.next(authIDPrefix, now), acct, acct.card.ID, acct.bank.ID, dayOf(now), amt
		rec.code, rec.approved, rec.authCode = acct.reserve(amt, rec.day, now.UnixMilli()), true, "123456"
		group = append(group, &authJob{req: &req, rec: rec, ms: now.UnixMilli(), done: make(chan struct{})})
	}
	th.batch.writeGroup(group)
	for i, j := range group {
		<-j.done
		if (amounts[i] == 4242) != (j.err != nil) {
			t.Fatalf("job %d (amount %d): err %v", i, amounts[i], j.err)
		}
		if j.err != nil {
			j.rec.acct.unreserve(j.rec.amount, j.rec.day, j.ms) // what authorizeNew does
		}
		close(j.rec.done)
	}
	var n int
	th.DB().DB.QueryRow(`SELECT COUNT(*) FROM authorizations WHERE approved = 1`).Scan(&n)
	if n != len(amounts)-1 {
		t.Fatalf("%d approvals stored; want %d", n, len(amounts)-1)
	}
}

func TestIDGenOrdered(t *testing.T) {
	var g idGen
	now := time.Date(2026, 11, 26, 2, 0, 0, 0, time.UTC)
	a := g.next("x_", now)
	b := g.next("x_", now)
	c := g.next("x_", now.Add(-time.Hour)) // clock stepped back
	if !(a < b && b < c) || a < floorID("x_", now) || floorID("x_", now.Add(time.Millisecond)) <= c {
		t.Fatalf("ids %s %s %s", a, b, c)
	}
	var g2 idGen
	g2.observe("x_", c)
	if d := g2.next("x_", now.Add(-time.Hour)); d <= c {
		t.Fatalf("after observe: %s <= %s", d, c)
	}
}
