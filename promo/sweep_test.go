package promo

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A switch that crashed between reserve and record never settles its
// reservation: the sweeper gives the budget and counters back once, and
// leaves settled and young reservations alone.
func TestSweepReleasesStrandedReservationsOnce(t *testing.T) {
	clk := newClock(testNow)
	e, _ := MustOpenEngine(t, clk.Now)
	c := fixedCampaign("sweep", 1000, 2000)
	c.Limits.PerCard = 1
	mustCreate(t, e, c)
	ctx := context.Background()

	stranded, ok, err := e.Reserve(ctx, payment("crashed-card", 6000))
	if err != nil || !ok {
		t.Fatalf("reserve: %v %v", ok, err)
	}
	approved, ok, err := e.Reserve(ctx, payment("paid-card", 6000))
	if err != nil || !ok {
		t.Fatalf("reserve: %v %v", ok, err)
	}
	if moved, err := e.Confirm(ctx, approved.ID); err != nil || !moved {
		t.Fatalf("confirm: %v %v", moved, err)
	}
	// The budget (2 discounts) is used up.
	if _, ok, _ := e.Reserve(ctx, payment("third-card", 6000)); ok {
		t.Fatal("a third discount was granted over the budget")
	}

	// Too young: nothing is swept.
	clk.Set(testNow.Add(DefaultSweepAge - time.Second))
	if n, err := e.Sweep(ctx, DefaultSweepAge); err != nil || n != 0 {
		t.Fatalf("sweep before the bound released %d (%v)", n, err)
	}

	clk.Set(testNow.Add(DefaultSweepAge + time.Second))
	// Two sweepers at once (two switch nodes), then one more pass.
	var total atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := e.Sweep(ctx, DefaultSweepAge)
			if err != nil {
				t.Errorf("sweep: %v", err)
			}
			total.Add(int64(n))
		}()
	}
	wg.Wait()
	if n, err := e.Sweep(ctx, DefaultSweepAge); err != nil || n != 0 {
		t.Fatalf("a second sweep released %d more (%v)", n, err)
	}
	if total.Load() != 1 {
		t.Fatalf("sweeps released %d reservations, want exactly the stranded one", total.Load())
	}
	st, err := e.Stats(ctx, "", "sweep")
	if err != nil {
		t.Fatal(err)
	}
	if st.BudgetUsedMinor != 1000 || st.Redemptions != 1 || st.Released != 1 || st.Confirmed != 1 {
		t.Fatalf("stats after the sweep: %+v", st)
	}
	// A late release of the swept one (the switch came back) gives nothing twice.
	if ok, err := e.Release(ctx, stranded.ID); err != nil || ok {
		t.Fatalf("release after the sweep: %v %v", ok, err)
	}
	// Exactly one discount is free again, and the crashed card's per-card
	// counter was given back with it.
	if _, ok, _ := e.Reserve(ctx, payment("crashed-card", 6000)); !ok {
		t.Fatal("the swept card's per-card limit was not given back")
	}
	if _, ok, _ := e.Reserve(ctx, payment("fourth-card", 6000)); ok {
		t.Fatal("the sweep gave back more than the stranded discount")
	}
	if _, err := e.Sweep(ctx, 0); err == nil {
		t.Fatal("a sweep with no age bound was accepted")
	}
}
