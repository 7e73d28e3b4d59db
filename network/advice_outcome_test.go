package network

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/store"
	"github.com/mipay-oss/mipay/store/storetest"
	"github.com/prometheus/client_golang/prometheus"
)

// adviceOutcome is an advice row's end: state, why, the issuer's DE39, and
// the run of build failures.
type adviceOutcome struct {
	done, buildFailures, attempts int
	lastError, issuerRC, pan      string
}

func adviceOutcomeOf(t *testing.T, db *store.DB) adviceOutcome {
	t.Helper()
	var o adviceOutcome
	if err := db.DB.QueryRow(`SELECT done, build_failures, attempts, last_error, issuer_rc, pan FROM issuer_advices`).
		Scan(&o.done, &o.buildFailures, &o.attempts, &o.lastError, &o.issuerRC, &o.pan); err != nil {
		t.Fatal(err)
	}
	return o
}

// advicesEnded reads mipay_network_advices_total{outcome} from reg.
func advicesEnded(t *testing.T, reg *prometheus.Registry, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "mipay_network_advices_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no mipay_network_advices_total{outcome=%q} exported", outcome)
	return 0
}

// reversalSent reports whether the switch's one queued reversal was
// acknowledged by the issuer.
func reversalSent(t *testing.T, db *store.DB) bool {
	t.Helper()
	var done int
	if err := db.DB.QueryRow(`SELECT done FROM issuer_reversals`).Scan(&done); err != nil {
		t.Fatal(err)
	}
	return done == 1
}

// count counts mti in the messages the issuer got.
func count(mtis []string, want ...string) int {
	n := 0
	for _, m := range mtis {
		for _, w := range want {
			if m == w {
				n++
			}
		}
	}
	return n
}

// A plain card's advice whose sealed PAN the HSM can no longer open (here:
// the switch restarted with another HSM, its key lost) can never be built.
// After AdviceBuildAttempts tries it is marked failed with the reason, is
// not tried again, no longer holds back the acquirer's reversal (which goes
// to the issuer), is counted, and is listed for operators.
func TestStandInAdviceUnbuildableFails(t *testing.T) {
	db := storetest.Open(t, "network", Migrations())
	link := &adviceIssuer{}
	h := standInSwitchConfig(t, db, func(string) (IssuerLink, bool) { return link, true }, nil)
	orig := h.plainRequest(6000, h.tokens.pan)
	h.approve(t, orig)
	h.reverse(t, orig)
	if err := h.sw.Close(); err != nil {
		t.Fatal(err)
	}
	if reversalSent(t, db) {
		t.Fatal("the reversal went before the advice")
	}
	before := link.mtis()
	link.set("00") // the issuer is back: the advice would be acknowledged
	reg := prometheus.NewRegistry()
	h2 := standInSwitchConfig(t, db, func(string) (IssuerLink, bool) { return link, true }, func(c *Config) {
		c.AdviceBuildAttempts = 3
		c.Metrics = reg
	})
	defer h2.sw.Close()
	waitFor(t, func() bool { return adviceOutcomeOf(t, db).done == adviceFailed })
	waitFor(t, func() bool { return reversalSent(t, db) })
	o := adviceOutcomeOf(t, db)
	if o.buildFailures != 3 || !strings.Contains(o.lastError, "cannot be built") || !strings.Contains(o.lastError, "PAN") || o.pan != "" {
		t.Fatalf("failed advice row %+v: 3 build failures, the reason, the sealed PAN forgotten", o)
	}
	if strings.Contains(o.lastError, h.tokens.pan) {
		t.Fatal("the reason holds the PAN")
	}
	time.Sleep(200 * time.Millisecond)
	after := link.mtis()[len(before):]
	if count(after, "0220", "0221") != 0 || count(after, "0400") != 1 {
		t.Fatalf("after the restart the issuer got %v: no advice (it cannot be built), the reversal once", after)
	}
	if n := advicesEnded(t, reg, outcomeFailed); n != 1 {
		t.Fatalf("advices failed counted %v", n)
	}
	if n := advicesEnded(t, reg, outcomeRefused); n != 0 {
		t.Fatalf("advices refused counted %v", n)
	}
	list, err := h2.sw.UnsettledAdvices(context.Background(), 10)
	if err != nil || len(list) != 1 {
		t.Fatalf("unsettled advices %+v %v", list, err)
	}
	u := list[0]
	if u.State != "failed" || u.TransactionID != transactionID(dupKey(orig)) || u.IssuerID != "icbc-debit" || u.AmountMinor != 6000 ||
		u.STAN != orig.String(11) || u.Reason != o.lastError || u.IssuerRC != "" {
		t.Fatalf("unsettled advice %+v", u)
	}
}

