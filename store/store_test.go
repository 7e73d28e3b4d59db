package store_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/store"
	"github.com/mipay-oss/mipay/store/storetest"
)

// testMigrations is a small schema: items, counters, and children whose
// foreign key is checked only at COMMIT (to make a commit fail on purpose).
var testMigrations = fstest.MapFS{
	"0001_items.sql": {Data: []byte(`
CREATE TABLE items (
	id    BIGINT PRIMARY KEY,
	val   TEXT NOT NULL
);
CREATE TABLE counters (name TEXT PRIMARY KEY, n BIGINT NOT NULL);
`)},
	"0002_seed.sql": {Data: []byte(`INSERT INTO counters (name, n) VALUES ('c', 0);
INSERT INTO counters (name, n) VALUES ('d', 0);
`)},
	"0003_children.sql": {Data: []byte(`
CREATE TABLE children (
	id      BIGINT PRIMARY KEY,
	item_id BIGINT NOT NULL REFERENCES items (id) DEFERRABLE INITIALLY DEFERRED
);
`)},
}

// engines runs fn once per available engine; newCfg gives each call its
// own empty store location.
func engines(t *testing.T, fn func(t *testing.T, newCfg func(t *testing.T) store.Config)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		fn(t, func(t *testing.T) store.Config { return store.Config{Dir: t.TempDir()} })
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		base := storetest.Postgres()
		if base == "" {
			t.Skip(storetest.EnvPostgres + " not set")
		}
		fn(t, func(t *testing.T) store.Config {
			return store.Config{Dir: t.TempDir(), URL: storetest.CreateDatabase(t, base)}
		})
	})
}

func mustOpen(tb testing.TB, cfg store.Config) *store.DB {
	tb.Helper()
	db, err := store.Open(context.Background(), cfg, "party", testMigrations)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

func mustWriter(tb testing.TB, db *store.DB, cfg store.WriterConfig) *store.Writer {
	tb.Helper()
	w := store.NewWriter(db, cfg)
	tb.Cleanup(func() { w.Close() })
	return w
}

func countItems(tb testing.TB, db *store.DB) int {
	tb.Helper()
	var n int
	if err := db.DB.QueryRow("SELECT COUNT(*) FROM items").Scan(&n); err != nil {
		tb.Fatalf("count: %v", err)
	}
	return n
}

func hasItem(tb testing.TB, db *store.DB, id int64) bool {
	tb.Helper()
	var n int
	if err := db.DB.QueryRow("SELECT COUNT(*) FROM items WHERE id = $1", id).Scan(&n); err != nil {
		tb.Fatalf("item %d: %v", id, err)
	}
	return n == 1
}

func insertItem(id int64) func(tx *sql.Tx) error {
	return func(tx *sql.Tx) error {
		_, err := tx.Exec("INSERT INTO items (id, val) VALUES ($1, $2)", id, "v")
		return err
	}
}

func TestOpen(t *testing.T) {
	t.Parallel()
	engines(t, func(t *testing.T, newCfg func(t *testing.T) store.Config) {
		cfg := newCfg(t)
		ctx := context.Background()
		db, err := store.Open(ctx, cfg, "party", testMigrations)
		if err != nil {
			t.Fatal(err)
		}
		want := store.SQLite
		if cfg.URL != "" {
			want = store.Postgres
		}
		if db.Engine() != want || db.Party() != "party" {
			t.Fatalf("Engine, Party = %v, %v; want %v, party", db.Engine(), db.Party(), want)
		}
		if err := db.Tx(ctx, insertItem(1)); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}

		t.Run("reopen keeps data", func(t *testing.T) {
			db := mustOpen(t, cfg)
			if !hasItem(t, db, 1) {
				t.Fatal("item written before reopen is missing")
			}
		})
		t.Run("another party is separate", func(t *testing.T) {
			other, err := store.Open(ctx, cfg, "other", testMigrations)
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			if countItems(t, other) != 0 {
				t.Fatal("party other sees party's items")
			}
		})
	})
}

func TestOpenPrefix(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := mustOpen(t, store.Config{Dir: dir, Prefix: "blue_"})
	if _, err := os.Stat(filepath.Join(dir, "blue_party.db")); err != nil {
		t.Fatalf("prefixed database file: %v", err)
	}
	if db.Party() != "party" {
		t.Fatalf("Party() = %q, want party", db.Party())
	}
}

