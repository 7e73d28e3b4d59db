package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/mipay-oss/mipay/hsm"
	"github.com/mipay-oss/mipay/store/storetest"
)

// tspStoreDown is what the real TSP (tsp.Authorizer.Detokenize) returns when
// its database cannot be reached: the driver's dial error wrapped by the
// vault, with no mipay error code (only the fakes of the other tests say
// EUNAVAILABLE).
func tspStoreDown(t *testing.T) error {
	t.Helper()
	c, err := net.Dial("tcp", "127.0.0.1:1")
	if err == nil {
		c.Close()
		err = errors.New("dial tcp 127.0.0.1:1: connect: connection refused")
	}
	return fmt.Errorf("tsp: get token: failed to connect to `host=tsp-db user=tsp`: %w", err)
}

// A TSP whose store is down, as the real TSP reports it (a wrapped driver
// error, no mipay code), is an outage, not the advice's fault: however many
// passes it lasts, the advice stays pending with no build failure counted,
// and goes once the TSP is back. Before, any error without
// EUNAVAILABLE/ETIMEOUT counted, so a TSP database outage of a few passes
// (seconds, with the queue's backoff) failed every pending tokenized advice
// for good: the issuer never got the approval.
func TestStandInAdviceWaitsForTSPStore(t *testing.T) {
	db := storetest.Open(t, "network", Migrations())
	link := &adviceIssuer{adviceRC: "00"}
	h, tokens := flakyTSPSwitch(t, db, link, tspStoreDown(t), func(c *Config) { c.AdviceBuildAttempts = 2 })
	defer h.sw.Close()
	h.approve(t, h.request(6000))
	waitFor(t, func() bool { return tokens.tries() >= 5 || adviceOutcomeOf(t, db).done != advicePending })
	if o := adviceOutcomeOf(t, db); o.done != advicePending || o.buildFailures != 0 {
		t.Fatalf("advice row while the TSP's store is down %+v: pending, no build failure counted", o)
	}
	tokens.set(nil)
	waitFor(t, func() bool { return adviceOutcomeOf(t, db).done == adviceAcked })
	if got := link.mtis(); len(got) != 1 || got[0] != "0220" {
		t.Fatalf("the issuer got %v", got)
	}
}

// flakySealer is an HSM whose Open fails while err is set.
type flakySealer struct {
	PANSealer
	flaky
}

func (f *flakySealer) Open(ctx context.Context, h hsm.Handle, sealed, aad []byte) ([]byte, error) {
	if err := f.call(); err != nil {
		return nil, err
	}
	return f.PANSealer.Open(ctx, h, sealed, aad)
}

// An HSM that cannot read its keystore for a while (here: out of file
// descriptors, as hsm.Soft reports it) does not fail a plain card's advice:
// the sealed PAN is fine, only the HSM is not. A sealed PAN the HSM
// rejects (TestStandInAdviceUnbuildableFails) still does.
func TestStandInAdviceWaitsForHSM(t *testing.T) {
	db := storetest.Open(t, "network", Migrations())
	link := &adviceIssuer{adviceRC: "00"}
	sealer := &flakySealer{}
	h := standInSwitchConfig(t, db, func(string) (IssuerLink, bool) { return link, true }, func(c *Config) {
		sealer.PANSealer = c.PANSealer
		c.PANSealer = sealer
		c.AdviceBuildAttempts = 2
	})
	defer h.sw.Close()
	sealer.set(fmt.Errorf("hsm: keystore: %w", &os.PathError{Op: "open", Path: "/var/lib/mipay/hsm/keys.json", Err: syscall.EMFILE}))
	orig := h.plainRequest(6000, h.tokens.pan)
	h.approve(t, orig)
	waitFor(t, func() bool { return sealer.tries() >= 5 || adviceOutcomeOf(t, db).done != advicePending })
	o := adviceOutcomeOf(t, db)
	if o.done != advicePending || o.buildFailures != 0 || o.pan == "" {
		t.Fatalf("advice row while the HSM is out of files %+v: pending, no build failure counted, sealed PAN kept", o)
	}
	if strings.Contains(o.lastError, h.tokens.pan) {
		t.Fatal("last_error holds the PAN")
	}
	sealer.set(nil)
	waitFor(t, func() bool { return adviceOutcomeOf(t, db).done == adviceAcked })
	if got := link.mtis(); len(got) != 1 || got[0] != "0220" {
		t.Fatalf("the issuer got %v", got)
	}
}
