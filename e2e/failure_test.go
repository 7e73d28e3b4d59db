package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/issuer"
	"github.com/mipay-oss/mipay/logmask"
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/phone"
	"github.com/mipay-oss/mipay/pos"
	"github.com/mipay-oss/mipay/store"
	"github.com/mipay-oss/mipay/tsp"
	"github.com/prometheus/client_golang/prometheus"
)

// Failure test bounds.
const (
	// settleTimeout bounds waiting for something asynchronous (a reversal
	// retried after the issuer came back, an event) on a loaded machine.
	settleTimeout = 30 * time.Second
	// slowIssuerTimeout is the switch's wait for the slow bank, and
	// slowIssuerDelay how late that bank's answers come when it is slow.
	slowIssuerTimeout = time.Second
	slowIssuerDelay   = 3 * time.Second
)

// eventually polls cond until it holds or settleTimeout passes.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(settleTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %v", what, settleTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// issuerProxy stands at the address the switch knows the issuer host by and
// passes every message to the real host; when slow, it holds authorization
// answers back (the bank answers, but late). Reversals pass at once.
type issuerProxy struct {
	up        *iso8583.Client
	delay     atomic.Int64 // nanoseconds an authorization answer is held back
	reversals atomic.Int64
	lateRC    atomic.Value // string: the bank's answer to the last held-back authorization
}

func startIssuerProxy(tb testing.TB, addr, upstream string) *issuerProxy {
	tb.Helper()
	p := &issuerProxy{}
	startPassThrough(tb, addr, upstream, func(up *iso8583.Client) iso8583.Handler {
		p.up = up
		return p.handle
	})
	return p
}

func (p *issuerProxy) handle(ctx context.Context, req *iso8583.Message) (*iso8583.Message, error) {
	mti := req.MTI()
	if mti == iso8583.MTIReversalRequest || mti == iso8583.MTIReversalAdvice {
		p.reversals.Add(1)
	}
	resp, err := p.up.Send(ctx, req)
	if d := time.Duration(p.delay.Load()); d > 0 && (mti == iso8583.MTIFinancialRequest || mti == iso8583.MTIAuthRequest) {
		if err == nil {
			p.lateRC.Store(resp.String(39))
		}
		time.Sleep(d)
	}
	return resp, err
}

// restartIssuer starts the issuer host again over the system's data: HTTP
// where it was, ISO 8583 on a new port (a proxy takes the old one).
func (s *system) restartIssuer(tb testing.TB) (isoAddr string) {
	tb.Helper()
	ctx := context.Background()
	env := &node.Env{Role: node.RoleIssuer, DataDir: s.dataDir, Store: store.Config{Dir: s.dataDir}, Bus: s.Bus, HSM: s.HSM,
		Log: s.logger(), Ref: s.ref, Metrics: prometheus.NewRegistry(),
		Listen: map[string]string{"http": strings.TrimPrefix(s.URL(node.RoleIssuer), "http://"), "iso8583": "127.0.0.1:0"},
		Peers:  s.Peers}
	p, err := issuer.Start(ctx, env)
	if err != nil {
		tb.Fatalf("restart the issuer: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Close(ctx); err != nil {
			tb.Logf("close the restarted issuer: %v", err)
		}
	})
	return p.Addrs()["iso8583"]
}

func (s *system) logger() *slog.Logger {
	return slog.New(logmask.NewHandler(slog.NewTextHandler(s.logBuf, &slog.HandlerOptions{Level: slog.LevelInfo})))
}

