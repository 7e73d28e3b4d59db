package promo

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/store"
	"github.com/mipay-oss/mipay/store/storetest"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time   { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time)  { c.mu.Lock(); c.t = t; c.mu.Unlock() }
func newClock(t time.Time) *clock { return &clock{t: t} }
func shanghai(tb testing.TB) *time.Location {
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		tb.Fatal(err)
	}
	return loc
}

// Wednesday 2026-11-25 12:00 in Shanghai.
var testNow = time.Date(2026, 11, 25, 4, 0, 0, 0, time.UTC)

func MustOpenEngine(tb testing.TB, now func() time.Time) (*Engine, *store.DB) {
	tb.Helper()
	db := storetest.Open(tb, Party, Migrations())
	return MustOpenEngineOn(tb, db, now), db
}

func MustOpenEngineOn(tb testing.TB, db *store.DB, now func() time.Time) *Engine {
	tb.Helper()
	e, err := Open(context.Background(), Config{DB: db, Now: now})
	if err != nil {
		tb.Fatalf("open engine: %v", err)
	}
	tb.Cleanup(func() { e.Close() })
	return e
}

func fixedCampaign(id string, off, budget int64) Campaign {
	return Campaign{
		ID: id, BankName: "ICBC", IssuerID: "icbc-debit", Name: "test", Currency: Currency,
		Benefit: Benefit{Kind: BenefitFixed, AmountMinor: off},
		Limits:  Limits{BudgetMinor: budget},
		Window:  Window{Start: testNow.Add(-24 * time.Hour), End: testNow.Add(30 * 24 * time.Hour)},
	}
}

func mustCreate(tb testing.TB, e *Engine, c Campaign) {
	tb.Helper()
	if _, err := e.Create(context.Background(), c); err != nil {
		tb.Fatalf("create %s: %v", c.ID, err)
	}
}

var txSeq atomic.Int64

func payment(card string, amount int64) PaymentContext {
	return PaymentContext{
		TxID: fmt.Sprintf("tx%d", txSeq.Add(1)), IssuerID: "icbc-debit", CardType: "Debit", BIN: "62122600",
		Token: true, CardKey: card, AmountMinor: amount, MCC: "5411", Country: "156",
	}
}

func TestBudgetNeverOverspentUnderConcurrency(t *testing.T) {
	const n, attempts = 37, 1000
	e, _ := MustOpenEngine(t, newClock(testNow).Now)
	mustCreate(t, e, fixedCampaign("exact", 1000, n*1000))
	ctx := context.Background()
	var granted atomic.Int64
	ids := make(chan string, attempts)
	var wg sync.WaitGroup
	for i := range attempts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, ok, err := e.Reserve(ctx, payment(fmt.Sprintf("card%d", i), 6000))
			if err != nil {
				t.Errorf("reserve: %v", err)
				return
			}
			if ok {
				granted.Add(1)
				ids <- r.ID
			}
		}()
	}
	wg.Wait()
	close(ids)
	if g := granted.Load(); g != n {
		t.Fatalf("granted %d discounts, the budget covers exactly %d", g, n)
	}
	st, err := e.Stats(ctx, "", "exact")
	if err != nil {
		t.Fatal(err)
	}
	if st.BudgetUsedMinor != n*1000 || st.Redemptions != n {
		t.Fatalf("stats %+v, want %d used and %d redemptions", st, n*1000, n)
	}
	t.Run("after releasing k, exactly k more", func(t *testing.T) {
		const k = 5
		i := 0
		for id := range ids {
			if i == k {
				break
			}
			if ok, err := e.Release(ctx, id); err != nil || !ok {
				t.Fatalf("release %s: %v %v", id, ok, err)
			}
			i++
		}
		var more atomic.Int64
		var wg sync.WaitGroup
		for i := range 200 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, ok, err := e.Reserve(ctx, payment(fmt.Sprintf("again%d", i), 6000)); err == nil && ok {
					more.Add(1)
				}
			}()
		}
		wg.Wait()
		if more.Load() != k {
			t.Fatalf("after %d releases %d more were granted", k, more.Load())
		}
	})
}

