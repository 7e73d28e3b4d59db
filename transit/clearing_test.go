package transit_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/mipay-oss/mipay/transit"
	"github.com/mipay-oss/mipay/transit/transittest"
)

// TestClearingManyCards: a batch over more cards than one query reads
// clears every good record, and says which are malformed, forged, of an
// unknown card or of another city's card — in record order — and a second
// upload of the same records is all duplicates.
func TestClearingManyCards(t *testing.T) {
	ctx := context.Background()
	a := transittest.NewAgency(t)
	var cards []string
	for i := range 66 {
		cards = append(cards, a.NewPhone(t, fmt.Sprint("m", i)).Issue(t, "sz"))
	}
	bj := a.NewPhone(t, "other-city").Issue(t, "bj")
	next := map[string]int64{}
	recs := signedRecords(t, append(cards, "3999000000000001", bj), next, 216)
	recs[3].Date = "2026-11" // malformed
	recs[5].TAC = "00000000" // forged
	res, err := a.Svc.Clear(ctx, transit.Batch{ID: "many-1", City: "sz", Terminal: "112233445566", Records: recs})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{transit.ExMalformed: 1, transit.ExBadTAC: 1, transit.ExUnknown: 6}
	got := map[string]int{}
	for _, e := range res.Exceptions {
		got[e.Kind]++
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || res.Cleared != 216-8 {
		t.Fatalf("cleared %d, exceptions %v (want %v)", res.Cleared, got, want)
	}
	if res.Exceptions[0].Kind != transit.ExMalformed || res.Exceptions[1].Kind != transit.ExBadTAC {
		t.Fatalf("exceptions out of record order: %+v", res.Exceptions[:2])
	}
	for _, n := range cards {
		c, err := a.Svc.Card(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if c.ClearedMinor != 200*c.ClearedRecords || c.ClearedRecords == 0 {
			t.Fatalf("card %s: %+v", n, c)
		}
	}
	again, err := a.Svc.Clear(ctx, transit.Batch{ID: "many-2", City: "sz", Terminal: "112233445566", Records: recs})
	if err != nil {
		t.Fatal(err)
	}
	if again.Cleared != 0 {
		t.Fatalf("replayed batch cleared %d", again.Cleared)
	}
	h, err := a.Svc.History(ctx, "m0", cards[0])
	if err != nil || len(h.Records) == 0 || h.Records[0].CardNumber != cards[0] || h.Records[0].TAC == "" {
		t.Fatalf("history from the stored records: %+v %v", h, err)
	}
}
