package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/phone"
)

// smsCode reads the last verification code sent to a number.
func (s *system) smsCode(tb testing.TB, number string) string {
	tb.Helper()
	resp, err := http.Get(s.url(node.RoleSMS) + "/v1/outbox/" + url.PathEscape(number))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Messages []struct{ Text string } `json:"messages"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		tb.Fatal(err)
	}
	for i := len(out.Messages) - 1; i >= 0; i-- {
		if c := findSixDigits(out.Messages[i].Text); c != "" {
			return c
		}
	}
	tb.Fatalf("no code sent to %s", number)
	return ""
}

func findSixDigits(s string) string {
	for i := 0; i+6 <= len(s); i++ {
		ok := true
		for j := i; j < i+6; j++ {
			if s[j] < '0' || s[j] > '9' {
				ok = false
				break
			}
		}
		if ok && (i == 0 || s[i-1] < '0' || s[i-1] > '9') && (i+6 == len(s) || s[i+6] < '0' || s[i+6] > '9') {
			return s[i : i+6]
		}
	}
	return ""
}

// A campaign's per-account limit counts every card of one Mi account: the
// TSP answers each de-tokenization with an opaque reference of the account
// the token was made for (a keyed hash of the wallet's account id), and the
// switch reserves the account's counter with the card's, atomically. Two
// cards of one account (on two phones) share the limit; another account
// has its own.
func TestPerAccountLimitAcrossCards(t *testing.T) {
	s := mustStart(t, "", nil)
	ctx := context.Background()
	icbc := s.bankKey(t, "icbc-debit")
	now := time.Now()
	code, out := s.bankPromo(t, icbc, "POST", "/v1/issuers/icbc-debit/campaigns", map[string]any{
		"id": "icbc-two-per-account", "name": "1 CNY off, twice per Mi account", "currency": "CNY",
		"eligibility": map[string]any{"channel": "mipay", "mccs": []string{"5999"}},
		"benefit":     map[string]any{"kind": "fixed", "amountMinor": 100},
		"limits":      map[string]any{"budgetMinor": 1_000_000, "perAccount": 2},
		"window":      map[string]any{"start": now.Add(-time.Hour), "end": now.Add(24 * time.Hour)},
	})
	if code != http.StatusCreated {
		t.Fatalf("create: HTTP %d %v", code, out)
	}

	// Account A: card 0 on one phone, card 1 on a second phone of the same account.
	p1, card1 := s.boundPhone(t, "acct-a-1", "icbc-debit", 0)
	p2 := s.newPhone(t, "acct-a-2")
	if err := p2.Login(ctx, card1.Phone, "correct horse battery staple"); err != nil {
		t.Fatalf("second phone of the account: %v", err)
	}
	if err := p2.EnrollFinger(ctx); err != nil {
		t.Fatal(err)
	}
	card2 := cardOf(s, t, "icbc-debit", 1)
	res, err := p2.AddCard(ctx, card2)
	if err != nil {
		t.Fatalf("add card: %v", err)
	}
	if res.Decision == phone.DecisionOTP {
		if _, err := p2.VerifyOTP(ctx, res.CardID, s.smsCode(t, card2.Phone)); err != nil {
			t.Fatal(err)
		}
	} else if res.Decision != phone.DecisionApproved {
		t.Fatalf("binding %+v", res)
	}
	// Account B.
	p3, _ := s.boundPhone(t, "acct-b", "icbc-debit", 2)

	link, term := s.answerTerminal(t, "MISC0301", "5999")
	discounted := func(p *phone.Phone) bool {
		t.Helper()
		if rec := tap(t, term, p, 1500, phone.FingerOK); rec.ResponseCode != "00" {
			t.Fatalf("receipt %+v", rec)
		}
		f, err := iso8583.ParsePromotion(link.last(t).String(iso8583.FieldPromotion))
		return err == nil && f.CampaignID == "icbc-two-per-account"
	}
	if !discounted(p1) || !discounted(p2) {
		t.Fatal("the account's first two payments (one per card) were not discounted")
	}
	if discounted(p1) {
		t.Fatal("a third discount on the account (card 1 again) over perAccount 2")
	}
	if discounted(p2) {
		t.Fatal("a third discount on the account (card 2 again) over perAccount 2")
	}
	if !discounted(p3) {
		t.Fatal("another account's card was refused")
	}
	code, st := s.bankPromo(t, icbc, "GET", "/v1/issuers/icbc-debit/campaigns/icbc-two-per-account/stats", nil)
	if code != 200 || st["redemptions"] != 3.0 {
		t.Fatalf("stats: HTTP %d %v", code, st)
	}
	s.ledgerOK(t)
}