// TestIssuerDown takes the issuer host down in the middle of the day: the
// switch stands in within the bank's stand-in limit and answers 91 above it
// or for a bank without stand-in. The host comes back (at the address the
// switch knows, through a pass-through proxy), gets the advice of the
// stand-in approval and holds it, and payments are authorized by the bank
// again. Then the bank gets
// slow: the switch answers 91 at its timeout, the bank's approval comes
// late, and the switch's reversal advice releases the bank's hold.
func TestIssuerDown(t *testing.T) {
	s := mustStart(t, "", func(r *config.Reference) {
		liftLimits(r, "cmb-debit")
		cmb := issuerOfRef(r, "cmb-debit")
		cmb.Timeout = config.Duration(slowIssuerTimeout)
	})
	ctx := context.Background()
	term := s.newTerminal(t, "DOWN0001")
	standIn, _ := s.boundPhone(t, "standin", "icbc-debit", 0) // stand-in up to 300.00 CNY
	plain, plainCard := s.boundPhone(t, "nostandin", "cmb-debit", 0)
	standInCard := cardOf(s, t, "icbc-debit", 0)
	plainHeld := s.account(t, "cmb-debit", plainCard.PAN).HeldMinor
	var approved int64 // what the bank approved for the plain card, as the acquirer was told
	if rec := tap(t, term, standIn, 1000, phone.FingerOK); rec.ResponseCode != "00" {
		t.Fatalf("before the outage: %+v", rec)
	}
	// The bank without stand-in has a short timeout: on a loaded machine a
	// first payment may still get a 91 (its late approval is reversed).
	approved += tapUntilApproved(t, term, plain, 1000)
	standInHeld := s.account(t, "icbc-debit", standInCard.PAN).HeldMinor

	isoAddr := s.Addr(node.RoleIssuer, "iso8583")
	if err := s.StopParty(ctx, node.RoleIssuer); err != nil {
		t.Fatal(err)
	}

	t.Run("stand-in approves within the bank's stand-in limit", func(t *testing.T) {
		rec := tap(t, term, standIn, 10000, phone.FingerOK)
		if rec.Outcome != pos.OutcomeApproved || rec.ResponseCode != "00" || !strings.HasPrefix(rec.AuthCode, "S") || !rec.ARPCPresent {
			t.Fatalf("receipt %+v, want a stand-in approval (auth code S…)", rec)
		}
	})
	t.Run("91 above the stand-in limit", func(t *testing.T) {
		rec := tap(t, term, standIn, 50000, phone.FingerOK)
		if rec.Outcome != pos.OutcomeDeclined || rec.ResponseCode != "91" {
			t.Fatalf("receipt %+v", rec)
		}
	})
	t.Run("91 for a bank without stand-in", func(t *testing.T) {
		rec := tap(t, term, plain, 1000, phone.FingerOK)
		if rec.Outcome != pos.OutcomeDeclined || rec.ResponseCode != "91" {
			t.Fatalf("receipt %+v", rec)
		}
	})

	proxy := startIssuerProxy(t, isoAddr, s.restartIssuer(t))
	t.Run("the bank authorizes again once it is back", func(t *testing.T) {
		approved += tapUntilApproved(t, term, plain, 1000)
	})
	t.Run("slow bank: 91 at the timeout, the late approval reversed", func(t *testing.T) {
		before := proxy.reversals.Load()
		reversed := s.ledgerReport(t).Reversals
		proxy.delay.Store(int64(slowIssuerDelay))
		rec := tap(t, term, plain, 1500, phone.FingerOK)
		proxy.delay.Store(0)
		if rec.Outcome != pos.OutcomeDeclined || rec.ResponseCode != "91" {
			t.Fatalf("receipt %+v", rec)
		}
		eventually(t, "the switch's reversal advice reaches the bank", func() bool { return proxy.reversals.Load() > before })
		// The bank approved (it answered, late) and the advice reversed
		// that approval: one more approved-and-reversed authorization. On a
		// very loaded machine the advice may reach the bank before it has
		// decided the original, which it then declines: nothing to reverse.
		if rc, _ := proxy.lateRC.Load().(string); rc == "00" {
			eventually(t, "the late approval is reversed", func() bool { return s.ledgerReport(t).Reversals > reversed })
		} else {
			t.Logf("the bank answered the late authorization %q (the advice overtook it)", rc)
		}
	})
	t.Run("the bank holds only what it approved and the acquirer was told", func(t *testing.T) {
		// The stand-in approval (100.00) is held once its advice is in
		// (advice_test.go); 91s hold nothing once their reversal advices
		// are in.
		eventually(t, "holds settle", func() bool {
			return s.account(t, "cmb-debit", plainCard.PAN).HeldMinor == plainHeld+approved &&
				s.account(t, "icbc-debit", standInCard.PAN).HeldMinor == standInHeld+10000
		})
		s.ledgerOK(t)
	})
}

