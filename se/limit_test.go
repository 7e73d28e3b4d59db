package se

import (
	"fmt"
	"testing"

	"github.com/mipay-oss/mipay"
)

// TestMaxPaymentCardsOption: a bench SE made with a higher limit holds that
// many cards and refuses one more; reopened without the option it is a
// handset's SE again (8), the option is not kept in its state.
func TestMaxPaymentCardsOption(t *testing.T) {
	data := t.TempDir()
	f, err := OpenFactory(data)
	if err != nil {
		t.Fatal(err)
	}
	const limit = 12
	s, err := Manufacture(data+"/bench", f, Options{MaxPaymentCards: limit})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < limit; i++ {
		if _, err := s.Install(profileFor(t, s, fmt.Sprintf("B%d", i), fmt.Sprintf("62345678901%05d", i))); err != nil {
			t.Fatalf("card %d: %v", i+1, err)
		}
	}
	if _, err := s.Install(profileFor(t, s, "B99", "6234567890199999")); mipay.ErrorCode(err) != mipay.ELIMIT {
		t.Fatalf("card %d: %v", limit+1, err)
	}
	again, err := Open(data+"/bench", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.Install(profileFor(t, again, "B98", "6234567890199998")); mipay.ErrorCode(err) != mipay.ELIMIT || len(again.Cards()) != limit {
		t.Fatalf("a handset's SE with %d cards took another: %v", len(again.Cards()), err)
	}
}
