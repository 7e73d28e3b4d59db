package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/logmask"
	"github.com/mipay-oss/mipay/nfc"
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/node/local"
	"github.com/mipay-oss/mipay/phone"
	"github.com/mipay-oss/mipay/pos"
	"github.com/mipay-oss/mipay/store"
)

// demoStep is one printed step of `mipay demo`.
type demoStep struct {
	Step   string `json:"step"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// demo is the state the story carries from step to step.
type demo struct {
	sys    *local.System
	phone  *phone.Phone
	term   *pos.Terminal
	link   *capturingLink
	tokyo  *pos.Terminal // a QuickPass terminal in Japan
	cafe   *pos.Terminal // a restaurant where ICBC's offer applies
	debit  string        // card ids
	credit string
	low    string
	// browser is the owner's portal session from another computer.
	browser *portalBrowser
	out     io.Writer
	json    bool
	failed  int
}

// capturingLink keeps the last authorization the terminal sent (the demo
// replays it as an attacker who recorded it would).
type capturingLink struct {
	c    *iso8583.Client
	last *iso8583.Message
}

func (l *capturingLink) Send(ctx context.Context, m *iso8583.Message) (*iso8583.Message, error) {
	if m.MTI() == iso8583.MTIFinancialRequest {
		l.last = m.Clone()
	}
	return l.c.Send(ctx, m)
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", "[--data DIR] [--json]", stderr)
	data := fs.String("data", "", "data directory (default: a fresh temporary one, removed afterwards)")
	asJSON := fs.Bool("json", false, "one JSON object per step")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	dir := *data
	if dir == "" {
		tmp, err := os.MkdirTemp("", "mipay-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	log := slog.New(logmask.NewHandler(slog.NewTextHandler(io.Discard, nil)))
	sys, err := local.Start(ctx, local.Options{DataDir: dir, Log: log})
	if err != nil {
		return fmt.Errorf("demo: start the parties: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = sys.Close(cctx)
	}()
	d := &demo{sys: sys, out: stdout, json: *asJSON}
	if !d.json {
		fmt.Fprintf(stdout, "mipay demo: every party running in this process (data in %s)\n\n", dir)
	}
	steps := []struct {
		name string
		fn   func(context.Context) (string, error)
	}{
		{"create account", d.createAccount},
		{"register phone", d.registerPhone},
		{"enroll finger", d.enrollFinger},
		{"bind debit card with SMS code", d.bindDebit},
		{"bind credit card", d.bindCredit},
		{"pay 12.50 CNY with a good finger", d.payGood},
		{"pay 1200 JPY in Tokyo, billed in CNY", d.payTokyo},
		{"wrong finger: See phone, nothing sent", d.payWrongFinger},
		{"replay a captured authorization", d.replay},
		{"pay above the balance", d.payAboveBalance},
		{"ICBC offer at a restaurant, saving shown", d.payWithOffer},
		{"issue a Shenzhen transit card", d.transitIssue},
		{"top up the transit card 50 CNY", d.transitTopUp},
		{"metro in and out, then a bus ride", d.transitRide},
		{"transit balance and history", d.transitBalance},
		{"phone lost: portal sign-in, second factor by e-mail", d.lostSignIn},
		{"portal: switch off Mi Pay on the phone", d.lostSwitchOff},
		{"a tap with the lost phone is declined", d.lostTap},
		{"found it: sign in again, cards back on", d.lostFound},
		{"pay again after found it", d.lostPayAgain},
		{"notifications", d.notifications},
	}
	for _, s := range steps {
		detail, err := s.fn(ctx)
		d.report(s.name, err == nil, detail, err)
		if err != nil && ctx.Err() != nil {
			break
		}
	}
	if d.failed > 0 {
		return fmt.Errorf("demo: %d step(s) did not behave as the story says", d.failed)
	}
	if !d.json {
		fmt.Fprintln(stdout, "\nEvery step behaved as the story says.")
	}
	return nil
}

func (d *demo) report(step string, ok bool, detail string, err error) {
	if err != nil {
		detail = err.Error()
		d.failed++
	}
	if d.json {
		_ = json.NewEncoder(d.out).Encode(demoStep{Step: step, OK: ok, Detail: detail})
		return
	}
	mark := "ok  "
	if !ok {
		mark = "FAIL"
	}
	fmt.Fprintf(d.out, "[%s] %-40s %s\n", mark, step, detail)
}

// The persona: the holder of Bank of China's first demo debit card (a bank
// that always confirms bindings by SMS).
func (d *demo) cardholder(issuerID string, i int) (config.Cardholder, error) {
	is, ok := d.sys.Ref.Issuer(issuerID)
	if !ok || len(is.Cardholders) <= i {
		return config.Cardholder{}, fmt.Errorf("no demo cardholder %d at %s", i, issuerID)
	}
	return is.Cardholders[i], nil
}

const (
	demoPassword = "mi-pay demo password"
	demoEmail    = "demo@example.com"
)

func (d *demo) createAccount(ctx context.Context) (string, error) {
	me, err := d.cardholder("boc-debit", 0)
	if err != nil {
		return "", err
	}
	p, err := phone.Open(ctx, phone.Config{DataDir: d.sys.DataDir, Name: "demo-phone", WalletURL: d.sys.URL(node.RoleWallet), SMSURL: d.sys.URL(node.RoleSMS)})
	if err != nil {
		return "", err
	}
	d.phone = p
	codes, err := p.Register(ctx, me.Phone, demoEmail, demoPassword)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("Mi account for %s, %d recovery codes", me.Phone, len(codes)), nil
}

func (d *demo) registerPhone(ctx context.Context) (string, error) {
	if err := d.phone.Login(ctx, d.phone.Number(), demoPassword); err != nil {
		return "", err
	}
	return fmt.Sprintf("device %s, secure element %s attested by its factory certificate", d.phone.DeviceID(), d.phone.SE().ID()), nil
}

func (d *demo) enrollFinger(ctx context.Context) (string, error) {
	return "fingerprint enrolled", d.phone.EnrollFinger(ctx)
}

func (d *demo) bind(ctx context.Context, issuerID string, i int, wantOTP bool) (string, string, error) {
	c, err := d.cardholder(issuerID, i)
	if err != nil {
		return "", "", err
	}
	res, err := d.phone.AddCard(ctx, phone.CardDetails{PAN: c.PAN, Expiry: c.Expiry, CVN2: c.CVN2, Name: c.Name, Phone: c.Phone})
	if err != nil {
		return "", "", err
	}
	switch {
	case wantOTP && res.Decision == phone.DecisionOTP:
		code, err := d.phone.LastCode(ctx)
		if err != nil {
			return "", "", err
		}
		if _, err := d.phone.VerifyOTP(ctx, res.CardID, code); err != nil {
			return "", "", err
		}
		return res.CardID, fmt.Sprintf("code sent to %s, read from the SMS and confirmed; card •••• %s active", res.OTPSentTo, c.PAN[len(c.PAN)-4:]), nil
	case !wantOTP && res.Decision == phone.DecisionApproved:
		return res.CardID, fmt.Sprintf("approved at once; card •••• %s active", c.PAN[len(c.PAN)-4:]), nil
	}
	return "", "", fmt.Errorf("binding decision %s (%s)", res.Decision, res.Message)
}

func (d *demo) bindDebit(ctx context.Context) (string, error) {
	id, detail, err := d.bind(ctx, "boc-debit", 0, true)
	d.debit = id
	return detail, err
}

func (d *demo) bindCredit(ctx context.Context) (string, error) {
	id, detail, err := d.bind(ctx, "icbc-credit", 0, false)
	d.credit = id
	if err == nil {
		err = d.phone.SetDefault(ctx, d.debit)
	}
	return detail, err
}

func (d *demo) terminal(ctx context.Context) error {
	if d.term != nil {
		return nil
	}
	c, err := iso8583.Dial(ctx, iso8583.ClientConfig{Addr: d.sys.Addr(node.RoleNetwork, "iso8583")})
	if err != nil {
		return err
	}
	d.link = &capturingLink{c: c}
	d.term, err = pos.OpenTerminal(ctx, pos.TerminalConfig{ID: "DEMO0001"}, store.Config{Dir: d.sys.DataDir}, d.link)
	return err
}

// tap runs one sale: the terminal listens, the phone takes the finger and
// taps once.
func (d *demo) tap(ctx context.Context, cardID string, amount int64, finger phone.Finger) (*pos.Receipt, error) {
	if err := d.terminal(ctx); err != nil {
		return nil, err
	}
	return d.tapOn(ctx, d.term, cardID, amount, "156", finger)
}

// tapOn runs one sale at a terminal in a currency (ISO 4217 numeric).
func (d *demo) tapOn(ctx context.Context, term *pos.Terminal, cardID string, amount int64, currency string, finger phone.Finger) (*pos.Receipt, error) {
	r, err := nfc.Listen("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		rec *pos.Receipt
		err error
	}
	done := make(chan result, 1)
	go func() {
		rec, err := term.ChargeOnReader(cctx, r, pos.Charge{AmountMinor: amount, Currency: currency})
		done <- result{rec, err}
	}()
	if _, err := d.phone.Pay(ctx, phone.PayOptions{CardID: cardID, Finger: finger, Reader: r.Addr()}); err != nil {
		return nil, err
	}
	select {
	case res := <-done:
		return res.rec, res.err
	case <-time.After(2 * time.Second):
		// The terminal waits for another tap ("See phone"); the demo stops it.
		cancel()
		res := <-done
		return res.rec, nil
	}
}

func (d *demo) payGood(ctx context.Context) (string, error) {
	rec, err := d.tap(ctx, d.debit, 1250, phone.FingerOK)
	if err != nil {
		return "", err
	}
	if rec.Outcome != pos.OutcomeApproved || !rec.ARPCPresent {
		return "", fmt.Errorf("terminal shows %s %s", rec.Outcome, rec.Response)
	}
	return fmt.Sprintf("approved, auth code %s, receipt shows token •••• %s only", rec.AuthCode, rec.TokenLast4), nil
}

// payTokyo pays in yen at a terminal in Japan: the switch converts to the
// CNY billing amount at the rate in effect, and the bank holds that.
func (d *demo) payTokyo(ctx context.Context) (string, error) {
	if d.tokyo == nil {
		c, err := iso8583.Dial(ctx, iso8583.ClientConfig{Addr: d.sys.Addr(node.RoleNetwork, "iso8583")})
		if err != nil {
			return "", err
		}
		t, err := pos.OpenTerminal(ctx, pos.TerminalConfig{ID: "TOKYO001", MerchantName: "Lawson Shibuya", City: "Tokyo",
			Country: "392", AcquirerID: "39200001"}, store.Config{Dir: d.sys.DataDir, Prefix: "pos_tokyo"}, &capturingLink{c: c})
		if err != nil {
			c.Close()
			return "", err
		}
		d.tokyo = t
	}
	rec, err := d.tapOn(ctx, d.tokyo, d.debit, 1200, "392", phone.FingerOK)
	if err != nil {
		return "", err
	}
	if rec.Outcome != pos.OutcomeApproved || rec.BillingCurrency != "156" || rec.BillingAmountMinor <= 0 {
		return "", fmt.Errorf("terminal shows %s %s (billed %d in %q)", rec.Outcome, rec.Response, rec.BillingAmountMinor, rec.BillingCurrency)
	}
	return fmt.Sprintf("%s approved; billed %s at %s CNY per JPY", pos.FormatAmount(rec.AmountMinor, rec.Currency),
		pos.FormatAmount(rec.BillingAmountMinor, rec.BillingCurrency), rec.ConversionRate), nil
}

func (d *demo) payWrongFinger(ctx context.Context) (string, error) {
	before := d.link.last
	rec, err := d.tap(ctx, d.debit, 1250, phone.FingerWrong)
	if err != nil {
		return "", err
	}
	if rec.Outcome != pos.OutcomeSeePhone || d.link.last != before {
		return "", fmt.Errorf("terminal shows %s", rec.Outcome)
	}
	return "terminal shows \"See phone\"; no authorization was sent", nil
}

func (d *demo) replay(ctx context.Context) (string, error) {
	if d.link.last == nil {
		return "", fmt.Errorf("nothing captured to replay")
	}
	m := d.link.last.Clone()
	m.SetString(11, "900001")
	m.SetString(37, "900000900001")
	m.SetString(7, time.Now().UTC().Format("0102150405"))
	resp, err := d.link.c.Send(ctx, m)
	if err != nil {
		return "", err
	}
	if resp.String(39) == "00" {
		return "", fmt.Errorf("a replayed cryptogram was approved")
	}
	return fmt.Sprintf("declined %s: the ATC was already used", resp.String(39)), nil
}

func (d *demo) payAboveBalance(ctx context.Context) (string, error) {
	id, _, err := d.bind(ctx, "icbc-debit", 2, false)
	if err != nil {
		return "", err
	}
	d.low = id
	rec, err := d.tap(ctx, d.low, 6000, phone.FingerOK)
	if err != nil {
		return "", err
	}
	if rec.ResponseCode != "51" {
		return "", fmt.Errorf("answered %s %s", rec.ResponseCode, rec.Response)
	}
	return "60.00 CNY on a card holding 50.00: declined 51 (insufficient funds)", nil
}

func (d *demo) notifications(ctx context.Context) (string, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		ns, err := d.phone.Notifications(ctx, 0, 1)
		if err != nil {
			return "", err
		}
		txs := 0
		for _, n := range ns {
			if n.Kind == "transaction" || n.Payload["amountMinor"] != nil {
				txs++
			}
		}
		if txs >= 2 {
			return fmt.Sprintf("%d notifications on the phone (payments approved and declined)", len(ns)), nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("only %d payment notifications arrived", txs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
