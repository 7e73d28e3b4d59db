// Package storetest opens stores for tests of other packages: a SQLite file
// in the test's temporary directory, or — when MIPAY_TEST_POSTGRES names a
// PostgreSQL server — a fresh database on it, dropped when the test ends.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"io/fs"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // driver "pgx"
	"github.com/mipay-oss/mipay/store"
)

// EnvPostgres names the environment variable holding the URL of a PostgreSQL
// server tests may create databases on, e.g.
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable.
const EnvPostgres = "MIPAY_TEST_POSTGRES"

// setupTimeout bounds creating or dropping a test database.
const setupTimeout = 30 * time.Second

// Postgres returns the MIPAY_TEST_POSTGRES URL, or "" when tests run on
// SQLite only.
func Postgres() string { return os.Getenv(EnvPostgres) }

// Open opens party's store for the test with migrations applied, and closes
// it when the test ends. Every call gets its own SQLite directory or
// PostgreSQL database.
func Open(tb testing.TB, party string, migrations fs.FS) *store.DB {
	tb.Helper()
	db, err := store.Open(context.Background(), Config(tb), party, migrations)
	if err != nil {
		tb.Fatalf("storetest: open %s: %v", party, err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// Config returns a store.Config of its own for the test: a temporary
// directory, or with MIPAY_TEST_POSTGRES a freshly created database (several
// parties opened with it get their own schemas, as in production). The
// database is dropped when the test ends. Dir and URL alone describe the
// store, so a test may hand them to a child process.
func Config(tb testing.TB) store.Config {
	tb.Helper()
	dir := tb.TempDir()
	base := Postgres()
	if base == "" {
		return store.Config{Dir: dir}
	}
	return store.Config{Dir: dir, URL: CreateDatabase(tb, base)}
}

// CreateDatabase creates a database with a random name on the server of
// baseURL and returns baseURL pointed at it; the database is dropped (with
// its connections) when the test ends.
func CreateDatabase(tb testing.TB, baseURL string) string {
	tb.Helper()
	var rnd [8]byte
	rand.Read(rnd[:])
	name := "mipay_test_" + hex.EncodeToString(rnd[:])

	admin, err := sql.Open("pgx", baseURL)
	if err != nil {
		tb.Fatalf("storetest: %s: %v", EnvPostgres, err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	ident := pgx.Identifier{name}.Sanitize()
	// template0 accepts no connections, so concurrent creates never fail
	// with "source database is being accessed by other users".
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+ident+" TEMPLATE template0"); err != nil {
		tb.Fatalf("storetest: create database on %s: %v", store.RedactURL(baseURL), err)
	}
	tb.Cleanup(func() {
		admin, err := sql.Open("pgx", baseURL)
		if err != nil {
			tb.Errorf("storetest: drop database %s: %v", name, err)
			return
		}
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			tb.Errorf("storetest: drop database %s: %v", name, err)
		}
	})

	u, err := url.Parse(baseURL)
	if err != nil {
		tb.Fatalf("storetest: %s is not a URL: %v", EnvPostgres, err)
	}
	u.Path = "/" + name
	return u.String()
}