func TestReleaseExactlyOnce(t *testing.T) {
	e, _ := MustOpenEngine(t, newClock(testNow).Now)
	mustCreate(t, e, fixedCampaign("once", 1000, 1000))
	ctx := context.Background()
	r, ok, err := e.Reserve(ctx, payment("c1", 6000))
	if err != nil || !ok {
		t.Fatalf("reserve: %v %v", ok, err)
	}
	var released atomic.Int64
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok, err := e.Release(ctx, r.ID); err == nil && ok {
				released.Add(1)
			}
		}()
	}
	wg.Wait()
	if released.Load() != 1 {
		t.Fatalf("released %d times", released.Load())
	}
	st, _ := e.Stats(ctx, "", "once")
	if st.BudgetUsedMinor != 0 || st.Redemptions != 0 || st.Released != 1 {
		t.Fatalf("stats after release: %+v", st)
	}
	t.Run("confirm after release does nothing", func(t *testing.T) {
		if moved, err := e.Confirm(ctx, r.ID); err != nil || moved {
			t.Fatalf("confirm: %v %v", moved, err)
		}
	})
	t.Run("release after confirm gives back", func(t *testing.T) {
		r2, ok, err := e.Reserve(ctx, payment("c2", 6000))
		if err != nil || !ok {
			t.Fatalf("reserve: %v %v", ok, err)
		}
		if moved, err := e.Confirm(ctx, r2.ID); err != nil || !moved {
			t.Fatalf("confirm: %v %v", moved, err)
		}
		if ok, err := e.Release(ctx, r2.ID); err != nil || !ok {
			t.Fatalf("release (reversal) of a confirmed one: %v %v", ok, err)
		}
		if ok, _ := e.Release(ctx, r2.ID); ok {
			t.Fatal("released twice")
		}
	})
	t.Run("unknown id", func(t *testing.T) {
		if ok, err := e.Release(ctx, "nope"); err != nil || ok {
			t.Fatalf("release unknown: %v %v", ok, err)
		}
	})
}

func TestReserveIsIdempotentPerTransaction(t *testing.T) {
	e, _ := MustOpenEngine(t, newClock(testNow).Now)
	mustCreate(t, e, fixedCampaign("idem", 1000, 10_000))
	ctx := context.Background()
	p := payment("c1", 6000)
	r1, ok1, err1 := e.Reserve(ctx, p)
	r2, ok2, err2 := e.Reserve(ctx, p)
	if err1 != nil || err2 != nil || !ok1 || !ok2 || r1 != r2 {
		t.Fatalf("two reserves of one payment: %+v %v %v / %+v %v %v", r1, ok1, err1, r2, ok2, err2)
	}
	st, _ := e.Stats(ctx, "", "idem")
	if st.Redemptions != 1 {
		t.Fatalf("redemptions %d, want 1", st.Redemptions)
	}
}

