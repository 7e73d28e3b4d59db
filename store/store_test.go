package store_test

import (
	"context"
	"database/sql"
	"testing"
	"testing/fstest"

	"github.com/mipay-oss/mipay/store"
	"github.com/mipay-oss/mipay/store/storetest"
)

// testMigrations is a small schema: an items table and a counter table.
var testMigrations = fstest.MapFS{
	"0001_items.sql": {Data: []byte(`
CREATE TABLE items (
	id    BIGINT PRIMARY KEY,
	val   TEXT NOT NULL
);
CREATE TABLE counters (name TEXT PRIMARY KEY, n BIGINT NOT NULL);
`)},
	"0002_seed.sql": {Data: []byte(`INSERT INTO counters (name, n) VALUES ('c', 0);
`)},
}

// engines runs fn once per available engine, each with its own store config.
func engines(t *testing.T, fn func(t *testing.T, cfg func(t *testing.T) store.Config)) {
	t.Run("sqlite", func(t *testing.T) {
		fn(t, func(t *testing.T) store.Config { return store.Config{Dir: t.TempDir()} })
	})
	t.Run("postgres", func(t *testing.T) {
		base := storetest.Postgres()
		if base == "" {
			t.Skip(storetest.EnvPostgres + " not set")
		}
		fn(t, func(t *testing.T) store.Config {
			return store.Config{Dir: t.TempDir(), URL: storetest.CreateDatabase(t, base)}
		})
	})
}

func mustOpen(t testing.TB, cfg store.Config) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), cfg, "party", testMigrations)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func countItems(t testing.TB, db *store.DB) int {
	t.Helper()
	var n int
	if err := db.DB.QueryRow("SELECT COUNT(*) FROM items").Scan(&n); err != nil {
		t.Fatalf("count: %v", err)
	}
	return n
}

func TestWriterBasic(t *testing.T) {
	engines(t, func(t *testing.T, cfg func(t *testing.T) store.Config) {
		db := mustOpen(t, cfg(t))
		w := store.NewWriter(db, store.WriterConfig{})
		defer w.Close()
		ctx := context.Background()
		for i := range 10 {
			err := w.Write(ctx, func(tx *sql.Tx) error {
				_, err := tx.Exec("INSERT INTO items (id, val) VALUES ($1, $2)", i, "v")
				return err
			})
			if err != nil {
				t.Fatalf("write %d: %v", i, err)
			}
		}
		if n := countItems(t, db); n != 10 {
			t.Fatalf("items = %d, want 10", n)
		}
	})
}