// tapUntilApproved taps until the bank approves (91s before that: it is
// down, or not answering in time) and returns the amount approved.
func tapUntilApproved(t *testing.T, term *terminal, p *phone.Phone, amount int64) int64 {
	t.Helper()
	start := time.Now()
	for taps := 1; ; taps++ {
		rec := tap(t, term, p, amount, phone.FingerOK)
		if rec.ResponseCode == "00" {
			t.Logf("approved on tap %d after %v", taps, time.Since(start).Round(time.Millisecond))
			return amount
		}
		if rec.ResponseCode != "91" {
			t.Fatalf("receipt %+v", rec)
		}
		if time.Since(start) > settleTimeout {
			t.Fatalf("still %s after %v", rec.ResponseCode, settleTimeout)
		}
	}
}

// ledgerReport is the issuer's ledger check through its API.
func (s *system) ledgerReport(tb testing.TB) issuer.LedgerReport {
	tb.Helper()
	resp, err := http.Get(s.URL(node.RoleIssuer) + "/v1/admin/ledger/check")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var rep issuer.LedgerReport
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		tb.Fatal(err)
	}
	return rep
}

func issuerOfRef(r *config.Reference, id string) *config.Issuer {
	for i := range r.Issuers {
		if r.Issuers[i].ID == id {
			return &r.Issuers[i]
		}
	}
	panic("no issuer " + id)
}

