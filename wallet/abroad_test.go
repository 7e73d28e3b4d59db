package wallet

import (
	"context"
	"encoding/json"
	"testing"
	"time"
)

// TestTransactionAbroad: a payment in Tokyo shows the yen amount, the CNY
// billing amount and the rate, in the card's transactions and in the
// device's notification.
func TestTransactionAbroad(t *testing.T) {
	e := mustWallet(t)
	u := e.mustUser()
	card := e.mustCard(u, "green")
	ref := e.tokenRef(card)
	ev, _ := json.Marshal(map[string]any{
		"transactionId": "tx-tokyo", "tokenRef": ref, "amountMinor": 1200, "currency": "392", "merchantName": "Lawson Shibuya",
		"approved": true, "responseCode": "00", "authCode": "123456", "time": time.Date(2026, 11, 26, 1, 30, 0, 0, time.UTC),
		"stan": "000124", "rrn": "633001000124", "country": "392", "billingAmountMinor": 5654, "billingCurrency": "156",
		"conversionRate": "0.04712000",
	})
	if err := e.svc.HandleTransaction(context.Background(), "ev-tokyo", ev); err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, m map[string]any) {
		t.Helper()
		if m["amountMinor"] != float64(1200) || m["currency"] != "392" || m["billingAmountMinor"] != float64(5654) ||
			m["billingCurrency"] != "156" || m["conversionRate"] != "0.04712000" || m["country"] != "392" {
			t.Fatalf("shown %v", m)
		}
	}
	t.Run("transactions", func(t *testing.T) {
		l := e.call("GET", "/v1/cards/"+card+"/transactions", u.token, nil).want(t, 200)
		ts := l.body["transactions"].([]any)
		if len(ts) != 1 {
			t.Fatalf("%s", l.raw)
		}
		check(t, ts[0].(map[string]any))
	})
	t.Run("notification", func(t *testing.T) {
		l := e.call("GET", "/v1/devices/"+u.deviceID+"/notifications?after=0&wait=0s", u.token, nil).want(t, 200)
		ns := l.body["notifications"].([]any)
		if len(ns) != 1 {
			t.Fatalf("%s", l.raw)
		}
		check(t, ns[0].(map[string]any)["payload"].(map[string]any))
	})
	t.Run("domestic payments show no billing fields", func(t *testing.T) {
		if err := e.svc.HandleTransaction(context.Background(), "ev-home", txEvent(ref, "tx-home", 100, true)); err != nil {
			t.Fatal(err)
		}
		l := e.call("GET", "/v1/cards/"+card+"/transactions", u.token, nil).want(t, 200)
		found := false
		for _, x := range l.body["transactions"].([]any) {
			m := x.(map[string]any)
			if m["id"] != "tx-home" {
				continue
			}
			found = true
			if _, ok := m["billingAmountMinor"]; ok {
				t.Fatalf("domestic shows billing: %v", m)
			}
		}
		if !found {
			t.Fatalf("no domestic transaction: %s", l.raw)
		}
	})
}
