package network

import (
	"context"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/store/storetest"
)

// Stand-in approvals pile up for an issuer that stays down (a full batch of
// them and more): the advice of another issuer's stand-in approval, queued
// after them, still gets to its issuer. The pass took the oldest pending
// advices by creation time only, so the down issuer's first batch was
// retried forever and nothing behind it was ever sent (nor the reversals
// waiting for those advices).
func TestStandInAdviceNotStarvedByDownIssuer(t *testing.T) {
	db := storetest.Open(t, "network", Migrations())
	ref, err := config.Default()
	if err != nil {
		t.Fatal(err)
	}
	down, _ := ref.Issuer("icbc-debit")
	down.StandIn = config.StandIn{Enabled: true, MaxMinor: 10_000}
	up, _ := ref.Issuer("boc-debit")
	up.StandIn = config.StandIn{Enabled: true, MaxMinor: 10_000}
	downLink, upLink := &adviceIssuer{}, &adviceIssuer{}
	issuers := func(id string) (IssuerLink, bool) {
		if id == up.ID {
			return upLink, true
		}
		return downLink, true
	}
	sealer := testSealer(t)
	h := &harness{ref: ref, bus: &fakeBus{},
		tokens: &fakeTokens{token: luhnComplete(down.TokenBINs[0] + "123456789"), pan: down.Cardholders[0].PAN, state: "ACTIVE"}}
	open := func() {
		t.Helper()
		sw, err := New(context.Background(), Config{Ref: ref, DB: db, Tokens: h.tokens, Bus: h.bus, ReversalRetry: 10 * time.Millisecond,
			Issuers: issuers, PANSealer: sealer})
		if err != nil {
			t.Fatal(err)
		}
		h.sw = sw
	}
	open()
	for i := range maxAdviceBatch + 1 {
		if r := h.send(t, h.request(100)); r.String(39) != "00" {
			t.Fatalf("stand-in %d: rc %s", i, r.String(39))
		}
	}
	// A plain card of the other issuer; its host answers authorizations no
	// better, but acknowledges advices.
	req := h.request(100)
	req.SetString(2, up.Cardholders[0].PAN)
	req.Unset(55)
	if r := h.send(t, req); r.String(39) != "00" || r.String(38)[0] != 'S' {
		t.Fatalf("other issuer's stand-in: rc %s code %s", r.String(39), r.String(38))
	}
	upLink.set("00")
	// A restart starts the retries over at their shortest delay.
	if err := h.sw.Close(); err != nil {
		t.Fatal(err)
	}
	open()
	defer h.sw.Close()
	deadline := time.Now().Add(10 * time.Second)
	for len(upLink.mtis()) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the other issuer never got its advice (the down issuer got %d)", len(downLink.mtis()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	var done int
	if err := db.DB.QueryRow(`SELECT COUNT(*) FROM issuer_advices WHERE done = 1`).Scan(&done); err != nil || done != 1 {
		t.Fatalf("%d advices acknowledged (%v), want the other issuer's one", done, err)
	}
}
