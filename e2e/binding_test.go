package e2e

import (
	"context"
	"testing"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/phone"
)

// greenIssuers are banks whose demo cards bind without an SMS code.
var greenIssuers = []string{"icbc-debit", "ccb-debit", "bocom-debit", "cmb-debit", "citic-debit", "ceb-debit",
	"cmbc-debit", "pab-debit", "cib-debit", "icbc-credit", "ccb-credit"}

func cardOf(s *system, tb testing.TB, issuerID string, i int) phone.CardDetails {
	c := s.demoCard(tb, issuerID, i)
	return phone.CardDetails{PAN: c.PAN, Expiry: c.Expiry, CVN2: c.CVN2, Name: c.Name, Phone: c.Phone}
}

func TestBinding(t *testing.T) {
	s := mustStart(t, "", nil)
	ctx := context.Background()

	t.Run("green path: approved and installed in the SE", func(t *testing.T) {
		p := s.newPhone(t, "green")
		card := cardOf(s, t, "icbc-debit", 0)
		onboard(t, p, card.Phone)
		res, err := p.AddCard(ctx, card)
		if err != nil {
			t.Fatalf("add card: %v", err)
		}
		if res.Decision != phone.DecisionApproved || !res.Installed {
			t.Fatalf("result %+v", res)
		}
		cards, err := p.Cards(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(cards) != 1 || cards[0].State != "ACTIVE" || !cards[0].InSE || cards[0].PANLast4 != card.PAN[len(card.PAN)-4:] || !cards[0].Default {
			t.Fatalf("cards %+v", cards)
		}
		if cards[0].TokenLast4 == cards[0].PANLast4 && len(p.SE().Cards()) != 1 {
			t.Fatalf("token and SE: %+v", cards[0])
		}
	})

	t.Run("yellow path: SMS code from the outbox activates the card", func(t *testing.T) {
		p := s.newPhone(t, "yellow")
		card := cardOf(s, t, "boc-debit", 0)
		onboard(t, p, card.Phone)
		res, err := p.AddCard(ctx, card)
		if err != nil {
			t.Fatalf("add card: %v", err)
		}
		if res.Decision != phone.DecisionOTP || res.OTPSentTo == "" || res.Installed {
			t.Fatalf("result %+v", res)
		}
		code, err := p.LastCode(ctx)
		if err != nil {
			t.Fatalf("no code in the SIM: %v", err)
		}
		if _, err := p.VerifyOTP(ctx, res.CardID, code); err != nil {
			t.Fatalf("verify: %v", err)
		}
		cards, _ := p.Cards(ctx)
		if len(cards) != 1 || cards[0].State != "ACTIVE" || !cards[0].InSE {
			t.Fatalf("cards %+v", cards)
		}
	})

	t.Run("red path: wrong CVN2 declined with a message that does not name the field", func(t *testing.T) {
		p := s.newPhone(t, "red")
		card := cardOf(s, t, "icbc-credit", 0)
		onboard(t, p, card.Phone)
		card.CVN2 = wrongCVN2(card.CVN2)
		res, err := p.AddCard(ctx, card)
		if err != nil {
			t.Fatalf("add card: %v", err)
		}
		if res.Decision != phone.DecisionDeclined || res.Message == "" {
			t.Fatalf("result %+v", res)
		}
		unknown := cardOf(s, t, "icbc-credit", 0)
		unknown.Expiry = "3101"
		res2, err := p.AddCard(ctx, unknown)
		if err != nil {
			t.Fatal(err)
		}
		if res2.Message != res.Message {
			t.Fatalf("a wrong CVN2 (%q) is told apart from a wrong expiry (%q)", res.Message, res2.Message)
		}
		if cards, _ := p.Cards(ctx); len(cards) != 0 {
			t.Fatalf("declined binding left cards: %+v", cards)
		}
	})

	t.Run("Luhn failure refused before the bank is asked", func(t *testing.T) {
		p := s.newPhone(t, "luhn")
		card := cardOf(s, t, "ccb-debit", 0)
		onboard(t, p, card.Phone)
		card.PAN = card.PAN[:len(card.PAN)-1] + string('0'+(card.PAN[len(card.PAN)-1]-'0'+1)%10)
		res, err := p.AddCard(ctx, card)
		if err == nil && (res == nil || res.Decision != phone.DecisionDeclined) {
			t.Fatalf("Luhn-invalid card accepted: %+v", res)
		}
	})

	t.Run("unsupported BIN declined", func(t *testing.T) {
		p := s.newPhone(t, "bin")
		card := cardOf(s, t, "ccb-debit", 1)
		onboard(t, p, card.Phone)
		card.PAN = luhn("411111111111111")
		res, err := p.AddCard(ctx, card)
		if err != nil {
			if mipay.ErrorCode(err) == mipay.EINVALID {
				return
			}
			t.Fatal(err)
		}
		if res.Decision != phone.DecisionDeclined {
			t.Fatalf("unsupported card: %+v", res)
		}
	})
}

func wrongCVN2(c string) string {
	if c == "999" {
		return "998"
	}
	return "999"
}

func luhn(body string) string { return body + config.LuhnDigit(body) }
