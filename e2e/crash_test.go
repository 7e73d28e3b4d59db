package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/issuer"
	"github.com/mipay-oss/mipay/logmask"
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/node/local"
	"github.com/mipay-oss/mipay/store"
)

// envCrashData names the data directory the crash test's child process
// serves; unset, TestCrashChild is skipped.
const envCrashData = "MIPAY_E2E_CRASH_DATA"

// Crash test bounds.
const (
	crashRounds      = 3
	crashTokens      = 6
	crashAmountMinor = 100
	// crashStartBudget bounds a child's start (NATS, HSM, every party) on a
	// loaded machine.
	crashStartBudget = 60 * time.Second
	// crashMaxLoad bounds how long the load runs when the kill never comes.
	crashMaxLoad = 20 * time.Second
)

// crashIssuers are the banks of the tokens under load.
var crashIssuers = []string{"icbc-debit", "ccb-debit", "bocom-debit", "cmb-debit", "icbc-credit", "ccb-credit"}

// crashReference is the reference data of the parent and of every child:
// limits off for the cards under load, and no stand-in, so that every
// approval the acquirer sees is the issuer's (a stand-in approval is not in
// the issuer's ledger by design).
func crashReference() (*config.Reference, error) {
	ref, err := config.Default()
	if err != nil {
		return nil, err
	}
	liftLimits(ref, crashIssuers...)
	for i := range ref.Issuers {
		ref.Issuers[i].StandIn = config.StandIn{}
		// A loaded machine can hold an answer past 2 s; a 91 is harmless here
		// but an approval is what the test is about.
		ref.Issuers[i].Timeout = config.Duration(5 * time.Second)
	}
	return ref, nil
}

// TestCrashChild is the process the crash test kills: every party of mipay
// over the data directory in envCrashData. It prints "READY <network
// iso8583 address> <issuer URL>" and runs until its stdin closes (or
// SIGKILL).
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(envCrashData)
	if dir == "" {
		t.Skip("the crash test's child process (started by TestCrashNetworkAndIssuer)")
	}
	ref, err := crashReference()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(logmask.NewHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	ctx := context.Background()
	sys, err := local.Start(ctx, local.Options{DataDir: dir, Ref: ref, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("READY %s %s\n", sys.Addr(node.RoleNetwork, "iso8583"), sys.URL(node.RoleIssuer))
	_, _ = io.Copy(io.Discard, os.Stdin)
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := sys.Close(cctx); err != nil {
		t.Fatal(err)
	}
}

// child is a running TestCrashChild.
type child struct {
	cmd        *exec.Cmd
	stdin      io.WriteCloser
	network    string // ISO 8583 address
	issuerURL  string
	stderr     *syncBuffer
	exited     chan struct{}
	killedOnce sync.Once
}

func startChild(tb testing.TB, dataDir string) *child {
	tb.Helper()
	c := &child{stderr: &syncBuffer{}, exited: make(chan struct{})}
	c.cmd = exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1", "-test.timeout=10m")
	c.cmd.Env = append(os.Environ(), envCrashData+"="+dataDir)
	c.cmd.Stderr = c.stderr
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		tb.Fatal(err)
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.kill)
	ready := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "READY" {
				ready <- f
			}
		}
		_ = c.cmd.Wait()
		close(c.exited)
	}()
	select {
	case f := <-ready:
		c.network, c.issuerURL = f[1], f[2]
	case <-c.exited:
		tb.Fatalf("child exited before it was ready: %s", c.stderr.String())
	case <-time.After(crashStartBudget):
		c.kill()
		tb.Fatalf("child not ready within %v: %s", crashStartBudget, c.stderr.String())
	}
	return c
}

// kill sends SIGKILL and waits for the process to be gone.
func (c *child) kill() {
	c.killedOnce.Do(func() {
		_ = c.cmd.Process.Signal(syscall.SIGKILL)
	})
	<-c.exited
}

// stop closes the child's stdin (a clean shutdown) and waits for it.
func (c *child) stop(tb testing.TB) {
	tb.Helper()
	c.stdin.Close()
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		c.kill()
		tb.Errorf("child did not stop within 30s: %s", c.stderr.String())
	}
}

// approval is an approved authorization as the acquirer saw it.
type approval struct {
	token    int
	msg      *iso8583.Message // as sent
	authCode string
}

func (a approval) altIdent() string {
	return a.msg.String(41) + "|" + a.msg.String(11) + "|" + a.msg.String(37) + "|" + a.msg.String(7)
}

