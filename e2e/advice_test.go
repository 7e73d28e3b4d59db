package e2e

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/phone"
)

// adviceProxy stands at the address the switch knows the issuer host by and
// passes every message to the real host. It counts the advices by MTI, can
// lose the answer to the first advice it passes (the host posted it; the
// switch gets 96 and must repeat it), and can hold authorization answers
// back (the bank answers, but late).
type adviceProxy struct {
	up       *iso8583.Client
	delay    atomic.Int64 // nanoseconds an authorization answer is held back
	loseNext atomic.Bool  // lose the answer to the next advice
	mu       sync.Mutex
	advices  map[string]int
	order    []string // MTIs of advices and reversals, in order
}

func startAdviceProxy(tb testing.TB, addr, upstream string, loseFirst bool) *adviceProxy {
	tb.Helper()
	p := &adviceProxy{advices: map[string]int{}}
	p.loseNext.Store(loseFirst)
	startPassThrough(tb, addr, upstream, func(up *iso8583.Client) iso8583.Handler {
		p.up = up
		return p.handle
	})
	return p
}

func (p *adviceProxy) handle(ctx context.Context, req *iso8583.Message) (*iso8583.Message, error) {
	mti := req.MTI()
	advice := (mti[1] == '1' || mti[1] == '2') && mti[2] == '2' // 0120/0121/0220/0221
	if advice || mti[1] == '4' {
		p.mu.Lock()
		p.advices[mti]++
		p.order = append(p.order, mti)
		p.mu.Unlock()
	}
	resp, err := p.up.Send(ctx, req)
	if advice && err == nil && p.loseNext.CompareAndSwap(true, false) {
		return nil, errors.New("advice answer lost") // the switch gets 96
	}
	if d := time.Duration(p.delay.Load()); d > 0 && (mti == iso8583.MTIFinancialRequest || mti == iso8583.MTIAuthRequest) {
		time.Sleep(d)
	}
	return resp, err
}

func (p *adviceProxy) count(mti string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.advices[mti]
}

func (p *adviceProxy) seen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.order...)
}