func TestPerCardDailyLimitAtDayBoundary(t *testing.T) {
	loc := shanghai(t)
	clk := newClock(time.Date(2026, 11, 25, 23, 59, 0, 0, loc))
	e, _ := MustOpenEngine(t, clk.Now)
	c := fixedCampaign("daily", 500, 1_000_000)
	c.Limits.PerCardPerDay = 2
	mustCreate(t, e, c)
	ctx := context.Background()
	got := func() bool {
		_, ok, err := e.Reserve(ctx, payment("card-a", 6000))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !got() || !got() {
		t.Fatal("the first two of the day were refused")
	}
	if got() {
		t.Fatal("a third on the same local day was granted")
	}
	if _, ok, _ := e.Reserve(ctx, payment("card-b", 6000)); !ok {
		t.Fatal("another card was refused")
	}
	// 00:00:30 Shanghai is still the previous day in UTC: the campaign's zone decides.
	clk.Set(time.Date(2026, 11, 26, 0, 0, 30, 0, loc))
	if !got() {
		t.Fatal("refused after midnight in the campaign's time zone")
	}
}

func TestPerCardAndPerAccountLimits(t *testing.T) {
	e, _ := MustOpenEngine(t, newClock(testNow).Now)
	c := fixedCampaign("acct", 500, 1_000_000)
	c.Limits.PerAccount = 3
	c.Limits.PerCard = 2
	mustCreate(t, e, c)
	ctx := context.Background()
	try := func(card, acct string) bool {
		p := payment(card, 6000)
		p.AccountKey = acct
		_, ok, err := e.Reserve(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !try("a1", "acct1") || !try("a1", "acct1") {
		t.Fatal("first two on card a1 refused")
	}
	if try("a1", "acct1") {
		t.Fatal("third on card a1 granted over perCard 2")
	}
	if !try("a2", "acct1") {
		t.Fatal("third on the account (another card) refused")
	}
	if try("a3", "acct1") {
		t.Fatal("fourth on the account granted over perAccount 3")
	}
	if !try("b1", "acct2") {
		t.Fatal("another account refused")
	}
}

func TestTimeWindows(t *testing.T) {
	loc := shanghai(t)
	c := fixedCampaign("window", 500, 1_000_000)
	c.Window = Window{Start: time.Date(2026, 11, 1, 0, 0, 0, 0, loc), End: time.Date(2026, 12, 1, 0, 0, 0, 0, loc),
		Weekdays: []time.Weekday{time.Saturday, time.Sunday}, FromHour: 10, ToHour: 14}
	cases := []struct {
		name string
		at   time.Time
		want bool
	}{
		{"saturday noon", time.Date(2026, 11, 28, 12, 0, 0, 0, loc), true},
		{"saturday at the closing hour", time.Date(2026, 11, 28, 14, 0, 0, 0, loc), false},
		{"saturday before opening", time.Date(2026, 11, 28, 9, 59, 0, 0, loc), false},
		{"wednesday noon", time.Date(2026, 11, 25, 12, 0, 0, 0, loc), false},
		{"before start", time.Date(2026, 10, 31, 12, 0, 0, 0, loc), false},
		{"at end", time.Date(2026, 12, 1, 0, 0, 0, 0, loc), false},
		{"sunday 10:00 is saturday UTC", time.Date(2026, 11, 29, 10, 0, 0, 0, loc), true},
	}
	e, _ := MustOpenEngine(t, newClock(testNow).Now)
	mustCreate(t, e, c)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := payment("card-"+tc.name, 6000)
			p.Time = tc.at
			_, ok, err := e.Reserve(context.Background(), p)
			if err != nil || ok != tc.want {
				t.Fatalf("at %v: granted %v (err %v), want %v", tc.at, ok, err, tc.want)
			}
		})
	}
}

func TestRandomReductionWithinRange(t *testing.T) {
	e, _ := MustOpenEngine(t, newClock(testNow).Now)
	c := fixedCampaign("lucky", 0, 1_000_000)
	c.Benefit = Benefit{Kind: BenefitRandom, MinMinor: 100, MaxMinor: 2000}
	mustCreate(t, e, c)
	ctx := context.Background()
	seen := map[int64]bool{}
	for i := range 300 {
		amount := int64(150 + i*13) // some below the range's top
		r, ok, err := e.Reserve(ctx, payment(fmt.Sprintf("r%d", i), amount))
		if err != nil || !ok {
			t.Fatalf("reserve %d: %v %v", i, ok, err)
		}
		if r.DiscountMinor < 100 || r.DiscountMinor > 2000 {
			t.Fatalf("discount %d outside 100..2000", r.DiscountMinor)
		}
		if r.DiscountMinor >= amount || r.PayMinor() < 1 {
			t.Fatalf("discount %d of amount %d leaves nothing to pay", r.DiscountMinor, amount)
		}
		seen[r.DiscountMinor] = true
	}
	if len(seen) < 50 {
		t.Fatalf("only %d distinct discounts in 300 draws: not random", len(seen))
	}
	t.Run("never above the remaining budget", func(t *testing.T) {
		e, _ := MustOpenEngine(t, newClock(testNow).Now)
		c := fixedCampaign("small", 0, 2500)
		c.Benefit = Benefit{Kind: BenefitRandom, MinMinor: 100, MaxMinor: 2000}
		mustCreate(t, e, c)
		var total int64
		for i := range 50 {
			r, ok, err := e.Reserve(ctx, payment(fmt.Sprintf("s%d", i), 10_000))
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				total += r.DiscountMinor
				if r.DiscountMinor < 100 {
					t.Fatalf("discount %d below the range", r.DiscountMinor)
				}
			}
		}
		if total > 2500 {
			t.Fatalf("granted %d over a budget of 2500", total)
		}
		if st, _ := e.Stats(ctx, "", "small"); st.BudgetUsedMinor != total || 2500-total >= 100 {
			t.Fatalf("used %d of 2500 (granted %d): a draw that fitted was refused", st.BudgetUsedMinor, total)
		}
	})
}

