package issuer

import (
	"context"
	"testing"

	"github.com/mipay-oss/mipay/iso8583"
)

// The late original left the in-memory duplicate index before the advice
// came (evicted by newer authorizations, or older than what a restart
// loads): the advice must still find it in the store. A declined original
// becomes the network's approval with its hold (not the decline's 51, which
// the network reads as a refusal and stops advising: the issuer would never
// hold the stand-in approval); an approved one holds once.
func TestAdviceOfEvictedOriginal(t *testing.T) {
	for _, c := range []struct {
		name, card, orig string
		held, avail      int64
	}{
		{"declined late", "poor", "51", 60_00, -10_00},
		{"approved late", "debit", "00", 60_00, 100000 - 60_00},
	} {
		t.Run(c.name, func(t *testing.T) {
			th := MustOpenHost(t)
			cl := MustServeISO(t, th.Host)
			req := th.auth(c.card, 60_00)
			if r := send(t, cl, isoAuth(t, req, nil)); r.String(iso8583.FieldResponseCode) != c.orig {
				t.Fatalf("original answered %s", r.String(iso8583.FieldResponseCode))
			}
			// Newer authorizations push the original out of a small index.
			th.dedup.mu.Lock()
			th.dedup.max = 2
			th.dedup.mu.Unlock()
			for range 3 {
				if r := th.Authorize(context.Background(), th.auth("rich", 1_00)); r.Code != RCApproved {
					t.Fatalf("filler answered %s", r.Code)
				}
			}
			th.dedup.mu.Lock()
			_, still := th.dedup.byIdent[identOf(req.Acquirer, req.Terminal, req.STAN, req.Transmission)]
			th.dedup.mu.Unlock()
			if still {
				t.Fatal("the original is still in the index")
			}
			for _, mti := range []string{"0220", "0221"} {
				wantAck(t, send(t, cl, isoAdvice(t, req, mti, "S77777")), "0230")
			}
			if holds, approved, code, _, _ := th.holdsOf(t, req); holds != 1 || approved != 1 || code != "00" {
				t.Fatalf("%d holds, approved %d, code %s", holds, approved, code)
			}
			if v := th.account(t, c.card); v.HeldMinor != c.held || v.AvailableMinor != c.avail {
				t.Fatalf("after the advice %+v", v)
			}
			th.checkLedger(t)
		})
	}
}
