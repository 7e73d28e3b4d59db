package network

import (
	"context"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/store"
	"github.com/mipay-oss/mipay/store/storetest"
)

// twoIssuers is a switch over db in front of two issuers' links: the down
// one (icbc-debit, whose token the harness pays with) and the up one
// (boc-debit, whose first cardholder's plain card upRequest pays with).
// standIn sets both issuers' stand-in (10,000 fen) or none. open starts the
// switch again over the same store (a restart).
type twoIssuers struct {
	h                *harness
	up               *config.Issuer
	downLink, upLink *adviceIssuer
	open             func()
}

func newTwoIssuers(t *testing.T, db *store.DB, standIn bool, downLink, upLink *adviceIssuer) *twoIssuers {
	t.Helper()
	ref, err := config.Default()
	if err != nil {
		t.Fatal(err)
	}
	down, _ := ref.Issuer("icbc-debit")
	up, _ := ref.Issuer("boc-debit")
	down.StandIn, up.StandIn = config.StandIn{}, config.StandIn{}
	if standIn {
		down.StandIn = config.StandIn{Enabled: true, MaxMinor: 10_000}
		up.StandIn = config.StandIn{Enabled: true, MaxMinor: 10_000}
	}
	issuers := func(id string) (IssuerLink, bool) {
		if id == up.ID {
			return upLink, true
		}
		return downLink, true
	}
	sealer := testSealer(t)
	ti := &twoIssuers{up: up, downLink: downLink, upLink: upLink,
		h: &harness{ref: ref, bus: &fakeBus{},
			tokens: &fakeTokens{token: luhnComplete(down.TokenBINs[0] + "123456789"), pan: down.Cardholders[0].PAN, state: "ACTIVE"}}}
	ti.open = func() {
		t.Helper()
		sw, err := New(context.Background(), Config{Ref: ref, DB: db, Tokens: ti.h.tokens, Bus: ti.h.bus, ReversalRetry: 10 * time.Millisecond,
			Issuers: issuers, PANSealer: sealer})
		if err != nil {
			t.Fatal(err)
		}
		ti.h.sw = sw
	}
	ti.open()
	return ti
}

// upRequest is a request of the up issuer's plain card.
func (ti *twoIssuers) upRequest() *iso8583.Message {
	return ti.h.plainRequest(100, ti.up.Cardholders[0].PAN)
}

// Stand-in approvals pile up for an issuer that stays down (a full batch of
// them and more): the advice of another issuer's stand-in approval, queued
// after them, still gets to its issuer. The pass took the oldest pending
// advices by creation time only, so the down issuer's first batch was
// retried forever and nothing behind it was ever sent (nor the reversals
// waiting for those advices).
func TestStandInAdviceNotStarvedByDownIssuer(t *testing.T) {
	db := storetest.Open(t, "network", Migrations())
	ti := newTwoIssuers(t, db, true, &adviceIssuer{}, &adviceIssuer{})
	h, downLink, upLink, open := ti.h, ti.downLink, ti.upLink, ti.open
	for i := range maxAdviceBatch + 1 {
		if r := h.send(t, h.request(100)); r.String(39) != "00" {
			t.Fatalf("stand-in %d: rc %s", i, r.String(39))
		}
	}
	// A plain card of the other issuer; its host answers authorizations no
	// better, but acknowledges advices.
	if r := h.send(t, ti.upRequest()); r.String(39) != "00" || r.String(38)[0] != 'S' {
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

// Reversals pile up for an issuer that stays down (each timed-out request
// it was sent owes one: a full batch of them and more): another issuer's
// reversal queued after them still gets to its issuer. The pass took the
// oldest pending reversals by creation time only, so the down issuer's
// first batch was retried forever and the other issuer's hold was never
// released.
func TestReversalNotStarvedByDownIssuer(t *testing.T) {
	db := storetest.Open(t, "network", Migrations())
	// Without stand-in each timeout is a 91 and a reversal.
	ti := newTwoIssuers(t, db, false, &adviceIssuer{revDown: true}, &adviceIssuer{revDown: true})
	h, downLink, upLink, open := ti.h, ti.downLink, ti.upLink, ti.open
	for i := range maxReversalBatch + 1 {
		if r := h.send(t, h.request(100)); r.String(39) != "91" {
			t.Fatalf("request %d: rc %s", i, r.String(39))
		}
	}
	if r := h.send(t, ti.upRequest()); r.String(39) != "91" {
		t.Fatalf("other issuer's request: rc %s", r.String(39))
	}
	upLink.mu.Lock()
	upLink.revDown = false
	upLink.mu.Unlock()
	// A restart starts the retries over at their shortest delay.
	if err := h.sw.Close(); err != nil {
		t.Fatal(err)
	}
	open()
	defer h.sw.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var done int
		if err := db.DB.QueryRow(`SELECT COUNT(*) FROM issuer_reversals WHERE done = 1`).Scan(&done); err != nil {
			t.Fatal(err)
		}
		if done == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the other issuer's reversal was never acknowledged (%d reversals acknowledged; the down issuer got %d messages)",
				done, len(downLink.mtis()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
