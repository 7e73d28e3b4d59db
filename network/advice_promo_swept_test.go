package network

import (
	"context"
	"testing"

	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/promo"
	"github.com/mipay-oss/mipay/store/storetest"
)

// sweptBeforeConfirm is the promotions engine when the sweeper released a
// payment's reservation while its issuer was still being waited for (an
// authorization slower than the sweep age, or a node paused that long): the
// switch's confirmation then finds it released, which promo.Engine.Confirm
// answers with (false, nil), "not an error".
type sweptBeforeConfirm struct{ *promo.Engine }

func (s sweptBeforeConfirm) Confirm(ctx context.Context, id string) (bool, error) {
	if _, err := s.Engine.Release(ctx, id); err != nil {
		return false, err
	}
	return s.Engine.Confirm(ctx, id)
}

// A stand-in approval whose reservation the sweeper had already given back
// keeps no budget: its advice must carry no DE124, or the issuer books a
// discount the campaign no longer pays for. Before, only a Confirm error
// cleared it, and Confirm reports a released reservation without one.
func TestStandInAdviceNoPromotionSwept(t *testing.T) {
	db := storetest.Open(t, "network", Migrations())
	eng := newTestPromoEngine(t, 10)
	link := &adviceIssuer{adviceRC: "00"}
	h := promoStandIn(t, db, link, sweptBeforeConfirm{eng})
	defer h.sw.Close()
	if r := h.send(t, h.request(6000)); r.String(39) != "00" {
		t.Fatalf("rc %s", r.String(39))
	}
	if !link.last("0200").Has(iso8583.FieldPromotion) {
		t.Fatal("the original carried no DE124: the test needs a reservation")
	}
	waitFor(t, func() bool { a := advices(t, db); return len(a) == 1 && a[0].done == adviceAcked })
	if st := stats(t, eng); st.BudgetUsedMinor != 0 || st.Confirmed != 0 {
		t.Fatalf("campaign %+v: the reservation was to be given back", st)
	}
	if m := link.last("0220"); m.Has(iso8583.FieldPromotion) {
		t.Fatalf("advice carries DE124 %q for a released reservation: the campaign pays a discount it gave back", m.String(iso8583.FieldPromotion))
	}
}