func TestOpenSQLiteSettings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := mustOpen(t, store.Config{Dir: dir})
	if _, err := os.Stat(filepath.Join(dir, "party.db")); err != nil {
		t.Fatalf("database file: %v", err)
	}
	ctx := context.Background()
	check := func(t *testing.T, q *sql.Conn, pragma string, want string) {
		t.Helper()
		var got string
		if err := q.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("PRAGMA %s = %s, want %s", pragma, got, want)
		}
	}
	conn, err := db.DB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	check(t, conn, "journal_mode", "wal")
	check(t, conn, "synchronous", "2") // FULL
	check(t, conn, "foreign_keys", "1")
	check(t, conn, "busy_timeout", "5000")
	// The write connection: seen from inside a transaction.
	err = db.Tx(ctx, func(tx *sql.Tx) error {
		var s, fk int
		if err := tx.QueryRow("PRAGMA synchronous").Scan(&s); err != nil {
			return err
		}
		if err := tx.QueryRow("PRAGMA foreign_keys").Scan(&fk); err != nil {
			return err
		}
		if s != 2 || fk != 1 {
			t.Errorf("write connection: synchronous=%d foreign_keys=%d, want 2 and 1", s, fk)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestReadsDuringWrite: on SQLite, reads go through their own pool and are
// not blocked by an open write transaction (WAL).
func TestReadsDuringWrite(t *testing.T) {
	t.Parallel()
	engines(t, func(t *testing.T, newCfg func(t *testing.T) store.Config) {
		db := mustOpen(t, newCfg(t))
		ctx := context.Background()
		if err := db.Tx(ctx, insertItem(1)); err != nil {
			t.Fatal(err)
		}
		inTx, release := make(chan struct{}), make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- db.Tx(ctx, func(tx *sql.Tx) error {
				if err := insertItem(2)(tx); err != nil {
					return err
				}
				close(inTx)
				<-release
				return nil
			})
		}()
		<-inTx
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		var n int
		if err := db.DB.QueryRowContext(rctx, "SELECT COUNT(*) FROM items").Scan(&n); err != nil {
			t.Fatalf("read during write: %v", err)
		}
		if n != 1 {
			t.Errorf("read during write saw %d items, want 1 (uncommitted row visible?)", n)
		}
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if countItems(t, db) != 2 {
			t.Fatal("write not committed")
		}
	})
}

func TestTx(t *testing.T) {
	t.Parallel()
	engines(t, func(t *testing.T, newCfg func(t *testing.T) store.Config) {
		db := mustOpen(t, newCfg(t))
		ctx := context.Background()

		t.Run("error rolls back", func(t *testing.T) {
			boom := errors.New("boom")
			err := db.Tx(ctx, func(tx *sql.Tx) error {
				if err := insertItem(10)(tx); err != nil {
					return err
				}
				return boom
			})
			if !errors.Is(err, boom) {
				t.Fatalf("err = %v, want boom", err)
			}
			if hasItem(t, db, 10) {
				t.Fatal("failed Tx committed its insert")
			}
		})
		t.Run("transient error retried", func(t *testing.T) {
			calls := 0
			err := db.Tx(ctx, func(tx *sql.Tx) error {
				calls++
				if err := insertItem(11)(tx); err != nil {
					return err
				}
				if calls < 3 {
					return &pgconn.PgError{Code: "40001", Message: "could not serialize access"}
				}
				return nil
			})
			if err != nil || calls != 3 {
				t.Fatalf("err = %v, calls = %d; want nil, 3", err, calls)
			}
			if !hasItem(t, db, 11) {
				t.Fatal("retried Tx not committed")
			}
		})
		t.Run("retries are bounded", func(t *testing.T) {
			calls := 0
			err := db.Tx(ctx, func(tx *sql.Tx) error {
				calls++
				return &pgconn.PgError{Code: "40P01", Message: "deadlock detected"}
			})
			if err == nil || calls != store.DefaultTxAttempts {
				t.Fatalf("err = %v, calls = %d; want an error after %d calls", err, calls, store.DefaultTxAttempts)
			}
		})
		t.Run("other errors not retried", func(t *testing.T) {
			calls := 0
			_ = db.Tx(ctx, func(tx *sql.Tx) error { calls++; return errors.New("no") })
			if calls != 1 {
				t.Fatalf("calls = %d, want 1", calls)
			}
		})
		t.Run("panic rolls back and frees the connection", func(t *testing.T) {
			func() {
				defer func() { _ = recover() }()
				_ = db.Tx(ctx, func(tx *sql.Tx) error {
					_ = insertItem(12)(tx)
					panic("boom")
				})
			}()
			tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := db.Tx(tctx, insertItem(13)); err != nil {
				t.Fatalf("Tx after panic: %v", err)
			}
			if hasItem(t, db, 12) || !hasItem(t, db, 13) {
				t.Fatal("panicking Tx committed, or the next one did not")
			}
		})
		t.Run("conflict", func(t *testing.T) {
			err := db.Tx(ctx, insertItem(13))
			if !store.IsConflict(err) {
				t.Fatalf("duplicate insert: IsConflict(%v) = false", err)
			}
			if store.IsConflict(errors.New("x")) || store.IsConflict(nil) {
				t.Fatal("IsConflict true for a non-conflict")
			}
		})
	})
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	notDB := t.TempDir()
	if err := os.WriteFile(filepath.Join(notDB, "party.db"), []byte(strings.Repeat("not a database ", 300)), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		cfg      store.Config
		party    string
		code     string
		contains []string // in the user-facing message
		absent   []string
	}{
		{"no dir", store.Config{}, "p", mipay.EINVALID, []string{"data directory"}, nil},
		{"dir is a file", store.Config{Dir: filepath.Join(file, "sub")}, "p", mipay.EINVALID, []string{file, "not a directory"}, nil},
		{"not a database", store.Config{Dir: notDB}, "party", mipay.EINVALID, []string{"party.db", "not a SQLite database"}, nil},
		{"bad party name", store.Config{Dir: t.TempDir()}, "../etc", mipay.EINVALID, []string{"party name"}, nil},
		{"empty party name", store.Config{Dir: t.TempDir()}, "", mipay.EINVALID, []string{"party name"}, nil},
		{"bad prefix", store.Config{Dir: t.TempDir(), Prefix: "A-"}, "p", mipay.EINVALID, []string{"prefix"}, nil},
		{"not postgres", store.Config{URL: "mysql://u:pw@h/db"}, "p", mipay.EINVALID, []string{"not a PostgreSQL URL", "postgres://"}, []string{"pw@"}},
		{"bad port", store.Config{URL: "postgres://u:secretpw@localhost:notaport/db"}, "p", mipay.EINVALID, []string{"not valid"}, []string{"secretpw"}},
		{"unreachable", store.Config{URL: "postgres://u:secretpw@127.0.0.1:1/db?sslmode=disable"}, "p", mipay.EUNAVAILABLE, []string{"cannot connect", "127.0.0.1:1"}, []string{"secretpw"}},
	}
	if ro := unwritableDir(t); ro != "" {
		cases = append(cases, struct {
			name     string
			cfg      store.Config
			party    string
			code     string
			contains []string
			absent   []string
		}{"unwritable dir", store.Config{Dir: ro}, "p", mipay.EINVALID, []string{ro, "not writable"}, nil})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			db, err := store.Open(ctx, c.cfg, c.party, testMigrations)
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded")
			}
			if got := mipay.ErrorCode(err); got != c.code {
				t.Errorf("code = %q, want %q (err %v)", got, c.code, err)
			}
			msg := mipay.ErrorMessage(err)
			t.Logf("message: %s", msg)
			if strings.Contains(msg, "\n") {
				t.Errorf("message has several lines: %q", msg)
			}
			for _, s := range c.contains {
				if !strings.Contains(msg, s) {
					t.Errorf("message %q does not contain %q", msg, s)
				}
			}
			for _, s := range c.absent {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error %q contains %q", err.Error(), s)
				}
			}
		})
	}
}

