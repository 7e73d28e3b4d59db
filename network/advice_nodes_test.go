package network

import (
	"context"
	"testing"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/store/storetest"
)

// owedNow reads the one pending advice as a pass of forwardAdvices does.
func owedNow(t *testing.T, sw *Switch) owedAdvice {
	t.Helper()
	var o owedAdvice
	if err := sw.db.DB.QueryRow(`SELECT id, orig_key, mti, pan, promotion, attempts, build_failures FROM issuer_advices WHERE done = 0`).
		Scan(&o.id, &o.origKey, &o.mti, &o.pan, &o.promotion, &o.attempts, &o.buildFailures); err != nil {
		t.Fatal(err)
	}
	return o
}

// Two switch nodes share the database and both try the same pending advice.
// Node A read it one build failure short of the bound; before A's try ends,
// node B builds the advice and hands it to the issuer (which does not answer
// yet). A's own try then fails to build: that is not a run of failures (B's
// build broke it), and the issuer may have posted B's advice, so A must not
// mark the row failed on what it read before B's try. Before, the failed
// transition was guarded by done = 0 only: A failed the advice B had just
// sent, released its reversal and listed as unposted an approval the
// issuer may hold.
func TestStandInAdviceFailedNotOverAnotherNodesSend(t *testing.T) {
	db := storetest.Open(t, "network", Migrations())
	link := &adviceIssuer{} // the issuer does not answer advices
	a, tokensA := flakyTSPSwitch(t, db, link, nil, func(c *Config) { c.AdviceBuildAttempts = 3 })
	a.approve(t, a.request(6000))
	waitFor(t, func() bool { return adviceOutcomeOf(t, db).attempts >= 1 })
	if err := a.sw.Close(); err != nil { // A's loop stops: its pass is driven below
		t.Fatal(err)
	}
	// A's run of failures so far, and A's pass reads the row.
	if _, err := db.DB.Exec(`UPDATE issuer_advices SET build_failures = 2`); err != nil {
		t.Fatal(err)
	}
	stale := owedNow(t, a.sw)

	// Node B sends it meanwhile (the issuer still does not answer).
	b := standInSwitchConfig(t, db, func(string) (IssuerLink, bool) { return link, true }, func(c *Config) { c.AdviceBuildAttempts = 3 })
	waitFor(t, func() bool { o := adviceOutcomeOf(t, db); return o.attempts > stale.attempts && o.buildFailures == 0 })
	if err := b.sw.Close(); err != nil {
		t.Fatal(err)
	}

	// A's try ends: its build failed, for a reason it takes for the advice's own.
	tokensA.set(mipay.Errorf(mipay.ENOTFOUND, "no such token"))
	ctx := context.Background()
	r := a.sw.tryAdvice(ctx, stale)
	ended, err := a.sw.recordAdvice(ctx, stale, &r)
	if err != nil {
		t.Fatal(err)
	}
	if o := adviceOutcomeOf(t, db); ended || o.done != advicePending {
		t.Fatalf("node A ended the advice node B had just sent (ended %v): %+v", ended, o)
	}
	// Its failure still counts, from the row as it is now (B's reset kept).
	if o := adviceOutcomeOf(t, db); o.buildFailures != 1 {
		t.Fatalf("build failures %d after B's build and one failure of A's", o.buildFailures)
	}
}
