package issuer

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/httpx"
)

// withOperatorKeys gives the host operator keys for the named banks (made
// up here, set as EnvOperatorKeys would) and returns them in order.
func (th *testHost) withOperatorKeys(tb testing.TB, banks ...string) (string, string) {
	tb.Helper()
	keys := map[string]string{}
	var out []string
	for _, b := range banks {
		k, err := NewOperatorKey()
		if err != nil {
			tb.Fatal(err)
		}
		keys[b] = k
		out = append(out, k)
	}
	ops, err := OpenOperators(context.Background(), th.Host.DB(), th.Host.ref, OperatorConfig{Keys: keys, Now: th.clock.now})
	if err != nil {
		tb.Fatal(err)
	}
	th.Host.ops = ops
	for len(out) < 2 {
		out = append(out, "")
	}
	return out[0], out[1]
}

// TestOperatorAuth: every bank-staff endpoint needs the bank's own key
// (none or a wrong one 401, another bank's 403) and a refused call changes
// nothing; the TSP's machine endpoints need none.
func TestOperatorAuth(t *testing.T) {
	th := MustOpenHost(t)
	f := &fakeTSP{}
	th.Host.tsp = f
	debitKey, creditKey := th.withOperatorKeys(t, "icbc-debit", "icbc-credit")
	th.Host.ops.cfg.MaxFails = 1000 // this test makes many wrong calls on purpose
	srv := httptest.NewServer(httpx.Handler("issuer", th.Handler(), slog.New(slog.DiscardHandler), nil))
	defer srv.Close()
	c, nw := th.cards["debit"], th.cards["poor"]
	base := srv.URL + "/v1/issuers/icbc-debit"
	endpoints := []struct {
		method, path string
		body         any
	}{
		{"POST", "/cards/report-stolen", map[string]string{"pan": c.PAN}},
		{"POST", "/cards/token-actions", map[string]string{"pan": c.PAN, "action": "suspend"}},
		{"POST", "/cards/replace", map[string]string{"oldPan": c.PAN, "newPan": nw.PAN}},
		{"POST", "/cards/tokens", map[string]string{"pan": c.PAN}},
		{"GET", "/accounts/" + c.PAN[len(c.PAN)-4:], nil},
	}
	for _, e := range endpoints {
		for _, k := range []struct {
			name, key string
			status    int
		}{
			{"no key", "", 401},
			{"wrong key", "mbk_" + strings.Repeat("A", 43), 401},
			{"another bank's key", creditKey, 403},
			{"key with a space", debitKey + " x", 401},
		} {
			var out map[string]any
			if st := callAs(t, k.key, e.method, base+e.path, e.body, &out); st != k.status {
				t.Errorf("%s %s with %s: %d %v, want %d", e.method, e.path, k.name, st, out, k.status)
			}
		}
	}
	if len(f.calls) != 0 {
		t.Fatalf("refused calls reached the TSP: %v", f.calls)
	}
	if r := th.Authorize(context.Background(), th.auth("debit", 100)); r.Code != RCApproved {
		t.Fatalf("a refused report-stolen blocked the card: %s", r.Code)
	}
	var toks CardActionResult
	if st := callAs(t, debitKey, "POST", base+"/cards/tokens", map[string]string{"pan": c.PAN}, &toks); st != 200 ||
		len(toks.Tokens) != 1 || toks.Tokens[0].DeviceID != "dev-1" || strings.Contains(toks.PAN, c.PAN) {
		t.Fatalf("tokens: %d %+v", st, toks)
	}
	var stolen CardActionResult
	if st := callAs(t, debitKey, "POST", base+"/cards/report-stolen", map[string]string{"pan": c.PAN}, &stolen); st != 200 || stolen.CardStatus != StatusLost {
		t.Fatalf("report-stolen with the bank's key: %d %+v", st, stolen)
	}
	// The bank's key does not reach another bank's card through its own id.
	var other map[string]any
	if st := callAs(t, debitKey, "POST", base+"/cards/tokens", map[string]string{"pan": th.cards["credit"].PAN}, &other); st != 404 {
		t.Fatalf("another bank's card: %d %v", st, other)
	}
	// The TSP's endpoints are machine to machine: no operator key.
	if st := call(t, "POST", srv.URL+"/v1/issuers/icbc-debit/otp", map[string]string{"decisionId": "dcs_nope", "methodId": "sms-1"}, &other); st != 404 {
		t.Fatalf("OTP endpoint: %d %v", st, other)
	}
}

