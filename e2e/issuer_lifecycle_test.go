package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/issuer"
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/tsp"
)

// replacementCard is a new card of the same BIN as old: other last 4 digits,
// a later expiry, a balance of its own.
func replacementCard(tb testing.TB, is *config.Issuer, old config.Cardholder) config.Cardholder {
	tb.Helper()
	taken := map[string]bool{}
	for _, c := range is.Cardholders {
		taken[c.PAN[len(c.PAN)-4:]] = true
	}
	for n := 0; n < 1000; n++ {
		body := []byte(old.PAN[:len(old.PAN)-1])
		copy(body[len(body)-4:], []byte{'9', byte('0' + n/100%10), byte('0' + n/10%10), byte('0' + n%10)})
		for d := byte('0'); d <= '9'; d++ {
			pan := string(body) + string(d)
			if tsp.LuhnValid(pan) && !taken[pan[len(pan)-4:]] {
				c := old
				c.PAN, c.Expiry, c.BalanceMinor, c.Status = pan, "3112", 100000, ""
				return c
			}
		}
	}
	tb.Fatal("no replacement card number")
	return config.Cardholder{}
}

// bankKey is the operator key the issuer host made for a bank on its
// first start (<data>/issuer/operator-keys/<id>.key).
func (s *system) bankKey(tb testing.TB, issuerID string) string {
	tb.Helper()
	k, err := issuer.ReadOperatorKey(filepath.Join(s.dataDir, node.RoleIssuer, issuer.OperatorKeyDir), issuerID)
	if err != nil {
		tb.Fatalf("operator key of %s: %v", issuerID, err)
	}
	return k
}

// bankCall posts an operator request to the issuer host with the key of the
// bank named in the path (/v1/issuers/{id}/…).
func (s *system) bankCall(tb testing.TB, path string, body, out any) int {
	tb.Helper()
	bank, _, _ := strings.Cut(strings.TrimPrefix(path, "/v1/issuers/"), "/")
	return s.bankCallAs(tb, s.bankKey(tb, bank), path, body, out)
}

// bankCallAs is bankCall with the given key ("" sends none).
func (s *system) bankCallAs(tb testing.TB, key, path string, body, out any) int {
	tb.Helper()
	b, _ := json.Marshal(body)
	req, err := http.NewRequest(http.MethodPost, s.url(node.RoleIssuer)+path, bytes.NewReader(b))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var raw bytes.Buffer
	raw.ReadFrom(resp.Body)
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw.Bytes(), out); err != nil {
			tb.Fatalf("%s: %v: %s", path, err, raw.String())
		}
	}
	return resp.StatusCode
}

type bankAnswer struct {
	PAN     string `json:"pan"`
	Changed int    `json:"changed"`
	Tokens  []struct {
		TokenRef string `json:"tokenUniqueReference"`
		State    string `json:"state"`
		Changed  bool   `json:"changed"`
		Reason   string `json:"reason"`
	} `json:"tokens"`
	Replaced int `json:"replaced"`
}

