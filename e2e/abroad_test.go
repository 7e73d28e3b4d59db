package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/network"
	"github.com/mipay-oss/mipay/nfc"
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/phone"
	"github.com/mipay-oss/mipay/pos"
)

// tapIn charges amount (minor units of currency) with one good finger.
func tapIn(tb testing.TB, term *terminal, p *phone.Phone, amount int64, currency string) (*pos.Receipt, error) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := nfc.Listen("127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer r.Close()
	type result struct {
		rec *pos.Receipt
		err error
	}
	done := make(chan result, 1)
	go func() {
		rec, err := term.ChargeOnReader(ctx, r, pos.Charge{AmountMinor: amount, Currency: currency})
		done <- result{rec, err}
	}()
	if _, err := p.Pay(ctx, phone.PayOptions{Finger: phone.FingerOK, Reader: r.Addr()}); err != nil {
		cancel()
		res := <-done
		if res.err != nil {
			return res.rec, res.err
		}
		tb.Fatalf("phone pay: %v", err)
	}
	res := <-done
	return res.rec, res.err
}

// publishRates posts a rate table version through the network's admin API.
func (s *system) publishRates(tb testing.TB, rs config.RateSet) {
	tb.Helper()
	secret, err := os.ReadFile(network.AdminTokenPath(s.dataDir))
	if err != nil {
		tb.Fatal(err)
	}
	body, _ := json.Marshal(rs)
	req, _ := http.NewRequest("POST", s.url(node.RoleNetwork)+"/v1/admin/rates", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(secret)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		tb.Fatalf("publish rates: HTTP %d", resp.StatusCode)
	}
}

// abroadRef adds to icbc-debit a domestic-only product with one demo card
// (the last cardholder).
func abroadRef(ref *config.Reference) {
	debit, _ := ref.Issuer("icbc-debit")
	debit.Products = append(debit.Products, config.Product{Code: "HOMEONLY", Name: "Home only debit", Art: "#112233/#445566"})
	debit.CrossBorder.DomesticOnlyProducts = []string{"HOMEONLY"}
	ch := debit.Cardholders[0]
	body := debit.BINs[0] + "77700001"
	body += strings.Repeat("0", debit.PANLength-1-len(body))
	ch.PAN, ch.Name, ch.Phone, ch.Product, ch.Note = body+config.LuhnDigit(body), "HOME ONLY", "13900007777", "HOMEONLY", ""
	debit.Cardholders = append(debit.Cardholders, ch)
}

