package network

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/mipay-oss/mipay/store/storetest"
)

// A switch that dies after handing an advice to the issuer's link and
// before recording it (recordAdvice never runs) must send the next advice
// as a repeat: the issuer may have got the first one, and only 0221/0121
// tells it so. Before, attempts was counted only by recordAdvice, after the
// send, so the advice after the crash went as a second 0220: an issuer that
// checks only repeats for duplicates posts the approval twice.
func TestStandInAdviceRepeatAfterCrash(t *testing.T) {
	db := storetest.Open(t, "network", Migrations())
	link := &adviceIssuer{adviceRC: "00"}
	// The first lookup is the authorization's (sent, never answered); the
	// advice loop finds no link until the test drives the advice itself.
	var lookups atomic.Int64
	var up atomic.Bool
	issuers := func(string) (IssuerLink, bool) {
		if lookups.Add(1) == 1 || up.Load() {
			return link, true
		}
		return nil, false
	}
	h := standInSwitchWith(t, db, issuers)
	h.approve(t, h.request(6000))
	waitFor(t, func() bool { return lookups.Load() >= 2 })
	if err := h.sw.Close(); err != nil { // the loop stops; the passes below are driven by hand
		t.Fatal(err)
	}
	up.Store(true)
	ctx := context.Background()

	// First try: sent, acknowledged, and the process dies before recording it.
	if r := h.sw.tryAdvice(ctx, owedNow(t, h.sw)); r.state != adviceAcked {
		t.Fatalf("first try %+v", r)
	}
	// After the restart the row is still pending: the next advice is a repeat.
	o := owedNow(t, h.sw)
	r := h.sw.tryAdvice(ctx, o)
	if _, err := h.sw.recordAdvice(ctx, o, &r); err != nil {
		t.Fatal(err)
	}
	if got := link.mtis(); len(got) != 2 || got[0] != "0220" || got[1] != "0221" {
		t.Fatalf("the issuer got %v, want 0220 then (after the crash) 0221", got)
	}
	if a := advices(t, db); len(a) != 1 || a[0].done != adviceAcked || a[0].attempts != 2 {
		t.Fatalf("advice rows %+v: acknowledged, two advices handed to the link", a)
	}
}