// TestStandInAdvice: the issuer host is down, the switch stands in for two
// payments and the acquirer reverses one of them; the host comes back and
// gets the advices (the answer to the first is lost, so it is repeated as
// 0221) and the reversal after the advice of its original. Its ledger then
// holds exactly the stand-in approval that was not reversed, once. Then the
// bank gets slow: the switch stands in at its timeout while the bank does
// approve the original late; the advice that follows holds nothing more.
func TestStandInAdvice(t *testing.T) {
	s := mustStart(t, "", func(r *config.Reference) {
		liftLimits(r, "icbc-debit")
		issuerOfRef(r, "icbc-debit").Timeout = config.Duration(slowIssuerTimeout)
	})
	ctx := context.Background()
	term := s.newTerminal(t, "ADVC0001")
	p, card := s.boundPhone(t, "advice", "icbc-debit", 0) // stand-in up to 300.00 CNY
	if rec := tap(t, term, p, 1000, phone.FingerOK); rec.ResponseCode != "00" {
		t.Fatalf("before the outage: %+v", rec)
	}
	// A loaded machine may have stood in for that one too: its advice must
	// be in before the baseline is taken.
	eventually(t, "the first payment is held", func() bool { return s.account(t, "icbc-debit", card.PAN).HeldMinor >= 1000 })
	held := s.account(t, "icbc-debit", card.PAN).HeldMinor
	base := s.ledgerReport(t)

	isoAddr := s.Addr(node.RoleIssuer, "iso8583")
	if err := s.StopParty(ctx, node.RoleIssuer); err != nil {
		t.Fatal(err)
	}
	standIn := func(amount int64) {
		t.Helper()
		rec := tap(t, term, p, amount, phone.FingerOK)
		if rec.ResponseCode != "00" || !strings.HasPrefix(rec.AuthCode, "S") {
			t.Fatalf("receipt %+v, want a stand-in approval (auth code S…)", rec)
		}
	}
	standIn(10000)
	standIn(5000)
	// The acquirer reverses the 50.00 while the bank is still away.
	orig := term.link.last(iso8583.MTIFinancialRequest)
	rev := orig.Clone()
	rev.SetMTI(iso8583.MTIReversalRequest)
	rev.Unset(35)
	rev.Unset(55)
	rev.SetString(11, "900301")
	de90, _ := iso8583.OriginalData{MTI: orig.MTI(), STAN: orig.String(11), TransmissionTime: orig.String(7), AcquirerID: orig.String(32)}.Format()
	rev.SetString(90, de90)
	if resp, err := term.link.c.Send(ctx, rev); err != nil || resp.String(39) != "00" {
		t.Fatalf("reversal: %v %v", err, resp)
	}

	proxy := startAdviceProxy(t, isoAddr, s.restartIssuer(t), true)
	t.Run("the bank gets the advices and holds the stand-in approval once", func(t *testing.T) {
		eventually(t, "both advices and the reversal reach the bank", func() bool {
			return proxy.count(iso8583.MTIFinancialAdvice)+proxy.count(iso8583.MTIFinancialAdviceRepeat) >= 3 &&
				proxy.count(iso8583.MTIReversalRequest) >= 1
		})
		eventually(t, "the ledger settles", func() bool {
			r := s.ledgerReport(t)
			return r.Approvals == base.Approvals+2 && r.Reversals == base.Reversals+1
		})
		// Let any further repeat arrive: nothing changes.
		time.Sleep(time.Second)
		if got := s.account(t, "icbc-debit", card.PAN).HeldMinor; got != held+10000 {
			t.Fatalf("held %d, want %d (before the outage) + 10000 (the stand-in approval not reversed)", got, held)
		}
		r := s.ledgerReport(t)
		if r.Approvals != base.Approvals+2 || r.Reversals != base.Reversals+1 || r.Holds != base.Holds+2 || r.Releases != base.Releases+1 {
			t.Fatalf("ledger %+v, before the outage %+v", r, base)
		}
		if n := proxy.count(iso8583.MTIFinancialAdviceRepeat); n < 1 {
			t.Fatalf("no 0221 after a lost 0230 (advices %v)", proxy.seen())
		}
		// The switch sends the reversal of a stand-in approval only once
		// its advice is acknowledged: the last advice precedes it.
		seen := proxy.seen()
		for i, m := range seen {
			if m == iso8583.MTIReversalRequest && i < 2 {
				t.Fatalf("reversal before both advices: %v", seen)
			}
		}
		s.ledgerOK(t)
	})
	t.Run("slow bank: stand-in, the late original held once", func(t *testing.T) {
		before := s.ledgerReport(t)
		advices := proxy.count(iso8583.MTIFinancialAdvice)
		held := s.account(t, "icbc-debit", card.PAN).HeldMinor
		proxy.delay.Store(int64(slowIssuerDelay))
		rec := tap(t, term, p, 8000, phone.FingerOK)
		proxy.delay.Store(0)
		if rec.ResponseCode != "00" || !strings.HasPrefix(rec.AuthCode, "S") {
			t.Fatalf("receipt %+v, want a stand-in approval", rec)
		}
		eventually(t, "the advice reaches the bank", func() bool { return proxy.count(iso8583.MTIFinancialAdvice) > advices })
		eventually(t, "the bank holds the payment", func() bool { return s.account(t, "icbc-debit", card.PAN).HeldMinor >= held+8000 })
		time.Sleep(time.Second)
		if got := s.account(t, "icbc-debit", card.PAN).HeldMinor; got != held+8000 {
			t.Fatalf("held %d, want %d + 8000 once", got, held)
		}
		if r := s.ledgerReport(t); r.Approvals != before.Approvals+1 || r.Holds != before.Holds+1 {
			t.Fatalf("ledger %+v, before %+v", r, before)
		}
		s.ledgerOK(t)
	})
}
