package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/nfc"
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/phone"
	"github.com/mipay-oss/mipay/pos"
	"github.com/mipay-oss/mipay/store"
)

// recordingLink is a terminal's link to the network that keeps what it sent.
type recordingLink struct {
	c    *iso8583.Client
	mu   sync.Mutex
	sent []*iso8583.Message
	drop bool // send, then pretend no answer came
}

func (l *recordingLink) Send(ctx context.Context, m *iso8583.Message) (*iso8583.Message, error) {
	l.mu.Lock()
	l.sent = append(l.sent, m.Clone())
	drop := l.drop
	l.mu.Unlock()
	resp, err := l.c.Send(ctx, m)
	if drop && m.MTI() == iso8583.MTIFinancialRequest {
		return nil, fmt.Errorf("answer lost")
	}
	return resp, err
}

func (l *recordingLink) last(mti string) *iso8583.Message {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.sent) - 1; i >= 0; i-- {
		if l.sent[i].MTI() == mti {
			return l.sent[i]
		}
	}
	return nil
}

type terminal struct {
	*pos.Terminal
	link *recordingLink
}

func (s *system) newTerminal(tb testing.TB, id string) *terminal {
	tb.Helper()
	return s.newTerminalIn(tb, id, "")
}

// newTerminalIn is a terminal in a country (ISO 3166 numeric; "" is China).
func (s *system) newTerminalIn(tb testing.TB, id, country string) *terminal {
	tb.Helper()
	c, err := iso8583.Dial(context.Background(), iso8583.ClientConfig{Addr: s.Addr(node.RoleNetwork, "iso8583")})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	link := &recordingLink{c: c}
	t, err := pos.OpenTerminal(context.Background(), pos.TerminalConfig{ID: id, Country: country}, store.Config{Dir: tb.TempDir()}, link)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { t.Close() })
	return &terminal{Terminal: t, link: link}
}

// tap charges amount at the terminal while the phone pays with finger.
// Each finger is one tap; the terminal asks for a new tap after "See phone".
func tap(tb testing.TB, term *terminal, p *phone.Phone, amount int64, fingers ...phone.Finger) *pos.Receipt {
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
		rec, err := term.ChargeOnReader(ctx, r, pos.Charge{AmountMinor: amount, Currency: "156"})
		done <- result{rec, err}
	}()
	for _, f := range fingers {
		if _, err := p.Pay(ctx, phone.PayOptions{Finger: f, Reader: r.Addr()}); err != nil {
			tb.Fatalf("phone pay: %v", err)
		}
	}
	if len(fingers) < pos.DefaultMaxTaps {
		// The terminal may wait for another tap; a last one that does not
		// come ends the charge by timeout, so stop it here.
		select {
		case res := <-done:
			if res.err != nil {
				tb.Fatalf("charge: %v", res.err)
			}
			return res.rec
		case <-time.After(3 * time.Second):
			cancel()
			res := <-done
			return res.rec
		}
	}
	res := <-done
	if res.err != nil {
		tb.Fatalf("charge: %v", res.err)
	}
	return res.rec
}