func TestBenefits(t *testing.T) {
	cases := []struct {
		name   string
		b      Benefit
		amount int64
		want   int64
	}{
		{"fixed", Benefit{Kind: BenefitFixed, AmountMinor: 1000}, 5000, 1000},
		{"fixed above the amount leaves one fen", Benefit{Kind: BenefitFixed, AmountMinor: 1000}, 800, 799},
		{"percent", Benefit{Kind: BenefitPercent, PercentBP: 1000, CapMinor: 3000}, 12345, 1234},
		{"percent capped", Benefit{Kind: BenefitPercent, PercentBP: 1000, CapMinor: 3000}, 100000, 3000},
		{"points", Benefit{Kind: BenefitPoints, Multiplier: 3}, 5000, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.b.draw(tc.amount); got != tc.want {
				t.Fatalf("discount %d, want %d", got, tc.want)
			}
		})
	}
}

func TestEligibilityAndPriority(t *testing.T) {
	e, _ := MustOpenEngine(t, newClock(testNow).Now)
	ctx := context.Background()
	small := fixedCampaign("small", 300, 1_000_000)
	big := fixedCampaign("big", 900, 1_000_000)
	big.Eligibility.MCCs = []string{"5812"}
	pri := fixedCampaign("pri", 100, 1_000_000)
	pri.Priority = 5
	pri.Eligibility.Channel = ChannelMiPay
	pri.Eligibility.BINRanges = []BINRange{{Low: "621226", High: "621226"}}
	pts := fixedCampaign("pts", 0, 0)
	pts.Benefit = Benefit{Kind: BenefitPoints, Multiplier: 4}
	pts.Limits = Limits{}
	other := fixedCampaign("other", 5000, 1_000_000)
	other.IssuerID = "boc-debit"
	for _, c := range []Campaign{small, big, pri, pts, other} {
		mustCreate(t, e, c)
	}
	pick := func(p PaymentContext) string {
		r, ok, err := e.Reserve(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return ""
		}
		return r.CampaignID
	}
	p := payment("x", 6000)
	if got := pick(p); got != "pri" {
		t.Fatalf("priority campaign not chosen: %q", got)
	}
	p = payment("x", 6000)
	p.Token = false
	if got := pick(p); got != "small" {
		t.Fatalf("plain card: got %q, want small (pri is Mi Pay only, big is for MCC 5812)", got)
	}
	p = payment("x", 6000)
	p.Token, p.MCC = false, "5812"
	if got := pick(p); got != "big" {
		t.Fatalf("dining: got %q, want the larger discount", got)
	}
	p = payment("x", 6000)
	p.Token, p.BIN = true, "62122700"
	if got := pick(p); got != "small" {
		t.Fatalf("BIN outside the range: got %q", got)
	}
	if _, err := e.SetStatus(ctx, "", "small", StatusPaused); err != nil {
		t.Fatal(err)
	}
	p = payment("x", 6000)
	p.Token = false
	if got := pick(p); got != "pts" {
		t.Fatalf("small paused: got %q, want the points campaign", got)
	}
	if _, err := e.SetStatus(ctx, "", "small", StatusActive); err != nil {
		t.Fatal(err)
	}
	p = payment("x", 6000)
	p.Token = false
	if got := pick(p); got != "small" {
		t.Fatalf("resumed: got %q", got)
	}
	if _, err := e.SetStatus(ctx, "", "small", StatusEnded); err != nil {
		t.Fatal(err)
	}
	if _, err := e.SetStatus(ctx, "", "small", StatusActive); mipay.ErrorCode(err) != mipay.ECONFLICT {
		t.Fatalf("resuming an ended campaign: %v", err)
	}
	if _, err := e.SetStatus(ctx, "boc-debit", "pts", StatusPaused); mipay.ErrorCode(err) != mipay.ENOTFOUND {
		t.Fatalf("another bank paused a campaign: %v", err)
	}
	p = payment("x", 6000)
	p.IssuerID = "ccb-debit"
	if got := pick(p); got != "" {
		t.Fatalf("a card of another issuer got %q", got)
	}
}

