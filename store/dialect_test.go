package store_test

import (
	"bytes"
	"context"
	"database/sql"
	"math"
	"testing"
	"testing/fstest"

	"github.com/mipay-oss/mipay/store"
)

// TestSharedSQL checks that the SQL conventions of the store contract give
// the same results on both engines.
func TestSharedSQL(t *testing.T) {
	t.Parallel()
	mig := fstest.MapFS{"0001_t.sql": {Data: []byte(`
CREATE TABLE accounts (
	id         TEXT PRIMARY KEY,
	pan        TEXT NOT NULL,
	key_blob   BYTEA NOT NULL,
	balance    BIGINT NOT NULL,
	active     INTEGER NOT NULL,
	updated_ms BIGINT NOT NULL
);`)}}
	engines(t, func(t *testing.T, newCfg func(t *testing.T) store.Config) {
		db, err := store.Open(context.Background(), newCfg(t), "dialect", mig)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		ctx := context.Background()
		blob := []byte{0, 1, 2, 0xff, 0, 'x'}
		// A digit string must stay text (SQLite's type affinity would
		// turn it into a number in a NUMERIC column).
		const pan = "6212345678901234567"
		err = db.Tx(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO accounts (id, pan, key_blob, balance, active, updated_ms)
				VALUES ($1, $2, $3, $4, $5, $6)`, "a1", pan, blob, int64(math.MaxInt64), 1, int64(1_700_000_000_000))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		var (
			gotPAN  string
			gotBlob []byte
			gotBal  int64
			active  int
		)
		if err := db.DB.QueryRowContext(ctx, "SELECT pan, key_blob, balance, active FROM accounts WHERE id = $1", "a1").
			Scan(&gotPAN, &gotBlob, &gotBal, &active); err != nil {
			t.Fatal(err)
		}
		if gotPAN != pan || !bytes.Equal(gotBlob, blob) || gotBal != math.MaxInt64 || active != 1 {
			t.Fatalf("read back %q %x %d %d", gotPAN, gotBlob, gotBal, active)
		}

		// Upsert with RETURNING.
		var bal int64
		err = db.Tx(ctx, func(tx *sql.Tx) error {
			return tx.QueryRowContext(ctx, `INSERT INTO accounts (id, pan, key_blob, balance, active, updated_ms)
				VALUES ($1, $2, $3, $4, 1, 0)
				ON CONFLICT (id) DO UPDATE SET balance = accounts.balance - $4
				RETURNING balance`, "a1", pan, blob, int64(7)).Scan(&bal)
		})
		if err != nil {
			t.Fatal(err)
		}
		if bal != math.MaxInt64-7 {
			t.Fatalf("upsert returned %d", bal)
		}
		// A locking read, written once for both engines.
		err = db.Tx(ctx, func(tx *sql.Tx) error {
			var b int64
			return tx.QueryRowContext(ctx, "SELECT balance FROM accounts WHERE id = $1"+db.ForUpdate(), "a1").Scan(&b)
		})
		if err != nil {
			t.Fatalf("SELECT …%s: %v", db.ForUpdate(), err)
		}
		// DO NOTHING affects no row.
		err = db.Tx(ctx, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, `INSERT INTO accounts (id, pan, key_blob, balance, active, updated_ms)
				VALUES ($1, $2, $3, 0, 0, 0) ON CONFLICT DO NOTHING`, "a1", pan, blob)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n != 0 {
				t.Errorf("ON CONFLICT DO NOTHING affected %d rows", n)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// TestWriteContext: a write's statements keep the caller's cancellation on
// PostgreSQL (only it interrupts a statement waiting for another node's
// lock) and drop it on SQLite (no other writer to wait for).
func TestWriteContext(t *testing.T) {
	engines(t, func(t *testing.T, newCfg func(t *testing.T) store.Config) {
		db, err := store.Open(context.Background(), newCfg(t), "writectx", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		ctx, cancel := context.WithCancel(context.Background())
		wctx := db.WriteContext(ctx)
		cancel()
		cancelled := wctx.Err() != nil
		if want := db.Engine() == store.Postgres; cancelled != want {
			t.Fatalf("%s: write ctx cancelled with its caller's = %v, want %v", db.Engine(), cancelled, want)
		}
	})
}