// TestIssuerLifecycle: the bank suspends the tokens of a card (declined 62
// at the switch), resumes them (00), replaces the card by a new number and
// expiry (the same phone pays, the new card's account is debited) and
// deletes them (62 for good).
func TestIssuerLifecycle(t *testing.T) {
	const bank = "icbc-debit"
	var newCard config.Cardholder
	s := mustStart(t, "", func(r *config.Reference) {
		for i := range r.Issuers {
			if is := &r.Issuers[i]; is.ID == bank {
				newCard = replacementCard(t, is, is.Cardholders[0])
				is.Cardholders = append(is.Cardholders, newCard)
			}
		}
	})
	term := s.newTerminal(t, "BANK0001")
	p, card := s.boundPhone(t, "bank-victim", bank, 0)
	oldPAN := card.PAN
	payer := &cardPayer{src: newCardSource(t, p.SE()), c: term.link.c}
	if rc := payer.pay(t); rc != "00" {
		t.Fatalf("before: %s", rc)
	}
	action := func(t *testing.T, act string) bankAnswer {
		t.Helper()
		var out bankAnswer
		if code := s.bankCall(t, "/v1/issuers/"+bank+"/cards/token-actions", map[string]string{"pan": card.PAN, "action": act, "reason": "BANK_TEST"}, &out); code != http.StatusOK {
			t.Fatalf("%s: %d", act, code)
		}
		if strings.Contains(out.PAN, card.PAN) || len(out.Tokens) != 1 {
			t.Fatalf("%s: %+v", act, out)
		}
		return out
	}

	cardState := func() string {
		cards, err := p.Cards(context.Background())
		if err != nil || len(cards) != 1 {
			t.Fatalf("cards: %v %v", cards, err)
		}
		return cards[0].State
	}

	t.Run("bank suspends: 62, the wallet shows it", func(t *testing.T) {
		if out := action(t, "suspend"); out.Changed != 1 || out.Tokens[0].State != "SUSPENDED" {
			t.Fatalf("%+v", out)
		}
		eventually(t, "the switch declines the suspended card", func() bool { return payer.pay(t) == "62" })
		eventually(t, "the wallet shows the card suspended", func() bool { return cardState() == "SUSPENDED" })
	})
	t.Run("bank resumes: 00", func(t *testing.T) {
		if out := action(t, "resume"); out.Changed != 1 || out.Tokens[0].State != "ACTIVE" {
			t.Fatalf("%+v", out)
		}
		eventually(t, "the switch approves again", func() bool { return payer.pay(t) == "00" })
	})
	t.Run("card replaced: same phone pays from the new card", func(t *testing.T) {
		oldBefore, newBefore := s.account(t, bank, card.PAN), s.account(t, bank, newCard.PAN)
		var out bankAnswer
		if code := s.bankCall(t, "/v1/issuers/"+bank+"/cards/replace", map[string]string{"oldPan": card.PAN, "newPan": newCard.PAN}, &out); code != http.StatusOK || out.Replaced != 1 {
			t.Fatalf("replace: %d %+v", code, out)
		}
		// The next approval must debit the new card (the old one is blocked
		// at the bank: a stale de-tokenization would be declined there).
		eventually(t, "the switch de-tokenizes to the new card", func() bool { return payer.pay(t) == "00" })
		oldAfter, newAfter := s.account(t, bank, card.PAN), s.account(t, bank, newCard.PAN)
		if newBefore.AvailableMinor-newAfter.AvailableMinor != 100 || newAfter.HeldMinor-newBefore.HeldMinor != 100 {
			t.Fatalf("new card: before %+v after %+v", newBefore, newAfter)
		}
		if oldAfter != oldBefore {
			t.Fatalf("old card moved: before %+v after %+v", oldBefore, oldAfter)
		}
		s.ledgerOK(t)
		// The wallet's card (GET /v1/devices/{id}/cards) follows the bank:
		// the new last 4, from the TSP's event, never a PAN.
		newLast4 := newCard.PAN[len(newCard.PAN)-4:]
		eventually(t, "the wallet shows the new card's last 4", func() bool {
			cards, err := p.Cards(context.Background())
			return err == nil && len(cards) == 1 && cards[0].PANLast4 == newLast4 && cards[0].State == "ACTIVE"
		})
		notes, err := p.Notifications(context.Background(), 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, n := range notes {
			b, _ := json.Marshal(n)
			if strings.Contains(string(b), newCard.PAN) || strings.Contains(string(b), oldPAN) {
				t.Fatalf("a PAN in a notification: %s", b)
			}
			found = found || (strings.Contains(string(b), `"previousPanLast4":"`+oldPAN[len(oldPAN)-4:]+`"`) &&
				strings.Contains(string(b), `"cardExpiry":"`+newCard.Expiry+`"`))
		}
		if !found {
			t.Errorf("no notification of the replacement (new last 4 and expiry) in %+v", notes)
		}
	})
	t.Run("bank deletes: 62 for good", func(t *testing.T) {
		card.PAN = newCard.PAN // the tokens now belong to the new card
		if out := action(t, "delete"); out.Changed != 1 || out.Tokens[0].State != "DEACTIVATED" {
			t.Fatalf("%+v", out)
		}
		eventually(t, "the switch declines the deleted card", func() bool { return payer.pay(t) == "62" })
		if out := action(t, "resume"); out.Changed != 0 || out.Tokens[0].Reason != "TOKEN_DELETED" {
			t.Fatalf("resume after delete: %+v", out)
		}
		if rc := payer.pay(t); rc != "62" {
			t.Fatalf("after resume of a deleted card: %s", rc)
		}
	})
	t.Run("card reported stolen: 62, card lost at the bank", func(t *testing.T) {
		q, stolen := s.boundPhone(t, "bank-stolen", bank, 1)
		qp := &cardPayer{src: newCardSource(t, q.SE()), c: term.link.c}
		// Its own STANs: the first payer's, on the same terminal within the
		// same second, would be duplicates answered with the stored answer.
		qp.stan.Store(1 << 16)
		if rc := qp.pay(t); rc != "00" {
			t.Fatalf("before: %s", rc)
		}
		var out struct {
			bankAnswer
			CardStatus string `json:"cardStatus"`
		}
		// Without the bank's key, or with another bank's, nothing happens.
		stolenPath := "/v1/issuers/" + bank + "/cards/report-stolen"
		for key, want := range map[string]int{"": http.StatusUnauthorized, "mbk_not-a-key-of-anyone-at-all": http.StatusUnauthorized,
			s.bankKey(t, "boc-credit"): http.StatusForbidden} {
			if code := s.bankCallAs(t, key, stolenPath, map[string]string{"pan": stolen.PAN}, nil); code != want {
				t.Fatalf("report-stolen with key %.8q: %d, want %d", key, code, want)
			}
		}
		if rc := qp.pay(t); rc != "00" {
			t.Fatalf("after refused reports: %s", rc)
		}
		if code := s.bankCall(t, stolenPath, map[string]string{"pan": stolen.PAN}, &out); code != http.StatusOK ||
			out.CardStatus != "lost" || out.Changed != 1 || strings.Contains(out.PAN, stolen.PAN) {
			t.Fatalf("report stolen: %d %+v", code, out)
		}
		eventually(t, "the switch declines the stolen card's token", func() bool { return qp.pay(t) == "62" })
		// A bad action is refused by the bank host (400).
		var res struct{}
		if code := s.bankCall(t, "/v1/issuers/"+bank+"/cards/token-actions", map[string]string{"pan": stolen.PAN, "action": "bogus"}, &res); code != http.StatusBadRequest {
			t.Fatalf("bad action: %d", code)
		}
		if strings.Contains(s.logBuf.String(), stolen.PAN) {
			t.Fatal("the stolen card's PAN is in the logs")
		}
	})
	if strings.Contains(s.logBuf.String(), oldPAN) || strings.Contains(s.logBuf.String(), newCard.PAN) {
		t.Fatal("a full PAN is in the logs")
	}
	t.Run("no PAN in any file or log line", func(t *testing.T) { assertNoPAN(t, s) })
}
