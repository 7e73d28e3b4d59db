package storetest_test

import (
	"context"
	"database/sql"
	"net/url"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/mipay-oss/mipay/store"
	"github.com/mipay-oss/mipay/store/storetest"
)

var migrations = fstest.MapFS{"0001_t.sql": {Data: []byte("CREATE TABLE t (id BIGINT PRIMARY KEY);")}}

func insert(t *testing.T, db *store.DB, id int) error {
	t.Helper()
	return db.Tx(context.Background(), func(tx *sql.Tx) error {
		_, err := tx.Exec("INSERT INTO t (id) VALUES ($1)", id)
		return err
	})
}

// TestOpenIsFresh: two opens of the same party in one test are separate
// stores, each migrated and empty.
func TestOpenIsFresh(t *testing.T) {
	a := storetest.Open(t, "party", migrations)
	b := storetest.Open(t, "party", migrations)
	if err := insert(t, a, 1); err != nil {
		t.Fatal(err)
	}
	if err := insert(t, b, 1); err != nil {
		t.Fatalf("the second store is not separate from the first: %v", err)
	}
}

// TestConfigSharedByParties: parties opened with one Config are separate
// and each reopens to its own data.
func TestConfigSharedByParties(t *testing.T) {
	cfg := storetest.Config(t)
	ctx := context.Background()
	for _, party := range []string{"wallet", "tsp"} {
		db, err := store.Open(ctx, cfg, party, migrations)
		if err != nil {
			t.Fatal(err)
		}
		if err := insert(t, db, 7); err != nil {
			t.Fatalf("%s: %v", party, err)
		}
		db.Close()
	}
	db, err := store.Open(ctx, cfg, "wallet", migrations)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := insert(t, db, 7); !store.IsConflict(err) {
		t.Fatalf("reopened store lost its row: insert again = %v, want a conflict", err)
	}
}

// TestDatabaseDropped: with PostgreSQL, a test's database is gone after it.
func TestDatabaseDropped(t *testing.T) {
	base := storetest.Postgres()
	if base == "" {
		t.Skip(storetest.EnvPostgres + " not set")
	}
	var name string
	t.Run("uses a database", func(t *testing.T) {
		cfg := storetest.Config(t)
		u, err := url.Parse(cfg.URL)
		if err != nil {
			t.Fatal(err)
		}
		name = strings.TrimPrefix(u.Path, "/")
		db, err := store.Open(context.Background(), cfg, "party", migrations)
		if err != nil {
			t.Fatal(err)
		}
		db.Close()
	})
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var n int
	if err := admin.QueryRow("SELECT COUNT(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if name == "" || n != 0 {
		t.Fatalf("database %q still exists after the test", name)
	}
}
