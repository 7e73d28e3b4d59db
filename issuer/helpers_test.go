package issuer

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/store"
	"github.com/mipay-oss/mipay/store/storetest"
)

// keyHasher is an HMAC-SHA256 Hasher with a key held in the test (the party
// uses the HSM's).
type keyHasher struct{ key []byte }

func newKeyHasher() *keyHasher {
	k := make([]byte, 32)
	rand.Read(k)
	return &keyHasher{key: k}
}

func (k *keyHasher) HMAC(_ context.Context, data []byte) ([]byte, error) {
	m := hmac.New(sha256.New, k.key)
	m.Write(data)
	return m.Sum(nil), nil
}

// sentSMS records what the host sent.
type sentSMS struct {
	mu   sync.Mutex
	msgs []smsMsg
	fail error
}

type smsMsg struct{ to, text, sender string }

func (s *sentSMS) Send(_ context.Context, to, text, sender string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.msgs = append(s.msgs, smsMsg{to, text, sender})
	return nil
}

func (s *sentSMS) last(t *testing.T) smsMsg {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.msgs) == 0 {
		t.Fatal("no SMS sent")
	}
	return s.msgs[len(s.msgs)-1]
}

// codeIn finds the code in an OTP text.
func codeIn(t *testing.T, text string) string {
	t.Helper()
	i := strings.Index(text, "code is ")
	if i < 0 {
		t.Fatalf("no code in %q", text)
	}
	rest := text[i+len("code is "):]
	j := strings.IndexByte(rest, '.')
	return rest[:j]
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testCard is a card the tests add to the reference data.
type testCard struct {
	issuer string
	config.Cardholder
}

// makePAN builds a Luhn-valid PAN of length n on bin with serial s.
func makePAN(bin string, n, s int) string {
	body := bin + fmt.Sprintf("%0*d", n-len(bin)-1, s)
	return body + config.LuhnDigit(body)
}

// testRef is the default reference data plus cards for every path.
func testRef(tb testing.TB) (*config.Reference, map[string]testCard) {
	ref, err := config.Default()
	if err != nil {
		panic(err) // the embedded default is checked by config's tests
	}
	cards := map[string]testCard{}
	add := func(name, issuerID string, ch config.Cardholder) {
		is, ok := ref.Issuer(issuerID)
		if !ok {
			panic("no issuer " + issuerID)
		}
		ch.PAN = makePAN(is.BINs[0], is.PANLength, 900000+len(cards))
		if ch.Expiry == "" {
			ch.Expiry = "3012"
		}
		if ch.Name == "" {
			ch.Name = "TEST " + strings.ToUpper(name)
		}
		if ch.Phone == "" {
			ch.Phone = fmt.Sprintf("139%08d", len(cards))
		}
		is.Cardholders = append(is.Cardholders, ch)
		cards[name] = testCard{issuer: issuerID, Cardholder: ch}
	}
	add("credit", "icbc-credit", config.Cardholder{CVN2: "123", CreditLimitMinor: 1000000})
	add("credit2", "icbc-credit", config.Cardholder{CVN2: "321", CreditLimitMinor: 1000000})
	add("yellow", "boc-credit", config.Cardholder{CVN2: "456", CreditLimitMinor: 500000})
	add("debit", "icbc-debit", config.Cardholder{BalanceMinor: 100000})
	add("poor", "icbc-debit", config.Cardholder{BalanceMinor: 5000})
	add("blocked", "icbc-debit", config.Cardholder{BalanceMinor: 100000, Status: StatusBlocked})
	add("lost", "icbc-debit", config.Cardholder{BalanceMinor: 100000, Status: StatusLost})
	add("expired", "icbc-credit", config.Cardholder{CVN2: "777", CreditLimitMinor: 100000, Expiry: "2001"})
	add("rich", "icbc-debit", config.Cardholder{BalanceMinor: 1_000_000_000})
	add("velocity", "icbc-debit", config.Cardholder{BalanceMinor: 1_000_000})
	add("dup", "icbc-debit", config.Cardholder{BalanceMinor: 1_000_000})
	add("rev", "icbc-credit", config.Cardholder{CVN2: "555", CreditLimitMinor: 1_000_000})
	return ref, cards
}

// testHost is a Host over a fresh store with the test reference data.
type testHost struct {
	*Host
	cards map[string]testCard
	sms   *sentSMS
	clock *clock
	cfg   store.Config
	hash  *keyHasher
}

// MustOpenHost starts a Host over a fresh store of the test and checks the
// ledger invariant when the test ends.
func MustOpenHost(tb testing.TB) *testHost {
	tb.Helper()
	ref, cards := testRef(tb)
	th := &testHost{cards: cards, sms: &sentSMS{}, clock: &clock{t: time.Date(2026, 11, 26, 2, 0, 0, 0, time.UTC)},
		cfg: storetest.Config(tb), hash: newKeyHasher()}
	th.Host = th.open(tb, ref)
	tb.Cleanup(func() {
		if th.Host == nil {
			return
		}
		rep, err := th.Host.CheckLedger(context.Background())
		if err != nil || !rep.OK {
			tb.Errorf("ledger invariant after test: %+v, %v", rep, err)
		}
		th.closeHost(tb)
	})
	return th
}

func (th *testHost) open(tb testing.TB, ref *config.Reference) *Host {
	tb.Helper()
	db, err := store.Open(context.Background(), th.cfg, "issuer", Migrations())
	if err != nil {
		tb.Fatal(err)
	}
	h, err := NewHost(context.Background(), Options{Ref: ref, DB: db, Hasher: th.hash, SMS: th.sms, Now: th.clock.now})
	if err != nil {
		db.Close()
		tb.Fatal(err)
	}
	return h
}

func (th *testHost) closeHost(tb testing.TB) {
	tb.Helper()
	if err := th.Host.Close(); err != nil {
		tb.Errorf("close host: %v", err)
	}
	th.Host.DB().Close()
	th.Host = nil
}

// reopen closes the host and starts a new one on the same store (a restart).
func (th *testHost) reopen(tb testing.TB) {
	tb.Helper()
	ref := th.Host.ref
	th.closeHost(tb)
	th.Host = th.open(tb, ref)
}

// storeConfigForBench is a fresh SQLite (or PostgreSQL) store config.
func storeConfigForBench(tb testing.TB) store.Config { return storetest.Config(tb) }
