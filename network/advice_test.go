package network

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/hsm"
	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/store"
	"github.com/mipay-oss/mipay/store/storetest"
)

// adviceIssuer is an issuer link a test scripts: it never answers
// authorizations (the switch stands in), answers advices with adviceRC and
// reversals with 00, and keeps every message it got.
type adviceIssuer struct {
	mu       sync.Mutex
	adviceRC string // "" : no answer (down)
	revDown  bool
	got      []*iso8583.Message
}

func (f *adviceIssuer) Send(ctx context.Context, req *iso8583.Message) (*iso8583.Message, error) {
	f.mu.Lock()
	f.got = append(f.got, req.Clone())
	rc, revDown := f.adviceRC, f.revDown
	f.mu.Unlock()
	resp := req.Response(2, 3, 4, 7, 11, 32, 37, 41, 49, 90)
	switch req.MTI() {
	case "0100", "0200":
		return nil, errors.New("issuer host down")
	case "0120", "0121", "0220", "0221":
		if rc == "" {
			return nil, errors.New("issuer host down")
		}
		resp.SetMTI(iso8583.ResponseMTI(req.MTI()[:3] + "0"))
		resp.SetString(39, rc)
	default:
		if revDown {
			return nil, errors.New("issuer host down")
		}
		resp.SetString(39, "00")
	}
	return resp, nil
}

func (f *adviceIssuer) set(rc string) {
	f.mu.Lock()
	f.adviceRC = rc
	f.mu.Unlock()
}

// mtis lists the MTIs of the messages the issuer got, in order, leaving out
// the authorizations.
func (f *adviceIssuer) mtis() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, m := range f.got {
		if m.MTI() != "0100" && m.MTI() != "0200" {
			out = append(out, m.MTI())
		}
	}
	return out
}

func (f *adviceIssuer) last(mti string) *iso8583.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.got) - 1; i >= 0; i-- {
		if f.got[i].MTI() == mti {
			return f.got[i]
		}
	}
	return nil
}

// standInSwitch is a switch over db whose issuer (link) never answers
// authorizations and stands in up to 100 CNY.
func standInSwitch(t *testing.T, db *store.DB, link *adviceIssuer) *harness {
	t.Helper()
	return standInSwitchWith(t, db, func(string) (IssuerLink, bool) { return link, true })
}

// standInSwitchWith is standInSwitch with the issuer links given.
func standInSwitchWith(t *testing.T, db *store.DB, issuers func(string) (IssuerLink, bool)) *harness {
	t.Helper()
	return standInSwitchConfig(t, db, issuers, nil)
}

// standInSwitchConfig is standInSwitchWith with the switch's config
// changed by mutate (when not nil) before the switch starts.
func standInSwitchConfig(t *testing.T, db *store.DB, issuers func(string) (IssuerLink, bool), mutate func(*Config)) *harness {
	t.Helper()
	ref, err := config.Default()
	if err != nil {
		t.Fatal(err)
	}
	is, _ := ref.Issuer("icbc-debit")
	is.StandIn = config.StandIn{Enabled: true, MaxMinor: 10_000}
	h := &harness{ref: ref, bus: &fakeBus{},
		tokens: &fakeTokens{token: luhnComplete(is.TokenBINs[0] + "123456789"), pan: is.Cardholders[0].PAN, state: "ACTIVE"}}
	cfg := Config{Ref: ref, DB: db, Tokens: h.tokens, Bus: h.bus, ReversalRetry: 20 * time.Millisecond,
		Issuers: issuers, PANSealer: testSealer(t)}
	if mutate != nil {
		mutate(&cfg)
	}
	sw, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.sw = sw
	return h
}

// reverse has the acquirer reverse orig (0400, DE90 naming it); the switch
// answers 00 at once.
func (h *harness) reverse(t *testing.T, orig *iso8583.Message) {
	t.Helper()
	de90, _ := iso8583.OriginalData{MTI: "0200", STAN: orig.String(11), TransmissionTime: orig.String(7), AcquirerID: orig.String(32)}.Format()
	rev := orig.Clone()
	rev.SetMTI("0400")
	rev.Unset(55)
	rev.SetString(11, "900001")
	rev.SetString(90, de90)
	if r := h.send(t, rev); r.String(39) != "00" {
		t.Fatalf("reversal rc %s", r.String(39))
	}
}

