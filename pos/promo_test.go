package pos

import (
	"context"
	"testing"

	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/store"
)

// answerLink approves (or declines) every request, with DE124 when set.
type answerLink struct {
	rc    string
	de124 string
}

func (l answerLink) Send(_ context.Context, req *iso8583.Message) (*iso8583.Message, error) {
	resp := req.Clone()
	resp.SetMTI(iso8583.MTIFinancialResponse)
	resp.SetString(39, l.rc)
	if l.rc == "00" {
		resp.SetString(38, "123456")
	}
	if l.de124 != "" {
		resp.SetString(iso8583.FieldPromotion, l.de124)
	}
	return resp, nil
}

func mustDE124(tb testing.TB, orig, disc string) string {
	tb.Helper()
	s, err := iso8583.Promotion{OriginalAmount: orig, DiscountAmount: disc, CampaignID: "icbc-mipay-10off50", Points: "2"}.Encode()
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// TestReceiptSaving: an approval carrying DE124 shows the saving on the
// receipt, for the full amount (the merchant is paid in full); anything
// else shows none.
func TestReceiptSaving(t *testing.T) {
	ctx := context.Background()
	read := &Read{Token: "6234567890123456", Expiry: "2912", PSN: "01", Track2: "6234567890123456D2912", ICC: []byte{0x9f, 0x26, 0x00}}
	for name, c := range map[string]struct {
		link     answerLink
		discount int64
	}{
		"approval with an offer":          {answerLink{"00", mustDE124(t, "000000006000", "000000001000")}, 1000},
		"approval without an offer":       {answerLink{"00", ""}, 0},
		"decline with a stray DE124":      {answerLink{"51", mustDE124(t, "000000006000", "000000001000")}, 0},
		"DE124 for another amount":        {answerLink{"00", mustDE124(t, "000000005000", "000000001000")}, 0},
		"a saving not below the amount":   {answerLink{"00", mustDE124(t, "000000006000", "000000006000")}, 0},
		"a DE124 that does not parse":     {answerLink{"00", "garbage"}, 0},
		"a zero discount shows no saving": {answerLink{"00", mustDE124(t, "000000006000", "000000000000")}, 0},
	} {
		t.Run(name, func(t *testing.T) {
			term, err := OpenTerminal(ctx, TerminalConfig{MCC: "5812"}, store.Config{Dir: t.TempDir()}, c.link)
			if err != nil {
				t.Fatal(err)
			}
			defer term.Close()
			rec := &Receipt{AmountMinor: 6000, Currency: "156"}
			rec, err = term.authorize(ctx, read, Charge{AmountMinor: 6000, Currency: "156"}, rec)
			if err != nil {
				t.Fatal(err)
			}
			if rec.AmountMinor != 6000 || rec.DiscountMinor != c.discount {
				t.Fatalf("receipt amount %d saving %d, want 6000 and %d", rec.AmountMinor, rec.DiscountMinor, c.discount)
			}
			if (rec.CampaignID != "") != (c.discount > 0) {
				t.Fatalf("campaign %q with saving %d", rec.CampaignID, rec.DiscountMinor)
			}
		})
	}
}
