package wallet

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// TestDeviceActionBatch: a device-wide switch-off and found it are one TSP
// batch call each (with a TSP that has the endpoint) or card-by-card calls
// (without it); either way the cards, the notifications and the TSP agree.
func TestDeviceActionBatch(t *testing.T) {
	for _, noBatch := range []bool{false, true} {
		name := map[bool]string{false: "batch", true: "card by card"}[noBatch]
		t.Run(name, func(t *testing.T) {
			e := mustWallet(t)
			e.tsp.noBatch = noBatch
			u := e.mustUser()
			var cards []string
			for i := 0; i < 5; i++ {
				cards = append(cards, e.mustCard(u, "green"))
			}
			d := "/v1/devices/" + u.deviceID
			off := e.call("POST", d+"/switch-off", u.token, nil).want(t, 200)
			if n := strings.Count(string(off.raw), `"state":"SUSPENDED","changed":true`); n != 5 {
				t.Fatalf("%d cards switched off: %s", n, off.raw)
			}
			for _, id := range cards {
				if e.tsp.state(e.tokenRef(id)) != StateSuspended {
					t.Fatalf("TSP state of %s: %s", id, e.tsp.state(e.tokenRef(id)))
				}
				if s := e.call("GET", "/v1/cards/"+id, u.token, nil).want(t, 200).str("state"); s != StateSuspended {
					t.Fatalf("wallet state of %s: %s", id, s)
				}
			}
			ns := e.call("GET", d+"/notifications?wait=0s", u.token, nil).want(t, 200)
			if n := strings.Count(string(ns.raw), `"state":"SUSPENDED"`); n != 5 {
				t.Errorf("%d suspension notifications: %s", n, ns.raw)
			}
			e.markSecondFactor(u.token)
			e.call("POST", d+"/found", u.token, map[string]string{}).want(t, 200)
			for _, id := range cards {
				if s := e.call("GET", "/v1/cards/"+id, u.token, nil).want(t, 200).str("state"); s != StateActive {
					t.Fatalf("after found %s: %s", id, s)
				}
			}
			e.tsp.mu.Lock()
			batches := e.tsp.batches
			e.tsp.mu.Unlock()
			if want := map[bool]int{false: 2, true: 0}[noBatch]; batches != want {
				t.Errorf("%d batch calls, want %d", batches, want)
			}
		})
	}
}

// TestTokenStatesEvent: token.states_changed records each change of the
// batch on its card, once.
func TestTokenStatesEvent(t *testing.T) {
	e := mustWallet(t)
	u := e.mustUser()
	a, b := e.mustCard(u, "green"), e.mustCard(u, "green")
	at := e.clock.Now()
	data, _ := json.Marshal(map[string]any{"changes": []map[string]any{
		{"tokenUniqueReference": e.tokenRef(a), "state": StateSuspended, "causedBy": "ISSUER", "reason": "FRAUD", "time": at},
		{"tokenUniqueReference": e.tokenRef(b), "state": StateSuspended, "causedBy": "ISSUER", "reason": "FRAUD", "time": at},
		{"tokenUniqueReference": "DNITHE-unknown", "state": StateSuspended, "time": at},
	}})
	before := e.rows("notifications")
	for i := 0; i < 2; i++ { // redelivered: nothing twice
		if err := e.svc.HandleTokenStates(context.Background(), "ev", data); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{a, b} {
		if s := e.call("GET", "/v1/cards/"+id, u.token, nil).want(t, 200).str("state"); s != StateSuspended {
			t.Errorf("%s: %s", id, s)
		}
	}
	if n := e.rows("notifications") - before; n != 2 {
		t.Errorf("%d notifications, want 2", n)
	}
	if err := e.svc.HandleTokenStates(context.Background(), "bad", []byte(`{"changes":`)); err != nil {
		t.Errorf("a malformed event is dropped, not retried: %v", err)
	}
}
