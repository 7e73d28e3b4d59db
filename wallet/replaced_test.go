package wallet

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestCardReplacedEvent: the TSP's event of a bank's card replacement moves
// the wallet's card to the new last 4 (notified with the expiry); an older
// event with the old digits does not move it back; a later state event
// still applies; malformed digits are ignored.
func TestCardReplacedEvent(t *testing.T) {
	e := mustWallet(t)
	u := e.mustUser()
	card := e.mustCard(u, "green")
	ref := e.tokenRef(card)
	ctx := context.Background()
	at := e.clock.Now()
	view := func() answer { return e.call("GET", "/v1/cards/"+card, u.token, nil).want(t, 200) }
	oldLast4 := view().str("panLast4")
	newLast4 := "9" + oldLast4[1:]
	if newLast4 == oldLast4 {
		newLast4 = "8" + oldLast4[1:]
	}
	ev := func(state, last4, expiry, reason string, when time.Time) {
		t.Helper()
		if err := e.svc.HandleTokenState(ctx, "ev", mustJSON(map[string]any{"tokenUniqueReference": ref, "state": state,
			"causedBy": "ISSUER", "reason": reason, "panLast4": last4, "panExpiry": expiry, "time": when})); err != nil {
			t.Fatal(err)
		}
	}
	before := e.rows("notifications")
	ev(StateActive, newLast4, "3112", "CARD_REPLACED", at.Add(time.Minute))
	if got := view().str("panLast4"); got != newLast4 {
		t.Fatalf("panLast4 after replacement %s, want %s", got, newLast4)
	}
	if n := e.rows("notifications"); n != before+1 {
		t.Fatalf("%d notifications after the replacement, want %d", n, before+1)
	}
	var payload string
	if err := e.svc.repo.db.DB.QueryRowContext(ctx, `SELECT payload FROM notifications ORDER BY seq DESC LIMIT 1`).Scan(&payload); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"reason":"CARD_REPLACED"`, `"panLast4":"` + newLast4 + `"`, `"previousPanLast4":"` + oldLast4 + `"`, `"cardExpiry":"3112"`} {
		if !strings.Contains(payload, want) {
			t.Errorf("notification %s lacks %s", payload, want)
		}
	}
	ev(StateActive, oldLast4, "", "CARDHOLDER_REQUEST", at.Add(30*time.Second)) // older, old digits: ignored
	if got := view().str("panLast4"); got != newLast4 {
		t.Errorf("an older event put back %s", got)
	}
	ev(StateSuspended, newLast4, "", "CARD_STOLEN", at.Add(2*time.Minute))
	if v := view(); v.str("state") != StateSuspended || v.str("panLast4") != newLast4 {
		t.Errorf("after a later suspension: %s %s", v.str("state"), v.str("panLast4"))
	}
	for _, bad := range []string{"12a4", "123", "12345", "<b>1"} {
		ev(StateSuspended, bad, "", "X", at.Add(3*time.Minute))
		if got := view().str("panLast4"); got != newLast4 {
			t.Errorf("malformed last 4 %q taken: %s", bad, got)
		}
	}
}
