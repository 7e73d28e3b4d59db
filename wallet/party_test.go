package wallet

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/events"
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/store/storetest"
	"github.com/prometheus/client_golang/prometheus"
)

// TestParty starts the wallet as `mipay up` would (node.Env, embedded event
// bus, the emulator factory root under the data directory) and checks that
// a transaction.authorized event reaches the device's notifications and a
// token.state_changed event the card.
func TestParty(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	bus, err := events.Open(ctx, events.Config{Dir: filepath.Join(dir, "nats")}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bus.Close() })
	f := newFakeTSP(t)
	v := mustVendor(t)
	if err := os.MkdirAll(filepath.Dir(FactoryRootPath(dir)), 0o700); err != nil {
		t.Fatal(err)
	}
	v.writeRoot(t, filepath.Dir(FactoryRootPath(dir)))
	nenv := &node.Env{
		Role: node.RoleWallet, DataDir: dir, Store: storetest.Config(t), Bus: bus, Log: log, Ref: mustRef(t), Metrics: prometheus.NewRegistry(),
		Listen: map[string]string{"http": "127.0.0.1:0"},
		Peers:  map[string]map[string]string{node.RoleTSP: {"http": f.srv.URL}},
	}
	// The TSP's secret comes from the file the TSP keeps under the data
	// directory (written here after the wallet started: it is read lazily),
	// the token requestor id from the reference data.
	p, err := StartWith(ctx, nenv, Config{Argon2: testArgon2})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(TSPTokenPath(dir)), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(TSPTokenPath(dir), []byte(fakeTSPToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	e := &env{t: t, svc: p.Service(), repo: p.Service().repo, url: p.Addrs()["http"], tsp: f, vendor: v, clock: newClock()}
	u := e.mustUser()
	card := e.mustCard(u, "green")
	ref := e.tokenRef(card)

	if err := bus.Publish(ctx, SubjectTransactionAuthorized, map[string]any{
		"transactionId": "sw-1", "tokenRef": ref, "amountMinor": 1250, "currency": "156", "merchantName": "Luckin Coffee",
		"approved": true, "responseCode": "00", "authCode": "123456", "time": time.Now().UTC(), "stan": "000001", "rrn": "000000000001",
	}); err != nil {
		t.Fatal(err)
	}
	a := e.call("GET", "/v1/devices/"+u.deviceID+"/notifications?wait=10s", u.token, nil).want(t, 200)
	if len(a.body["notifications"].([]any)) != 1 {
		t.Fatalf("notifications %s", a.raw)
	}
	if err := bus.Publish(ctx, SubjectTokenStateChanged, map[string]any{
		"tokenUniqueReference": ref, "state": "SUSPENDED", "causedBy": "CARDHOLDER", "reason": "DEVICE_LOST", "time": time.Now().UTC(),
	}); err != nil {
		t.Fatal(err)
	}
	b := e.call("GET", "/v1/devices/"+u.deviceID+"/notifications?after=1&wait=10s", u.token, nil).want(t, 200)
	if c := e.call("GET", "/v1/cards/"+card, u.token, nil).want(t, 200); c.str("state") != StateSuspended {
		t.Errorf("card after the event: %s (notifications %s)", c.raw, b.raw)
	}

	m := e.call("GET", "/metrics", "", nil).want(t, 200)
	for _, want := range []string{`mipay_wallet_bindings_total{decision="APPROVED"} 1`, `mipay_wallet_transactions_recorded_total 1`,
		`mipay_wallet_events_total{result="ok",subject="token.state_changed"}`} {
		if !strings.Contains(string(m.raw), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// A long poll in flight does not hold up Close.
	go e.call("GET", "/v1/devices/"+u.deviceID+"/notifications?after=5&wait=60s", u.token, nil)
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := p.Close(cctx); err != nil {
		t.Errorf("close: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("close took %v", d)
	}
}

func mustRef(tb testing.TB) *config.Reference {
	tb.Helper()
	ref, err := config.Default()
	if err != nil {
		tb.Fatal(err)
	}
	return ref
}
