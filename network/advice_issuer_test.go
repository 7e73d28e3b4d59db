package network

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/issuer"
	"github.com/mipay-oss/mipay/store"
	"github.com/mipay-oss/mipay/store/storetest"
)

// testHasher keys the issuer host's PAN hashes in the test.
type testHasher struct{}

func (testHasher) HMAC(_ context.Context, data []byte) ([]byte, error) {
	m := hmac.New(sha256.New, []byte("network advice test key"))
	m.Write(data)
	return m.Sum(nil), nil
}

// lossyIssuer is a real issuer host (package issuer) reached in process,
// every message packed and unpacked as on the wire. Its answers to
// authorizations are lost, so the switch stands in: with late set the host
// processed the original anyway (a slow issuer), without it the original
// never reached it. Advices and reversals are answered.
type lossyIssuer struct {
	handle iso8583.Handler
	late   atomic.Bool
	adv    *adviceIssuer // records what was sent (its answers are not used)
	// expiry, when set, is the card's expiry put in DE14 of an original
	// (the test TSP's PAN expiry is not the card's).
	expiry string
	lateRC atomic.Value // the DE39 the host gave a late original
}

func (l *lossyIssuer) Send(ctx context.Context, m *iso8583.Message) (*iso8583.Message, error) {
	_, _ = l.adv.Send(ctx, m) // record it
	b, err := m.Pack()
	if err != nil {
		return nil, err
	}
	var in iso8583.Message
	if err := in.Unpack(b); err != nil {
		return nil, err
	}
	if m.MTI() == "0100" || m.MTI() == "0200" {
		if l.late.Load() {
			if l.expiry != "" {
				in.SetString(iso8583.FieldExpiry, l.expiry)
			}
			if a, err := l.handle(ctx, &in); err == nil {
				l.lateRC.Store(a.String(39))
			}
		}
		return nil, errors.New("issuer answer lost")
	}
	out, err := l.handle(ctx, &in)
	if err != nil {
		return nil, err
	}
	if b, err = out.Pack(); err != nil {
		return nil, err
	}
	var answer iso8583.Message
	return &answer, answer.Unpack(b)
}

// issuerSide is the issuer host behind a lossyIssuer.
type issuerSide struct {
	host *issuer.Host
	db   *store.DB
	link *lossyIssuer
	pan  string
}

func newIssuerSide(t *testing.T) *issuerSide {
	t.Helper()
	ref, err := config.Default()
	if err != nil {
		t.Fatal(err)
	}
	db := storetest.Open(t, "issuer", issuer.Migrations())
	host, err := issuer.NewHost(context.Background(), issuer.Options{Ref: ref, DB: db, Hasher: testHasher{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Close() })
	is, _ := ref.Issuer("icbc-debit")
	return &issuerSide{host: host, db: db, pan: is.Cardholders[0].PAN,
		link: &lossyIssuer{handle: host.ISOHandler(), adv: &adviceIssuer{}, expiry: is.Cardholders[0].Expiry}}
}

// account is the card's account at the issuer.
func (s *issuerSide) account(t *testing.T) issuer.AccountView {
	t.Helper()
	v, err := s.host.Accounts("icbc-debit", s.pan[len(s.pan)-4:])
	if err != nil || len(v) != 1 {
		t.Fatalf("issuer account: %v %v", v, err)
	}
	return v[0]
}

// checkLedger checks the issuer's ledger invariants (postings sum to zero;
// holds = approvals - reversals; held = open approvals).
func (s *issuerSide) checkLedger(t *testing.T) {
	t.Helper()
	rep, err := issuer.CheckLedger(context.Background(), s.db)
	if err != nil || !rep.OK || rep.PostingsSum != 0 || rep.Holds != rep.Approvals || rep.OpenHolds != rep.Approvals-rep.Reversals {
		t.Fatalf("issuer ledger %+v %v", rep, err)
	}
}

// Across both sides: a 60.00 payment with the campaign's 10.00 discount is
// approved in stand-in. Whether the original never reached the issuer, or
// reached it late and was approved or declined there, the issuer ends up holding 50.00 and booking the 10.00
// discount once, like for an authorization it answered; the acquirer's
// reversal (sent after the advice) gives all of it back. The ledger
// invariant holds at each step.
func TestStandInPromotionAtTheIssuer(t *testing.T) {
	cases := []struct {
		name   string
		lateRC string // "": the original never arrived
	}{
		{"original never arrived", ""},
		{"original approved late", "00"},
		{"original declined late", "54"}, // the TSP's PAN expiry in DE14 is not the card's
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			iss := newIssuerSide(t)
			iss.link.late.Store(c.lateRC != "")
			if c.lateRC == "54" {
				iss.link.expiry = ""
			}
			before := iss.account(t)
			db := storetest.Open(t, "network", Migrations())
			eng := newTestPromoEngine(t, 10)
			h := standInSwitchConfig(t, db, func(string) (IssuerLink, bool) { return iss.link, true },
				func(c *Config) { c.Promotions = eng })
			defer h.sw.Close()
			orig := h.request(6000)
			if r := h.send(t, orig); r.String(39) != "00" || r.String(38)[0] != 'S' {
				t.Fatalf("stand-in answer rc %s code %s", r.String(39), r.String(38))
			}
			if rc, _ := iss.link.lateRC.Load().(string); rc != c.lateRC {
				t.Fatalf("the issuer answered the late original %q, want %q", rc, c.lateRC)
			}
			waitFor(t, func() bool { a := advices(t, db); return len(a) == 1 && a[0].done == adviceAcked })
			v := iss.account(t)
			if held := v.HeldMinor - before.HeldMinor; held != 50_00 || before.AvailableMinor-v.AvailableMinor != 50_00 {
				t.Fatalf("issuer holds %d (available %d → %d), want the discounted 50.00", held, before.AvailableMinor, v.AvailableMinor)
			}
			if spent, err := iss.host.MarketingSpent(ctx, "icbc-debit"); err != nil || spent != 10_00 {
				t.Fatalf("issuer booked %d (%v) of discount, want 1000", spent, err)
			}
			if pts, err := iss.host.PointsBalance(ctx, v.CardID); err != nil || pts != 50 {
				t.Fatalf("points %d (%v), want 50 (50 CNY paid)", pts, err)
			}
			iss.checkLedger(t)
			if st := stats(t, eng); st.Confirmed != 1 || st.BudgetUsedMinor != 10_00 {
				t.Fatalf("campaign %+v", st)
			}

			h.reverse(t, orig)
			waitFor(t, func() bool { return reversalSent(t, db) })
			v = iss.account(t)
			if v.HeldMinor != before.HeldMinor || v.AvailableMinor != before.AvailableMinor {
				t.Fatalf("after the reversal %+v (before %+v)", v, before)
			}
			if spent, _ := iss.host.MarketingSpent(ctx, "icbc-debit"); spent != 0 {
				t.Fatalf("discount booked %d after the reversal", spent)
			}
			iss.checkLedger(t)
			if st := stats(t, eng); st.BudgetUsedMinor != 0 {
				t.Fatalf("campaign after the reversal %+v: the budget comes back", st)
			}
		})
	}
}
