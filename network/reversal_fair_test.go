package network

import (
	"context"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/store/storetest"
)

// Reversals pile up for an issuer that stays down (each timed-out request
// it was sent owes one: a full batch of them and more): another issuer's
// reversal queued after them still gets to its issuer. The pass took the
// oldest pending reversals by creation time only, so the down issuer's
// first batch was retried forever and the other issuer's hold was never
// released.
func TestReversalNotStarvedByDownIssuer(t *testing.T) {
	db := storetest.Open(t, "network", Migrations())
	ref, err := config.Default()
	if err != nil {
		t.Fatal(err)
	}
	down, _ := ref.Issuer("icbc-debit")
	up, _ := ref.Issuer("boc-debit")
	down.StandIn, up.StandIn = config.StandIn{}, config.StandIn{} // each timeout is a 91 and a reversal
	downLink, upLink := &adviceIssuer{revDown: true}, &adviceIssuer{revDown: true}
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
	for i := range maxReversalBatch + 1 {
		if r := h.send(t, h.request(100)); r.String(39) != "91" {
			t.Fatalf("request %d: rc %s", i, r.String(39))
		}
	}
	req := h.request(100)
	req.SetString(2, up.Cardholders[0].PAN)
	req.Unset(55)
	if r := h.send(t, req); r.String(39) != "91" {
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