// flaky fails each call with the error set (nil: the call goes through)
// and counts the calls.
type flaky struct {
	mu    sync.Mutex
	err   error
	calls int
}

// call counts a call and returns the error it fails with.
func (f *flaky) call() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return f.err
}

func (f *flaky) set(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

func (f *flaky) tries() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// flakyTokens is a TSP whose de-tokenization fails while err is set.
type flakyTokens struct {
	TokenService
	flaky
}

func (f *flakyTokens) Detokenize(ctx context.Context, ref, requester, purpose string) (string, string, error) {
	if err := f.call(); err != nil {
		return "", "", err
	}
	return f.TokenService.Detokenize(ctx, ref, requester, purpose)
}

// flakyTSPSwitch is a stand-in switch whose issuer is link and whose TSP
// fails de-tokenizations with err (nil: none) until tokens.set changes it;
// mutate (when not nil) changes the rest of its config.
func flakyTSPSwitch(t *testing.T, db *store.DB, link *adviceIssuer, err error, mutate func(*Config)) (h *harness, tokens *flakyTokens) {
	t.Helper()
	tokens = &flakyTokens{flaky: flaky{err: err}}
	h = standInSwitchConfig(t, db, func(string) (IssuerLink, bool) { return link, true }, func(c *Config) {
		tokens.TokenService = c.Tokens
		c.Tokens = tokens
		if mutate != nil {
			mutate(c)
		}
	})
	return h, tokens
}

// A token gone from the vault: the advice fails after the default bound
// (DefaultAdviceBuildAttempts), and the reversal it held back goes.
func TestStandInAdviceTokenGoneFails(t *testing.T) {
	db := storetest.Open(t, "network", Migrations())
	link := &adviceIssuer{adviceRC: "00"}
	reg := prometheus.NewRegistry()
	h, tokens := flakyTSPSwitch(t, db, link, mipay.Errorf(mipay.ENOTFOUND, "no token REF-1234"), func(c *Config) {
		c.Writer.Registerer = reg // the party's registry when Metrics is not set
	})
	defer h.sw.Close()
	orig := h.request(6000)
	h.approve(t, orig)
	h.reverse(t, orig)
	waitFor(t, func() bool { return adviceOutcomeOf(t, db).done == adviceFailed })
	if o := adviceOutcomeOf(t, db); o.buildFailures != DefaultAdviceBuildAttempts || !strings.Contains(o.lastError, "no token") {
		t.Fatalf("failed advice row %+v", o)
	}
	// The reversal is no longer held back: it is tried. It needs the PAN
	// too, so it is retried until the vault answers again (a reversal is
	// never given up), and then goes.
	waitFor(t, func() bool {
		var attempts int
		return db.DB.QueryRow(`SELECT attempts FROM issuer_reversals`).Scan(&attempts) == nil && attempts > 0
	})
	tokens.set(nil)
	waitFor(t, func() bool { return reversalSent(t, db) })
	if got := link.mtis(); count(got, "0220", "0221") != 0 || count(got, "0400") != 1 {
		t.Fatalf("the issuer got %v: no advice, the reversal once", got)
	}
	if n := advicesEnded(t, reg, outcomeFailed); n != 1 {
		t.Fatalf("advices failed counted %v", n)
	}
}

// A dependency that is down (the TSP unavailable) is not the advice's
// fault: however long it lasts, the advice stays pending, its build
// failures uncounted, and is sent once the TSP is back.
func TestStandInAdviceWaitsForTSP(t *testing.T) {
	db := storetest.Open(t, "network", Migrations())
	link := &adviceIssuer{adviceRC: "00"}
	h, tokens := flakyTSPSwitch(t, db, link, mipay.Errorf(mipay.EUNAVAILABLE, "TSP store down"), func(c *Config) { c.AdviceBuildAttempts = 2 })
	defer h.sw.Close()
	h.approve(t, h.request(6000))
	waitFor(t, func() bool { return tokens.tries() >= 5 })
	if o := adviceOutcomeOf(t, db); o.done != advicePending || o.buildFailures != 0 || !strings.Contains(o.lastError, "TSP store down") {
		t.Fatalf("advice row while the TSP is down %+v", o)
	}
	tokens.set(nil)
	waitFor(t, func() bool { return adviceOutcomeOf(t, db).done == adviceAcked })
	if got := link.mtis(); len(got) != 1 || got[0] != "0220" {
		t.Fatalf("the issuer got %v", got)
	}
}

// An advice the issuer refuses (any final DE39 but 00) is recorded as
// refused with the issuer's code, counted, and listed for operators; an
// acknowledged one is counted as such and not listed.
func TestStandInAdviceRefusedVisible(t *testing.T) {
	db := storetest.Open(t, "network", Migrations())
	link := &adviceIssuer{adviceRC: "14"}
	reg := prometheus.NewRegistry()
	h := standInSwitchConfig(t, db, func(string) (IssuerLink, bool) { return link, true }, func(c *Config) { c.Metrics = reg })
	defer h.sw.Close()
	orig := h.request(6000)
	h.approve(t, orig)
	waitFor(t, func() bool { return adviceOutcomeOf(t, db).done == adviceRefused })
	if o := adviceOutcomeOf(t, db); o.issuerRC != "14" || !strings.Contains(o.lastError, "14") || o.attempts != 1 {
		t.Fatalf("refused advice row %+v", o)
	}
	if n := advicesEnded(t, reg, outcomeRefused); n != 1 {
		t.Fatalf("advices refused counted %v", n)
	}
	list, err := h.sw.UnsettledAdvices(context.Background(), 10)
	if err != nil || len(list) != 1 || list[0].State != "refused" || list[0].IssuerRC != "14" ||
		list[0].TransactionID != transactionID(dupKey(orig)) || list[0].Attempts != 1 {
		t.Fatalf("unsettled advices %+v %v", list, err)
	}
	t.Run("admin API", func(t *testing.T) {
		srv := httptest.NewServer(h.sw.AdminHandler("s3cret"))
		defer srv.Close()
		get := func(query, auth string) (int, string) {
			return adminDo(t, "GET", srv.URL+"/v1/admin/advices"+query, auth, "")
		}
		code, body := get("", "s3cret")
		var got struct{ Advices []UnsettledAdvice }
		if err := json.Unmarshal([]byte(body), &got); code != 200 || err != nil || len(got.Advices) != 1 ||
			got.Advices[0].State != "refused" || got.Advices[0].IssuerRC != "14" || got.Advices[0].TransactionID != list[0].TransactionID {
			t.Fatalf("%d %s", code, body)
		}
		if code, body := get("?limit=1", "s3cret"); code != 200 || !strings.Contains(body, `"issuerRc":"14"`) {
			t.Fatalf("limit=1: %d %s", code, body)
		}
		for _, q := range []string{"?limit=0", "?limit=1001", "?limit=x", "?limit=99999999999"} {
			if code, body := get(q, "s3cret"); code != 400 {
				t.Errorf("%s: %d %s", q, code, body)
			}
		}
		if code, _ := get("", ""); code != 401 {
			t.Errorf("no secret: %d", code)
		}
		if code, _ := get("", "wrong"); code != 401 {
			t.Errorf("wrong secret: %d", code)
		}
	})
	link.set("00")
	h.approve(t, h.request(7000))
	waitFor(t, func() bool { return advicesEnded(t, reg, outcomeAcknowledged) == 1 })
	if list, _ := h.sw.UnsettledAdvices(context.Background(), 10); len(list) != 1 {
		t.Fatalf("an acknowledged advice is listed: %+v", list)
	}
	if n := advicesEnded(t, reg, outcomeRefused); n != 1 {
		t.Fatalf("advices refused counted %v after an acknowledgement", n)
	}
	if _, err := h.sw.UnsettledAdvices(context.Background(), 0); mipay.ErrorCode(err) != mipay.EINVALID {
		t.Fatalf("limit 0: %v", err)
	}
}
