package gate_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/nfc"
	"github.com/mipay-oss/mipay/se"
	"github.com/mipay-oss/mipay/transit/gate"
	"github.com/mipay-oss/mipay/transit/transittest"
)

// The SIGKILL tests run the gate (or the phone) in a child process — this
// test binary again, in TestCrashHelper — and kill it at a random instant
// of a tap, over and over. The passenger taps until the gate opens. In the
// end every debit the card made is cleared exactly once (no tap lost, none
// counted twice) and no passage was charged twice.

const crashRoleEnv = "MIPAY_TRANSIT_CRASH_ROLE"

// TestCrashHelper is the child process: a gate serving a reader, or a phone
// tapping on command. It does nothing in a normal test run.
func TestCrashHelper(t *testing.T) {
	switch os.Getenv(crashRoleEnv) {
	case "gate":
		crashGate(t)
	case "phone":
		crashPhone(t)
	}
}

func crashGate(t *testing.T) {
	ctx := context.Background()
	ref, err := config.Default()
	if err != nil {
		t.Fatal(err)
	}
	city, _ := ref.City(os.Getenv("GATE_CITY"))
	// GATE_KILL_AT makes the gate SIGKILL itself at one step of a tap (the
	// kill points below); unset, it runs until the parent kills it.
	at := os.Getenv(killAtEnv)
	cfg := gate.Config{DataDir: os.Getenv("GATE_DATA"), City: city, Station: "bus-1", Mode: gate.ModeBus,
		Agency: os.Getenv("GATE_AGENCY"), OperatorToken: os.Getenv("GATE_TOKEN"),
		OnOpen: func(r gate.Result) {
			if at == killAtBarrier {
				die(at)
			}
			fmt.Fprintf(os.Stdout, "OPEN %v %d\n", r.Recovered, r.ChargedMinor)
			if at == killAfterBarrier {
				die(at)
			}
		}}
	g, err := gate.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r, err := nfc.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(os.Stdout, "READY %s\n", r.Addr())
	if at == "" {
		_ = g.Serve(ctx, r, func(res gate.Result, err error) {})
		return
	}
	for {
		sess, err := r.Wait(ctx)
		if err != nil {
			continue
		}
		_, _ = g.Process(ctx, killingCard{sess, at})
		sess.Close()
	}
}

const killAtEnv = "GATE_KILL_AT"

// Kill points of a gate child (GATE_KILL_AT): "before:INS" and "after:INS"
// kill the gate just before it sends the card a command with that INS (hex)
// or just after the card's answer reached it; killAtBarrier kills it in
// OnOpen before the barrier opens (nothing printed), killAfterBarrier right
// after the barrier opened and its OPEN line was written.
const (
	killAtBarrier    = "barrier"
	killAfterBarrier = "after-barrier"
)

// die says where the gate dies (so the parent knows the point was reached)
// and SIGKILLs the process: nothing after this line runs.
func die(at string) {
	fmt.Fprintf(os.Stdout, "DIE %s\n", at)
	if p, err := os.FindProcess(os.Getpid()); err == nil {
		p.Kill() // SIGKILL on Unix
	}
	select {}
}

// killingCard is the tap's card as the gate sees it, with the gate's death
// at one command.
type killingCard struct {
	gate.Card
	at string
}

func (c killingCard) Transmit(ctx context.Context, apdu []byte) ([]byte, error) {
	step := ""
	if len(apdu) > 1 {
		step = fmt.Sprintf("%02X", apdu[1])
	}
	if c.at == "before:"+step {
		die(c.at)
	}
	resp, err := c.Card.Transmit(ctx, apdu)
	if c.at == "after:"+step {
		die(c.at)
	}
	return resp, err
}

func crashPhone(t *testing.T) {
	s, err := se.Open(os.Getenv("PHONE_SE"), se.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(os.Stdout, "READY")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		addr, ok := strings.CutPrefix(in.Text(), "TAP ")
		if !ok {
			continue
		}
		err := nfc.Tap(context.Background(), addr, s)
		fmt.Fprintf(os.Stdout, "DONE %v\n", err)
	}
}

// child is a running helper process with its output lines.
type child struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	lines   chan string
	readErr error // why reading its output stopped (nil: end of file); set before lines closes
}

func startChild(tb testing.TB, role string, env ...string) (*child, string) {
	tb.Helper()
	return startChildHeld(tb, nil, role, env...)
}