func TestPayAbroad(t *testing.T) {
	s := mustStart(t, "", abroadRef)
	ctx := context.Background()
	p, card := s.boundPhone(t, "traveller", "icbc-debit", 0)

	// The embedded default rates (config/rates.json), in effect since the
	// network started; billing amounts exact to the fen, half up.
	for _, tc := range []struct {
		name              string
		country, currency string
		amount, billed    int64
		rate              string
	}{
		{"JPY 1200 in Tokyo", "392", "392", 1200, 5654, "0.04712000"},     // 56.544
		{"USD 12.34 in New York", "840", "840", 1234, 8765, "7.103000"},   // 87.65102
		{"EUR 99.99 in Paris", "250", "978", 9999, 82132, "8.214000"},     // 821.31786
		{"HKD 88.80 in Hong Kong", "344", "344", 8880, 8103, "0.9125000"}, // 81.03
		{"KWD 12.345 in Kuwait", "414", "414", 12345, 28548, "23.12500"},  // 285.478125
	} {
		t.Run(tc.name, func(t *testing.T) {
			term := s.newTerminalIn(t, "TERM"+tc.country+"1", tc.country)
			before := s.account(t, "icbc-debit", card.PAN)
			rec, err := tapIn(t, term, p, tc.amount, tc.currency)
			if err != nil || rec.Outcome != pos.OutcomeApproved {
				t.Fatalf("receipt %+v, %v", rec, err)
			}
			sent := term.link.last(iso8583.MTIFinancialRequest)
			if sent.String(19) != tc.country || sent.String(49) != tc.currency {
				t.Fatalf("terminal sent DE19 %s DE49 %s", sent.String(19), sent.String(49))
			}
			after := s.account(t, "icbc-debit", card.PAN)
			if before.AvailableMinor-after.AvailableMinor != tc.billed || after.HeldMinor-before.HeldMinor != tc.billed {
				t.Fatalf("held %d fen, want %d", after.HeldMinor-before.HeldMinor, tc.billed)
			}
			if rec.BillingAmountMinor != tc.billed || rec.ConversionRate != tc.rate {
				t.Fatalf("receipt billed %d at %s, want %d at %s", rec.BillingAmountMinor, rec.ConversionRate, tc.billed, tc.rate)
			}
			s.ledgerOK(t)
		})
	}

	t.Run("the phone is notified of both amounts and the rate", func(t *testing.T) {
		var seen map[string]any
		waitFor(t, func() bool {
			ns, err := p.Notifications(ctx, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range ns {
				if n.Payload["currency"] == "414" {
					seen = n.Payload
					return true
				}
			}
			return false
		})
		if seen["amountMinor"] != float64(12345) || seen["billingAmountMinor"] != float64(28548) ||
			seen["billingCurrency"] != "156" || seen["conversionRate"] != "23.12500" || seen["country"] != "414" {
			t.Fatalf("notification %v", seen)
		}
	})

	t.Run("a rate change between authorization and reversal: the reversal releases what was held", func(t *testing.T) {
		term := s.newTerminalIn(t, "TERMJP02", "392")
		before := s.account(t, "icbc-debit", card.PAN)
		rec, err := tapIn(t, term, p, 5000, "392")
		if err != nil || rec.Outcome != pos.OutcomeApproved {
			t.Fatalf("receipt %+v, %v", rec, err)
		}
		held := s.account(t, "icbc-debit", card.PAN)
		if before.AvailableMinor-held.AvailableMinor != 23560 { // 5000 × 0.04712 = 235.60
			t.Fatalf("held %d", before.AvailableMinor-held.AvailableMinor)
		}
		s.publishRates(t, config.RateSet{Version: 2, Rates: map[string]string{"JPY": "0.05", "USD": "7.2"}})
		orig := term.link.last(iso8583.MTIFinancialRequest)
		rev := orig.Clone()
		rev.SetMTI(iso8583.MTIReversalRequest)
		rev.Unset(35)
		rev.Unset(55)
		rev.SetString(11, "900001")
		de90, _ := iso8583.OriginalData{MTI: orig.MTI(), STAN: orig.String(11), TransmissionTime: orig.String(7), AcquirerID: orig.String(32)}.Format()
		rev.SetString(90, de90)
		resp, err := term.link.c.Send(ctx, rev)
		if err != nil || resp.String(39) != "00" {
			t.Fatalf("reversal: %v %s", err, resp.String(39))
		}
		waitFor(t, func() bool { return s.account(t, "icbc-debit", card.PAN) == before })
		// The issuer frees memory before its write commits: wait for the
		// ledger to record the release.
		waitFor(t, func() bool { return s.ledgerReversals(t) == 1 })
		s.ledgerOK(t)
		// A new payment takes the new rate.
		rec, err = tapIn(t, term, p, 5000, "392")
		if err != nil || rec.Outcome != pos.OutcomeApproved || rec.BillingAmountMinor != 25000 {
			t.Fatalf("receipt %+v, %v", rec, err)
		}
	})

	t.Run("a country without acceptance declined 58", func(t *testing.T) {
		term := s.newTerminalIn(t, "TERMKP01", "408")
		rec, err := tapIn(t, term, p, 100, "840")
		if err != nil || rec.Outcome != pos.OutcomeDeclined || rec.ResponseCode != network.RCNotPermittedTerminal {
			t.Fatalf("receipt %+v, %v", rec, err)
		}
	})

	t.Run("an unknown currency refused with a clear error", func(t *testing.T) {
		term := s.newTerminalIn(t, "TERMJP03", "392")
		_, err := term.ChargeOnReader(ctx, nil, pos.Charge{AmountMinor: 100, Currency: "999"})
		if err == nil || !strings.Contains(err.Error(), "unknown currency 999") {
			t.Fatalf("terminal: %v", err)
		}
		// A terminal that sends one anyway is declined by the switch (12).
		if rec, err := tapIn(t, term, p, 100, "392"); err != nil || rec.Outcome != pos.OutcomeApproved {
			t.Fatalf("receipt %+v %v", rec, err)
		}
		m := term.link.last(iso8583.MTIFinancialRequest)
		bad := m.Clone()
		bad.SetString(11, "900002")
		bad.SetString(37, "999999900002")
		bad.SetString(49, "999")
		resp, err := term.link.c.Send(ctx, bad)
		if err != nil || resp.String(39) != network.RCInvalidTxn {
			t.Fatalf("switch answered %s, %v", resp.String(39), err)
		}
	})

	t.Run("a domestic-only card abroad declined 57, at home approved", func(t *testing.T) {
		is, _ := s.ref.Issuer("icbc-debit")
		hp, _ := s.boundPhone(t, "homebody", "icbc-debit", len(is.Cardholders)-1)
		rec, err := tapIn(t, s.newTerminalIn(t, "TERMJP05", "392"), hp, 1200, "392")
		if err != nil || rec.Outcome != pos.OutcomeDeclined || rec.ResponseCode != "57" {
			t.Fatalf("abroad: receipt %+v, %v", rec, err)
		}
		rec, err = tapIn(t, s.newTerminalIn(t, "TERMCN05", "156"), hp, 1200, "156")
		if err != nil || rec.Outcome != pos.OutcomeApproved {
			t.Fatalf("at home: receipt %+v, %v", rec, err)
		}
		s.ledgerOK(t)
	})
}

// ledgerReversals is the number of reversed approvals the issuer ledger holds.
func (s *system) ledgerReversals(tb testing.TB) int64 {
	tb.Helper()
	resp, err := http.Get(s.url(node.RoleIssuer) + "/v1/admin/ledger/check")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var rep struct {
		Reversals int64 `json:"reversals"`
		Releases  int64 `json:"releases"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		tb.Fatal(err)
	}
	return min(rep.Reversals, rep.Releases)
}
