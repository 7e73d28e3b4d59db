package network

import (
	"sync/atomic"
	"testing"

	"github.com/mipay-oss/mipay/store/storetest"
)

// An advice that could not be sent at all on its first pass (here: no link
// to the issuer yet) is not a repeat: the issuer never got an 0220, so the
// first advice it gets is the 0220, and only the retries after it are 0221.
func TestStandInAdviceFirstSentIsNotARepeat(t *testing.T) {
	db := storetest.Open(t, "network", Migrations())
	link := &adviceIssuer{adviceRC: "00"}
	// The first lookup is the authorization's (sent, never answered); the
	// second the advice's first pass, which finds no link.
	var lookups atomic.Int64
	issuers := func(string) (IssuerLink, bool) {
		if lookups.Add(1) == 2 {
			return nil, false
		}
		return link, true
	}
	h := standInSwitchWith(t, db, issuers)
	defer h.sw.Close()
	h.approve(t, h.request(6000))
	waitFor(t, func() bool { a := advices(t, db); return len(a) == 1 && a[0].done == adviceAcked })
	if lookups.Load() < 3 {
		t.Fatalf("%d issuer lookups: the first advice pass did not fail as the test needs", lookups.Load())
	}
	if got := link.mtis(); len(got) != 1 || got[0] != "0220" {
		t.Fatalf("the issuer got %v, want one 0220 (nothing was sent before it)", got)
	}
	if a := advices(t, db)[0]; a.attempts != 1 {
		t.Fatalf("advice row %+v: one advice was sent", a)
	}
}