func (s *system) ledgerOK(tb testing.TB) {
	tb.Helper()
	resp, err := http.Get(s.url(node.RoleIssuer) + "/v1/admin/ledger/check")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var rep struct {
		OK        bool     `json:"ok"`
		Approvals int64    `json:"approvals"`
		Reversals int64    `json:"reversals"`
		OpenHolds int64    `json:"openHolds"`
		Problems  []string `json:"problems"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		tb.Fatal(err)
	}
	if !rep.OK || rep.OpenHolds != rep.Approvals-rep.Reversals {
		tb.Fatalf("ledger invariant broken: %+v", rep)
	}
}

type account struct {
	AvailableMinor int64 `json:"availableMinor"`
	HeldMinor      int64 `json:"heldMinor"`
}

func (s *system) account(tb testing.TB, issuerID, pan string) account {
	tb.Helper()
	req, err := http.NewRequest(http.MethodGet, s.url(node.RoleIssuer)+"/v1/issuers/"+issuerID+"/accounts/"+pan[len(pan)-4:], nil)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.bankKey(tb, issuerID)) // a bank-staff endpoint
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Accounts []account `json:"accounts"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || len(out.Accounts) == 0 {
		tb.Fatalf("account of %s: %v", issuerID, err)
	}
	return out.Accounts[0]
}

// boundPhone is a phone with one card of issuerID's demo cardholder i.
// onlyCardID is the id of the one card on p.
func onlyCardID(tb testing.TB, p *phone.Phone) string {
	tb.Helper()
	cards, err := p.Cards(context.Background())
	if err != nil || len(cards) != 1 {
		tb.Fatalf("cards %+v %v", cards, err)
	}
	return cards[0].ID
}

func (s *system) boundPhone(tb testing.TB, name, issuerID string, i int) (*phone.Phone, phone.CardDetails) {
	tb.Helper()
	p := s.newPhone(tb, name)
	card := cardOf(s, tb, issuerID, i)
	onboard(tb, p, card.Phone)
	res, err := p.AddCard(context.Background(), card)
	if err != nil {
		tb.Fatalf("add card: %v", err)
	}
	if res.Decision == phone.DecisionOTP {
		code, err := p.LastCode(context.Background())
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := p.VerifyOTP(context.Background(), res.CardID, code); err != nil {
			tb.Fatal(err)
		}
	} else if res.Decision != phone.DecisionApproved {
		tb.Fatalf("binding %+v", res)
	}
	return p, card
}

func TestPay(t *testing.T) {
	s := mustStart(t, "", nil)
	ctx := context.Background()
	term := s.newTerminal(t, "TERM0001")
	p, card := s.boundPhone(t, "alice", "icbc-debit", 0)
	before := s.account(t, "icbc-debit", card.PAN)

	t.Run("approved with a good finger", func(t *testing.T) {
		rec := tap(t, term, p, 1250, phone.FingerOK)
		if rec.Outcome != pos.OutcomeApproved || rec.ResponseCode != "00" || rec.AuthCode == "" || !rec.ARPCPresent {
			t.Fatalf("receipt %+v", rec)
		}
		cards, _ := p.Cards(ctx)
		if rec.TokenLast4 != cards[0].TokenLast4 || rec.TokenLast4 == card.PAN[len(card.PAN)-4:] {
			t.Fatalf("receipt shows %s, token last 4 is %s", rec.TokenLast4, cards[0].TokenLast4)
		}
		after := s.account(t, "icbc-debit", card.PAN)
		if before.AvailableMinor-after.AvailableMinor != 1250 || after.HeldMinor-before.HeldMinor != 1250 {
			t.Fatalf("hold: before %+v after %+v", before, after)
		}
		s.ledgerOK(t)
	})

	t.Run("wallet shows the transaction and notifies the phone", func(t *testing.T) {
		deadline := time.Now().Add(5 * time.Second)
		for {
			txs, err := p.Transactions(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			if len(txs) == 1 && txs[0].Approved && txs[0].AmountMinor == 1250 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("transactions %+v", txs)
			}
			time.Sleep(50 * time.Millisecond)
		}
		ns, err := p.Notifications(ctx, 0, 2)
		if err != nil || len(ns) == 0 {
			t.Fatalf("notifications %+v %v", ns, err)
		}
	})

	t.Run("wrong finger: See phone and no authorization sent", func(t *testing.T) {
		n := len(term.link.sent)
		rec := tap(t, term, p, 1250, phone.FingerWrong)
		if rec.Outcome != pos.OutcomeSeePhone || len(term.link.sent) != n {
			t.Fatalf("receipt %+v, %d messages sent", rec, len(term.link.sent)-n)
		}
	})

	t.Run("wrong finger then approve on the phone and tap again", func(t *testing.T) {
		rec := tap(t, term, p, 300, phone.FingerWrong, phone.FingerOK)
		if rec.Outcome != pos.OutcomeApproved || rec.Taps != 2 {
			t.Fatalf("receipt %+v", rec)
		}
	})

	t.Run("replayed cryptogram declined", func(t *testing.T) {
		orig := term.link.last(iso8583.MTIFinancialRequest)
		replay := orig.Clone()
		replay.SetString(11, "999001")
		replay.SetString(37, "999999999001")
		resp, err := term.link.c.Send(ctx, replay)
		if err != nil {
			t.Fatal(err)
		}
		if resp.String(39) != "05" {
			t.Fatalf("replay answered %s", resp.String(39))
		}
	})

	t.Run("duplicate 0200 gets the stored answer", func(t *testing.T) {
		orig := term.link.last(iso8583.MTIFinancialRequest)
		resp, err := term.link.c.Send(ctx, orig.Clone())
		if err != nil {
			t.Fatal(err)
		}
		if resp.String(39) != "00" {
			t.Fatalf("duplicate answered %s", resp.String(39))
		}
		s.ledgerOK(t)
	})

	t.Run("token without a cryptogram (e-commerce) declined 57", func(t *testing.T) {
		orig := term.link.last(iso8583.MTIFinancialRequest)
		m := orig.Clone()
		m.Unset(55)
		m.Unset(35)
		m.SetString(22, "812")
		m.SetString(11, "999002")
		m.SetString(37, "999999999002")
		resp, err := term.link.c.Send(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		if resp.String(39) != "57" {
			t.Fatalf("answered %s", resp.String(39))
		}
	})

	t.Run("reversal twice releases the hold once", func(t *testing.T) {
		before := s.account(t, "icbc-debit", card.PAN)
		term.link.drop = true
		rec := tap(t, term, p, 700, phone.FingerOK)
		term.link.drop = false
		if rec.Outcome != pos.OutcomeDeclined || !rec.Reversed {
			t.Fatalf("receipt %+v", rec)
		}
		rev := term.link.last(iso8583.MTIReversalRequest)
		again := rev.Clone()
		again.SetString(11, "999003")
		if resp, err := term.link.c.Send(ctx, again); err != nil || resp.String(39) != "00" {
			t.Fatalf("second reversal: %v", err)
		}
		waitFor(t, func() bool {
			a := s.account(t, "icbc-debit", card.PAN)
			return a.AvailableMinor == before.AvailableMinor && a.HeldMinor == before.HeldMinor
		})
		// The issuer frees memory before its write commits: wait for the
		// ledger to record the release (a loaded machine showed the gap).
		waitFor(t, func() bool { return s.ledgerReport(t).OK })
		s.ledgerOK(t)
	})

	t.Run("no plaintext PAN in any file or log line after paying", func(t *testing.T) { assertNoPAN(t, s) })
}

func TestDeclines(t *testing.T) {
	s := mustStart(t, "", nil)
	term := s.newTerminal(t, "TERM0002")
	t.Run("above the balance: 51", func(t *testing.T) {
		p, _ := s.boundPhone(t, "lowbal", "icbc-debit", 2) // 50.00 CNY
		rec := tap(t, term, p, 6000, phone.FingerOK)
		if rec.ResponseCode != "51" || rec.Outcome != pos.OutcomeDeclined {
			t.Fatalf("receipt %+v", rec)
		}
	})
	t.Run("credit card approved", func(t *testing.T) {
		p, _ := s.boundPhone(t, "credit", "icbc-credit", 0)
		if rec := tap(t, term, p, 88800, phone.FingerOK); rec.ResponseCode != "00" {
			t.Fatalf("receipt %+v", rec)
		}
	})
	t.Run("two phones with the same card: two tokens, both pay", func(t *testing.T) {
		a, _ := s.boundPhone(t, "twin-a", "ccb-debit", 0)
		card := cardOf(s, t, "ccb-debit", 0)
		b := s.newPhone(t, "twin-b")
		if err := b.Login(context.Background(), card.Phone, "correct horse battery staple"); err != nil {
			t.Fatal(err)
		}
		if err := b.EnrollFinger(context.Background()); err != nil {
			t.Fatal(err)
		}
		res, err := b.AddCard(context.Background(), card)
		if err != nil || res.Decision != phone.DecisionApproved {
			t.Fatalf("second device: %+v %v", res, err)
		}
		ca, _ := a.Cards(context.Background())
		cb, _ := b.Cards(context.Background())
		if ca[0].TokenLast4 == cb[0].TokenLast4 && ca[0].ID == cb[0].ID {
			t.Fatal("the same token on two devices")
		}
		for _, p := range []*phone.Phone{a, b} {
			if rec := tap(t, term, p, 1000, phone.FingerOK); rec.ResponseCode != "00" {
				t.Fatalf("%s: %+v", p.Name(), rec)
			}
		}
	})
	t.Run("another device's token with this device's cryptogram: 05", func(t *testing.T) {
		a, _ := s.boundPhone(t, "dev-a", "cmb-debit", 0)
		b, _ := s.boundPhone(t, "dev-b", "cmb-debit", 1)
		tap(t, term, a, 100, phone.FingerOK)
		msgA := term.link.last(iso8583.MTIFinancialRequest)
		tap(t, term, b, 100, phone.FingerOK)
		msgB := term.link.last(iso8583.MTIFinancialRequest).Clone()
		// B's chip data presented under A's token.
		msgB.SetString(2, msgA.String(2))
		msgB.SetString(35, msgA.String(35))
		msgB.SetString(14, msgA.String(14))
		msgB.SetString(11, "999004")
		msgB.SetString(37, "999999999004")
		resp, err := term.link.c.Send(context.Background(), msgB)
		if err != nil {
			t.Fatal(err)
		}
		if resp.String(39) != "05" {
			t.Fatalf("answered %s", resp.String(39))
		}
	})
	s.ledgerOK(t)
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
