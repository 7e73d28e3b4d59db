package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/mipay-oss/mipay"
)

// Migration bounds.
const (
	// MaxMigrationBytes bounds one migration file.
	MaxMigrationBytes = 1 << 20
	// MaxMigrations bounds the number of migration files of a party.
	MaxMigrations = 10000
)

// migrationNameRE: 0001_create_accounts.sql. The number orders migrations.
var migrationNameRE = regexp.MustCompile(`^([0-9]{1,9})_[A-Za-z0-9_.-]+\.sql$`)

// Migration is one migration file.
type Migration struct {
	Version int64
	Name    string // file name
	SQL     string
	Sum     string // hex SHA-256 of SQL
}

// ReadMigrations lists the migrations in the root of fsys in version order.
// Files not ending in .sql are ignored; a .sql file whose name does not
// start with a number and '_', or two files with the same number, are errors.
func ReadMigrations(fsys fs.FS) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("store: read migrations: %w", err)
	}
	var ms []Migration
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || len(name) < 4 || name[len(name)-4:] != ".sql" {
			continue
		}
		m := migrationNameRE.FindStringSubmatch(name)
		if m == nil {
			return nil, fmt.Errorf("store: migration file %q: name must be NNNN_description.sql", name)
		}
		if len(ms) >= MaxMigrations {
			return nil, fmt.Errorf("store: more than %d migration files", MaxMigrations)
		}
		v, _ := strconv.ParseInt(m[1], 10, 64)
		if info, err := e.Info(); err == nil && info.Size() > MaxMigrationBytes {
			return nil, fmt.Errorf("store: migration %s is larger than %d bytes", name, MaxMigrationBytes)
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("store: read migration %s: %w", name, err)
		}
		if len(b) > MaxMigrationBytes {
			return nil, fmt.Errorf("store: migration %s is larger than %d bytes", name, MaxMigrationBytes)
		}
		sum := sha256.Sum256(b)
		ms = append(ms, Migration{Version: v, Name: name, SQL: string(b), Sum: hex.EncodeToString(sum[:])})
	}
	slices.SortFunc(ms, func(a, b Migration) int { return int(a.Version - b.Version) })
	for i := 1; i < len(ms); i++ {
		if ms[i].Version == ms[i-1].Version {
			return nil, fmt.Errorf("store: migrations %s and %s have the same number", ms[i-1].Name, ms[i].Name)
		}
	}
	return ms, nil
}

const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    BIGINT PRIMARY KEY,
	name       TEXT NOT NULL,
	sha256     TEXT NOT NULL,
	applied_at BIGINT NOT NULL
)`

// migrate applies the migrations of fsys not yet recorded in
// schema_migrations, each in its own transaction with its record, so a crash
// leaves every migration either applied and recorded or neither. A migration
// that was applied and has changed since is refused: the schema it describes
// is not the schema in the database.
func (db *DB) migrate(ctx context.Context, fsys fs.FS) error {
	var (
		ms  []Migration
		err error
	)
	if fsys != nil {
		if ms, err = ReadMigrations(fsys); err != nil {
			return mipay.Errorf(mipay.EINTERNAL, "store: %s: bad migrations: %v", db.party, err)
		}
	}
	switch db.engine {
	case Postgres:
		err = db.migratePostgres(ctx, ms)
	default:
		err = db.migrateSQLite(ctx, ms)
	}
	if err != nil {
		var me *mipay.Error
		if errors.As(err, &me) {
			return err
		}
		return mipay.WrapError(mipay.EUNAVAILABLE, err, "store: %s: migrating %s failed: %v", db.party, db.where, err)
	}
	return nil
}

// migrateSQLite: every transaction on the write connection is BEGIN
// IMMEDIATE, which holds the database's write lock, so two processes opening
// the same file apply each migration once: the second sees the record.
func (db *DB) migrateSQLite(ctx context.Context, ms []Migration) error {
	if _, err := db.write.ExecContext(ctx, createMigrationsTable); err != nil {
		return err
	}
	for _, m := range ms {
		err := db.Tx(ctx, func(tx *sql.Tx) error { return applyMigration(ctx, tx, m) })
		if err != nil {
			return err
		}
	}
	return nil
}

// migratePostgres holds a session advisory lock (keyed by the party's schema)
// while it creates the schema and applies migrations, so concurrent opens by
// several processes or nodes apply each migration once.
func (db *DB) migratePostgres(ctx context.Context, ms []Migration) (err error) {
	conn, err := db.write.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	key := advisoryKey("mipay.store.migrate:" + db.name)
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		return err
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, uerr := conn.ExecContext(uctx, "SELECT pg_advisory_unlock($1)", key); uerr != nil {
			// The lock must not stay with a pooled connection: drop the
			// connection, which ends the session and releases it.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
			err = errors.Join(err, uerr)
		}
	}()
	if _, err := conn.ExecContext(ctx, "CREATE SCHEMA IF NOT EXISTS "+quoteIdent(db.name)); err != nil {
		return fmt.Errorf("create schema %s: %w", db.name, err)
	}
	if _, err := conn.ExecContext(ctx, createMigrationsTable); err != nil {
		return err
	}
	for _, m := range ms {
		if err := db.migrateOnConn(ctx, conn, m); err != nil {
			return err
		}
	}
	return nil
}

func (db *DB) migrateOnConn(ctx context.Context, conn *sql.Conn, m Migration) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := applyMigration(ctx, tx, m); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// applyMigration runs m inside tx unless it is recorded already.
func applyMigration(ctx context.Context, tx *sql.Tx, m Migration) error {
	var sum string
	err := tx.QueryRowContext(ctx, "SELECT sha256 FROM schema_migrations WHERE version = $1", m.Version).Scan(&sum)
	switch {
	case err == nil:
		if sum != m.Sum {
			return mipay.Errorf(mipay.EINTERNAL,
				"store: migration %s was changed after it was applied: restore it and put the change in a new migration", m.Name)
		}
		return nil
	case !errors.Is(err, sql.ErrNoRows):
		return err
	}
	// Both drivers run a multi-statement text when it is executed without
	// arguments.
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return fmt.Errorf("migration %s: %w", m.Name, err)
	}
	_, err = tx.ExecContext(ctx,
		"INSERT INTO schema_migrations (version, name, sha256, applied_at) VALUES ($1, $2, $3, $4)",
		m.Version, m.Name, m.Sum, time.Now().UnixMilli())
	return err
}

func advisoryKey(s string) int64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return int64(h.Sum64())
}
