package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/issuer"
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/node/local"
	"github.com/mipay-oss/mipay/phone"
)

// newCardOf is a new card of the same BIN as old (other last 4, later
// expiry): what a bank issues when it replaces a card.
func newCardOf(tb testing.TB, is *config.Issuer, old config.Cardholder) config.Cardholder {
	tb.Helper()
	taken := map[string]bool{}
	for _, c := range is.Cardholders {
		taken[c.PAN[len(c.PAN)-4:]] = true
	}
	for n := 0; n < 1000; n++ {
		body := []byte(old.PAN[:len(old.PAN)-1])
		copy(body[len(body)-4:], []byte{'8', byte('0' + n/100%10), byte('0' + n/10%10), byte('0' + n%10)})
		for d := byte('0'); d <= '9'; d++ {
			pan := string(body) + string(d)
			if config.LuhnValid(pan) && !taken[pan[len(pan)-4:]] {
				c := old
				c.PAN, c.Expiry, c.BalanceMinor, c.Status = pan, "3112", 100000, ""
				return c
			}
		}
	}
	tb.Fatal("no new card number")
	return config.Cardholder{}
}

// TestBankCLI drives `mipay bank` against every party in-process: a bound
// card's tokens are listed, suspended, resumed, moved to a replacement card
// and deleted, the card reported stolen; keys of no bank or another bank are
// refused and bad flags are usage errors (exit 2). No output holds a PAN.
func TestBankCLI(t *testing.T) {
	const bank = "icbc-debit"
	dir := t.TempDir()
	ctx := context.Background()
	ref, err := config.Default()
	if err != nil {
		t.Fatal(err)
	}
	is, _ := ref.Issuer(bank)
	card := is.Cardholders[0]
	repl := newCardOf(t, is, card)
	is.Cardholders = append(is.Cardholders, repl)
	sys := mustStartLocal(t, local.Options{DataDir: dir, Ref: ref})
	p, err := phone.Open(ctx, phone.Config{DataDir: dir, Name: "bankcli", WalletURL: sys.URL(node.RoleWallet), SMSURL: sys.URL(node.RoleSMS)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Register(ctx, card.Phone, "bankcli@example.com", "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	if err := p.Login(ctx, card.Phone, "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	if err := p.EnrollFinger(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := p.AddCard(ctx, phone.CardDetails{PAN: card.PAN, Expiry: card.Expiry, CVN2: card.CVN2, Name: card.Name, Phone: card.Phone})
	if err != nil {
		t.Fatal(err)
	}
	if res.Decision == phone.DecisionOTP {
		code, err := p.LastCode(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.VerifyOTP(ctx, res.CardID, code); err != nil {
			t.Fatal(err)
		}
	} else if res.Decision != phone.DecisionApproved {
		t.Fatalf("binding %+v", res)
	}
	issuerURL := sys.URL(node.RoleIssuer)
	common := []string{"--issuer-url", issuerURL, "--bank", bank, "--data", dir}
	t.Setenv(EnvBankKey, "")
	pans := []string{card.PAN, repl.PAN}
	bankCmd := func(t *testing.T, args ...string) (int, string, string) {
		t.Helper()
		code, out, errOut := runCmd(t, append([]string{"bank"}, args...)...)
		for _, pan := range pans {
			if strings.Contains(out+errOut, pan) {
				t.Fatalf("the output holds a PAN: %s %s", out, errOut)
			}
		}
		return code, out, errOut
	}
	jsonOf := func(t *testing.T, out string) issuer.CardActionResult {
		t.Helper()
		var r issuer.CardActionResult
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		return r
	}

	t.Run("tokens", func(t *testing.T) {
		code, out, errOut := bankCmd(t, append([]string{"tokens", "--pan", card.PAN}, common...)...)
		if code != 0 || !strings.Contains(out, "ACTIVE") || !strings.Contains(out, p.DeviceID()) || !strings.Contains(out, card.PAN[:6]+"******") {
			t.Fatalf("exit %d: %s %s", code, out, errOut)
		}
	})
	t.Run("suspend and resume", func(t *testing.T) {
		code, out, errOut := bankCmd(t, append([]string{"suspend", "--pan", card.PAN, "--reason", "FRAUD_CHECK", "--json"}, common...)...)
		if r := jsonOf(t, out); code != 0 || r.Changed != 1 || r.Tokens[0].State != "SUSPENDED" || r.CardStatus != "active" {
			t.Fatalf("exit %d: %s %s", code, out, errOut)
		}
		code, out, _ = bankCmd(t, append([]string{"tokens", "--pan", card.PAN, "--json"}, common...)...)
		if r := jsonOf(t, out); code != 0 || len(r.Tokens) != 1 || r.Tokens[0].State != "SUSPENDED" {
			t.Fatalf("after suspend: %s", out)
		}
		code, out, errOut = bankCmd(t, append([]string{"resume", "--pan", card.PAN}, common...)...)
		if code != 0 || !strings.Contains(out, "1 of 1 token(s) changed") || !strings.Contains(out, "ACTIVE") {
			t.Fatalf("resume: exit %d: %s %s", code, out, errOut)
		}
	})
	t.Run("keys", func(t *testing.T) {
		other, err := issuer.ReadOperatorKey(filepath.Join(dir, node.RoleIssuer, issuer.OperatorKeyDir), "boc-credit")
		if err != nil {
			t.Fatal(err)
		}
		args := []string{"suspend", "--pan", card.PAN, "--issuer-url", issuerURL, "--bank", bank, "--data", t.TempDir()}
		code, _, errOut := bankCmd(t, append(args, "--key", other)...)
		if code != 1 || !strings.Contains(errOut, "does not act for this bank") {
			t.Fatalf("another bank's key: exit %d %s", code, errOut)
		}
		code, _, errOut = bankCmd(t, append(args, "--key", "mbk_not-anybodys-key-at-all")...)
		if code != 1 || !strings.Contains(errOut, "refused the operator key") {
			t.Fatalf("wrong key: exit %d %s", code, errOut)
		}
		code, _, errOut = bankCmd(t, args...) // an empty data directory: no key anywhere
		if code != 2 || !strings.Contains(errOut, "no operator key") {
			t.Fatalf("no key: exit %d %s", code, errOut)
		}
		// The bank's key from a file or the environment works.
		own, err := issuer.ReadOperatorKey(filepath.Join(dir, node.RoleIssuer, issuer.OperatorKeyDir), bank)
		if err != nil {
			t.Fatal(err)
		}
		kf := filepath.Join(t.TempDir(), "key")
		os.WriteFile(kf, []byte(own+"\n"), 0o600)
		if code, out, errOut := bankCmd(t, "tokens", "--pan", card.PAN, "--issuer-url", issuerURL, "--bank", bank, "--key-file", kf); code != 0 {
			t.Fatalf("--key-file: exit %d %s %s", code, out, errOut)
		}
		t.Setenv(EnvBankKey, own)
		if code, out, errOut := bankCmd(t, "tokens", "--pan", card.PAN, "--issuer-url", issuerURL, "--bank", bank, "--data", t.TempDir()); code != 0 {
			t.Fatalf("%s: exit %d %s %s", EnvBankKey, code, out, errOut)
		}
		t.Setenv(EnvBankKey, "")
		// Nothing changed through the refused calls.
		_, out, _ := bankCmd(t, append([]string{"tokens", "--pan", card.PAN, "--json"}, common...)...)
		if r := jsonOf(t, out); r.Tokens[0].State != "ACTIVE" {
			t.Fatalf("a refused call changed the token: %s", out)
		}
	})
	t.Run("bad flags are usage errors", func(t *testing.T) {
		for name, args := range map[string][]string{
			"no command":       {},
			"unknown command":  {"freeze", "--pan", card.PAN},
			"unknown flag":     append([]string{"suspend", "--pan", card.PAN, "--force"}, common...),
			"no pan":           append([]string{"suspend"}, common...),
			"pan not digits":   append([]string{"suspend", "--pan", "6210abcd12345678"}, common...),
			"pan check digit":  append([]string{"suspend", "--pan", card.PAN[:len(card.PAN)-1] + string('0'+(card.PAN[len(card.PAN)-1]-'0'+1)%10)}, common...),
			"no bank":          {"tokens", "--pan", card.PAN, "--issuer-url", issuerURL, "--data", dir},
			"bad bank":         {"tokens", "--pan", card.PAN, "--issuer-url", issuerURL, "--data", dir, "--bank", "ICBC Debit"},
			"bad url":          append([]string{"tokens", "--pan", card.PAN}, append(common, "--issuer-url", "ftp://x")...),
			"extra argument":   append([]string{"tokens", "--pan", card.PAN, "now"}, common...),
			"long reason":      append([]string{"suspend", "--pan", card.PAN, "--reason", strings.Repeat("r", 201)}, common...),
			"replace same":     append([]string{"replace", "--old-pan", card.PAN, "--new-pan", card.PAN}, common...),
			"replace no new":   append([]string{"replace", "--old-pan", card.PAN}, common...),
			"pan for replace":  append([]string{"replace", "--pan", card.PAN}, common...),
			"key and key file": append([]string{"tokens", "--pan", card.PAN, "--key", "k", "--key-file", "f"}, common...),
		} {
			code, _, errOut := bankCmd(t, args...)
			if code != 2 || errOut == "" {
				t.Errorf("%s: exit %d, stderr %q", name, code, errOut)
			}
		}
	})
	t.Run("replace, then delete", func(t *testing.T) {
		code, out, errOut := bankCmd(t, append([]string{"replace", "--old-pan", card.PAN, "--new-pan", repl.PAN}, common...)...)
		if code != 0 || !strings.Contains(out, "1 of 1 token(s) moved") || !strings.Contains(out, "blocked") || !strings.Contains(out, "3112") {
			t.Fatalf("replace: exit %d %s %s", code, out, errOut)
		}
		// The tokens now belong to the new card.
		code, out, _ = bankCmd(t, append([]string{"tokens", "--pan", repl.PAN, "--json"}, common...)...)
		if r := jsonOf(t, out); code != 0 || len(r.Tokens) != 1 {
			t.Fatalf("new card's tokens: %s", out)
		}
		code, out, errOut = bankCmd(t, append([]string{"delete", "--pan", repl.PAN, "--json"}, common...)...)
		if r := jsonOf(t, out); code != 0 || r.Changed != 1 || r.Tokens[0].State != "DEACTIVATED" {
			t.Fatalf("delete: exit %d %s %s", code, out, errOut)
		}
	})
	t.Run("report stolen", func(t *testing.T) {
		code, out, errOut := bankCmd(t, append([]string{"report-stolen", "--pan", repl.PAN}, common...)...)
		if code != 0 || !strings.Contains(out, "lost at the bank") {
			t.Fatalf("exit %d %s %s", code, out, errOut)
		}
		// A card of the bank not on this host is a clear error (exit 1).
		unknown := newCardOf(t, is, card).PAN
		pans = append(pans, unknown)
		code, _, errOut = bankCmd(t, append([]string{"report-stolen", "--pan", unknown}, common...)...)
		if code != 1 || !strings.Contains(errOut, "no such card at this bank") {
			t.Fatalf("unknown card: exit %d %s", code, errOut)
		}
	})
}
