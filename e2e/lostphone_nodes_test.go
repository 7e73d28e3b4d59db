package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/network"
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/node/local"
	"github.com/mipay-oss/mipay/store"
	"github.com/prometheus/client_golang/prometheus"
)

// TestSwitchOffTwoNodes: two switch nodes share the store and the event bus
// (PostgreSQL and NATS when MIPAY_TEST_POSTGRES and MIPAY_TEST_NATS are set;
// otherwise one SQLite directory and the embedded NATS), each with its own
// token cache. After the portal's switch-off answer, each node's first
// decline (62) of the phone's genuine cryptograms comes within a second.
func TestSwitchOffTwoNodes(t *testing.T) {
	dir := t.TempDir()
	ref, err := config.Default()
	if err != nil {
		t.Fatal(err)
	}
	opts := local.Options{DataDir: dir, Ref: ref, Log: slog.New(slog.DiscardHandler), NATSURL: os.Getenv("MIPAY_TEST_NATS")}
	backend := "SQLite + embedded NATS"
	if pg := os.Getenv("MIPAY_TEST_POSTGRES"); pg != "" {
		opts.Store = store.Config{URL: pg, Prefix: fmt.Sprintf("lost%d_", time.Now().UnixNano()%1_000_000_000)}
		backend = "PostgreSQL"
		if opts.NATSURL != "" {
			backend += " + NATS"
		}
	}
	ctx := context.Background()
	sys, err := local.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	s := &system{System: sys, dataDir: dir, ref: ref, logBuf: &syncBuffer{}}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = sys.Close(cctx)
	})
	st := opts.Store
	if st.Dir == "" && st.URL == "" {
		st.Dir = dir
	}
	// The second switch node: same store, bus, HSM and issuers.
	second, err := network.Start(ctx, &node.Env{Role: node.RoleNetwork, DataDir: dir, Store: st, Bus: sys.Bus, HSM: sys.HSM,
		Log: slog.New(slog.DiscardHandler), Ref: ref, Metrics: prometheus.NewRegistry(),
		Listen: map[string]string{"http": "127.0.0.1:0", "iso8583": "127.0.0.1:0"}, Peers: sys.Peers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = second.Close(cctx)
	})
	o := s.newOwner(t, "two-nodes", "icbc-debit", 0)
	src := newCardSource(t, o.p.SE())
	nodes := []*cardPayer{{src: src, c: s.dial(t, s.Addr(node.RoleNetwork, "iso8583"))}, {src: src, c: s.dial(t, second.Addrs()["iso8583"])}}
	nodes[1].stan.Store(500_000)
	for i, n := range nodes {
		if rc := n.pay(t); rc != "00" {
			t.Fatalf("node %d before: %s", i+1, rc)
		}
	}
	b := s.newBrowser(t)
	b.signIn(s, o)
	dev := o.p.DeviceID()
	b.want(200, b.get("/portal/devices/"+dev+"/switch-off"))
	b.want(200, b.post("/portal/devices/"+dev+"/switch-off", b.csrf()), "1 card was suspended")
	answered := time.Now()
	first := make([]time.Duration, len(nodes))
	for done := 0; done < len(nodes); {
		for i, n := range nodes {
			if first[i] != 0 {
				continue
			}
			switch rc := n.pay(t); rc {
			case "62":
				first[i] = time.Since(answered)
				done++
			case "00":
			default:
				t.Fatalf("node %d answered %s", i+1, rc)
			}
		}
		if time.Since(answered) > 5*time.Second {
			t.Fatalf("not declined on every node within 5s: %v", first)
		}
	}
	t.Logf("%s: first 62 after the portal's answer: node 1 %v, node 2 %v", backend,
		first[0].Round(time.Millisecond), first[1].Round(time.Millisecond))
	for i, d := range first {
		if d > time.Second {
			t.Errorf("node %d declined only %v after the switch-off", i+1, d)
		}
	}
	// And back: found it (after signing in again) pays on both nodes.
	b.want(200, b.post("/portal/devices/"+dev+"/found", b.csrf()))
	b.want(200, b.post("/portal/signin", b.csrf(), "login", o.login, "password", portalPassword))
	b.want(200, b.post("/portal/verify", b.csrf(), "emailCode", s.lastEmailCode(t, o.email)), "1 card was turned back on")
	for i, n := range nodes {
		eventually(t, fmt.Sprintf("node %d approves again", i+1), func() bool { return n.pay(t) == "00" })
	}
}

// dial opens an acquirer connection to a switch node.
func (s *system) dial(tb testing.TB, addr string) *iso8583.Client {
	tb.Helper()
	c, err := iso8583.Dial(context.Background(), iso8583.ClientConfig{Addr: addr})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}
