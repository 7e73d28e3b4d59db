package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/issuer"
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/node/local"
)

// TestBankKeysCLI drives `mipay bank keys` against every party in-process:
// list, rotate (the new key printed once, the old one still valid in its
// grace period), revoke (refused at once); another bank's key is refused,
// bad flags are usage errors (exit 2) and no output but a rotation's holds a
// key.
func TestBankKeysCLI(t *testing.T) {
	dir := t.TempDir()
	sys := mustStartLocal(t, local.Options{DataDir: dir})
	const bank = "icbc-debit"
	keyDir := filepath.Join(dir, node.RoleIssuer, issuer.OperatorKeyDir)
	oldKey, err := issuer.ReadOperatorKey(keyDir, bank)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := issuer.ReadOperatorKey(keyDir, "boc-credit")
	if err != nil {
		t.Fatal(err)
	}
	issuerURL := sys.URL(node.RoleIssuer)
	common := []string{"--issuer-url", issuerURL, "--bank", bank, "--data", dir} // the key: the data directory's file
	t.Setenv(EnvBankKey, "")
	secrets := []string{oldKey, otherKey}
	// keysCmd runs `mipay bank keys args` and fails if its output holds a
	// key of secrets (a rotation's new key is added only after its run).
	keysCmd := func(t *testing.T, args ...string) (int, string, string) {
		t.Helper()
		code, out, errOut := runCmd(t, append([]string{"bank", "keys"}, args...)...)
		for _, k := range secrets {
			if strings.Contains(out+errOut, k) {
				t.Fatalf("the output holds a key: %s %s", out, errOut)
			}
		}
		return code, out, errOut
	}

	code, out, errOut := keysCmd(t, append([]string{"list"}, common...)...)
	if code != 0 || !strings.Contains(out, "active") || !strings.Contains(out, "(this key)") || !strings.Contains(out, "opk_") {
		t.Fatalf("list: exit %d %s %s", code, out, errOut)
	}

	t.Run("bad flags are usage errors", func(t *testing.T) {
		for name, args := range map[string][]string{
			"no command":        {},
			"unknown command":   append([]string{"expire"}, common...),
			"negative grace":    append([]string{"rotate", "--grace", "-1h"}, common...),
			"long grace":        append([]string{"rotate", "--grace", "169h"}, common...),
			"grace not a time":  append([]string{"rotate", "--grace", "tomorrow"}, common...),
			"revoke no id":      append([]string{"revoke"}, common...),
			"revoke bad id":     append([]string{"revoke", "--key-id", "opk_XYZ"}, common...),
			"revoke by the key": append([]string{"revoke", "--key-id", oldKey}, common...),
			"grace for list":    append([]string{"list", "--grace", "1h"}, common...),
			"extra argument":    append([]string{"list", "now"}, common...),
			"no bank":           {"list", "--issuer-url", issuerURL, "--data", dir},
			"bad url":           append([]string{"list"}, append(common, "--issuer-url", "ftp://x")...),
			"key and key file":  append([]string{"list", "--key", "k", "--key-file", "f"}, common...),
		} {
			code, _, errOut := keysCmd(t, args...)
			if code != 2 || errOut == "" {
				t.Errorf("%s: exit %d, stderr %q", name, code, errOut)
			}
		}
	})
	t.Run("another bank's key", func(t *testing.T) {
		for _, args := range [][]string{{"list"}, {"rotate"}} {
			code, _, errOut := keysCmd(t, append(args, "--issuer-url", issuerURL, "--bank", bank, "--key", otherKey)...)
			if code != 1 || !strings.Contains(errOut, "does not act for this bank") {
				t.Fatalf("%v with another bank's key: exit %d %s", args, code, errOut)
			}
		}
		if _, out, _ := keysCmd(t, append([]string{"list", "--json"}, common...)...); strings.Count(out, `"id"`) != 1 {
			t.Fatalf("refused calls changed the keys: %s", out)
		}
	})

	var newKey, newest, oldID string
	t.Run("rotate", func(t *testing.T) {
		code, out, errOut := keysCmd(t, append([]string{"rotate", "--json"}, common...)...)
		var r issuer.OperatorKeyRotateResult
		if err := json.Unmarshal([]byte(out), &r); err != nil || code != 0 || len(r.Expiring) != 1 || r.Expiring[0].Expires == nil {
			t.Fatalf("rotate: exit %d %v %s %s", code, err, out, errOut)
		}
		newKey, oldID = r.Key, r.Expiring[0].ID
		secrets = append(secrets, newKey)
		// The old key came from the data directory's file: the new one
		// replaced it there (0600), so the next command keeps working
		// after the grace period.
		if got, err := issuer.ReadOperatorKey(keyDir, bank); err != nil || got != newKey {
			t.Fatalf("the key file holds the old key after the rotation (%v)", err)
		}
		if fi, err := os.Stat(filepath.Join(keyDir, bank+".key")); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("key file mode %v, %v; want 0600", fi.Mode(), err)
		}
		if d := time.Until(*r.Expiring[0].Expires); d < 23*time.Hour || d > 25*time.Hour {
			t.Fatalf("old key expires in %s, want the default 24h", d)
		}
		// The old key works in its grace period; both are listed.
		code, out, errOut = keysCmd(t, "list", "--issuer-url", issuerURL, "--bank", bank, "--key", oldKey)
		if code != 0 || !strings.Contains(out, "expiring") || !strings.Contains(out, "active") || !strings.Contains(out, r.New.ID) {
			t.Fatalf("list with the old key: exit %d %s %s", code, out, errOut)
		}
		// The text form prints the new key once.
		code, out, errOut = keysCmd(t, "rotate", "--grace", "2h", "--issuer-url", issuerURL, "--bank", bank, "--key", newKey)
		if code != 0 || !strings.Contains(out, "not shown again") || !strings.Contains(out, "stops working at") {
			t.Fatalf("rotate: exit %d %s %s", code, out, errOut)
		}
		n := 0
		for _, f := range strings.Fields(out) {
			if strings.HasPrefix(f, "mbk_") {
				n++
				newest = f
				secrets = append(secrets, f)
			}
		}
		if n != 1 || strings.Contains(out, newKey) || strings.Contains(out, oldKey) {
			t.Fatalf("rotate printed %d keys (want the new one only): %s", n, out)
		}
	})
	t.Run("revoke", func(t *testing.T) {
		if newest == "" {
			t.Skip("rotate failed")
		}
		// Keys are managed with the bank's newest key (a superseded one
		// still works for the rest until it expires).
		code, _, errOut := keysCmd(t, "revoke", "--key-id", oldID, "--issuer-url", issuerURL, "--bank", bank, "--key", newKey)
		if code != 1 || !strings.Contains(errOut, "superseded") {
			t.Fatalf("revoke with a superseded key: exit %d %s", code, errOut)
		}
		with := []string{"--issuer-url", issuerURL, "--bank", bank, "--key", newest}
		code, out, errOut := keysCmd(t, append([]string{"revoke", "--key-id", oldID}, with...)...)
		if code != 0 || !strings.Contains(out, "is revoked") || !strings.Contains(out, oldID) {
			t.Fatalf("revoke: exit %d %s %s", code, out, errOut)
		}
		code, _, errOut = keysCmd(t, "list", "--issuer-url", issuerURL, "--bank", bank, "--key", oldKey)
		if code != 1 || !strings.Contains(errOut, "refused the operator key") {
			t.Fatalf("revoked key: exit %d %s", code, errOut)
		}
		code, _, errOut = keysCmd(t, append([]string{"revoke", "--key-id", oldID}, with...)...)
		if code != 1 || !strings.Contains(errOut, "already revoked") {
			t.Fatalf("revoking twice: exit %d %s", code, errOut)
		}
		code, out, errOut = keysCmd(t, append([]string{"list", "--json"}, with...)...)
		var l issuer.OperatorKeyList
		if err := json.Unmarshal([]byte(out), &l); err != nil || code != 0 || len(l.Keys) != 3 {
			t.Fatalf("list: exit %d %v %s %s", code, err, out, errOut)
		}
		for _, k := range l.Keys {
			if k.ID == oldID && (k.State != issuer.KeyRevoked || k.Revoked == nil) {
				t.Fatalf("revoked key listed as %+v", k)
			}
		}
	})
}