// crashLoad is the acquirer side: one worker per token, each sending its
// token's cryptograms in ATC order over TCP to the network.
type crashLoad struct {
	cards []*cardSource
	stan  []uint32 // next STAN per worker, across rounds

	mu        sync.Mutex
	approvals []approval
	lastOK    []int // per token: index in approvals of its last approval, -1 none
	codes     map[string]int
}

func (l *crashLoad) terminal(w int) string { return fmt.Sprintf("CRSH%04d", w) }

func (l *crashLoad) nextIdentity(w int) (string, uint32, string) {
	l.stan[w]++
	s := l.stan[w]
	return l.terminal(w), s, fmt.Sprintf("%04d%08d", w, s)
}

// run drives authorizations until the child dies (SIGKILL at a random
// moment after the first approval) and reports how many approvals came back
// in this round.
func (l *crashLoad) run(tb testing.TB, c *child, killAfter time.Duration) int {
	tb.Helper()
	// Cancelled at the kill: a request sent then would wait for a reconnect.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	link, err := iso8583.Dial(ctx, iso8583.ClientConfig{Addr: c.network, RequestTimeout: 10 * time.Second, MaxInFlight: 64})
	if err != nil {
		tb.Fatal(err)
	}
	defer link.Close()
	var (
		stop      atomic.Bool
		firstOnce sync.Once
		first     = make(chan struct{})
		wg        sync.WaitGroup
		before    = len(l.approvals)
		errs      = make([]error, len(l.cards))
	)
	for w := range l.cards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				m, err := l.cards[w].next(ctx, crashAmountMinor)
				if err != nil {
					errs[w] = err
					return
				}
				l.mu.Lock()
				term, stan, rrn := l.nextIdentity(w)
				l.mu.Unlock()
				stamp(m, term, stan, rrn)
				resp, err := link.Send(ctx, m)
				if err != nil {
					return // the child is gone (or going)
				}
				rc := resp.String(39)
				l.mu.Lock()
				l.codes[rc]++
				if rc == "00" {
					l.approvals = append(l.approvals, approval{token: w, msg: m, authCode: resp.String(38)})
					l.lastOK[w] = len(l.approvals) - 1
				}
				l.mu.Unlock()
				if rc == "00" {
					firstOnce.Do(func() { close(first) })
				}
			}
		}()
	}
	select {
	case <-first:
		select {
		case <-time.After(killAfter):
		case <-c.exited:
		}
	case <-c.exited:
	case <-time.After(crashMaxLoad):
	}
	c.kill()
	stop.Store(true)
	cancel()
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			tb.Fatalf("making a cryptogram: %v", err)
		}
	}
	return len(l.approvals) - before
}

// TestCrashNetworkAndIssuer kills the process running the network (with
// the TSP's authorization side) and the issuer with SIGKILL at a random
// moment of a load of tokenized authorizations with genuine cryptograms, a
// few times over the same data. After each kill: every approval the
// acquirer got is in the issuer's ledger exactly once (one authorization,
// one hold, the same approval code), the ledger balances; after the
// restart, the last cryptogram each token had approved is refused when
// replayed under a new identity (its ATC stayed spent), and the identical
// message gets the stored answer instead of a second hold.
func TestCrashNetworkAndIssuer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills child processes")
	}
	ref, err := crashReference()
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	s := mustStart(t, dataDir, func(r *config.Reference) { *r = *ref })
	load := &crashLoad{stan: make([]uint32, crashTokens), lastOK: make([]int, crashTokens), codes: map[string]int{}}
	for i := range crashTokens {
		p, _ := s.boundPhone(t, fmt.Sprintf("crash-%d", i), crashIssuers[i], 0)
		load.cards = append(load.cards, volatileCardSource(t, dataDir, p))
		load.lastOK[i] = -1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	err = s.Close(ctx)
	cancel()
	if err != nil {
		t.Fatal(err)
	}

	var checked int
	for round := range crashRounds {
		c := startChild(t, dataDir)
		if round > 0 {
			checkAfterRestart(t, c, load, round)
		}
		killAfter := time.Duration(100+rand.IntN(900)) * time.Millisecond
		n := load.run(t, c, killAfter)
		if n == 0 {
			t.Fatalf("round %d: no approval before the kill: %s", round, c.stderr.String())
		}
		checked = checkLedgerAfterKill(t, dataDir, load, round)
		t.Logf("round %d: SIGKILL %v after the first approval; %d approvals answered this round, %d in all, all in the ledger once",
			round, killAfter, n, checked)
	}
	c := startChild(t, dataDir)
	checkAfterRestart(t, c, load, crashRounds)
	c.stop(t)
	checkLedgerAfterKill(t, dataDir, load, crashRounds)
	t.Logf("response codes seen under load: %v", load.codes)
}

