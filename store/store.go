// Package store opens a party's own database — a SQLite file by default, a
// PostgreSQL schema when a URL is given — runs its embedded migrations, and
// offers the group-commit Writer that the hot paths write through.
//
// Which handle to use:
//   - DB.DB (a *sql.DB) for reads. On SQLite it is a pool of reader
//     connections that run concurrently with the writer under WAL.
//   - Writer.Write for hot-path writes (authorizations, holds, token state):
//     many callers share one transaction and one fsync.
//   - DB.Tx for writes off the hot path (setup, admin, batch jobs) and for
//     read-modify-write sequences that need their own transaction.
//
// On SQLite, Writer and Tx share one write connection, so writes never
// contend with each other for the database lock; never call DB.Tx or
// Writer.Write from inside a Tx or Write function (it would wait for itself).
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"time"

	"github.com/mipay-oss/mipay"
)

// Engine names the database engine behind a DB.
type Engine string

// Engines.
const (
	SQLite   Engine = "sqlite"
	Postgres Engine = "postgres"
)

// Config says where a process keeps its parties' data. The caller (the CLI)
// resolves flags and environment variables into it.
type Config struct {
	// Dir is the data directory; SQLite files are <Dir>/<party>.db.
	Dir string
	// URL, when set, is a PostgreSQL URL (postgres://… or postgresql://…);
	// each party then lives in its own schema of that database.
	URL string
	// Prefix, optional, is prepended to the party's name to name its SQLite
	// file and PostgreSQL schema (<Dir>/<Prefix><party>.db, schema
	// <Prefix><party>): for several deployments or tests sharing one
	// database. At most MaxPrefixBytes of a-z, 0-9, _.
	Prefix string
}

// Bounds and defaults.
const (
	// DefaultBusyTimeout is how long a SQLite connection waits for a lock
	// held by another connection or process before it reports BUSY.
	DefaultBusyTimeout = 5 * time.Second
	// DefaultTxAttempts bounds how often DB.Tx runs its function when the
	// engine reports a transient conflict (SQLite BUSY, PostgreSQL
	// serialization failure or deadlock).
	DefaultTxAttempts = 5
	// DefaultConnectTimeout bounds how long Open waits for PostgreSQL.
	DefaultConnectTimeout = 10 * time.Second
	// maxPartyNameBytes and MaxPrefixBytes keep names usable as file names
	// and PostgreSQL identifiers (at most 63 bytes).
	maxPartyNameBytes = 48
	MaxPrefixBytes    = 14
)

var (
	partyNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	prefixRE    = regexp.MustCompile(`^[a-z0-9_]*$`)
)

// DB is one party's database.
type DB struct {
	// DB is for reads (and ad-hoc statements). Writes go through Tx or a
	// Writer.
	DB *sql.DB

	// write is the pool used by Tx and Writer: on SQLite a single
	// connection (BEGIN IMMEDIATE), on PostgreSQL the same pool as DB.
	write  *sql.DB
	engine Engine
	party  string
	name   string // Prefix + party: the file's base name or the schema
	where  string // file path or redacted URL + schema, for messages

	stopCheckpoints func() // SQLite: stops the background checkpointer
}

// Open opens (creating if missing) the store of party and applies the
// migrations in migrations that are not applied yet. migrations may be nil.
func Open(ctx context.Context, cfg Config, party string, migrations fs.FS) (*DB, error) {
	if err := checkPartyName(party); err != nil {
		return nil, err
	}
	if len(cfg.Prefix) > MaxPrefixBytes || !prefixRE.MatchString(cfg.Prefix) {
		return nil, mipay.Errorf(mipay.EINVALID,
			"store: prefix %q is not usable: it must be at most %d of a-z, 0-9, _", cfg.Prefix, MaxPrefixBytes)
	}
	name := cfg.Prefix + party
	var (
		db  *DB
		err error
	)
	if cfg.URL != "" {
		db, err = openPostgres(ctx, cfg.URL, name)
	} else {
		db, err = openSQLite(ctx, cfg.Dir, name)
	}
	if err != nil {
		return nil, err
	}
	db.party, db.name = party, name
	// Always: besides applying migrations this creates the PostgreSQL
	// schema and schema_migrations.
	if err := db.migrate(ctx, migrations); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

func checkPartyName(party string) error {
	if len(party) > maxPartyNameBytes || !partyNameRE.MatchString(party) {
		return mipay.Errorf(mipay.EINVALID,
			"store: party name %q is not usable: it must be 1–%d of a-z, 0-9, _ and start with a letter",
			party, maxPartyNameBytes)
	}
	return nil
}

// Engine reports which engine the store runs on.
func (db *DB) Engine() Engine { return db.engine }

// Party reports the party the store belongs to.
func (db *DB) Party() string { return db.party }

// ForUpdate returns " FOR UPDATE" on PostgreSQL and "" on SQLite, to end a
// SELECT whose rows a transaction reads and then changes. SQLite has no such
// clause and needs none (one writer at a time); on PostgreSQL, transactions
// are READ COMMITTED and several nodes may write at once, so a
// read-modify-write must lock its rows — or be one conditional UPDATE
// (UPDATE … SET balance = balance - $1 WHERE id = $2 AND balance >= $1).
func (db *DB) ForUpdate() string {
	if db.engine == Postgres {
		return " FOR UPDATE"
	}
	return ""
}

// WriteContext is the ctx to give the statements of a Writer write made
// on behalf of a caller's ctx. On SQLite the batch holds the write lock
// from BEGIN IMMEDIATE, so a statement waits for no other writer, and
// without cancellation the driver starts no goroutine per statement to
// watch the ctx: it returns ctx without its cancellation. On PostgreSQL a
// statement may wait for a row lock another node holds, and only its own
// ctx interrupts it (BatchTimeout does not reach a statement already
// running): it returns ctx.
func (db *DB) WriteContext(ctx context.Context) context.Context {
	if db.engine == Postgres {
		return ctx
	}
	return context.WithoutCancel(ctx)
}

// String describes where the store is (a file, or a schema of a database with
// the password removed).
func (db *DB) String() string { return db.where }

// Close closes the store's connections. Close any Writer first.
func (db *DB) Close() error {
	if db.stopCheckpoints != nil {
		db.stopCheckpoints()
	}
	err := db.DB.Close()
	if db.write != db.DB {
		err = errors.Join(err, db.write.Close())
	}
	return err
}

// Tx runs fn in a transaction and commits it when fn returns nil. When the
// engine reports a transient conflict (SQLite BUSY/LOCKED, PostgreSQL
// serialization failure or deadlock) the transaction is rolled back and fn
// runs again, at most DefaultTxAttempts times, so fn must have no effects
// outside tx. fn must not keep tx after it returns.
func (db *DB) Tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	backoff := time.Millisecond
	for attempt := 1; ; attempt++ {
		err := db.tx1(ctx, fn)
		if err == nil || !isTransient(err) || attempt >= DefaultTxAttempts {
			return err
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("store: %w (after %v)", ctx.Err(), err)
		case <-t.C:
		}
		backoff *= 4
	}
}

func (db *DB) tx1(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin %s: %w", db.party, err)
	}
	committing := false
	defer func() {
		// Also on panic: the (single, on SQLite) write connection must not
		// stay inside a transaction.
		if !committing {
			_ = tx.Rollback()
		}
	}()
	if err := fn(tx); err != nil {
		return err
	}
	committing = true
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit %s: %w", db.party, err)
	}
	return nil
}