func TestPausedCampaignReservesNothingEvenIfCached(t *testing.T) {
	db := storetest.Open(t, Party, Migrations())
	clk := newClock(testNow)
	a := MustOpenEngineOn(t, db, clk.Now)
	b := MustOpenEngineOn(t, db, clk.Now) // another node
	mustCreate(t, a, fixedCampaign("p", 500, 100_000))
	if err := b.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SetStatus(context.Background(), "", "p", StatusPaused); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := b.Reserve(context.Background(), payment("c", 6000)); err != nil || ok {
		t.Fatalf("node with a stale cache reserved on a paused campaign: %v %v", ok, err)
	}
}

func TestBadCampaignsStoreNothing(t *testing.T) {
	e, _ := MustOpenEngine(t, newClock(testNow).Now)
	mod := func(f func(c *Campaign)) Campaign { c := fixedCampaign("bad", 500, 10_000); f(&c); return c }
	cases := map[string]Campaign{
		"negative amount":     mod(func(c *Campaign) { c.Benefit.AmountMinor = -5 }),
		"negative budget":     mod(func(c *Campaign) { c.Limits.BudgetMinor = -1 }),
		"no budget":           mod(func(c *Campaign) { c.Limits.BudgetMinor = 0 }),
		"end before start":    mod(func(c *Campaign) { c.Window.End = c.Window.Start.Add(-time.Hour) }),
		"unknown currency":    mod(func(c *Campaign) { c.Currency = "XYZ" }),
		"unknown kind":        mod(func(c *Campaign) { c.Benefit.Kind = "cashback" }),
		"percent over 100":    mod(func(c *Campaign) { c.Benefit = Benefit{Kind: BenefitPercent, PercentBP: 10001, CapMinor: 1} }),
		"random min over max": mod(func(c *Campaign) { c.Benefit = Benefit{Kind: BenefitRandom, MinMinor: 9, MaxMinor: 1} }),
		"bad mcc":             mod(func(c *Campaign) { c.Eligibility.MCCs = []string{"58"} }),
		"bad bin range":       mod(func(c *Campaign) { c.Eligibility.BINRanges = []BINRange{{Low: "622000", High: "621000"}} }),
		"bad time zone":       mod(func(c *Campaign) { c.Window.TimeZone = "Mars/Olympus" }),
		"empty id":            mod(func(c *Campaign) { c.ID = "" }),
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := e.Create(context.Background(), c); mipay.ErrorCode(err) != mipay.EINVALID {
				t.Fatalf("create: %v, want an invalid error", err)
			}
		})
	}
	if cs, err := e.List(context.Background(), ""); err != nil || len(cs) != 0 {
		t.Fatalf("stored %d campaigns (err %v)", len(cs), err)
	}
	if _, err := e.Create(context.Background(), fixedCampaign("dup", 1, 10)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Create(context.Background(), fixedCampaign("dup", 1, 10)); mipay.ErrorCode(err) != mipay.ECONFLICT {
		t.Fatalf("second create: %v", err)
	}
}

