package network

import (
	"strings"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/store/storetest"
)

// A pass that settles one advice and then fails to record another still
// lets the reversal held back for the settled one go: the reversal loop
// only looks again when woken (or an hour later).
func TestStandInReversalAfterAdviceDespiteFailedUpdate(t *testing.T) {
	if storetest.Postgres() != "" {
		t.Skip("the failing update is a SQLite trigger")
	}
	db := storetest.Open(t, "network", Migrations())
	link := &adviceIssuer{}
	h := standInSwitch(t, db, link)
	defer h.sw.Close()
	orig := h.request(6000)
	if r := h.send(t, orig); r.String(39) != "00" {
		t.Fatalf("rc %s", r.String(39))
	}
	h.reverse(t, orig)
	// A second stand-in approval whose advice row cannot be updated.
	other := h.request(7000)
	if r := h.send(t, other); r.String(39) != "00" {
		t.Fatalf("rc %s", r.String(39))
	}
	otherKey := dupKey(other)
	if _, err := db.DB.Exec(`CREATE TRIGGER advice_update_fails BEFORE UPDATE ON issuer_advices
		WHEN OLD.orig_key = '` + strings.ReplaceAll(otherKey, "'", "''") + `' BEGIN SELECT RAISE(ABORT, 'test: update fails'); END`); err != nil {
		t.Fatal(err)
	}
	link.set("00")
	deadline := time.Now().Add(5 * time.Second)
	for {
		var revDone int
		if err := db.DB.QueryRow(`SELECT done FROM issuer_reversals`).Scan(&revDone); err != nil {
			t.Fatal(err)
		}
		if revDone == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reversal of the acknowledged stand-in approval was not sent (issuer got %v)", link.mtis())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
