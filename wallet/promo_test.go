package wallet

import (
	"context"
	"encoding/json"
	"testing"
	"time"
)

// TestTransactionPromotion: a payment with a bank offer shows the saving,
// the bank, the campaign and the points multiplier in the card's
// transactions and in the device's notification, with the text the phone
// shows; a payment without one (or a decline claiming one) shows none.
func TestTransactionPromotion(t *testing.T) {
	e := mustWallet(t)
	u := e.mustUser()
	card := e.mustCard(u, "green")
	ref := e.tokenRef(card)
	event := func(id string, approved bool, discount int64) json.RawMessage {
		rc := "00"
		if !approved {
			rc = "51"
		}
		ev, _ := json.Marshal(map[string]any{
			"transactionId": id, "tokenRef": ref, "amountMinor": 6000, "currency": "156", "merchantName": "Noodle House",
			"approved": approved, "responseCode": rc, "time": time.Date(2026, 11, 26, 4, 0, 0, 0, time.UTC),
			"discountMinor": discount, "offerBank": "ICBC", "campaignId": "icbc-mipay-10off50", "pointsMultiplier": 2,
		})
		return ev
	}
	ctx := context.Background()
	if err := e.svc.HandleTransaction(ctx, "ev-promo", event("tx-promo", true, 1000)); err != nil {
		t.Fatal(err)
	}
	byID := func(t *testing.T, id string) map[string]any {
		t.Helper()
		l := e.call("GET", "/v1/cards/"+card+"/transactions", u.token, nil).want(t, 200)
		for _, x := range l.body["transactions"].([]any) {
			if m := x.(map[string]any); m["id"] == id {
				return m
			}
		}
		t.Fatalf("no transaction %s: %s", id, l.raw)
		return nil
	}
	check := func(t *testing.T, m map[string]any) {
		t.Helper()
		if m["amountMinor"] != float64(6000) || m["discountMinor"] != float64(1000) || m["offerBank"] != "ICBC" ||
			m["campaignId"] != "icbc-mipay-10off50" || m["pointsMultiplier"] != float64(2) ||
			m["savingText"] != "Saved 10.00 CNY with ICBC offer" {
			t.Fatalf("shown %v", m)
		}
	}
	t.Run("transactions", func(t *testing.T) {
		check(t, byID(t, "tx-promo"))
	})
	t.Run("notification", func(t *testing.T) {
		l := e.call("GET", "/v1/devices/"+u.deviceID+"/notifications?after=0&wait=0s", u.token, nil).want(t, 200)
		ns := l.body["notifications"].([]any)
		if len(ns) != 1 {
			t.Fatalf("%s", l.raw)
		}
		check(t, ns[0].(map[string]any)["payload"].(map[string]any))
	})
	for name, c := range map[string]struct {
		id       string
		approved bool
		discount int64
	}{
		"no discount":                 {"tx-plain", true, 0},
		"a decline claiming a saving": {"tx-declined", false, 1000},
		"a saving above the amount":   {"tx-over", true, 6001},
		"a negative saving":           {"tx-negative", true, -5},
	} {
		t.Run(name+" shows no saving", func(t *testing.T) {
			if err := e.svc.HandleTransaction(ctx, "ev-"+c.id, event(c.id, c.approved, c.discount)); err != nil {
				t.Fatal(err)
			}
			m := byID(t, c.id)
			for _, k := range []string{"discountMinor", "offerBank", "campaignId", "pointsMultiplier", "savingText"} {
				if _, ok := m[k]; ok {
					t.Fatalf("shows %s: %v", k, m)
				}
			}
		})
	}
}

func TestSavingText(t *testing.T) {
	for _, c := range []struct {
		bank     string
		discount int64
		want     string
	}{
		{"ICBC", 1000, "Saved 10.00 CNY with ICBC offer"},
		{"Bank of China", 305, "Saved 3.05 CNY with Bank of China offer"},
		{"", 1, "Saved 0.01 CNY with bank offer"},
		{"ICBC", 0, ""},
		{"ICBC", -100, ""},
	} {
		t.Run(c.want, func(t *testing.T) {
			if got := savingText(c.bank, c.discount); got != c.want {
				t.Fatalf("savingText(%q, %d) = %q, want %q", c.bank, c.discount, got, c.want)
			}
		})
	}
}
