package issuer

import (
	"bytes"
	"context"
	"io/fs"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/mipay-oss/mipay/httpx"
	"github.com/mipay-oss/mipay/store"
	"github.com/mipay-oss/mipay/store/storetest"
)

// keysServer is a host with keys for icbc-debit and icbc-credit behind an
// HTTP server; keyCall calls an operator-keys endpoint of icbc-debit.
func keysServer(t *testing.T) (th *testHost, debitKey, creditKey string, keyCall func(key, method, path string, in, out any) int) {
	t.Helper()
	th = MustOpenHost(t)
	debitKey, creditKey = th.withOperatorKeys(t, "icbc-debit", "icbc-credit")
	th.Host.ops.cfg.MaxFails = 1000 // these tests use refused keys on purpose
	srv := httptest.NewServer(httpx.Handler("issuer", th.Handler(), slog.New(slog.DiscardHandler), nil))
	t.Cleanup(srv.Close)
	keyCall = func(key, method, path string, in, out any) int {
		t.Helper()
		return callAs(t, key, method, srv.URL+"/v1/issuers/icbc-debit/operator-keys"+path, in, out)
	}
	return
}

func listKeys(t *testing.T, keyCall func(key, method, path string, in, out any) int, key string) []OperatorKeyInfo {
	t.Helper()
	var l OperatorKeyList
	if st := keyCall(key, "GET", "", nil, &l); st != 200 {
		t.Fatalf("list: %d %+v", st, l)
	}
	return l.Keys
}

// wantRefusedEverywhere checks that key (what it is) is refused at once on
// the node that changed it, and by other after its re-read interval.
func wantRefusedEverywhere(t *testing.T, th *testHost, other *Operators, keyCall func(key, method, path string, in, out any) int, key, what string) {
	t.Helper()
	var out map[string]any
	if st := keyCall(key, "GET", "", nil, &out); st != 401 {
		t.Fatalf("%s: %d %v", what, st, out)
	}
	th.clock.add(operatorReloadEvery)
	if _, ok := other.bankOf(context.Background(), key); ok {
		t.Fatalf("another node still takes %s after its re-read interval", what)
	}
}

