package issuer

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/store"
	"github.com/mipay-oss/mipay/store/storetest"
)

// Environment of the crash test's child process.
const (
	envCrashChild = "MIPAY_ISSUER_CRASH_CHILD" // "1" in the child
	envCrashDir   = "MIPAY_ISSUER_CRASH_DIR"
	envCrashURL   = "MIPAY_ISSUER_CRASH_URL"
	envCrashKey   = "MIPAY_ISSUER_CRASH_KEY"   // hex HMAC key, the same across restarts
	envCrashRound = "MIPAY_ISSUER_CRASH_ROUND" // makes identities unique per round
)

// TestMain lets the test binary act as the crash test's child.
func TestMain(m *testing.M) {
	if os.Getenv(envCrashChild) == "1" {
		crashChild()
		return
	}
	os.Exit(m.Run())
}

// crashStartBudget bounds how long the child may take to answer its first
// authorization.
const crashStartBudget = 30 * time.Second

// crashRef is the test reference data without the limits a burst of
// payments on a few cards would hit (velocity, daily amount).
func crashRef() (*config.Reference, map[string]testCard) {
	ref, cards := testRef(nil)
	for i := range ref.Issuers {
		ref.Issuers[i].Limits.VelocityPerHour = 0
		ref.Issuers[i].Limits.DailyMinor = 0
	}
	return ref, cards
}

// crashCards are the test cards the child pays with.
var crashCards = []string{"credit", "credit2", "debit", "rich", "rev", "dup"}

// crashChild authorizes (and sometimes reverses) from many goroutines until
// killed, printing "A <card> <stan> <auth code>" for each approval answered
// and "R <card> <stan>" for each reversal answered.
func crashChild() {
	key, _ := hex.DecodeString(os.Getenv(envCrashKey))
	ref, cards := crashRef()
	db, err := store.Open(context.Background(), store.Config{Dir: os.Getenv(envCrashDir), URL: os.Getenv(envCrashURL)}, "issuer", Migrations())
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(3)
	}
	h, err := NewHost(context.Background(), Options{Ref: ref, DB: db, Hasher: &keyHasher{key: key}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child host:", err)
		os.Exit(3)
	}
	round := os.Getenv(envCrashRound)
	var out sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	emit := func(s string) {
		out.Lock()
		w.WriteString(s)
		w.Flush() // after the answer, before anything else: what the "acquirer" saw
		out.Unlock()
	}
	var seq atomic.Int64
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := seq.Add(1)
				name := crashCards[int(n)%len(crashCards)]
				req := crashRequest(cards[name].PAN, round, n)
				res := h.Authorize(context.Background(), req)
				if res.Code != RCApproved {
					continue
				}
				emit(fmt.Sprintf("A %s %s %s\n", name, req.STAN, res.AuthCode))
				if n%5 == int64(g%5) {
					r := h.Reverse(context.Background(), ReversalRequest{MTI: "0400", PAN: req.PAN, Transmission: req.Transmission,
						STAN: req.STAN, RRN: req.RRN, Terminal: req.Terminal, Acquirer: req.Acquirer})
					if r.Code == RCApproved {
						emit(fmt.Sprintf("R %s %s\n", name, req.STAN))
					}
				}
			}
		}()
	}
	wg.Wait()
}

// crashRequest is the n-th request of a round (the same inputs give the same
// identity, so the parent can repeat it).
func crashRequest(pan, round string, n int64) AuthRequest {
	stan := fmt.Sprintf("%06d", n%1000000)
	return AuthRequest{MTI: "0200", PAN: pan, ProcessingCode: "000000", AmountMinor: 100 + n%50, Currency: "156",
		Transmission: "1126" + fmt.Sprintf("%06d", n/1000000), STAN: stan, RRN: fmt.Sprintf("%012d", n),
		Terminal: "CRASH" + round, Acquirer: "48020000"}
}

// TestCrashDuringAuthorizations kills a process authorizing through the
// group-commit writer with SIGKILL at random moments. After each kill every
// answered approval and reversal is in the ledger exactly once, the ledger
// balances, memory rebuilt from the store equals it, and a repeated request
// gets the answer the acquirer saw.
func TestCrashDuringAuthorizations(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test starts child processes")
	}
	cfg := storetest.Config(t)
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(rand.IntN(256))
	}
	ref, cards := crashRef()
	for round := range 3 {
		approved := map[string]string{} // card/stan → auth code
		reversed := map[string]bool{}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envCrashChild+"=1", envCrashDir+"="+cfg.Dir, envCrashURL+"="+cfg.URL,
			envCrashKey+"="+hex.EncodeToString(key), envCrashRound+"="+strconv.Itoa(round))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// The kill comes at a random moment once the child is answering
		// (its start-up time varies a lot on a shared machine).
		killAt := time.Duration(100+rand.IntN(600)) * time.Millisecond
		var timer *time.Timer
		guard := time.AfterFunc(crashStartBudget, func() { cmd.Process.Signal(syscall.SIGKILL) })
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if timer == nil {
				guard.Stop()
				timer = time.AfterFunc(killAt, func() { cmd.Process.Signal(syscall.SIGKILL) })
			}
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 4 && f[0] == "A":
				approved[f[1]+"/"+f[2]] = f[3]
			case len(f) == 3 && f[0] == "R":
				reversed[f[1]+"/"+f[2]] = true
			}
		}
		guard.Stop()
		if timer != nil {
			timer.Stop()
		}
		cmd.Wait()
		if len(approved) == 0 {
			t.Fatalf("round %d: child approved nothing before the kill at %v: %s", round, killAt, stderr.String())
		}

		db, err := store.Open(context.Background(), cfg, "issuer", Migrations())
		if err != nil {
			t.Fatalf("round %d: reopen after SIGKILL: %v", round, err)
		}
		h, err := NewHost(context.Background(), Options{Ref: ref, DB: db, Hasher: &keyHasher{key: key}})
		if err != nil {
			t.Fatal(err)
		}
		rep, err := h.CheckLedger(context.Background())
		if err != nil || !rep.OK {
			t.Fatalf("round %d: ledger after crash: %+v %v", round, rep, err)
		}
		for k, code := range approved {
			name, stan, _ := strings.Cut(k, "/")
			n, _ := strconv.ParseInt(stan, 10, 64)
			req := crashRequest(cards[name].PAN, strconv.Itoa(round), n)
			var gotCode string
			var rev, count int
			db.DB.QueryRow(`SELECT auth_code, reversed, (SELECT COUNT(*) FROM postings WHERE auth_id = a.id AND kind = 'HOLD')
				FROM authorizations a WHERE ident = $1 AND approved = 1`, identOf(req.Acquirer, req.Terminal, req.STAN, req.Transmission)).Scan(&gotCode, &rev, &count)
			if gotCode != code || count != 2 {
				t.Fatalf("round %d: answered approval %s: stored code %q, hold legs %d", round, k, gotCode, count)
			}
			if reversed[k] && rev != 1 {
				t.Fatalf("round %d: answered reversal of %s not stored", round, k)
			}
			if again := h.Authorize(context.Background(), req); again.AuthCode != code || !again.Duplicate {
				t.Fatalf("round %d: repeat of %s answered %+v", round, k, again)
			}
		}
		t.Logf("round %d: killed after %v; %d approvals, %d reversals answered; ledger %d approvals, %d reversals",
			round, killAt, len(approved), len(reversed), rep.Approvals, rep.Reversals)
		h.Close()
		db.Close()
	}
}