// plainRequest is request(amount) paid with the plain card pan: DE2 is the
// PAN itself, and there is no cryptogram.
func (h *harness) plainRequest(amount int64, pan string) *iso8583.Message {
	req := h.request(amount)
	req.SetString(2, pan)
	req.Unset(55)
	return req
}

// approve sends req and fails the test unless the switch approved it (here:
// stood in).
func (h *harness) approve(t *testing.T, req *iso8583.Message) {
	t.Helper()
	if r := h.send(t, req); r.String(39) != "00" {
		t.Fatalf("rc %s", r.String(39))
	}
}

type adviceRow struct {
	mti, pan, lastError string
	attempts, done      int
}

func advices(t *testing.T, db *store.DB) []adviceRow {
	t.Helper()
	rows, err := db.DB.Query(`SELECT mti, pan, last_error, attempts, done FROM issuer_advices ORDER BY created_at`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []adviceRow
	for rows.Next() {
		var r adviceRow
		if err := rows.Scan(&r.mti, &r.pan, &r.lastError, &r.attempts, &r.done); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// A stand-in approval is advised to the issuer: 0220 first, 0221 on every
// retry while the issuer does not acknowledge, then nothing more once it
// answered 0230 00. The advice carries the PAN, the original's identity
// (DE90, DE41, DE37) and the approval code the acquirer got.
func TestStandInAdvised(t *testing.T) {
	db := storetest.Open(t, "network", Migrations())
	link := &adviceIssuer{}
	h := standInSwitch(t, db, link)
	defer h.sw.Close()
	req := h.request(6000)
	r := h.send(t, req)
	if r.String(39) != "00" || len(r.String(38)) != 6 || r.String(38)[0] != 'S' {
		t.Fatalf("stand-in answer: rc %s code %q", r.String(39), r.String(38))
	}
	waitFor(t, func() bool { return len(link.mtis()) >= 3 })
	link.set("00")
	waitFor(t, func() bool { a := advices(t, db); return len(a) == 1 && a[0].done == adviceAcked })
	n := len(link.mtis())
	time.Sleep(300 * time.Millisecond)
	got := link.mtis()
	if len(got) != n {
		t.Fatalf("advice sent again after the issuer acknowledged it: %v", got)
	}
	if got[0] != "0220" {
		t.Fatalf("first advice MTI %s, want 0220 (all: %v)", got[0], got)
	}
	for _, m := range got[1:] {
		if m != "0221" {
			t.Fatalf("a retried advice is %s, want 0221 (all: %v)", m, got)
		}
	}
	m := link.last("0221")
	de90, _ := iso8583.OriginalData{MTI: "0200", STAN: req.String(11), TransmissionTime: req.String(7), AcquirerID: req.String(32)}.Format()
	if m.String(2) != h.tokens.pan || m.String(38) != r.String(38) || m.String(39) != "00" || m.String(90) != de90 ||
		m.String(41) != req.String(41) || m.String(37) != req.String(37) || m.String(4) != req.String(4) || m.String(11) != req.String(11) {
		t.Fatalf("advice fields: DE2 %s DE38 %s DE39 %s DE90 %s DE41 %s DE37 %s DE4 %s", m.String(2), m.String(38), m.String(39),
			m.String(90), m.String(41), m.String(37), m.String(4))
	}
	if a := advices(t, db)[0]; a.attempts != n || a.pan != "" {
		t.Fatalf("advice row %+v after %d sends (a token's PAN is never stored)", a, n)
	}
	// A duplicate of the acquirer's request is answered from the store and
	// owes no second advice.
	if d := h.send(t, req); d.String(38) != r.String(38) {
		t.Fatalf("duplicate answered %s", d.String(38))
	}
	if a := advices(t, db); len(a) != 1 {
		t.Fatalf("%d advices for one stand-in approval", len(a))
	}
	// Only stand-in approvals are advised: above the limit the answer is 91.
	if r := h.send(t, h.request(20_000)); r.String(39) != "91" {
		t.Fatalf("above the stand-in limit: %s", r.String(39))
	}
	if a := advices(t, db); len(a) != 1 {
		t.Fatalf("%d advices after a 91", len(a))
	}
}

// The advice is queued in the write that records the approval: a switch
// closed before the issuer came back sends it after its restart.
func TestStandInAdviceSurvivesRestart(t *testing.T) {
	db := storetest.Open(t, "network", Migrations())
	link := &adviceIssuer{}
	h := standInSwitch(t, db, link)
	h.approve(t, h.request(6000))
	if err := h.sw.Close(); err != nil {
		t.Fatal(err)
	}
	if a := advices(t, db); len(a) != 1 || a[0].done != advicePending {
		t.Fatalf("advices before the restart: %+v", a)
	}
	before := len(link.mtis())
	link.set("00")
	h2 := standInSwitch(t, db, link)
	defer h2.sw.Close()
	waitFor(t, func() bool { a := advices(t, db); return len(a) == 1 && a[0].done == adviceAcked })
	if got := link.mtis(); len(got) != before+1 {
		t.Fatalf("after the restart the issuer got %v (had %d)", got, before)
	}
}

// The acquirer reverses a stand-in approval while the issuer is away: the
// reversal is held back until the issuer acknowledged the advice, so the
// issuer learns of the approval before it is asked to release it.
func TestStandInReversalAfterAdvice(t *testing.T) {
	db := storetest.Open(t, "network", Migrations())
	link := &adviceIssuer{}
	h := standInSwitch(t, db, link)
	defer h.sw.Close()
	orig := h.request(6000)
	h.approve(t, orig)
	h.reverse(t, orig)
	waitFor(t, func() bool { return len(link.mtis()) >= 3 })
	for _, m := range link.mtis() {
		if m == "0400" {
			t.Fatalf("reversal sent before the advice was acknowledged: %v", link.mtis())
		}
	}
	link.set("00")
	waitFor(t, func() bool { got := link.mtis(); return len(got) > 0 && got[len(got)-1] == "0400" })
	got := link.mtis()
	if got[len(got)-2] != "0221" {
		t.Fatalf("order at the issuer %v: the acknowledged advice must precede the reversal", got)
	}
	time.Sleep(200 * time.Millisecond)
	n := 0
	for _, m := range link.mtis() {
		if m == "0400" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d reversals sent", n)
	}
}

// An issuer that reads the advice and refuses it (here 14: it does not know
// the card) is not asked again: the row is closed as refused.
func TestStandInAdviceRefused(t *testing.T) {
	db := storetest.Open(t, "network", Migrations())
	link := &adviceIssuer{adviceRC: "14"}
	h := standInSwitch(t, db, link)
	defer h.sw.Close()
	h.approve(t, h.request(6000))
	waitFor(t, func() bool { a := advices(t, db); return len(a) == 1 && a[0].done == adviceRefused })
	time.Sleep(200 * time.Millisecond)
	if got := link.mtis(); len(got) != 1 {
		t.Fatalf("refused advice sent %d times: %v", len(got), got)
	}
}

// testSealer is an HSM with the advice PAN key.
func testSealer(tb testing.TB) PANSealer {
	tb.Helper()
	h, err := hsm.OpenSoft(context.Background(), hsm.SoftConfig{Dir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	if err := h.EnsureKey(context.Background(), AdvicePANKey, hsm.AES256); err != nil {
		tb.Fatal(err)
	}
	return h
}

// A plain card (no token) has no TSP to give its PAN back: the advice row
// keeps it sealed by the HSM while pending (never in the clear) and forgets
// it once the issuer acknowledged.
func TestStandInAdvicePlainCard(t *testing.T) {
	db := storetest.Open(t, "network", Migrations())
	link := &adviceIssuer{}
	h := standInSwitch(t, db, link)
	defer h.sw.Close()
	req := h.plainRequest(6000, h.tokens.pan)
	if r := h.send(t, req); r.String(39) != "00" || r.String(38)[0] != 'S' {
		t.Fatalf("plain card stand-in: rc %s code %s", r.String(39), r.String(38))
	}
	waitFor(t, func() bool { return len(link.mtis()) >= 1 })
	a := advices(t, db)
	if len(a) != 1 || a[0].pan == "" || a[0].done != advicePending {
		t.Fatalf("pending advice row %+v", a)
	}
	if strings.Contains(a[0].pan, h.tokens.pan) {
		t.Fatalf("the advice row keeps the PAN in the clear: %q", a[0].pan)
	}
	link.set("00")
	waitFor(t, func() bool { a := advices(t, db); return len(a) == 1 && a[0].done == adviceAcked })
	if a := advices(t, db)[0]; a.pan != "" {
		t.Fatalf("acknowledged advice keeps the PAN: %+v", a)
	}
	if m := link.last("0221"); m == nil || m.String(2) != h.tokens.pan {
		t.Fatalf("advice without the card's PAN: %v", m)
	}
}