func TestStoretest(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, "wallet", testMigrations)
	if err := db.Tx(context.Background(), insertItem(1)); err != nil {
		t.Fatal(err)
	}
	if countItems(t, db) != 1 {
		t.Fatal("storetest store does not keep a write")
	}
}

// concurrently runs n functions at once and waits for them.
func concurrently(n int, fn func(i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); fn(i) }()
	}
	wg.Wait()
}

// TestBackgroundCheckpoint: committed pages reach the database file without
// the writer checkpointing (its own threshold is far above this test's WAL).
func TestBackgroundCheckpoint(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := mustOpen(t, store.Config{Dir: dir})
	path := filepath.Join(dir, "party.db")
	size := func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	before := size()
	w := mustWriter(t, db, store.WriterConfig{})
	concurrently(8, func(g int) {
		for i := range 250 {
			if err := w.Write(context.Background(), func(tx *sql.Tx) error {
				_, err := tx.Exec("INSERT INTO items (id, val) VALUES ($1, $2)", g*1000+i, strings.Repeat("x", 200))
				return err
			}); err != nil {
				t.Error(err)
			}
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for size() < before+200*2000 {
		if time.Now().After(deadline) {
			t.Fatalf("database file is %d bytes (was %d): the WAL was not checkpointed", size(), before)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// unwritableDir returns a directory this process cannot create files in:
// mode 0500, or for root (which ignores modes) an immutable one (chattr +i).
// It returns "" when neither can be arranged.
func unwritableDir(t *testing.T) string {
	dir := t.TempDir()
	if os.Geteuid() != 0 {
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(dir, 0o700) })
		return dir
	}
	if err := exec.Command("chattr", "+i", dir).Run(); err != nil {
		t.Logf("cannot make an unwritable directory as root (chattr: %v): case skipped", err)
		return ""
	}
	// Runs before TempDir's removal (cleanups run last-in first-out).
	t.Cleanup(func() { exec.Command("chattr", "-i", dir).Run() })
	return dir
}
