package wallet

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"
)

// fakeOffers answers what the promotions engine would, and records the
// queries (the card as the wallet knows it: never a PAN).
type fakeOffers struct {
	mu      sync.Mutex
	queries []OfferQuery
	fail    bool
}

func (f *fakeOffers) Offers(_ context.Context, q OfferQuery) ([]Offer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queries = append(f.queries, q)
	if f.fail {
		return nil, errors.New("engine down")
	}
	o := Offer{CampaignID: "icbc-mipay-10off50", BankName: "ICBC", Name: "10 off 50",
		Benefit: OfferBenefit{Kind: "fixed", AmountMinor: 1000}, MinAmountMinor: 5000}
	o.Text = offerText(&o)
	return []Offer{o}, nil
}

// TestCardRewards: a card's points follow the newest approval's balance
// (redeliveries and late events do not move it back), each transaction shows
// its points, and the offers come from the engine with the card's issuer.
func TestCardRewards(t *testing.T) {
	offers := &fakeOffers{}
	e := mustWallet(t, func(c *Config) { c.Offers = offers })
	u := e.mustUser()
	card := e.mustCard(u, "green")
	ref := e.tokenRef(card)
	ctx := context.Background()
	at := time.Date(2026, 11, 26, 4, 0, 0, 0, time.UTC)
	event := func(id string, approved bool, earned, balance int64, when time.Time) json.RawMessage {
		m := map[string]any{"transactionId": id, "tokenRef": ref, "amountMinor": 6000, "currency": "156",
			"merchantName": "Noodle House", "approved": approved, "responseCode": "00", "time": when}
		if balance >= 0 {
			m["points"] = map[string]any{"earned": earned, "balance": balance}
		}
		b, _ := json.Marshal(m)
		return b
	}
	deliver := func(id string, ev json.RawMessage) {
		t.Helper()
		if err := e.svc.HandleTransaction(ctx, id, ev); err != nil {
			t.Fatal(err)
		}
	}
	rewards := func() map[string]any {
		t.Helper()
		return e.call("GET", "/v1/cards/"+card+"/rewards", u.token, nil).want(t, 200).body
	}
	if r := rewards(); r["points"] != nil {
		t.Fatalf("points before any payment: %v", r)
	}
	deliver("ev1", event("tx1", true, 60, 60, at))
	deliver("ev2", event("tx2", true, 50, 110, at.Add(time.Minute)))
	deliver("ev1", event("tx1", true, 60, 60, at))                   // redelivered late
	deliver("ev0", event("tx0", true, 10, 10, at.Add(-time.Minute))) // an older one arriving last
	deliver("ev3", event("tx3", true, 0, -1, at.Add(2*time.Minute))) // the issuer said nothing
	deliver("ev4", event("tx4", false, 99, 999, at.Add(3*time.Minute)))
	r := rewards()
	pts, _ := r["points"].(map[string]any)
	if pts == nil || pts["balance"] != 110.0 {
		t.Fatalf("points %v, want the newest approval's 110", r["points"])
	}
	os, _ := r["offers"].([]any)
	if len(os) != 1 || os[0].(map[string]any)["text"] != "10.00 CNY off from 50.00 CNY" {
		t.Fatalf("offers %v", r["offers"])
	}
	offers.mu.Lock()
	q := offers.queries[len(offers.queries)-1]
	offers.mu.Unlock()
	if q.IssuerID == "" {
		t.Fatalf("offers asked without the card's issuer: %+v", q)
	}
	l := e.call("GET", "/v1/cards/"+card+"/transactions", u.token, nil).want(t, 200)
	got := map[string]any{}
	for _, x := range l.body["transactions"].([]any) {
		m := x.(map[string]any)
		got[m["id"].(string)] = m["pointsEarned"]
	}
	if got["tx1"] != 60.0 || got["tx2"] != 50.0 || got["tx0"] != 10.0 || got["tx3"] != nil || got["tx4"] != nil {
		t.Fatalf("points earned per transaction %v", got)
	}

	t.Run("engine down: points still shown", func(t *testing.T) {
		offers.mu.Lock()
		offers.fail = true
		offers.mu.Unlock()
		r := rewards()
		if r["offersUnavailable"] != true || len(r["offers"].([]any)) != 0 || r["points"] == nil {
			t.Fatalf("rewards %v", r)
		}
	})
	t.Run("another account's card is not found", func(t *testing.T) {
		other := e.mustUser()
		e.call("GET", "/v1/cards/"+card+"/rewards", other.token, nil).want(t, 404)
	})
}

// TestPointsOnLaterDelivery: an approval first stored without points (the
// issuer said nothing) gets them, once, from a later event of the same
// transaction, and only then moves the card's balance — as when points had
// their own table.
func TestPointsOnLaterDelivery(t *testing.T) {
	e := mustWallet(t)
	u := e.mustUser()
	card := e.mustCard(u, "green")
	ref := e.tokenRef(card)
	ctx := context.Background()
	at := time.Date(2026, 11, 26, 4, 0, 0, 0, time.UTC)
	deliver := func(points map[string]any) {
		t.Helper()
		m := map[string]any{"transactionId": "tx1", "tokenRef": ref, "amountMinor": 6000, "currency": "156",
			"approved": true, "responseCode": "00", "time": at}
		if points != nil {
			m["points"] = points
		}
		b, _ := json.Marshal(m)
		if err := e.svc.HandleTransaction(ctx, "ev", b); err != nil {
			t.Fatal(err)
		}
	}
	earned := func() any {
		t.Helper()
		l := e.call("GET", "/v1/cards/"+card+"/transactions", u.token, nil).want(t, 200)
		ts := l.body["transactions"].([]any)
		if len(ts) != 1 {
			t.Fatalf("transactions %s", l.raw)
		}
		return ts[0].(map[string]any)["pointsEarned"]
	}
	balance := func() any { return e.pointsBalance(u, card) }
	deliver(nil)
	if earned() != nil || balance() != nil {
		t.Fatalf("points %v, balance %v before the issuer said any", earned(), balance())
	}
	deliver(map[string]any{"earned": 60, "balance": 60})
	deliver(map[string]any{"earned": 70, "balance": 70}) // recorded already: changes nothing
	if earned() != 60.0 || balance() != 60.0 {
		t.Fatalf("points %v, balance %v, want 60 and 60", earned(), balance())
	}
	if n := e.rows("notifications"); n != 1 {
		t.Errorf("%d notifications, want the first delivery's only", n)
	}
}

// pointsBalance is the card's points balance as its rewards show it (nil:
// no points yet).
func (e *env) pointsBalance(u *user, card string) any {
	e.t.Helper()
	p, _ := e.call("GET", "/v1/cards/"+card+"/rewards", u.token, nil).want(e.t, 200).body["points"].(map[string]any)
	return p["balance"]
}
