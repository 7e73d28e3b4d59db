package network

import (
	"context"
	"testing"

	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/promo"
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
	link, eng := standInPromoAdvised(t, func(eng *promo.Engine) Promotions { return sweptBeforeConfirm{eng} })
	if st := stats(t, eng); st.BudgetUsedMinor != 0 || st.Confirmed != 0 {
		t.Fatalf("campaign %+v: the reservation was to be given back", st)
	}
	if m := link.last("0220"); m.Has(iso8583.FieldPromotion) {
		t.Fatalf("advice carries DE124 %q for a released reservation: the campaign pays a discount it gave back", m.String(iso8583.FieldPromotion))
	}
}