// TestDeclineCodes reaches, end to end, the response codes the other tests
// do not: the bank's amount and frequency limits (61, 65), an expiry that
// is not the token's or the card's (54), an unknown token (14), and a token
// suspended through the TSP while the phone can still tap (62), resumed
// again.
func TestDeclineCodes(t *testing.T) {
	s := mustStart(t, "", func(r *config.Reference) {
		issuerOfRef(r, "citic-debit").Limits.PerTransactionMinor = 20000
		issuerOfRef(r, "ceb-debit").Limits.DailyMinor = 25000
		issuerOfRef(r, "pab-debit").Limits.VelocityPerHour = 2
	})
	ctx := context.Background()
	term := s.newTerminal(t, "CODE0001")
	want := func(t *testing.T, rec *pos.Receipt, code string) {
		t.Helper()
		outcome := pos.OutcomeDeclined
		if code == "00" {
			outcome = pos.OutcomeApproved
		}
		if rec.ResponseCode != code || rec.Outcome != outcome {
			t.Fatalf("receipt %+v, want %s", rec, code)
		}
	}
	var stan atomic.Uint32
	send := func(t *testing.T, m *iso8583.Message) string {
		t.Helper()
		n := stan.Add(1)
		stamp(m, "CODE0002", n, fmt.Sprintf("88%010d", n))
		resp, err := term.link.c.Send(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		return resp.String(39)
	}

	t.Run("61 above the per-transaction limit", func(t *testing.T) {
		p, _ := s.boundPhone(t, "pertx", "citic-debit", 0)
		want(t, tap(t, term, p, 30000, phone.FingerOK), "61")
		want(t, tap(t, term, p, 10000, phone.FingerOK), "00")
	})
	t.Run("61 above the daily limit", func(t *testing.T) {
		p, _ := s.boundPhone(t, "daily", "ceb-debit", 0)
		want(t, tap(t, term, p, 15000, phone.FingerOK), "00")
		want(t, tap(t, term, p, 15000, phone.FingerOK), "61")
	})
	t.Run("65 above the approvals per hour", func(t *testing.T) {
		p, _ := s.boundPhone(t, "velocity", "pab-debit", 0)
		want(t, tap(t, term, p, 100, phone.FingerOK), "00")
		want(t, tap(t, term, p, 100, phone.FingerOK), "00")
		want(t, tap(t, term, p, 100, phone.FingerOK), "65")
	})
	t.Run("54 expiry not the token's", func(t *testing.T) {
		p, _ := s.boundPhone(t, "expiry", "cib-debit", 0)
		rec := tap(t, term, p, 100, phone.FingerOK)
		want(t, rec, "00")
		m := term.link.last(iso8583.MTIFinancialRequest).Clone()
		if m.String(14) == "2001" {
			t.Fatal("the token expires in 2020?")
		}
		m.SetString(14, "2001")
		if rc := send(t, m); rc != "54" {
			t.Fatalf("answered %s", rc)
		}
	})
	t.Run("54 DE14 not the card's expiry (card, not token)", func(t *testing.T) {
		card := s.demoCard(t, "cib-debit", 1)
		m := plainCardMessage(card, 100)
		m.SetString(14, "2001")
		if rc := send(t, m); rc != "54" {
			t.Fatalf("answered %s", rc)
		}
		// The same payment with the card's own expiry goes through: the 54
		// was the expiry.
		if rc := send(t, plainCardMessage(card, 100)); rc != "00" {
			t.Fatalf("with the card's expiry answered %s", rc)
		}
	})
	t.Run("14 unknown token", func(t *testing.T) {
		m := term.link.last(iso8583.MTIFinancialRequest).Clone()
		token := m.String(2)
		other := token[:len(token)-5] + "00000"
		if other == token {
			other = token[:len(token)-5] + "11111"
		}
		m.SetString(2, other)
		if rc := send(t, m); rc != "14" {
			t.Fatalf("answered %s", rc)
		}
	})
	t.Run("62 token suspended at the TSP, 00 again once resumed", func(t *testing.T) {
		p, _ := s.boundPhone(t, "suspend", "icbc-debit", 1)
		want(t, tap(t, term, p, 100, phone.FingerOK), "00")
		ref := p.SE().Cards()[0].TokenRef
		// The phone's own SE, driven directly: a phone that has not heard of
		// the suspension yet (or ignores it) still makes genuine cryptograms.
		card := newCardSource(t, p.SE())
		pay := func(t *testing.T) string {
			t.Helper()
			m, err := card.next(ctx, 100)
			if err != nil {
				t.Fatal(err)
			}
			return send(t, m)
		}
		s.tokenAction(t, ref, "suspend")
		suspended := time.Now()
		var rc string
		for tries := 1; ; tries++ {
			if rc = pay(t); rc == "62" {
				t.Logf("declined 62 on try %d, %v after the suspension was answered", tries, time.Since(suspended).Round(time.Millisecond))
				break
			}
			if rc != "00" || time.Since(suspended) > settleTimeout {
				t.Fatalf("after the suspension answered %s", rc)
			}
			time.Sleep(20 * time.Millisecond)
		}
		eventually(t, "the wallet shows the card suspended", func() bool {
			cards, err := p.Cards(ctx)
			return err == nil && len(cards) == 1 && cards[0].State == "SUSPENDED"
		})
		if _, err := p.Pay(ctx, phone.PayOptions{Finger: phone.FingerOK, Reader: "127.0.0.1:1"}); mipay.ErrorCode(err) != mipay.ECONFLICT {
			t.Fatalf("phone pays with a suspended card: %v", err)
		}
		s.tokenAction(t, ref, "resume")
		eventually(t, "the resumed token pays", func() bool { return pay(t) == "00" })
		eventually(t, "the wallet shows the card active", func() bool {
			cards, err := p.Cards(ctx)
			return err == nil && len(cards) == 1 && cards[0].State == "ACTIVE"
		})
		want(t, tap(t, term, p, 100, phone.FingerOK), "00")
	})
	s.ledgerOK(t)
}

// plainCardMessage is a 0200 for a card number itself (no token), as a
// terminal reading the card's magnetic stripe would send.
func plainCardMessage(c config.Cardholder, amountMinor int64) *iso8583.Message {
	amount, _ := iso8583.FormatAmount(amountMinor)
	m := &iso8583.Message{}
	m.SetMTI(iso8583.MTIFinancialRequest)
	m.SetString(2, c.PAN)
	m.SetString(3, "000000")
	m.SetString(4, amount)
	m.SetString(14, c.Expiry)
	m.SetString(18, "5411")
	m.SetString(19, "156")
	m.SetString(22, "021")
	m.SetString(25, "00")
	m.SetString(32, "48020000")
	m.SetString(42, "898110153990001")
	m.SetString(43, fmt.Sprintf("%-25s%-13s%s", "MIPAY E2E", "BEIJING", "CN"))
	m.SetString(49, "156")
	return m
}

// tokenAction calls the TSP's lifecycle API as the token requestor (the
// wallet's secret from the data directory), on behalf of the cardholder.
func (s *system) tokenAction(tb testing.TB, ref, action string) {
	tb.Helper()
	secret, err := os.ReadFile(filepath.Join(tsp.CredentialsDir(s.dataDir), "requestor.token"))
	if err != nil {
		tb.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"causedBy": "CARDHOLDER", "reason": "e2e " + action})
	req, err := http.NewRequest(http.MethodPost, s.URL(node.RoleTSP)+"/v1/tokens/"+ref+"/"+action, bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(secret)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		tb.Fatalf("%s token: %s %s", action, resp.Status, b.String())
	}
}
