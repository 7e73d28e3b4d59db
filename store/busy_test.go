package store_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/mipay-oss/mipay/store"
	_ "modernc.org/sqlite" // driver "sqlite", for a raw second connection
)

// realBusyError makes SQLite report BUSY for real: a second connection
// without busy timeout tries to write while the first holds the lock.
func realBusyError(t *testing.T) error {
	t.Helper()
	path := filepath.Join(t.TempDir(), "busy.db")
	open := func() *sql.DB {
		db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(0)&_pragma=journal_mode(WAL)&_txlock=immediate")
		if err != nil {
			t.Fatal(err)
		}
		db.SetMaxOpenConns(1)
		t.Cleanup(func() { db.Close() })
		return db
	}
	a, b := open(), open()
	if _, err := a.Exec("CREATE TABLE t (x INTEGER)"); err != nil {
		t.Fatal(err)
	}
	txA, err := a.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer txA.Rollback()
	txB, err := b.Begin()
	if err == nil {
		txB.Rollback()
		t.Fatal("second writer got the lock")
	}
	return err
}

// TestTxRetriesRealBusy: a SQLite BUSY error (as the engine reports it) is
// recognised as transient and the transaction is run again.
func TestTxRetriesRealBusy(t *testing.T) {
	t.Parallel()
	busy := realBusyError(t)
	db := mustOpen(t, store.Config{Dir: t.TempDir()})
	calls := 0
	err := db.Tx(context.Background(), func(tx *sql.Tx) error {
		calls++
		if calls == 1 {
			return busy
		}
		return insertItem(1)(tx)
	})
	if err != nil || calls != 2 {
		t.Fatalf("err = %v, calls = %d; want nil after 2 calls (busy error: %v)", err, calls, busy)
	}
}
