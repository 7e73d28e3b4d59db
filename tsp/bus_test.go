package tsp

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/events"
)

func mustBus(tb testing.TB) *events.Bus {
	tb.Helper()
	bus, err := events.Open(context.Background(), events.Config{Dir: tb.TempDir()}, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { bus.Close() })
	return bus
}

// TestSuspendReachesEveryNode: a suspension published on the real bus drops
// the token from the caches of two switch nodes within a second.
func TestSuspendReachesEveryNode(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	bus := mustBus(t)
	f.svc.bus = bus
	var nodes []*Authorizer
	for i := 0; i < 2; i++ {
		a, err := NewAuthorizer(ctx, AuthorizerConfig{DB: f.vault.db, Keys: f.keys, Ref: f.ref, Bus: bus, CacheTTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		nodes = append(nodes, a)
	}
	res, _ := f.mustActiveToken(t, config.Credit, "dev-1")
	c := f.cardFor(t, res.TokenRef)
	for i, a := range nodes {
		if out, err := a.Authorize(ctx, c.tap(100, true)); err != nil || !out.Approved {
			t.Fatalf("node %d: %+v %v", i, out, err)
		}
	}
	if _, err := f.svc.Lifecycle(ctx, res.TokenRef, ActionSuspend, CausedByCardholder, "DEVICE_LOST"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for i, a := range nodes {
		for {
			out, err := a.Authorize(ctx, c.tap(100, true))
			if err != nil {
				t.Fatal(err)
			}
			if out.Decline == DeclineTokenSuspended {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d still authorizes a suspended token after 1 s: %+v", i, out)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
