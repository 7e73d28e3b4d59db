package gate_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
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
	cfg := gate.Config{DataDir: os.Getenv("GATE_DATA"), City: city, Station: "bus-1", Mode: gate.ModeBus,
		Agency: os.Getenv("GATE_AGENCY"), OperatorToken: os.Getenv("GATE_TOKEN"),
		OnOpen: func(r gate.Result) { fmt.Fprintf(os.Stdout, "OPEN %v %d\n", r.Recovered, r.ChargedMinor) }}
	g, err := gate.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r, err := nfc.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(os.Stdout, "READY %s\n", r.Addr())
	_ = g.Serve(ctx, r, func(res gate.Result, err error) {})
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
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

func startChild(tb testing.TB, role string, env ...string) (*child, string) {
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
		for sc.Scan() {
			c.lines <- sc.Text()
		}
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

// kill SIGKILLs the child and returns the lines it wrote before dying.
func (c *child) kill() []string {
	c.cmd.Process.Kill()
	c.cmd.Wait()
	var out []string
	for l := range c.lines {
		out = append(out, l)
	}
	return out
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
	fare := a.City(t, "sz").BusFareMinor
	env := []string{"GATE_DATA=" + data, "GATE_CITY=sz", "GATE_AGENCY=" + a.URL, "GATE_TOKEN=" + a.Token}
	g, addr := startChild(t, "gate", env...)
	const rides = 15
	opens, recovered, kills := 0, 0, 0
	for ride := 0; ride < rides; {
		done := make(chan error, 1)
		go func() { done <- nfc.Tap(ctx, addr, ph.SE) }()
		if rand.IntN(3) > 0 { // two taps in three are cut by a SIGKILL
			time.Sleep(time.Duration(rand.IntN(4000)) * time.Microsecond)
			lines := g.kill()
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
	g.kill()
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
			p.kill()
			kills++
			p, _ = startChild(t, "phone", env...)
			continue
		}
		if l := <-p.lines; !strings.HasPrefix(l, "DONE") {
			t.Fatalf("phone said %q", l)
		}
	}
	p.kill()
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
