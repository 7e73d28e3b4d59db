package issuer

import (
	"context"
	"io/fs"
	"slices"
	"testing"
	"testing/fstest"

	"github.com/mipay-oss/mipay/store"
	"github.com/mipay-oss/mipay/store/storetest"
)

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
	before := fstest.MapFS{}
	for _, name := range []string{"0001_issuer.sql", "0005_operator_keys.sql"} {
		b, err := fs.ReadFile(Migrations(), name)
		if err != nil {
			t.Fatal(err)
		}
		before[name] = &fstest.MapFile{Data: b}
	}
	db, err := store.Open(ctx, cfg, "issuer", before)
	if err != nil {
		t.Fatal(err)
	}
	shared, _ := NewOperatorKey()
	own, _ := NewOperatorKey()
	for _, k := range []struct{ id, key string }{{"icbc-debit", shared}, {"boc-debit", shared}, {"ccb-debit", own}} {
		if _, err := db.DB.ExecContext(ctx, `INSERT INTO operator_keys (issuer_id, key_hash, created_ms) VALUES ($1, $2, $3)`,
			k.id, operatorKeyHash(k.key), int64(1700000000000)); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	db, err = store.Open(ctx, cfg, "issuer", Migrations())
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