// startChildHeld starts a child whose output is read only once hold is
// closed, after its READY line (nil: at once): a test's stand-in for a
// loaded machine that runs the reading goroutine late.
func startChildHeld(tb testing.TB, hold <-chan struct{}, role string, env ...string) (*child, string) {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
	cmd.Env = append(append(os.Environ(), crashRoleEnv+"="+role), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	c := &child{cmd: cmd, stdin: stdin, lines: make(chan string, 64)}
	go func() {
		sc := bufio.NewScanner(out)
		for n := 0; sc.Scan(); n++ {
			c.lines <- sc.Text()
			if n == 0 && hold != nil {
				<-hold
			}
		}
		c.readErr = sc.Err()
		close(c.lines)
	}()
	select {
	case l := <-c.lines:
		if !strings.HasPrefix(l, "READY") {
			tb.Fatalf("%s child said %q", role, l)
		}
		return c, strings.TrimSpace(strings.TrimPrefix(l, "READY"))
	case <-time.After(30 * time.Second):
		tb.Fatalf("%s child did not start", role)
	}
	return nil, ""
}

// kill SIGKILLs the child and returns every line it wrote before dying.
// The lines are read to the end of the pipe (the dead child's end closes)
// before Wait, because Wait closes our end: a line the reading goroutine
// had not read yet when Wait returned would be lost — an OPEN line lost that
// way is an opening the test does not count, so it rides once more and sees
// one debit more than openings.
func (c *child) kill(tb testing.TB) []string {
	tb.Helper()
	c.cmd.Process.Kill()
	var out []string
	timeout := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				c.cmd.Wait()
				if c.readErr != nil {
					tb.Fatalf("reading the killed child's output: %v", c.readErr)
				}
				return out
			}
			out = append(out, l)
		case <-timeout:
			c.cmd.Wait()
			tb.Fatalf("the killed child's output did not end")
		}
	}
}

func countOpens(lines []string) (opens, recovered int) {
	for _, l := range lines {
		if strings.HasPrefix(l, "OPEN ") {
			opens++
			if strings.HasPrefix(l, "OPEN true") {
				recovered++
			}
		}
	}
	return
}

// checkCleared uploads the gate's records and checks the agency's view of
// the card against the card itself.
func checkCleared(t *testing.T, a *transittest.Agency, cfg gate.Config, card string, balance, debits, fare int64) {
	t.Helper()
	ctx := context.Background()
	g, err := gate.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	res, err := g.Upload(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if len(r.Exceptions) != 0 || len(r.Gaps) != 0 {
			t.Fatalf("clearing: %+v", r)
		}
	}
	c, err := a.Svc.Card(ctx, card)
	if err != nil {
		t.Fatal(err)
	}
	if c.ClearedRecords != debits || c.ShadowBalance != balance || c.ClearedMinor != debits*fare {
		t.Fatalf("cleared %d records (%d minor), shadow balance %d; the card made %d debits, holds %d",
			c.ClearedRecords, c.ClearedMinor, c.ShadowBalance, debits, balance)
	}
}

// TestGateSIGKILLMidTap kills the gate process at random instants of taps.
func TestGateSIGKILLMidTap(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	ctx := context.Background()
	cs := newCrashSetup(t)
	a, cfg, ph, card, fare, env := cs.a, cs.cfg, cs.ph, cs.card, cs.fare, cs.env
	loaded := cs.loaded
	g, addr := startChild(t, "gate", env...)
	const rides = 15
	opens, recovered, kills := 0, 0, 0
	for ride := 0; ride < rides; {
		done := make(chan error, 1)
		go func() { done <- nfc.Tap(ctx, addr, ph.SE) }()
		if rand.IntN(3) > 0 { // two taps in three are cut by a SIGKILL
			time.Sleep(time.Duration(rand.IntN(4000)) * time.Microsecond)
			lines := g.kill(t)
			<-done
			kills++
			o, r := countOpens(lines)
			opens, recovered = opens+o, recovered+r
			if o > 0 {
				ride++
			}
			g, addr = startChild(t, "gate", env...)
			continue
		}
		if err := <-done; err != nil {
			t.Fatalf("tap: %v", err)
		}
		select {
		case l := <-g.lines:
			o, r := countOpens([]string{l})
			if o != 1 {
				t.Fatalf("gate said %q", l)
			}
			opens, recovered = opens+1, recovered+r
			ride++
		case <-time.After(10 * time.Second):
			t.Fatal("the gate did not open")
		}
	}
	g.kill(t)
	debits := int64(ph.SE.TransitCards()[0].OfflineSerial)
	balance := ph.Balance(t, card)
	t.Logf("%d rides, %d openings (%d recovered), %d SIGKILLs, %d debits", rides, opens, recovered, kills, debits)
	if balance != loaded-debits*fare {
		t.Fatalf("balance %d after %d debits of %d", balance, debits, fare)
	}
	// Each debit opened the gate at least once; a kill between the barrier
	// and the "opened" mark may give one free passage more, never a charge.
	if debits > int64(opens) || int64(opens)-debits > int64(kills) {
		t.Fatalf("%d debits for %d openings (%d kills)", debits, opens, kills)
	}
	checkCleared(t, a, cfg, card, balance, debits, fare)
}

