package store_test

import (
	"context"
	"maps"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/mipay-oss/mipay/store"
)

func appliedVersions(t *testing.T, db *store.DB) []int64 {
	t.Helper()
	rows, err := db.DB.Query("SELECT version FROM schema_migrations ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var vs []int64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return vs
}

func TestMigrations(t *testing.T) {
	t.Parallel()
	engines(t, func(t *testing.T, newCfg func(t *testing.T) store.Config) {
		ctx := context.Background()

		t.Run("numeric order and once each", func(t *testing.T) {
			cfg := newCfg(t)
			// 10 sorts before 9 as text; it depends on 9's table.
			fsys := fstest.MapFS{
				"9_a.sql":     {Data: []byte("CREATE TABLE a (id BIGINT PRIMARY KEY);")},
				"10_b.sql":    {Data: []byte("INSERT INTO a (id) VALUES (1);\nINSERT INTO a (id) VALUES (2);\n")},
				"README.md":   {Data: []byte("not a migration")},
				"sub/0_x.sql": {Data: []byte("garbage")},
			}
			for range 3 {
				db, err := store.Open(ctx, cfg, "party", fsys)
				if err != nil {
					t.Fatal(err)
				}
				var n int
				if err := db.DB.QueryRow("SELECT COUNT(*) FROM a").Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n != 2 {
					t.Fatalf("a has %d rows, want 2 (migration applied again?)", n)
				}
				if got := appliedVersions(t, db); len(got) != 2 || got[0] != 9 || got[1] != 10 {
					t.Fatalf("schema_migrations = %v, want [9 10]", got)
				}
				db.Close()
			}
		})

		t.Run("new migration applied on reopen", func(t *testing.T) {
			cfg := newCfg(t)
			db := mustOpen(t, cfg)
			db.Close()
			more := maps.Clone(testMigrations)
			more["0004_more.sql"] = &fstest.MapFile{Data: []byte("CREATE TABLE more (id BIGINT PRIMARY KEY);")}
			db, err := store.Open(ctx, cfg, "party", more)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.DB.Exec("INSERT INTO more (id) VALUES (1)"); err != nil {
				t.Fatalf("table of the new migration: %v", err)
			}
			if got := appliedVersions(t, db); len(got) != 4 {
				t.Fatalf("schema_migrations = %v, want 4 versions", got)
			}
		})

		t.Run("changed migration refused", func(t *testing.T) {
			cfg := newCfg(t)
			mustOpen(t, cfg).Close()
			changed := maps.Clone(testMigrations)
			changed["0002_seed.sql"] = &fstest.MapFile{Data: []byte("INSERT INTO counters (name, n) VALUES ('e', 0);")}
			_, err := store.Open(ctx, cfg, "party", changed)
			if err == nil || !strings.Contains(err.Error(), "0002_seed.sql was changed") {
				t.Fatalf("err = %v, want a changed-migration error", err)
			}
		})

		t.Run("failing migration applies nothing", func(t *testing.T) {
			cfg := newCfg(t)
			bad := fstest.MapFS{
				"0001_ok.sql":  {Data: []byte("CREATE TABLE ok (id BIGINT PRIMARY KEY);")},
				"0002_bad.sql": {Data: []byte("CREATE TABLE half (id BIGINT PRIMARY KEY);\nTHIS IS NOT SQL;\n")},
			}
			_, err := store.Open(ctx, cfg, "party", bad)
			if err == nil || !strings.Contains(err.Error(), "0002_bad.sql") {
				t.Fatalf("err = %v, want an error naming 0002_bad.sql", err)
			}
			db, err := store.Open(ctx, cfg, "party", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if got := appliedVersions(t, db); len(got) != 1 || got[0] != 1 {
				t.Fatalf("schema_migrations = %v, want [1]", got)
			}
			if _, err := db.DB.Exec("SELECT COUNT(*) FROM half"); err == nil {
				t.Fatal("table of the failed migration exists")
			}
		})

		t.Run("concurrent opens apply once", func(t *testing.T) {
			cfg := newCfg(t)
			// Not idempotent: a second application fails (table exists) or
			// double-counts.
			fsys := fstest.MapFS{
				"0001_t.sql": {Data: []byte("CREATE TABLE t (id BIGINT PRIMARY KEY, n BIGINT NOT NULL);\nINSERT INTO t (id, n) VALUES (1, 0);")},
				"0002_u.sql": {Data: []byte("UPDATE t SET n = n + 1 WHERE id = 1;")},
			}
			const opens = 6
			dbs := make([]*store.DB, opens)
			errs := make([]error, opens)
			var wg sync.WaitGroup
			for i := range opens {
				wg.Add(1)
				go func() {
					defer wg.Done()
					dbs[i], errs[i] = store.Open(ctx, cfg, "party", fsys)
				}()
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("open %d: %v", i, err)
				}
				defer dbs[i].Close()
			}
			var n int
			if err := dbs[0].DB.QueryRow("SELECT n FROM t WHERE id = 1").Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 1 {
				t.Fatalf("n = %d, want 1 (0002 applied %d times)", n, n)
			}
		})
	})
}

func TestReadMigrationsErrors(t *testing.T) {
	t.Parallel()
	cases := map[string]fstest.MapFS{
		"bad name":       {"create.sql": {Data: []byte("SELECT 1")}},
		"no number":      {"x_create.sql": {Data: []byte("SELECT 1")}},
		"same number":    {"1_a.sql": {Data: []byte("SELECT 1")}, "0001_b.sql": {Data: []byte("SELECT 1")}},
		"too large file": {"1_a.sql": {Data: make([]byte, store.MaxMigrationBytes+1)}},
	}
	for name, fsys := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := store.ReadMigrations(fsys); err == nil {
				t.Fatal("no error")
			}
			if _, err := store.Open(context.Background(), store.Config{Dir: t.TempDir()}, "party", fsys); err == nil {
				t.Fatal("Open accepted bad migrations")
			}
		})
	}
}

// TestOpenWithoutMigrations: the schema and schema_migrations exist even
// without migrations, so a party can create tables itself.
func TestOpenWithoutMigrations(t *testing.T) {
	t.Parallel()
	engines(t, func(t *testing.T, newCfg func(t *testing.T) store.Config) {
		db, err := store.Open(context.Background(), newCfg(t), "bare", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.DB.Exec("CREATE TABLE t (id BIGINT PRIMARY KEY)"); err != nil {
			t.Fatalf("create table in the party's schema: %v", err)
		}
		if got := appliedVersions(t, db); len(got) != 0 {
			t.Fatalf("schema_migrations = %v, want empty", got)
		}
	})
}