// checkLedgerAfterKill opens the issuer's store of the dead child and
// checks every approval the acquirer saw is there exactly once, with its
// one hold, and that the ledger's invariants hold.
func checkLedgerAfterKill(t *testing.T, dataDir string, load *crashLoad, round int) int {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, store.Config{Dir: dataDir}, node.RoleIssuer, issuer.Migrations())
	if err != nil {
		t.Fatalf("round %d: reopen the issuer store after SIGKILL: %v", round, err)
	}
	defer db.Close()
	rep, err := issuer.CheckLedger(ctx, db)
	if err != nil || !rep.OK || rep.Holds != rep.Approvals || rep.OpenHolds != rep.Approvals-rep.Reversals {
		t.Fatalf("round %d: ledger after the crash: %+v %v", round, rep, err)
	}
	type stored struct {
		id, authCode string
		approved     bool
		n            int
	}
	byAlt := map[string]*stored{}
	rows, err := db.DB.QueryContext(ctx, `SELECT id, alt_ident, auth_code, approved FROM authorizations`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, alt, code string
		var approved int
		if err := rows.Scan(&id, &alt, &code, &approved); err != nil {
			t.Fatal(err)
		}
		if s, ok := byAlt[alt]; ok {
			s.n++
			continue
		}
		byAlt[alt] = &stored{id: id, authCode: code, approved: approved == 1, n: 1}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	holds := map[string]int{}
	rows, err = db.DB.QueryContext(ctx, `SELECT auth_id, COUNT(DISTINCT entry_id) FROM postings WHERE kind = 'HOLD' GROUP BY auth_id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		holds[id] = n
	}
	rows.Close()
	load.mu.Lock()
	defer load.mu.Unlock()
	for _, a := range load.approvals {
		s, ok := byAlt[a.altIdent()]
		switch {
		case !ok:
			t.Fatalf("round %d: approval %s (auth code %s) answered to the acquirer is missing from the issuer", round, a.altIdent(), a.authCode)
		case s.n != 1:
			t.Fatalf("round %d: approval %s stored %d times", round, a.altIdent(), s.n)
		case !s.approved || s.authCode != a.authCode:
			t.Fatalf("round %d: approval %s: issuer has approved=%v code %q, acquirer saw %q", round, a.altIdent(), s.approved, s.authCode, a.authCode)
		case holds[s.id] != 1:
			t.Fatalf("round %d: approval %s has %d hold entries", round, a.altIdent(), holds[s.id])
		}
	}
	return len(load.approvals)
}

// checkAfterRestart, on a restarted child: the issuer's ledger check is OK
// through its API; each token's last approved cryptogram is declined 05
// under a new identity; the identical message of an approval gets the
// stored answer (same approval code), not a second authorization.
func checkAfterRestart(t *testing.T, c *child, load *crashLoad, round int) {
	t.Helper()
	ctx := context.Background()
	link, err := iso8583.Dial(ctx, iso8583.ClientConfig{Addr: c.network, RequestTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer link.Close()
	load.mu.Lock()
	defer load.mu.Unlock()
	for w, i := range load.lastOK {
		if i < 0 {
			continue
		}
		a := load.approvals[i]
		again, err := link.Send(ctx, a.msg.Clone())
		if err != nil {
			t.Fatalf("round %d: resend: %v", round, err)
		}
		if again.String(39) != "00" || again.String(38) != a.authCode {
			t.Fatalf("round %d: the identical message of approval %s answered %s/%s, want the stored 00/%s",
				round, a.altIdent(), again.String(39), again.String(38), a.authCode)
		}
		replay := a.msg.Clone()
		term, stan, rrn := load.nextIdentity(w)
		stamp(replay, term, stan, rrn)
		resp, err := link.Send(ctx, replay)
		if err != nil {
			t.Fatalf("round %d: replay: %v", round, err)
		}
		if resp.String(39) != "05" {
			t.Fatalf("round %d: token %d's cryptogram approved before the crash, replayed after the restart, answered %s, want 05",
				round, w, resp.String(39))
		}
	}
	resp, err := http.Get(c.issuerURL + "/v1/admin/ledger/check")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rep issuer.LedgerReport
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		t.Fatal(err)
	}
	if !rep.OK || rep.OpenHolds != rep.Approvals-rep.Reversals {
		t.Fatalf("round %d: ledger check of the restarted issuer: %+v", round, rep)
	}
}
