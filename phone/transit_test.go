package phone_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/nfc"
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/node/local"
	"github.com/mipay-oss/mipay/phone"
	"github.com/mipay-oss/mipay/transit"
	"github.com/mipay-oss/mipay/transit/gate"
)

// TestTransitEndToEnd: every party runs in-process; a phone binds a debit
// card, gets a Shenzhen card paid in-app (the cryptogram goes through the
// network and the TSP to the bank as an 0200 with entry mode 091), tops it
// up 50 CNY, enters and leaves the metro and rides a bus in express mode
// over the NFC link, then moves the card to a second phone of the account.
func TestTransitEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts every party")
	}
	ctx := context.Background()
	data := t.TempDir()
	sys, err := local.Start(ctx, local.Options{DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		sys.Close(c)
	})
	party, ok := sys.Party(node.RoleTransit)
	if !ok {
		t.Fatal("node/local started no transit party")
	}
	tp := party.(*transit.Party)
	agency := tp.Addrs()["http"]

	is, _ := sys.Ref.Issuer("icbc-debit")
	ch := is.Cardholders[0]
	p := openPhone(t, sys, data, "alice")
	email := fmt.Sprintf("alice-%d@example.com", time.Now().UnixNano())
	if _, err := p.Register(ctx, ch.Phone, email, "correct horse battery staple"); err != nil {
		t.Fatal(err)
	}
	if err := p.Login(ctx, ch.Phone, "correct horse battery staple"); err != nil {
		t.Fatal(err)
	}
	if err := p.EnrollFinger(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := p.AddCard(ctx, phone.CardDetails{PAN: ch.PAN, Expiry: ch.Expiry, CVN2: ch.CVN2, Name: ch.Name, Phone: ch.Phone})
	if err != nil {
		t.Fatal(err)
	}
	if res.Decision == phone.DecisionOTP {
		code, err := p.LastCode(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.VerifyOTP(ctx, res.CardID, code); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("issue refused without the fingerprint", func(t *testing.T) {
		if _, err := p.TransitIssue(ctx, phone.TransitIssueOptions{Agency: agency, City: "sz", Finger: phone.FingerWrong}); err == nil {
			t.Fatal("issued with a wrong finger")
		}
	})
	tc, err := p.TransitIssue(ctx, phone.TransitIssueOptions{Agency: agency, City: "sz", Finger: phone.FingerOK})
	if err != nil {
		t.Fatalf("issue (fee paid in-app): %v", err)
	}
	t.Run("an issued card whose install was lost is installed again without a second fee", func(t *testing.T) {
		if err := p.SE().RemoveTransit(tc.CardNumber); err != nil {
			t.Fatal(err)
		}
		again, err := p.TransitIssue(ctx, phone.TransitIssueOptions{Agency: agency, City: "sz", Finger: phone.FingerNone})
		if err != nil || again.CardNumber != tc.CardNumber {
			t.Fatalf("reinstall: %+v %v", again, err)
		}
	})
	tc, err = p.TransitTopUp(ctx, phone.TransitTopUpOptions{Agency: agency, AmountMinor: 5000, Finger: phone.FingerOK})
	if err != nil {
		t.Fatalf("top-up: %v", err)
	}
	if tc.BalanceMinor != 5000 {
		t.Fatalf("balance %d after topping up 50.00", tc.BalanceMinor)
	}
	totals, err := tp.Service.PaymentTotals(ctx)
	if err != nil || totals[transit.PayApproved] != 6000 {
		t.Fatalf("payments %v %v, want 60.00 approved (fee and top-up)", totals, err)
	}

	token, err := transit.OperatorToken(data)
	if err != nil {
		t.Fatal(err)
	}
	city, _ := sys.Ref.City("sz")
	taps := []struct {
		station string
		mode    gate.Mode
		charged int64
	}{
		{"sz01", gate.ModeEntry, 0},
		{city.Stations[6].ID, gate.ModeExit, mustFare(t, city.MetroFare, "sz01", city.Stations[6].ID)},
		{"bus-1", gate.ModeBus, city.BusFareMinor},
	}
	balance := int64(5000)
	var gates []*gate.Gate
	for _, tp := range taps {
		cfg := gate.Config{DataDir: data, City: city, Station: tp.station, Mode: tp.mode, Agency: agency, OperatorToken: token}
		if _, err := gate.Provision(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		g, err := gate.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		gates = append(gates, g)
		r, err := nfc.Listen("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- p.TransitTap(ctx, r.Addr()) }() // express: no fingerprint
		sess, err := r.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out, err := g.Process(ctx, sess)
		sess.Close()
		r.Close()
		if err := <-done; err != nil {
			t.Fatalf("tap: %v", err)
		}
		if err != nil || !out.Open || out.ChargedMinor != tp.charged {
			t.Fatalf("%s %s: %+v %v, want open charging %d", tp.mode, tp.station, out, err, tp.charged)
		}
		balance -= tp.charged
	}
	hist, err := p.TransitHistory("")
	if err != nil || len(hist) != 4 || hist[0].Kind != "purchase" || hist[1].Kind != "metro" || hist[3].Kind != "load" {
		t.Fatalf("history %+v %v", hist, err)
	}
	for _, g := range gates {
		if _, err := g.Upload(ctx); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("move to a second phone keeps the cleared balance", func(t *testing.T) {
		p2 := openPhone(t, sys, data, "alice-new")
		if err := p2.Login(ctx, ch.Phone, "correct horse battery staple"); err != nil {
			t.Fatal(err)
		}
		moved, err := p.TransitMove(ctx, agency, "", p2)
		if err != nil {
			t.Fatal(err)
		}
		if moved.BalanceMinor != balance {
			t.Fatalf("moved balance %d, want %d", moved.BalanceMinor, balance)
		}
		cards, err := p2.TransitCards(ctx, agency)
		if err != nil {
			t.Fatal(err)
		}
		statuses := map[string]string{}
		for _, c := range cards {
			statuses[c.CardNumber] = c.Status
		}
		if statuses[moved.CardNumber] != transit.CardActive || statuses[tc.CardNumber] != transit.CardMoved {
			t.Fatalf("cards after the move %+v", cards)
		}
	})
}

func openPhone(t *testing.T, sys *local.System, data, name string) *phone.Phone {
	p, err := phone.Open(context.Background(), phone.Config{DataDir: data, Name: name, WalletURL: sys.URL(node.RoleWallet), SMSURL: sys.URL(node.RoleSMS)})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustFare(t *testing.T, f func(a, b string) (int64, error), a, b string) int64 {
	v, err := f(a, b)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
