package tsp

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/emv"
	"github.com/mipay-oss/mipay/store"
)

// card is the test's stand-in for the SE: it makes PBOC CVN 01 cryptograms
// with the token's ICC key, as the payment applet does.
type card struct {
	dpan   string
	psn    int
	expiry string
	mk     emv.Key
	atc    uint16
}

func (f *fixture) cardFor(t testing.TB, ref string) *card {
	t.Helper()
	tok, err := f.vault.Get(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	mk, err := emv.DeriveICCMK(f.keys.imk(tok.IssuerID), tok.DPAN, tok.PSN)
	if err != nil {
		t.Fatal(err)
	}
	return &card{dpan: tok.DPAN, psn: tok.PSN, expiry: tok.Expiry, mk: mk}
}

var testCVR = [4]byte{0x03, 0xA0, 0x00, 0x00}

func bcd12(v int64) (b [6]byte) {
	for i := 5; i >= 0; i-- {
		lo := v % 10
		v /= 10
		hi := v % 10
		v /= 10
		b[i] = byte(hi<<4 | lo)
	}
	return b
}

// tap makes the next authorization request of the card for amount fen.
func (c *card) tap(amount int64, cdcvm bool) AuthRequest {
	c.atc++
	var tx emv.TxData
	tx.Amount = bcd12(amount)
	tx.Country = [2]byte{0x01, 0x56}
	tx.Currency = [2]byte{0x01, 0x56}
	tx.Date = [3]byte{0x26, 0x11, 0x26}
	tx.Type = 0x00
	binary.BigEndian.PutUint32(tx.Unpredictable[:], uint32(c.atc)*2654435761)
	tx.AIP = [2]byte{0x18, 0x00}
	binary.BigEndian.PutUint16(tx.ATC[:], c.atc)
	sk := emv.SessionKeyPBOC(c.mk, c.atc)
	arqc, err := emv.MACAlg3(sk[:], emv.ARQCDataPBOC(&tx, testCVR), emv.PadMethod2)
	if err != nil {
		panic(err)
	}
	ctq := []byte{0x00, 0x00}
	if cdcvm {
		ctq[1] = CTQByte2CDCVM
	}
	return AuthRequest{
		Token: c.dpan, Expiry: c.expiry, PSN: c.psn, EntryMode: "072", AmountMinor: amount, Currency: "156",
		ICC: tx, ARQC: arqc[:], IAD: []byte{0x07, 0x01, 0x01, 0x03, 0xA0, 0x00, 0x00, 0x01}, CTQ: ctq,
	}
}

type authFixture struct {
	*fixture
	a *Authorizer
}

func newAuthFixture(t testing.TB) *authFixture {
	t.Helper()
	f := newFixture(t)
	a, err := NewAuthorizer(context.Background(), AuthorizerConfig{DB: f.vault.db, Keys: f.keys, Ref: f.ref})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return &authFixture{fixture: f, a: a}
}

func TestAuthorizeApproved(t *testing.T) {
	f := newAuthFixture(t)
	ctx := context.Background()
	res, ch := f.mustActiveToken(t, config.Debit, "dev-1")
	c := f.cardFor(t, res.TokenRef)
	req := c.tap(1250, true)
	out, err := f.a.Authorize(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if !out.Approved || out.PAN != ch.PAN || out.PANExpiry != ch.Expiry || out.TokenRef != res.TokenRef || !out.CryptogramValid || out.ATC != 1 {
		t.Fatalf("result %+v", out)
	}
	if out.IssuerID != res.IssuerID || out.TokenAssurance != AssuranceIssuerApproved || out.PAR == "" {
		t.Fatalf("result %+v", out)
	}
	if n, _ := f.vault.DetokenizationCount(ctx, res.TokenRef); n != 1 {
		t.Fatalf("%d de-tokenizations logged", n)
	}
	tok, _ := f.vault.Get(ctx, res.TokenRef)
	if tok.LastATC != 1 {
		t.Fatalf("last ATC %d", tok.LastATC)
	}
	t.Run("ARPC", func(t *testing.T) {
		var arqc [8]byte
		copy(arqc[:], req.ARQC)
		arpc, err := f.a.ARPC(ctx, res.TokenRef, 1, arqc, [2]byte{'0', '0'})
		if err != nil {
			t.Fatal(err)
		}
		want := emv.ARPCMethod1(emv.SessionKeyPBOC(c.mk, 1), arqc, [2]byte{'0', '0'})
		if arpc != want {
			t.Fatalf("ARPC %X, want %X", arpc, want)
		}
		decl, err := f.a.ARPC(ctx, res.TokenRef, 1, arqc, [2]byte{'5', '1'})
		if err != nil || decl != emv.ARPCMethod1(emv.SessionKeyPBOC(c.mk, 1), arqc, [2]byte{'5', '1'}) {
			t.Fatalf("decline ARPC %X %v", decl, err)
		}
		if _, err := f.a.ARPC(ctx, res.TokenRef, 2, arqc, [2]byte{'0', '0'}); err == nil {
			t.Fatal("ARPC for an ATC never verified")
		}
		arqc[0] ^= 1
		if _, err := f.a.ARPC(ctx, res.TokenRef, 1, arqc, [2]byte{'0', '0'}); err == nil {
			t.Fatal("ARPC for another ARQC")
		}
	})
	t.Run("in-app entry mode", func(t *testing.T) {
		r := c.tap(500, true)
		r.EntryMode = "091"
		if out, err := f.a.Authorize(ctx, r); err != nil || !out.Approved {
			t.Fatalf("%+v %v", out, err)
		}
	})
	t.Run("online PIN above the limit", func(t *testing.T) {
		r := c.tap(f.ref.NoCVMLimitMinor+1, false)
		r.OnlinePIN = true
		if out, err := f.a.Authorize(ctx, r); err != nil || !out.Approved {
			t.Fatalf("%+v %v", out, err)
		}
	})
	t.Run("no CDCVM at the limit", func(t *testing.T) {
		if out, err := f.a.Authorize(ctx, c.tap(f.ref.NoCVMLimitMinor, false)); err != nil || !out.Approved {
			t.Fatalf("%+v %v", out, err)
		}
	})
	t.Run("abroad the limit applies to the CNY billing amount", func(t *testing.T) {
		// 100 units of a foreign currency billed above the CNY no-CVM limit.
		r := c.tap(100, false)
		r.BillingAmountMinor = f.ref.NoCVMLimitMinor + 1
		if out, _ := f.a.Authorize(ctx, r); out.Decline != DeclineCVMRequired {
			t.Fatalf("billed above the limit without CDCVM: %+v", out)
		}
		r = c.tap(100, false)
		r.BillingAmountMinor = f.ref.NoCVMLimitMinor
		if out, err := f.a.Authorize(ctx, r); err != nil || !out.Approved {
			t.Fatalf("billed at the limit: %+v %v", out, err)
		}
	})
}

func TestAuthorizeDeclines(t *testing.T) {
	f := newAuthFixture(t)
	ctx := context.Background()
	res, _ := f.mustActiveToken(t, config.Credit, "dev-1")
	c := f.cardFor(t, res.TokenRef)
	other, _ := f.mustActiveToken(t, config.Credit, "dev-2")
	otherCard := f.cardFor(t, other.TokenRef)

	for _, tc := range []struct {
		name string
		req  func() AuthRequest
		want string
	}{
		{"unknown token", func() AuthRequest { r := c.tap(100, true); r.Token = "6290009999999999"; return r }, DeclineUnknownToken},
		{"not digits", func() AuthRequest { r := c.tap(100, true); r.Token = "62900099999x9999"; return r }, DeclineUnknownToken},
		{"expiry mismatch", func() AuthRequest { r := c.tap(100, true); r.Expiry = "2001"; return r }, DeclineExpiryMismatch},
		{"no cryptogram", func() AuthRequest { r := c.tap(100, true); r.ARQC = nil; return r }, DeclineDomain},
		{"e-commerce entry mode", func() AuthRequest { r := c.tap(100, true); r.EntryMode = "812"; return r }, DeclineDomain},
		{"magstripe entry mode", func() AuthRequest { r := c.tap(100, true); r.EntryMode = "902"; return r }, DeclineDomain},
		{"other requestor", func() AuthRequest { r := c.tap(100, true); r.TokenRequestorID = "40010030273"; return r }, DeclineDomain},
		{"wrong cryptogram", func() AuthRequest { r := c.tap(100, true); r.ARQC[0] ^= 1; return r }, DeclineCryptogram},
		{"amount changed after the cryptogram", func() AuthRequest { r := c.tap(100, true); r.AmountMinor = 99; return r }, DeclineCryptogram},
		{"ICC amount tampered", func() AuthRequest { r := c.tap(100, true); r.ICC.Amount = bcd12(99); r.AmountMinor = 99; return r }, DeclineCryptogram},
		{"other PSN", func() AuthRequest { r := c.tap(100, true); r.PSN = 7; return r }, DeclineCryptogram},
		{"bad IAD", func() AuthRequest { r := c.tap(100, true); r.IAD = []byte{0x06, 1, 1}; return r }, DeclineCryptogram},
		{"short ARQC", func() AuthRequest { r := c.tap(100, true); r.ARQC = r.ARQC[:4]; return r }, DeclineCryptogram},
		{"another device's keys", func() AuthRequest {
			r := otherCard.tap(100, true)
			r.Token, r.Expiry = c.dpan, c.expiry
			r.ICC.ATC = [2]byte{0x7F, 0x00}
			return r
		}, DeclineCryptogram},
		{"no CDCVM above the limit", func() AuthRequest { return c.tap(f.ref.NoCVMLimitMinor+1, false) }, DeclineCVMRequired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := f.a.Authorize(ctx, tc.req())
			if err != nil {
				t.Fatal(err)
			}
			if out.Approved || out.Decline != tc.want || out.PAN != "" {
				t.Fatalf("result %+v, want decline %s", out, tc.want)
			}
		})
	}
	if n, _ := f.vault.DetokenizationCount(ctx, res.TokenRef); n != 0 {
		t.Fatalf("%d de-tokenizations logged for declines", n)
	}
}

func TestAuthorizeReplay(t *testing.T) {
	f := newAuthFixture(t)
	ctx := context.Background()
	res, _ := f.mustActiveToken(t, config.Debit, "dev-1")
	c := f.cardFor(t, res.TokenRef)
	first := c.tap(1250, true)
	if out, _ := f.a.Authorize(ctx, first); !out.Approved {
		t.Fatalf("first: %+v", out)
	}
	t.Run("same message again", func(t *testing.T) {
		out, err := f.a.Authorize(ctx, first)
		if err != nil || out.Approved || out.Decline != DeclineReplay {
			t.Fatalf("%+v %v", out, err)
		}
	})
	t.Run("replay on a node with a cold cache", func(t *testing.T) {
		a2, err := NewAuthorizer(ctx, AuthorizerConfig{DB: f.vault.db, Keys: f.keys, Ref: f.ref})
		if err != nil {
			t.Fatal(err)
		}
		defer a2.Close()
		out, err := a2.Authorize(ctx, first)
		if err != nil || out.Approved || out.Decline != DeclineReplay {
			t.Fatalf("%+v %v", out, err)
		}
	})
	t.Run("lower ATC", func(t *testing.T) {
		hi := c.tap(100, true)
		c.atc -= 3
		lo := c.tap(100, true)
		if out, _ := f.a.Authorize(ctx, hi); !out.Approved {
			t.Fatalf("hi: %+v", out)
		}
		if out, _ := f.a.Authorize(ctx, lo); out.Decline != DeclineReplay {
			t.Fatalf("lo: %+v", out)
		}
	})
	t.Run("CVM decline consumes the ATC", func(t *testing.T) {
		c.atc += 10
		r := c.tap(f.ref.NoCVMLimitMinor+1, false)
		if out, _ := f.a.Authorize(ctx, r); out.Decline != DeclineCVMRequired {
			t.Fatalf("%+v", out)
		}
		r.OnlinePIN = true // same cryptogram, now with a PIN flag
		if out, _ := f.a.Authorize(ctx, r); out.Decline != DeclineReplay {
			t.Fatalf("%+v", out)
		}
	})
	t.Run("concurrent same ATC on two nodes", func(t *testing.T) {
		a2, err := NewAuthorizer(ctx, AuthorizerConfig{DB: f.vault.db, Keys: f.keys, Ref: f.ref})
		if err != nil {
			t.Fatal(err)
		}
		defer a2.Close()
		for i := 0; i < 20; i++ {
			r := c.tap(100, true)
			var approved atomic.Int32
			var wg sync.WaitGroup
			for _, a := range []*Authorizer{f.a, a2, f.a, a2} {
				wg.Add(1)
				go func(a *Authorizer) {
					defer wg.Done()
					if out, err := a.Authorize(ctx, r); err == nil && out.Approved {
						approved.Add(1)
					}
				}(a)
			}
			wg.Wait()
			if approved.Load() != 1 {
				t.Fatalf("round %d: %d approvals of one cryptogram", i, approved.Load())
			}
		}
	})
}

// TestATCSurvivesRestart: an ATC accepted before the Authorizer (and its
// store) closed is refused after it reopens the store.
func TestATCSurvivesRestart(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	res, _ := f.mustActiveToken(t, config.Debit, "dev-1")
	c := f.cardFor(t, res.TokenRef)
	cfg := AuthorizerConfig{Store: store.Config{Dir: filepath.Dir(f.vault.db.String())}, Keys: f.keys, Ref: f.ref}
	if _, err := os.Stat(filepath.Join(cfg.Store.Dir, PartyName+".db")); err != nil {
		t.Skipf("store is not a local SQLite file: %v", err)
	}
	a, err := NewAuthorizer(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	req := c.tap(1250, true)
	if out, err := a.Authorize(ctx, req); err != nil || !out.Approved {
		t.Fatalf("%+v %v", out, err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	a2, err := NewAuthorizer(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a2.Close()
	if out, err := a2.Authorize(ctx, req); err != nil || out.Decline != DeclineReplay {
		t.Fatalf("replay after restart: %+v %v", out, err)
	}
	if out, err := a2.Authorize(ctx, c.tap(1250, true)); err != nil || !out.Approved {
		t.Fatalf("next ATC after restart: %+v %v", out, err)
	}
}

func TestAuthorizeTokenStates(t *testing.T) {
	f := newAuthFixture(t)
	ctx := context.Background()
	res, _ := f.mustActiveToken(t, config.Debit, "dev-1")
	c := f.cardFor(t, res.TokenRef)
	if out, _ := f.a.Authorize(ctx, c.tap(100, true)); !out.Approved {
		t.Fatalf("%+v", out) // warms the cache
	}
	if _, err := f.svc.Lifecycle(ctx, res.TokenRef, ActionSuspend, CausedByCardholder, "DEVICE_LOST"); err != nil {
		t.Fatal(err)
	}
	f.a.Invalidate(res.TokenRef) // what the token.state_changed subscription does
	if out, _ := f.a.Authorize(ctx, c.tap(100, true)); out.Decline != DeclineTokenSuspended {
		t.Fatalf("suspended: %+v", out)
	}
	f.svc.Lifecycle(ctx, res.TokenRef, ActionResume, CausedByCardholder, "FOUND")
	f.a.Invalidate(res.TokenRef)
	if out, _ := f.a.Authorize(ctx, c.tap(100, true)); !out.Approved {
		t.Fatalf("resumed: %+v", out)
	}
	f.svc.Lifecycle(ctx, res.TokenRef, ActionDelete, CausedByCardholder, "REMOVED")
	f.a.Invalidate(res.TokenRef)
	if out, _ := f.a.Authorize(ctx, c.tap(100, true)); out.Decline != DeclineTokenDeactivated {
		t.Fatalf("deleted: %+v", out)
	}

	t.Run("inactive", func(t *testing.T) {
		_, ch := demoCard(t, f.ref, config.Credit)
		f.issuer.decision[ch.PAN] = DecisionResponse{Decision: DecisionRequireAdditional}
		defer delete(f.issuer.decision, ch.PAN)
		r, err := f.svc.Tokenize(ctx, f.tokenizeReq(t, cardOf(ch), "dev-3"))
		if err != nil {
			t.Fatal(err)
		}
		if out, _ := f.a.Authorize(ctx, f.cardFor(t, r.TokenRef).tap(100, true)); out.Decline != DeclineTokenInactive {
			t.Fatalf("%+v", out)
		}
	})
	t.Run("expired", func(t *testing.T) {
		r, _ := f.mustActiveToken(t, config.Credit, "dev-4")
		c := f.cardFor(t, r.TokenRef)
		end, _ := expiryEnd(c.expiry)
		a2, err := NewAuthorizer(ctx, AuthorizerConfig{DB: f.vault.db, Keys: f.keys, Ref: f.ref, Now: func() time.Time { return end }})
		if err != nil {
			t.Fatal(err)
		}
		defer a2.Close()
		if out, _ := a2.Authorize(ctx, c.tap(100, true)); out.Decline != DeclineTokenExpired {
			t.Fatalf("%+v", out)
		}
	})
	t.Run("cache TTL backstop", func(t *testing.T) {
		r, _ := f.mustActiveToken(t, config.Credit, "dev-5")
		c := f.cardFor(t, r.TokenRef)
		now := time.Now()
		var clock atomic.Int64
		clock.Store(now.UnixNano())
		a2, err := NewAuthorizer(ctx, AuthorizerConfig{DB: f.vault.db, Keys: f.keys, Ref: f.ref, CacheTTL: time.Second,
			Now: func() time.Time { return time.Unix(0, clock.Load()) }})
		if err != nil {
			t.Fatal(err)
		}
		defer a2.Close()
		if out, _ := a2.Authorize(ctx, c.tap(100, true)); !out.Approved {
			t.Fatalf("%+v", out)
		}
		f.svc.Lifecycle(ctx, r.TokenRef, ActionSuspend, CausedByIssuer, "FRAUD") // event lost: no Invalidate
		clock.Add(int64(2 * time.Second))
		if out, _ := a2.Authorize(ctx, c.tap(100, true)); out.Decline != DeclineTokenSuspended {
			t.Fatalf("after TTL: %+v", out)
		}
	})
}

// BenchmarkAuthorize drives Authorize from many goroutines, each tapping
// its own token in ATC order (a token's taps are sequential in reality). The
// time includes making the request's ARQC on the "card" (~2 µs).
func BenchmarkAuthorize(b *testing.B) {
	f := newAuthFixture(b)
	ctx := context.Background()
	const parallelism = 64 // × GOMAXPROCS goroutines
	tokens := parallelism * runtime.GOMAXPROCS(0)
	cards := make([]*card, tokens)
	for i := range cards {
		res, _ := f.mustActiveToken(b, config.Debit, fmt.Sprintf("dev-bench-%d", i))
		cards[i] = f.cardFor(b, res.TokenRef)
	}
	var next atomic.Int64
	// The switch has many authorizations in flight (pipelined links), so
	// the ATC writes of concurrent requests share a commit.
	b.SetParallelism(parallelism)
	b.ReportAllocs()
	b.ResetTimer()
	before, reqs0 := f.a.w.Stats(), f.a.atc.reqs.Load()
	cpu0 := cpuTime()
	defer func() {
		st := f.a.w.Stats()
		if n := st.Batches - before.Batches; n > 0 {
			b.ReportMetric(float64(f.a.atc.reqs.Load()-reqs0)/float64(n), "auths/commit")
		}
		// Process CPU (all threads, the SQLite writer included) per
		// authorization: what the 2-core budget is spent on, unlike ns/op,
		// which on a shared disk is mostly fsync wait.
		b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
	}()
	b.RunParallel(func(pb *testing.PB) {
		c := cards[next.Add(1)-1]
		for pb.Next() {
			out, err := f.a.Authorize(ctx, c.tap(1250, true))
			if err != nil || !out.Approved {
				b.Errorf("%+v %v", out, err)
				return
			}
		}
	})
}

func TestPendingSetRotation(t *testing.T) {
	p := newPendingSet(time.Second, 8)
	now := time.Now()
	k := func(i int) pendingKey { return pendingKey{"r", uint16(i)} }
	p.put(k(1), pendingARQC{psn: 1}, now)
	if _, ok := p.get(k(1)); !ok {
		t.Fatal("fresh entry missing")
	}
	p.put(k(2), pendingARQC{}, now.Add(1500*time.Millisecond)) // rotates: 1 is previous
	if _, ok := p.get(k(1)); !ok {
		t.Fatal("entry gone after one window")
	}
	p.put(k(3), pendingARQC{}, now.Add(3*time.Second)) // rotates again: 1 dropped
	if _, ok := p.get(k(1)); ok {
		t.Fatal("entry kept after two windows")
	}
	for i := 10; i < 100; i++ {
		p.put(k(i), pendingARQC{}, now.Add(3*time.Second))
	}
	if n := len(p.cur) + len(p.prev); n > 8 {
		t.Fatalf("%d entries, bound 8", n)
	}
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestLogIDs(t *testing.T) {
	g := &logIDs{node: 5}
	now := time.UnixMilli(1_800_000_000_000)
	prev := int64(-1)
	for i := 0; i < 10000; i++ { // more than 4096 in one millisecond
		id := g.next(now)
		if id <= prev {
			t.Fatalf("id %d not above %d at %d", id, prev, i)
		}
		if (uint64(id)>>12)&0x3FF != 5 {
			t.Fatalf("node bits of %x", id)
		}
		prev = id
	}
	if id := g.next(now.Add(-time.Second)); id <= prev {
		t.Fatal("clock going back breaks the order")
	}
	other := &logIDs{node: 6}
	if other.next(now) == (&logIDs{node: 5}).next(now) {
		t.Fatal("two nodes made the same id")
	}
}

func TestAuthorizerNodesDiffer(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	seen := map[uint64]bool{}
	for i := 0; i < 3; i++ {
		a, err := NewAuthorizer(ctx, AuthorizerConfig{DB: f.vault.db, Keys: f.keys, Ref: f.ref})
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		if seen[a.logIDs.node] {
			t.Fatalf("node %d given twice", a.logIDs.node)
		}
		seen[a.logIDs.node] = true
	}
}

func TestDetokenize(t *testing.T) {
	f := newAuthFixture(t)
	ctx := context.Background()
	res, ch := f.mustActiveToken(t, config.Credit, "dev-1")
	if _, err := f.svc.Lifecycle(ctx, res.TokenRef, ActionSuspend, CausedByCardholder, "DEVICE_LOST"); err != nil {
		t.Fatal(err)
	}
	pan, exp, err := f.a.Detokenize(ctx, res.TokenRef, "network-1", "reversal")
	if err != nil || pan != ch.PAN || exp != ch.Expiry {
		t.Fatalf("%s %s %v", MaskPAN(pan), exp, err)
	}
	if n, _ := f.vault.DetokenizationCount(ctx, res.TokenRef); n != 1 {
		t.Fatalf("%d log entries", n)
	}
	if _, _, err := f.a.Detokenize(ctx, "DTSP"+strings.Repeat("0", 32), "", "reversal"); err == nil {
		t.Fatal("unknown token de-tokenized")
	}
}

func TestTokenCacheBound(t *testing.T) {
	c := newTokenCache(3, time.Minute)
	now := time.Now()
	for i := 0; i < 10; i++ {
		c.put(newCacheEntry(&Token{Ref: fmt.Sprintf("r%d", i), DPAN: fmt.Sprintf("d%d", i), Expiry: "3012"}, now), c.generation())
	}
	if c.len() != 3 || len(c.refs) != 3 {
		t.Fatalf("cache holds %d/%d, bound 3", c.len(), len(c.refs))
	}
	gen := c.generation()
	c.drop("r9")
	c.put(newCacheEntry(&Token{Ref: "r9", DPAN: "d9", Expiry: "3012"}, now), gen)
	if _, ok := c.get("d9", now); ok {
		t.Fatal("a record read before a drop was cached after it")
	}
}