// TestPhoneSIGKILLMidTap kills the phone process (its SE) at random instants
// of taps at an in-process gate.
func TestPhoneSIGKILLMidTap(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	ctx := context.Background()
	a := transittest.NewAgency(t)
	data := t.TempDir()
	g := mustGate(t, a, data, "sz", "bus-2", gate.ModeBus)
	cfg := gate.Config{DataDir: data, City: a.City(t, "sz"), Station: "bus-2", Mode: gate.ModeBus, Agency: a.URL, OperatorToken: a.Token}
	ph := a.NewPhone(t, "rider")
	card := ph.Issue(t, "sz")
	const loaded = 100000
	if _, err := ph.TopUp(ctx, card, loaded, "t", transittest.CutNone); err != nil {
		t.Fatal(err)
	}
	fare := a.City(t, "sz").BusFareMinor
	r, err := nfc.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// From here the SE belongs to the child process.
	env := []string{"PHONE_SE=" + ph.Dir}
	p, _ := startChild(t, "phone", env...)
	const rides = 15
	opens, kills := 0, 0
	for opens < rides {
		fmt.Fprintf(p.stdin, "TAP %s\n", r.Addr())
		sess, err := r.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		kill := rand.IntN(3) > 0
		if kill {
			proc := p.cmd.Process
			go func() {
				time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
				proc.Kill()
			}()
		}
		res, perr := g.Process(ctx, sess)
		sess.Close()
		if perr == nil && !res.Open {
			t.Fatalf("refused: %+v", res)
		}
		if res.Open {
			opens++
		}
		if kill {
			p.kill(t)
			kills++
			p, _ = startChild(t, "phone", env...)
			continue
		}
		if l := <-p.lines; !strings.HasPrefix(l, "DONE") {
			t.Fatalf("phone said %q", l)
		}
	}
	p.kill(t)
	s, err := se.Open(ph.Dir, se.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := s.TransitCards()[0]
	debits, balance := int64(c.OfflineSerial), int64(c.BalanceMinor)
	t.Logf("%d openings, %d SIGKILLs, %d debits", opens, kills, debits)
	if balance != loaded-debits*fare {
		t.Fatalf("balance %d after %d debits of %d", balance, debits, fare)
	}
	// A debit whose answer the kill cut is recovered at the next tap: every
	// debit is exactly one opening.
	if debits != int64(opens) {
		t.Fatalf("%d debits for %d openings", debits, opens)
	}
	g.Close()
	checkCleared(t, a, cfg, card, balance, debits, fare)
}

// crashSetup is a provisioned bus gate (run in child processes) and a
// phone whose card holds loaded.
type crashSetup struct {
	a      *transittest.Agency
	cfg    gate.Config
	env    []string
	ph     *transittest.Phone
	card   string
	fare   int64
	loaded int64
}

func newCrashSetup(t *testing.T) *crashSetup {
	t.Helper()
	ctx := context.Background()
	a := transittest.NewAgency(t)
	data := t.TempDir()
	cfg := gate.Config{DataDir: data, City: a.City(t, "sz"), Station: "bus-1", Mode: gate.ModeBus, Agency: a.URL, OperatorToken: a.Token}
	if _, err := gate.Provision(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	ph := a.NewPhone(t, "rider")
	card := ph.Issue(t, "sz")
	const loaded = 100000
	if _, err := ph.TopUp(ctx, card, loaded, "t", transittest.CutNone); err != nil {
		t.Fatal(err)
	}
	return &crashSetup{a: a, cfg: cfg, ph: ph, card: card, fare: a.City(t, "sz").BusFareMinor, loaded: loaded,
		env: []string{"GATE_DATA=" + data, "GATE_CITY=sz", "GATE_AGENCY=" + a.URL, "GATE_TOKEN=" + a.Token}}
}

// tapDying runs one tap at a gate child that SIGKILLs itself at the kill
// point at ("" for none: the child is killed after the tap) and returns
// the child's lines; it fails the test if the point was not reached.
func (s *crashSetup) tapDying(t *testing.T, at string) []string {
	t.Helper()
	env := s.env
	if at != "" {
		env = append(env[:len(env):len(env)], killAtEnv+"="+at)
	}
	g, addr := startChild(t, "gate", env...)
	err := nfc.Tap(context.Background(), addr, s.ph.SE)
	lines := g.kill(t)
	died := slices.Contains(lines, "DIE "+at)
	if at != "" && !died {
		t.Fatalf("the gate did not reach kill point %s: %q", at, lines)
	}
	if at == "" && err != nil {
		t.Fatalf("tap: %v", err)
	}
	return lines
}

// TestKilledGateKeepsItsLastOpening: the SIGKILL lands just after the
// barrier opened and its OPEN line was written, and the test's reading
// goroutine runs late (as on a loaded 2-core machine running every package's
// tests). The opening must still be counted: losing it made
// TestGateSIGKILLMidTap ride once more and fail with one debit more than
// openings ("15 rides, 15 openings (1 recovered), 15 SIGKILLs, 16 debits")
// although every debit had opened the gate.
func TestKilledGateKeepsItsLastOpening(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	s := newCrashSetup(t)
	hold := make(chan struct{})
	g, addr := startChildHeld(t, hold, "gate", append(s.env[:len(s.env):len(s.env)], killAtEnv+"="+killAfterBarrier)...)
	_ = nfc.Tap(context.Background(), addr, s.ph.SE) // ends when the gate dies
	// The reader wakes 300 ms later: long after a kill that reaps the dead
	// gate first (and so closes the pipe) would have lost the OPEN line.
	time.AfterFunc(300*time.Millisecond, func() { close(hold) })
	lines := g.kill(t)
	debits := int64(s.ph.SE.TransitCards()[0].OfflineSerial)
	opens, _ := countOpens(lines)
	if debits != 1 || opens != 1 {
		t.Fatalf("%d debits, %d openings counted (lines %q)", debits, opens, lines)
	}
}

// TestGateSIGKILLAtEachStep kills the gate at each step of a tap, and of
// the recovery of a tap it was killed in, then lets the card tap at a gate
// that runs on. Every debit opened the gate (a kill after the barrier
// opened but before the gate journaled it gives one free passage more,
// never a charge) and clears exactly once.
func TestGateSIGKILLAtEachStep(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	const (
		sel, initialize, debit, proof, balance, readRecord = "A4", "50", "54", "5A", "5C", "B2"
	)
	for _, tc := range []struct {
		name      string
		points    []string // one tap per point, each at a new gate process
		debits    int64    // after the first, clean ride and a last tap at a gate that runs on
		opens     int
		recovered int
	}{
		{"before SELECT", []string{"before:" + sel}, 2, 2, 0},
		{"after INITIALIZE", []string{"after:" + initialize}, 2, 2, 0},
		{"intent written, DEBIT not sent", []string{"before:" + debit}, 2, 2, 0},
		{"card debited, answer not handled", []string{"after:" + debit}, 2, 2, 1},
		{"TAC journaled, barrier not opened", []string{killAtBarrier}, 2, 2, 1},
		{"barrier opened, not journaled", []string{killAfterBarrier}, 2, 3, 1},
		{"recovery: before GET TRANSACTION PROOF", []string{"after:" + debit, "before:" + proof}, 2, 2, 1},
		{"recovery: proof received, not journaled", []string{"after:" + debit, "after:" + proof}, 2, 2, 1},
		{"recovery: completion journaled, before GET BALANCE", []string{"after:" + debit, "before:" + balance}, 2, 2, 1},
		{"recovery: barrier not opened", []string{"after:" + debit, killAtBarrier}, 2, 2, 1},
		{"recovery: barrier opened, not journaled", []string{"after:" + debit, killAfterBarrier}, 2, 3, 2},
		{"void: no proof, void not handled", []string{"before:" + debit, "after:" + proof}, 2, 2, 0},
		{"void, then a new intent, DEBIT not sent", []string{"before:" + debit, "before:" + debit}, 2, 2, 0},
		{"void, then the new DEBIT's answer not handled", []string{"before:" + debit, "after:" + debit}, 2, 2, 1},
		{"void, then the lost-tap check's READ RECORD", []string{"before:" + debit, "after:" + readRecord}, 2, 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newCrashSetup(t)
			var lines []string
			for _, at := range append(append([]string{""}, tc.points...), "") {
				lines = append(lines, s.tapDying(t, at)...)
			}
			opens, recovered := countOpens(lines)
			debits := int64(s.ph.SE.TransitCards()[0].OfflineSerial)
			balance := s.ph.Balance(t, s.card)
			t.Logf("%d openings (%d recovered), %d debits", opens, recovered, debits)
			if balance != s.loaded-debits*s.fare {
				t.Fatalf("balance %d after %d debits of %d", balance, debits, s.fare)
			}
			if debits != tc.debits || opens != tc.opens || recovered != tc.recovered {
				t.Fatalf("%d debits, %d openings (%d recovered); want %d, %d (%d)", debits, opens, recovered, tc.debits, tc.opens, tc.recovered)
			}
			checkCleared(t, s.a, s.cfg, s.card, balance, debits, s.fare)
		})
	}
}
