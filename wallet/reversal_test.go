package wallet

import (
	"context"
	"encoding/json"
	"testing"
	"time"
)

// TestReversalRestoresPoints: transaction.reversed marks the transaction
// reversed (points 0, pointsReversed what the issuer took back), restores the
// card's balance from the event and notifies the phone once; a redelivery or
// a reversal of an unknown card changes nothing, and a later approval's
// balance is not overwritten by an older reversal.
func TestReversalRestoresPoints(t *testing.T) {
	e := mustWallet(t)
	u := e.mustUser()
	card := e.mustCard(u, "green")
	ref := e.tokenRef(card)
	ctx := context.Background()
	at := time.Date(2026, 11, 26, 4, 0, 0, 0, time.UTC)
	approval := func(id string, earned, balance int64, when time.Time) json.RawMessage {
		b, _ := json.Marshal(map[string]any{"transactionId": id, "tokenRef": ref, "amountMinor": 6000, "currency": "156",
			"merchantName": "Noodle House", "approved": true, "responseCode": "00", "time": when,
			"points": map[string]any{"earned": earned, "balance": balance}})
		return b
	}
	reversal := func(id, tokenRef string, taken, balance int64, when time.Time) json.RawMessage {
		b, _ := json.Marshal(map[string]any{"transactionId": id, "tokenRef": tokenRef, "amountMinor": 6000, "currency": "156",
			"merchantName": "Noodle House", "time": when, "discountMinor": 1000,
			"points": map[string]any{"earned": taken, "balance": balance}})
		return b
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	balance := func() any { return e.pointsBalance(u, card) }
	reversedNotes := func() []map[string]any {
		t.Helper()
		l := e.call("GET", "/v1/devices/"+u.deviceID+"/notifications?after=0", u.token, nil).want(t, 200)
		var out []map[string]any
		for _, x := range l.body["notifications"].([]any) {
			if n := x.(map[string]any); n["kind"] == NotifyTransactionReversed {
				out = append(out, n["payload"].(map[string]any))
			}
		}
		return out
	}
	must(e.svc.HandleTransaction(ctx, "a1", approval("tx1", 60, 60, at)))
	must(e.svc.HandleTransaction(ctx, "a2", approval("tx2", 50, 110, at.Add(time.Minute))))
	must(e.svc.HandleReversal(ctx, "r2", reversal("tx2", ref, 50, 60, at.Add(2*time.Minute))))
	if b := balance(); b != 60.0 {
		t.Fatalf("balance after the reversal %v, want 60", b)
	}
	must(e.svc.HandleReversal(ctx, "r2", reversal("tx2", ref, 50, 60, at.Add(2*time.Minute))))     // redelivered
	must(e.svc.HandleReversal(ctx, "rx", reversal("tx9", "no-such-ref", 5, 1, at.Add(time.Hour)))) // not this wallet's
	must(e.svc.HandleReversal(ctx, "bad", json.RawMessage(`{"transactionId":`)))                   // dropped
	ns := reversedNotes()
	if len(ns) != 1 || ns[0]["text"] != "Payment of 60.00 CNY reversed" || ns[0]["pointsReversed"] != 50.0 || ns[0]["transactionId"] != "tx2" {
		t.Fatalf("reversal notifications %v", ns)
	}
	l := e.call("GET", "/v1/cards/"+card+"/transactions", u.token, nil).want(t, 200)
	for _, x := range l.body["transactions"].([]any) {
		m := x.(map[string]any)
		switch m["id"] {
		case "tx2":
			if m["reversed"] != true || m["pointsEarned"] != 0.0 || m["pointsReversed"] != 50.0 || m["reversedAt"] == nil {
				t.Fatalf("reversed transaction %v", m)
			}
		case "tx1":
			if m["reversed"] != nil || m["pointsEarned"] != 60.0 {
				t.Fatalf("kept transaction %v", m)
			}
		}
	}

	// A newer approval, then the reversal of an older one arriving late:
	// the newest balance stays.
	must(e.svc.HandleTransaction(ctx, "a3", approval("tx3", 40, 100, at.Add(10*time.Minute))))
	must(e.svc.HandleReversal(ctx, "r1", reversal("tx1", ref, 60, 0, at.Add(3*time.Minute))))
	if b := balance(); b != 100.0 {
		t.Fatalf("balance %v, want the newest event's 100", b)
	}
}
