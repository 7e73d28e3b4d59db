package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/network"
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/phone"
	"github.com/mipay-oss/mipay/pos"
	"github.com/mipay-oss/mipay/store"
)

// answerLink is a terminal's link that keeps the network's answers.
type answerLink struct {
	c       *iso8583.Client
	mu      sync.Mutex
	answers []*iso8583.Message
	drop    bool // send, then pretend no answer came
}

func (l *answerLink) Send(ctx context.Context, m *iso8583.Message) (*iso8583.Message, error) {
	resp, err := l.c.Send(ctx, m)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil && m.MTI() == iso8583.MTIFinancialRequest {
		l.answers = append(l.answers, resp.Clone())
	}
	if l.drop && m.MTI() == iso8583.MTIFinancialRequest {
		return nil, fmt.Errorf("answer lost")
	}
	return resp, err
}

func (l *answerLink) last(tb testing.TB) *iso8583.Message {
	tb.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.answers) == 0 {
		tb.Fatal("no answer from the network")
	}
	return l.answers[len(l.answers)-1]
}

// A Mi Pay payment of 60.00 CNY with an ICBC debit card at a restaurant
// (MCC 5812) gets ICBC's seeded default offer, 10 CNY off from 50 CNY: the
// terminal is approved for 60.00 with the saving in DE124, the card is held
// 50.00, the ledger balances. At a grocery (MCC 5411) the offer does not apply.
func TestBankOfferAtAuthorization(t *testing.T) {
	s := mustStart(t, "", nil)
	p, card := s.boundPhone(t, "diner", "icbc-debit", 0)
	c, err := iso8583.Dial(context.Background(), iso8583.ClientConfig{Addr: s.Addr(node.RoleNetwork, "iso8583")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	link := &answerLink{c: c}
	pt, err := pos.OpenTerminal(context.Background(), pos.TerminalConfig{ID: "REST0001", MCC: "5812"}, store.Config{Dir: t.TempDir()}, link)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pt.Close() })
	term := &terminal{Terminal: pt}

	before := s.account(t, "icbc-debit", card.PAN)
	rec := tap(t, term, p, 6000, phone.FingerOK)
	if rec.ResponseCode != "00" || rec.AmountMinor != 6000 {
		t.Fatalf("receipt %+v", rec)
	}
	ans := link.last(t)
	if ans.String(4) != "000000006000" {
		t.Fatalf("answer DE4 %s: the merchant is paid in full", ans.String(4))
	}
	promo, err := iso8583.ParsePromotion(ans.String(iso8583.FieldPromotion))
	if err != nil || promo.DiscountAmount != "000000001000" || promo.CampaignID != "icbc-mipay-10off50" {
		t.Fatalf("answer DE124 %+v (%v)", promo, err)
	}
	after := s.account(t, "icbc-debit", card.PAN)
	if before.AvailableMinor-after.AvailableMinor != 5000 || after.HeldMinor-before.HeldMinor != 5000 {
		t.Fatalf("cardholder held %d, want the discounted 5000", after.HeldMinor-before.HeldMinor)
	}
	s.ledgerOK(t)

	t.Run("grocery: no offer", func(t *testing.T) {
		groc := s.newTerminal(t, "GROC0001")
		before := s.account(t, "icbc-debit", card.PAN)
		if rec := tap(t, groc, p, 6000, phone.FingerOK); rec.ResponseCode != "00" {
			t.Fatalf("receipt %+v", rec)
		}
		if after := s.account(t, "icbc-debit", card.PAN); after.HeldMinor-before.HeldMinor != 6000 {
			t.Fatalf("held %d, want 6000", after.HeldMinor-before.HeldMinor)
		}
	})
	t.Run("per card per day: the second restaurant payment pays in full", func(t *testing.T) {
		before := s.account(t, "icbc-debit", card.PAN)
		if rec := tap(t, term, p, 6000, phone.FingerOK); rec.ResponseCode != "00" {
			t.Fatalf("receipt %+v", rec)
		}
		if link.last(t).Has(iso8583.FieldPromotion) {
			t.Fatal("a second discount on one card in one day")
		}
		if after := s.account(t, "icbc-debit", card.PAN); after.HeldMinor-before.HeldMinor != 6000 {
			t.Fatalf("held %d, want 6000", after.HeldMinor-before.HeldMinor)
		}
		s.ledgerOK(t)
	})
	t.Run("a reversed payment gives the offer back", func(t *testing.T) {
		p2, card2 := s.boundPhone(t, "diner2", "icbc-debit", 1)
		before := s.account(t, "icbc-debit", card2.PAN)
		link.mu.Lock()
		link.drop = true
		link.mu.Unlock()
		rec := tap(t, term, p2, 6000, phone.FingerOK)
		link.mu.Lock()
		link.drop = false
		link.mu.Unlock()
		if !rec.Reversed || !link.last(t).Has(iso8583.FieldPromotion) {
			t.Fatalf("receipt %+v: want a reversed payment that had the offer", rec)
		}
		waitFor(t, func() bool {
			a := s.account(t, "icbc-debit", card2.PAN)
			return a.AvailableMinor == before.AvailableMinor && a.HeldMinor == before.HeldMinor
		})
		// The per-card-per-day offer was released with the reversal: the
		// next restaurant payment of the day gets it.
		if rec := tap(t, term, p2, 6000, phone.FingerOK); rec.ResponseCode != "00" {
			t.Fatalf("receipt %+v", rec)
		}
		if !link.last(t).Has(iso8583.FieldPromotion) {
			t.Fatal("the offer was not given back by the reversal")
		}
		if a := s.account(t, "icbc-debit", card2.PAN); a.HeldMinor-before.HeldMinor != 5000 {
			t.Fatalf("held %d, want 5000", a.HeldMinor-before.HeldMinor)
		}
		s.ledgerOK(t)
	})
	t.Run("the operator sees the statistics and pauses the offer", func(t *testing.T) {
		secret, err := os.ReadFile(network.AdminTokenPath(s.dataDir))
		if err != nil {
			t.Fatal(err)
		}
		do := func(method, path string, out any) int {
			req, _ := http.NewRequest(method, s.url(node.RoleNetwork)+path, nil)
			req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(secret)))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if out != nil {
				if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
					t.Fatal(err)
				}
			}
			return resp.StatusCode
		}
		var st struct {
			Redemptions, Released, BudgetUsedMinor int64
		}
		if code := do("GET", "/v1/promo/campaigns/icbc-mipay-10off50/stats", &st); code != 200 || st.Redemptions != 2 || st.Released != 1 || st.BudgetUsedMinor != 2000 {
			t.Fatalf("stats: HTTP %d %+v", code, st)
		}
		req, _ := http.NewRequest("GET", s.url(node.RoleNetwork)+"/v1/promo/campaigns", nil)
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("without the secret: %v %v", resp.StatusCode, err)
		}
		if code := do("POST", "/v1/promo/campaigns/icbc-mipay-10off50/pause", nil); code != 200 {
			t.Fatalf("pause: HTTP %d", code)
		}
		// 50.00 CNY on the card: 60.00 less the offer would pass, the full amount does not.
		p3, _ := s.boundPhone(t, "diner3", "icbc-debit", 2)
		if rec := tap(t, term, p3, 6000, phone.FingerOK); rec.ResponseCode != "51" {
			t.Fatalf("paused offer: receipt %+v", rec)
		}
		if code := do("POST", "/v1/promo/campaigns/icbc-mipay-10off50/resume", nil); code != 200 {
			t.Fatalf("resume: HTTP %d", code)
		}
		if rec := tap(t, term, p3, 6000, phone.FingerOK); rec.ResponseCode != "00" {
			t.Fatalf("resumed offer: receipt %+v", rec)
		}
		s.ledgerOK(t)
	})
}
