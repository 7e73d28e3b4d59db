package network

import (
	"context"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/promo"
)

// A stand-in approval (the issuer did not answer in time, but it may have
// booked the discount) keeps the budget: the reservation is confirmed, so
// the engine's sweeper never gives it back; the acquirer is shown no saving.
// The issuer's points are not carried either (it did not answer).
func TestPromotionKeptOnStandIn(t *testing.T) {
	h, eng, _ := mustPromoSwitch(t, 10, func(r *config.Reference) {
		is, _ := r.Issuer("icbc-debit")
		is.Timeout = config.Duration(50 * time.Millisecond)
		is.StandIn.Enabled = true
		is.StandIn.MaxMinor = 100_000
	})
	h.iss.delay.Store(int64(200 * time.Millisecond))
	r := h.send(t, h.request(6000))
	if r.String(39) != "00" || r.Has(iso8583.FieldPromotion) {
		t.Fatalf("stand-in answer: rc %s, DE124 %q", r.String(39), r.String(iso8583.FieldPromotion))
	}
	waitConfirmed := func() promo.Stats {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			st := stats(t, eng)
			if st.Confirmed == 1 || time.Now().After(deadline) {
				return st
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if st := waitConfirmed(); st.Confirmed != 1 || st.Redemptions != 1 || st.BudgetUsedMinor != 1000 {
		t.Fatalf("stats after a stand-in approval %+v", st)
	}
	// Even a sweep that treats every reservation as old gives nothing back.
	if n, err := eng.Sweep(context.Background(), time.Nanosecond); err != nil || n != 0 {
		t.Fatalf("sweep released %d (%v) of a stand-in approval", n, err)
	}
}