// TestOperatorKeyRotate: a rotation gives a new key once; the old one works
// through its grace period and is refused from its end; bad input and
// another bank's key change nothing; a restart with the same configured key
// does not undo the rotation.
func TestOperatorKeyRotate(t *testing.T) {
	th, oldKey, creditKey, keyCall := keysServer(t)
	keys := listKeys(t, keyCall, oldKey)
	if len(keys) != 1 || keys[0].State != KeyActive || !keys[0].Current || keys[0].Expires != nil || !strings.HasPrefix(keys[0].ID, "opk_") {
		t.Fatalf("keys before rotation %+v", keys)
	}
	oldID := keys[0].ID

	var out map[string]any
	if st := keyCall(creditKey, "POST", "/rotate", map[string]string{}, &out); st != 403 {
		t.Fatalf("rotate with another bank's key: %d %v", st, out)
	}
	if st := keyCall("", "POST", "/rotate", map[string]string{}, &out); st != 401 {
		t.Fatalf("rotate without a key: %d %v", st, out)
	}
	for _, bad := range []any{
		map[string]string{"grace": "-1h"},
		map[string]string{"grace": "169h"},
		map[string]string{"grace": "tomorrow"},
		map[string]any{"grace": 3600},
		map[string]string{"grace": "1h", "key": "mbk_mine"},
		"not json",
	} {
		if st := keyCall(oldKey, "POST", "/rotate", bad, &out); st != 400 {
			t.Fatalf("rotate %v: %d %v", bad, st, out)
		}
	}
	if keys := listKeys(t, keyCall, oldKey); len(keys) != 1 || keys[0].State != KeyActive {
		t.Fatalf("refused rotations changed the keys: %+v", keys)
	}

	th.clock.add(time.Minute)
	start := th.clock.now()
	var rot OperatorKeyRotateResult
	if st := keyCall(oldKey, "POST", "/rotate", map[string]string{}, &rot); st != 200 {
		t.Fatalf("rotate: %d %+v", st, rot)
	}
	newKey := rot.Key
	if !strings.HasPrefix(newKey, operatorKeyPrefix) || newKey == oldKey || rot.New.State != KeyActive || rot.New.Current ||
		len(rot.Expiring) != 1 || rot.Expiring[0].ID != oldID || !rot.Expiring[0].Current || rot.Expiring[0].State != KeyExpiring ||
		!rot.Expiring[0].Expires.Equal(start.Add(DefaultOperatorKeyGrace).Truncate(time.Millisecond)) {
		t.Fatalf("rotation %+v", rot)
	}
	// Only hashes are stored.
	rows, err := th.Host.DB().DB.Query(`SELECT key_hash FROM operator_api_keys`)
	if err != nil {
		t.Fatal(err)
	}
	stored := 0
	for rows.Next() {
		var h []byte
		if err := rows.Scan(&h); err != nil {
			t.Fatal(err)
		}
		stored++
		if bytes.Contains(h, []byte(newKey[len(operatorKeyPrefix):])) {
			t.Fatal("the new key is stored in plaintext")
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if stored < 2 {
		t.Fatalf("%d keys stored after a rotation: the check above read nothing", stored)
	}

	th.clock.add(DefaultOperatorKeyGrace - time.Second)
	for name, k := range map[string]string{"old": oldKey, "new": newKey} {
		if st := keyCall(k, "GET", "", nil, &out); st != 200 {
			t.Fatalf("%s key within the grace period: %d %v", name, st, out)
		}
	}
	// A restart with the old key still configured keeps the rotation.
	again, err := OpenOperators(context.Background(), th.Host.DB(), th.Host.ref,
		OperatorConfig{Keys: map[string]string{"icbc-debit": oldKey}, Now: th.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	again.cfg.MaxFails = 1000
	th.Host.ops = again
	th.clock.add(time.Second)
	if st := keyCall(oldKey, "GET", "", nil, &out); st != 401 {
		t.Fatalf("old key after the grace period: %d %v", st, out)
	}
	keys = listKeys(t, keyCall, newKey)
	if len(keys) != 2 || keys[0].ID != rot.New.ID || !keys[0].Current || keys[0].State != KeyActive ||
		keys[1].ID != oldID || keys[1].State != KeyExpired {
		t.Fatalf("keys after the grace period %+v", keys)
	}

	// A rotation with no grace: the old key is refused at once, on this
	// node and (after its re-read interval) on another one.
	other, err := OpenOperators(context.Background(), th.Host.DB(), th.Host.ref, OperatorConfig{Now: th.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := other.bankOf(context.Background(), newKey); !ok || id != "icbc-debit" {
		t.Fatal("another node does not know the new key")
	}
	var rot2 OperatorKeyRotateResult
	if st := keyCall(newKey, "POST", "/rotate", map[string]string{"grace": "0s"}, &rot2); st != 200 || len(rot2.Expiring) != 1 {
		t.Fatalf("rotate with no grace: %d %+v", st, rot2)
	}
	wantRefusedEverywhere(t, th, other, keyCall, newKey, "a key rotated out with no grace")
	if st := keyCall(rot2.Key, "GET", "", nil, &out); st != 200 {
		t.Fatalf("newest key: %d %v", st, out)
	}
}

// TestOperatorKeyRevoke: a revoked key is refused at once (here and, after
// its re-read interval, on another node); bad ids, other banks' keys and
// another bank's caller change nothing.
func TestOperatorKeyRevoke(t *testing.T) {
	th, oldKey, creditKey, keyCall := keysServer(t)
	var rot OperatorKeyRotateResult
	if st := keyCall(oldKey, "POST", "/rotate", map[string]string{"grace": "1h"}, &rot); st != 200 {
		t.Fatalf("rotate: %d %+v", st, rot)
	}
	oldID := rot.Expiring[0].ID
	other, err := OpenOperators(context.Background(), th.Host.DB(), th.Host.ref, OperatorConfig{Now: th.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := other.bankOf(context.Background(), oldKey); !ok {
		t.Fatal("another node does not know the old key")
	}
	var listed map[string]any
	if st := keyCall(creditKey, "GET", "", nil, &listed); st != 403 {
		t.Fatalf("listing icbc-debit's keys with icbc-credit's key: %d", st)
	}
	creditID := operatorKeyID(operatorKeyHash(creditKey))

	var out map[string]any
	for _, c := range []struct {
		key    string
		body   any
		status int
	}{
		{rot.Key, map[string]string{"keyId": ""}, 400},
		{rot.Key, map[string]string{"keyId": "opk_XYZ"}, 400},
		{rot.Key, map[string]string{"keyId": oldKey}, 400}, // a key, not its id
		{rot.Key, map[string]any{"keyId": oldID, "extra": 1}, 400},
		{rot.Key, map[string]string{"keyId": creditID}, 404}, // another bank's key
		{rot.Key, map[string]string{"keyId": "opk_0000000000000000"}, 404},
		{creditKey, map[string]string{"keyId": oldID}, 403}, // another bank's staff
	} {
		if st := keyCall(c.key, "POST", "/revoke", c.body, &out); st != c.status {
			t.Fatalf("revoke %v: %d %v, want %d", c.body, st, out, c.status)
		}
	}
	if st := keyCall(oldKey, "GET", "", nil, &out); st != 200 {
		t.Fatalf("refused revocations changed the old key: %d %v", st, out)
	}
	if id, ok := th.Host.ops.bankOf(context.Background(), creditKey); !ok || id != "icbc-credit" {
		t.Fatal("revoking icbc-credit's key id through icbc-debit touched it")
	}

	var rev OperatorKeyRevokeResult
	if st := keyCall(rot.Key, "POST", "/revoke", map[string]string{"keyId": oldID}, &rev); st != 200 ||
		rev.Revoked.ID != oldID || rev.Revoked.State != KeyRevoked || rev.Revoked.Revoked == nil || rev.Remaining != 1 {
		t.Fatalf("revoke: %d %+v", st, rev)
	}
	// Refused at once, though its grace period has not ended.
	wantRefusedEverywhere(t, th, other, keyCall, oldKey, "a revoked key")
	if st := keyCall(rot.Key, "POST", "/revoke", map[string]string{"keyId": oldID}, &out); st != 409 {
		t.Fatalf("revoking twice: %d %v", st, out)
	}
	// A bank may revoke the key it calls with: then it has none left.
	if st := keyCall(rot.Key, "POST", "/revoke", map[string]string{"keyId": rot.New.ID}, &rev); st != 200 || rev.Remaining != 0 || !rev.Revoked.Current {
		t.Fatalf("revoking the caller's key: %d %+v", st, rev)
	}
	if st := keyCall(rot.Key, "GET", "", nil, &out); st != 401 {
		t.Fatalf("the revoked caller's key: %d %v", st, out)
	}
	// A revoked key set again in EnvOperatorKeys stays revoked.
	again, err := OpenOperators(context.Background(), th.Host.DB(), th.Host.ref,
		OperatorConfig{Keys: map[string]string{"icbc-debit": oldKey}, Now: th.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := again.bankOf(context.Background(), oldKey); ok {
		t.Fatal("a restart with the revoked key configured brought it back")
	}
}

// TestOperatorKeyConfiguredReplaces: a new key in EnvOperatorKeys becomes
// the bank's and ends every other key of the bank at once; the same key for
// two banks is refused.
func TestOperatorKeyConfiguredReplaces(t *testing.T) {
	th := MustOpenHost(t)
	ctx := context.Background()
	first, _ := th.withOperatorKeys(t, "icbc-debit")
	second, _ := NewOperatorKey()
	ops, err := OpenOperators(ctx, th.Host.DB(), th.Host.ref, OperatorConfig{Keys: map[string]string{"icbc-debit": second}, Now: th.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ops.bankOf(ctx, first); ok {
		t.Fatal("the replaced key still works")
	}
	if id, ok := ops.bankOf(ctx, second); !ok || id != "icbc-debit" {
		t.Fatal("the configured key does not work")
	}
	if _, err := OpenOperators(ctx, th.Host.DB(), th.Host.ref, OperatorConfig{Keys: map[string]string{"boc-credit": second}, Now: th.clock.now}); err == nil {
		t.Fatal("one key stored for two banks")
	}
}

// openBeforeKeyRotation opens an issuer store at cfg with the migrations
// that came before operator key rotation (0001, 0005): the operator_keys
// table as it was.
func openBeforeKeyRotation(t *testing.T, cfg store.Config) *store.DB {
	t.Helper()
	before := fstest.MapFS{}
	for _, name := range []string{"0001_issuer.sql", "0005_operator_keys.sql"} {
		b, err := fs.ReadFile(Migrations(), name)
		if err != nil {
			t.Fatal(err)
		}
		before[name] = &fstest.MapFile{Data: b}
	}
	db, err := store.Open(context.Background(), cfg, "issuer", before)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// TestOperatorKeyMigration: a key stored before rotation existed (table
// operator_keys) still works after migration 0006, as an active key.
func TestOperatorKeyMigration(t *testing.T) {
	ctx := context.Background()
	cfg := storetest.Config(t)
	db := openBeforeKeyRotation(t, cfg)
	key, _ := NewOperatorKey()
	if _, err := db.DB.ExecContext(ctx, `INSERT INTO operator_keys (issuer_id, key_hash, created_ms) VALUES ($1, $2, $3)`,
		"icbc-debit", operatorKeyHash(key), int64(1700000000000)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err := store.Open(ctx, cfg, "issuer", Migrations())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	th := MustOpenHost(t) // for the reference data
	ops, err := OpenOperators(ctx, db, th.Host.ref, OperatorConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := ops.bankOf(ctx, key); !ok || id != "icbc-debit" {
		t.Fatal("a key stored before the migration does not work after it")
	}
	l, err := ops.ListKeys(ctx, "icbc-debit", nil)
	if err != nil || len(l.Keys) != 1 || l.Keys[0].State != KeyActive || l.Keys[0].Created.UnixMilli() != 1700000000000 {
		t.Fatalf("migrated keys %+v %v", l, err)
	}
	if _, err := db.DB.ExecContext(ctx, `SELECT 1 FROM operator_keys`); err == nil {
		t.Fatal("operator_keys is still there")
	}
}

// TestOperatorKeyMigrationSharedKey: before 0006 nothing kept two banks
// from being given one key (MIPAY_ISSUER_OPERATOR_KEYS="a=K,b=K"), and
// operator_keys stored it for both. Migration 0006, where a key's hash is
// the primary key, must still apply (it failed on the duplicate, so the
// host could not start, whatever the settings said): a key shared by
// several banks acts for none of them (one key, one bank), so those banks
// get a new key at the next start; every other key carries over.
func TestOperatorKeyMigrationSharedKey(t *testing.T) {
	ctx := context.Background()
	cfg := storetest.Config(t)
	db := openBeforeKeyRotation(t, cfg)
	shared, _ := NewOperatorKey()
	own, _ := NewOperatorKey()
	for _, k := range []struct{ id, key string }{{"icbc-debit", shared}, {"boc-debit", shared}, {"ccb-debit", own}} {
		if _, err := db.DB.ExecContext(ctx, `INSERT INTO operator_keys (issuer_id, key_hash, created_ms) VALUES ($1, $2, $3)`,
			k.id, operatorKeyHash(k.key), int64(1700000000000)); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	db, err := store.Open(ctx, cfg, "issuer", Migrations())
	if err != nil {
		t.Fatalf("migration 0006 over a key two banks shared: %v", err)
	}
	defer db.Close()
	th := MustOpenHost(t) // for the reference data
	dir := t.TempDir()
	ops, err := OpenOperators(ctx, db, th.Host.ref, OperatorConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := ops.bankOf(ctx, own); !ok || id != "ccb-debit" {
		t.Fatalf("a bank's own key after the migration: %q %v", id, ok)
	}
	if id, ok := ops.bankOf(ctx, shared); ok {
		t.Fatalf("a key two banks shared acts for %s", id)
	}
	for _, id := range []string{"icbc-debit", "boc-debit"} {
		if !slices.Contains(ops.Generated, id) {
			t.Fatalf("%s got no new key (generated: %v)", id, ops.Generated)
		}
		key, err := ReadOperatorKey(dir, id)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := ops.bankOf(ctx, key); !ok || got != id {
			t.Fatalf("the new key of %s acts for %q %v", id, got, ok)
		}
	}
	if slices.Contains(ops.Generated, "ccb-debit") {
		t.Fatal("a bank whose key carried over got a new one")
	}
}