func TestSeedDefaultsOnce(t *testing.T) {
	e, _ := MustOpenEngine(t, newClock(testNow).Now)
	ctx := context.Background()
	seeded, err := e.SeedDefaults(ctx)
	if err != nil || !seeded {
		t.Fatalf("seed: %v %v", seeded, err)
	}
	cs, _ := e.List(ctx, "")
	banks := map[string]bool{}
	for _, c := range cs {
		banks[c.IssuerID] = true
	}
	if len(banks) < 4 {
		t.Fatalf("defaults cover %d banks", len(banks))
	}
	if _, err := e.SetStatus(ctx, "", cs[0].ID, StatusEnded); err != nil {
		t.Fatal(err)
	}
	if seeded, err := e.SeedDefaults(ctx); err != nil || seeded {
		t.Fatalf("seeded twice: %v %v", seeded, err)
	}
	if c, _ := loadCampaign(ctx, e.db.DB, cs[0].ID, ""); c.Status != StatusEnded {
		t.Fatal("a second seed overwrote a bank's change")
	}
	p := payment("new", 6000)
	p.MCC = "5812"
	p.Time = time.Date(2026, 11, 25, 12, 0, 0, 0, shanghai(t))
	if _, ok, err := e.Reserve(ctx, p); err != nil || !ok {
		t.Fatalf("an ICBC Mi Pay payment of 60 CNY gets no default offer: %v %v", ok, err)
	}
}

// Two nodes, each with its own connections to one store (PostgreSQL when
// MIPAY_TEST_POSTGRES is set, else one SQLite file opened twice), share a
// budget: exactly N granted in all.
func TestBudgetSharedByTwoNodes(t *testing.T) {
	const n, attempts = 25, 1000
	cfg := storetest.Config(t)
	ctx := context.Background()
	open := func() *Engine {
		db, err := store.Open(ctx, cfg, Party, Migrations())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return MustOpenEngineOn(t, db, newClock(testNow).Now)
	}
	a, b := open(), open()
	mustCreate(t, a, fixedCampaign("shared", 700, n*700))
	ids := make(chan string, attempts)
	if err := b.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	var granted atomic.Int64
	var wg sync.WaitGroup
	for i := range attempts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			node := a
			if i%2 == 1 {
				node = b
			}
			r, ok, err := node.Reserve(ctx, payment(fmt.Sprintf("n%d", i), 6000))
			if err != nil {
				t.Errorf("reserve: %v", err)
			}
			if ok {
				granted.Add(1)
				ids <- r.ID
			}
		}()
	}
	wg.Wait()
	close(ids)
	if granted.Load() != n {
		t.Fatalf("two nodes granted %d, the budget covers %d", granted.Load(), n)
	}
	// After reversing k of them (half on each node), exactly k more are
	// granted across both nodes.
	const k = 6
	i := 0
	for id := range ids {
		if i == k {
			break
		}
		node := a
		if i%2 == 1 {
			node = b
		}
		if ok, err := node.Release(ctx, id); err != nil || !ok {
			t.Fatalf("release %s: %v %v", id, ok, err)
		}
		i++
	}
	var more atomic.Int64
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			node := a
			if i%2 == 1 {
				node = b
			}
			if _, ok, err := node.Reserve(ctx, payment(fmt.Sprintf("again-n%d", i), 6000)); err == nil && ok {
				more.Add(1)
			}
		}()
	}
	wg.Wait()
	if more.Load() != k {
		t.Fatalf("after %d releases the two nodes granted %d more", k, more.Load())
	}
}

func TestServiceSeedsOnceAcrossRestarts(t *testing.T) {
	cfg := storetest.Config(t)
	ctx := context.Background()
	s, err := Start(ctx, cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetStatus(ctx, "", "icbc-mipay-10off50", StatusPaused); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Start(ctx, cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cs, err := s.List(ctx, "icbc-debit")
	if err != nil || len(cs) != 1 || cs[0].Status != StatusPaused {
		t.Fatalf("after restart: %+v %v", cs, err)
	}
}