// TestOperatorAuthRateLimit: too many wrong keys from one address lock it
// out (429, even with the right key) until the window ends.
func TestOperatorAuthRateLimit(t *testing.T) {
	th := MustOpenHost(t)
	th.Host.tsp = &fakeTSP{}
	key, _ := th.withOperatorKeys(t, "icbc-debit")
	th.Host.ops.cfg.MaxFails, th.Host.ops.cfg.Window = 3, time.Minute
	srv := httptest.NewServer(httpx.Handler("issuer", th.Handler(), slog.New(slog.DiscardHandler), nil))
	defer srv.Close()
	url := srv.URL + "/v1/issuers/icbc-debit/cards/tokens"
	body := map[string]string{"pan": th.cards["debit"].PAN}
	var out map[string]any
	for i := 0; i < 3; i++ {
		if st := callAs(t, "mbk_wrong-guess-number-"+string(rune('a'+i)), "POST", url, body, &out); st != 401 {
			t.Fatalf("guess %d: %d", i, st)
		}
	}
	if st := callAs(t, key, "POST", url, body, &out); st != 429 {
		t.Fatalf("after 3 wrong keys the right key got %d, want 429", st)
	}
	th.clock.add(time.Minute)
	if st := callAs(t, key, "POST", url, body, &out); st != 200 {
		t.Fatalf("after the window: %d %v", st, out)
	}
	// The table of clients stays bounded.
	for i := 0; i < maxOperatorClients+10; i++ {
		th.Host.ops.fail("10.0." + string(rune(i)))
	}
	if n := len(th.Host.ops.fails); n > maxOperatorClients {
		t.Fatalf("%d clients tracked", n)
	}
}

// TestOperatorKeysGenerated: the first start writes one 0600 key file per
// bank and stores only hashes; a restart keeps the keys; a configured key
// replaces the stored one (rotation).
func TestOperatorKeysGenerated(t *testing.T) {
	th := MustOpenHost(t)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "issuer", OperatorKeyDir)
	ops, err := OpenOperators(ctx, th.Host.DB(), th.Host.ref, OperatorConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(ops.Generated) != len(th.Host.ref.Issuers) {
		t.Fatalf("%d keys generated, want %d", len(ops.Generated), len(th.Host.ref.Issuers))
	}
	key, err := ReadOperatorKey(dir, "boc-credit")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "boc-credit.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v %v", fi.Mode(), err)
	}
	if id, ok := ops.bankOf(ctx, key); !ok || id != "boc-credit" {
		t.Fatalf("key of %q %v", id, ok)
	}
	rows, err := th.Host.DB().DB.QueryContext(ctx, `SELECT key_hash FROM operator_api_keys`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var h []byte
		rows.Scan(&h)
		if bytes.Contains(h, []byte(key)) || bytes.Contains(h, []byte(key[len(operatorKeyPrefix):])) {
			t.Fatal("a plaintext key is stored")
		}
	}
	rows.Close()
	again, err := OpenOperators(ctx, th.Host.DB(), th.Host.ref, OperatorConfig{Dir: dir})
	if err != nil || len(again.Generated) != 0 {
		t.Fatalf("restart generated %v %v", again.Generated, err)
	}
	if id, ok := again.bankOf(ctx, key); !ok || id != "boc-credit" {
		t.Fatal("the key does not survive a restart")
	}
	rotated, _ := NewOperatorKey()
	keys, err := ParseOperatorKeys(th.Host.ref, "boc-credit="+rotated)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := OpenOperators(ctx, th.Host.DB(), th.Host.ref, OperatorConfig{Dir: dir, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := fresh.bankOf(ctx, key); ok {
		t.Fatal("the old key still works after rotation")
	}
	if id, ok := fresh.bankOf(ctx, rotated); !ok || id != "boc-credit" {
		t.Fatal("the rotated key does not work")
	}
	// Another node holding the old hashes sees the rotation on its next miss.
	again.last = time.Time{}
	if id, ok := again.bankOf(ctx, rotated); !ok || id != "boc-credit" {
		t.Fatal("another node does not pick up the rotated key")
	}
}

func TestParseOperatorKeys(t *testing.T) {
	th := MustOpenHost(t)
	good := "mbk_" + strings.Repeat("k", 20)
	for _, bad := range []string{
		"icbc-debit",                             // no key
		"=" + good,                               // no id
		"nobank=" + good,                         // unknown bank
		"icbc-debit=short",                       // too short
		"icbc-debit=" + strings.Repeat("k", 300), // too long
		"icbc-debit=" + good + ",icbc-debit=" + good, // twice
		"icbc-debit=mbk_with space in it 1234",
	} {
		if _, err := ParseOperatorKeys(th.Host.ref, bad); mipay.ErrorCode(err) != mipay.EINVALID {
			t.Errorf("%q: %v", bad, err)
		} else if strings.Contains(err.Error(), good) {
			t.Errorf("%q: the error shows the key: %v", bad, err)
		}
	}
	m, err := ParseOperatorKeys(th.Host.ref, " icbc-debit="+good+", boc-credit="+good+"x ")
	if err != nil || m["icbc-debit"] != good || m["boc-credit"] != good+"x" {
		t.Fatalf("%v %v", m, err)
	}
}
