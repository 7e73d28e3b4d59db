package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/mipay-oss/mipay"
)

// sqliteReadConns bounds the SQLite read pool. Readers never block each other
// or the writer under WAL; more connections than cores buys little.
func sqliteReadConns() int { return max(4, 2*runtime.GOMAXPROCS(0)) }

// sqliteDSN builds the modernc.org/sqlite DSN. Every connection gets the
// pragmas (they are per connection). Writers use BEGIN IMMEDIATE so a
// transaction takes the write lock up front instead of failing to upgrade.
func sqliteDSN(path string, write bool) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", DefaultBusyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	// Checkpoints run in the background (see startCheckpointer); the writer
	// checkpoints itself only if they fall far behind, so its commits
	// do not usually pay for copying the WAL into the database.
	q.Add("_pragma", fmt.Sprintf("wal_autocheckpoint(%d)", walAutoCheckpointPages))
	q.Add("_pragma", fmt.Sprintf("journal_size_limit(%d)", walSizeLimitBytes))
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	if write {
		q.Set("_txlock", "immediate")
	}
	u := url.URL{Scheme: "file", OmitHost: true, Path: path, RawQuery: q.Encode()}
	return u.String()
}

func openSQLite(ctx context.Context, dir, name string) (*DB, error) {
	if dir == "" {
		return nil, mipay.Errorf(mipay.EINVALID, "store: no data directory given: set a data directory or a PostgreSQL URL")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, mipay.WrapError(mipay.EINVALID, err,
			"store: cannot create data directory %s (%s): choose a writable directory", dir, reason(err))
	}
	if err := checkWritable(dir); err != nil {
		return nil, mipay.WrapError(mipay.EINVALID, err,
			"store: data directory %s is not writable (%s): fix its permissions or choose another", dir, reason(err))
	}
	path := filepath.Join(dir, name+".db")
	abs, err := filepath.Abs(path)
	if err == nil {
		path = abs
	}

	write, err := openSQLitePool(sqliteDSN(path, true))
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	// One write connection: SQLite has one writer at a time anyway, and one
	// connection means Writer batches and Tx queue in Go instead of spinning
	// on the file lock.
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	write.SetConnMaxIdleTime(0)

	db := &DB{write: write, engine: SQLite, where: path}
	if err := db.initSQLite(ctx, path); err != nil {
		write.Close()
		return nil, err
	}

	read, err := openSQLitePool(sqliteDSN(path, false))
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	n := sqliteReadConns()
	read.SetMaxOpenConns(n)
	read.SetMaxIdleConns(n)
	read.SetConnMaxIdleTime(0)
	read.SetConnMaxLifetime(0)
	db.DB = read
	db.stopCheckpoints = startCheckpointer(read, DefaultCheckpointInterval)
	return db, nil
}

// Checkpoint settings.
const (
	// DefaultCheckpointInterval is how often the background checkpointer
	// copies committed WAL frames into the database file.
	DefaultCheckpointInterval = 250 * time.Millisecond
	// walAutoCheckpointPages: the writer checkpoints itself beyond this WAL
	// size (pages of 4 KiB), should the background checkpointer lag.
	walAutoCheckpointPages = 4096
	// walSizeLimitBytes: the WAL file is truncated to this size after a
	// checkpoint resets it.
	walSizeLimitBytes = 64 << 20
)

// startCheckpointer runs PASSIVE checkpoints on a reader connection: they
// never block the writer or readers, and take the checkpoint's database
// writes and fsync off the commit path.
func startCheckpointer(read *sql.DB, every time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				// Errors (BUSY while another process checkpoints) are
				// retried on the next tick; nothing depends on one run.
				_, _ = read.ExecContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)")
			}
		}
	}()
	return func() { cancel(); <-done }
}

// initSQLite opens the write connection (creating the file) and checks that
// WAL is really on: it is not on some filesystems (network mounts), and the
// durability and concurrency promises rest on it.
func (db *DB) initSQLite(ctx context.Context, path string) error {
	mode, err := db.journalMode(ctx)
	if err != nil {
		if isNotADatabase(err) {
			return mipay.WrapError(mipay.EINVALID, err,
				"store: %s is not a SQLite database (or is corrupt): move it away or choose another data directory", path)
		}
		return mipay.WrapError(mipay.EUNAVAILABLE, err,
			"store: cannot open SQLite database %s (%s): check the data directory", path, reason(err))
	}
	if mode != "wal" {
		return mipay.Errorf(mipay.EUNAVAILABLE,
			"store: SQLite database %s cannot use WAL (journal mode %q): put the data directory on a local filesystem", path, mode)
	}
	return nil
}

// journalMode reads the journal mode on a new write connection, whose
// DSN switches a new database to WAL. Switching needs an exclusive lock,
// and SQLite answers BUSY at once, without its busy handler, when two
// processes or pools open a new database at the same moment (the handler
// would deadlock the two upgrades): so a busy open is tried again, with
// backoff, for up to DefaultBusyTimeout, as a busy statement would wait.
func (db *DB) journalMode(ctx context.Context) (string, error) {
	deadline := time.Now().Add(DefaultBusyTimeout)
	backoff := time.Millisecond
	for {
		var mode string
		err := db.write.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode)
		if err == nil || !isTransient(err) || time.Now().Add(backoff).After(deadline) {
			return mode, err
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", fmt.Errorf("%w (after %v)", ctx.Err(), err)
		case <-t.C:
		}
		backoff = min(2*backoff, 100*time.Millisecond)
	}
}

// openSQLitePool opens a pool whose connections cache prepared statements
// (see stmtcache.go).
func openSQLitePool(dsn string) (*sql.DB, error) {
	c, err := newCachingConnector(dsn)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(c), nil
}

// checkWritable creates and removes a file in dir, which is the only reliable
// test (permissions, read-only mounts, ACLs).
func checkWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".mipay-write-test-*")
	if err != nil {
		return err
	}
	name := f.Name()
	return errors.Join(f.Close(), os.Remove(name))
}

// reason gives the short cause of a filesystem error ("permission denied")
// instead of the whole path-laden text.
func reason(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
