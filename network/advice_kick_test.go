package network

import (
	"strings"
	"testing"

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
	h.approve(t, orig)
	h.reverse(t, orig)
	// A second stand-in approval whose advice row cannot be updated.
	other := h.request(7000)
	h.approve(t, other)
	otherKey := dupKey(other)
	if _, err := db.DB.Exec(`CREATE TRIGGER advice_update_fails BEFORE UPDATE ON issuer_advices
		WHEN OLD.orig_key = '` + strings.ReplaceAll(otherKey, "'", "''") + `' BEGIN SELECT RAISE(ABORT, 'test: update fails'); END`); err != nil {
		t.Fatal(err)
	}
	link.set("00")
	// The reversal of the acknowledged stand-in approval is sent.
	waitFor(t, func() bool { return reversalSent(t, db) })
}
