package store

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
)

// SQLite result codes used here (https://www.sqlite.org/rescode.html).
const (
	sqliteBusy             = 5
	sqliteLocked           = 6
	sqliteNotADB           = 26
	sqliteConstraintPK     = 1555
	sqliteConstraintUnique = 2067
)

// IsConflict reports whether err is a unique or primary key violation on
// either engine, e.g. an INSERT of an id that exists.
func IsConflict(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		c := se.Code()
		return c == sqliteConstraintPK || c == sqliteConstraintUnique
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505"
	}
	return false
}

// isTransient reports whether running the transaction again may succeed:
// SQLite BUSY/LOCKED, PostgreSQL serialization failure or deadlock.
func isTransient(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		c := se.Code() & 0xff
		return c == sqliteBusy || c == sqliteLocked
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "40001" || pe.Code == "40P01"
	}
	return false
}

func isNotADatabase(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqliteNotADB
}
