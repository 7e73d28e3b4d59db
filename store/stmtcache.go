package store

import (
	"context"
	"database/sql/driver"
	"reflect"

	"modernc.org/sqlite"
)

// The SQLite driver parses and plans a statement's SQL on every unprepared
// Exec or Query, which costs more than a single-row insert itself. pgx keeps
// a per-connection cache of prepared statements keyed by SQL text; this
// connector gives SQLite connections the same, so parties write plain
// tx.ExecContext(ctx, query, args…) on both engines and pay the parse once
// per connection.
//
// Statements are written with PostgreSQL's $1, $2 …, which SQLite reads as
// named parameters, and binding one costs a linear search of the
// statement's names (quadratic in its parameters: a visible share of a wide
// insert's CPU). The cache prepares the text with anonymous "?" instead when
// its placeholders are $1…$n, each once, in order (see positional); other
// texts are prepared as written.

// Statement cache bounds.
const (
	// stmtCacheSize bounds the prepared statements kept per connection.
	stmtCacheSize = 256
	// maxCachedQueryBytes: longer texts (migration scripts) are not kept.
	maxCachedQueryBytes = 4 << 10
)

type cachingConnector struct {
	inner driver.Connector
}

func newCachingConnector(dsn string) (driver.Connector, error) {
	inner, err := sqlite.NewConnector(dsn)
	if err != nil {
		return nil, err
	}
	return &cachingConnector{inner: inner}, nil
}

func (c *cachingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	dc, err := c.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &cachingConn{conn: dc, stmts: make(map[string]*cachedStmt)}, nil
}

func (c *cachingConnector) Driver() driver.Driver { return c.inner.Driver() }

// The interfaces of the modernc connection that database/sql uses.
type sqliteConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

// cachingConn is used by one goroutine at a time (database/sql's contract
// for a driver.Conn), so the cache needs no lock.
type cachingConn struct {
	conn  driver.Conn
	stmts map[string]*cachedStmt
}

type cachedStmt struct {
	stmt driver.Stmt
	busy bool // an open Rows is stepping it
}

var (
	_ driver.ExecerContext  = (*cachingConn)(nil)
	_ driver.QueryerContext = (*cachingConn)(nil)
	_ sqliteConn            = (*cachingConn)(nil)
)

func (c *cachingConn) inner() sqliteConn { return c.conn.(sqliteConn) }

func (c *cachingConn) Prepare(query string) (driver.Stmt, error) { return c.conn.Prepare(query) }
func (c *cachingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return c.inner().PrepareContext(ctx, query)
}
func (c *cachingConn) Begin() (driver.Tx, error) {
	return c.inner().BeginTx(context.Background(), driver.TxOptions{})
}
func (c *cachingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	return c.inner().BeginTx(ctx, opts)
}
func (c *cachingConn) Ping(ctx context.Context) error         { return c.inner().Ping(ctx) }
func (c *cachingConn) ResetSession(ctx context.Context) error { return c.inner().ResetSession(ctx) }
func (c *cachingConn) IsValid() bool                          { return c.inner().IsValid() }

func (c *cachingConn) Close() error {
	for q, s := range c.stmts {
		_ = s.stmt.Close()
		delete(c.stmts, q)
	}
	return c.conn.Close()
}

// stmt returns the cached statement for query, preparing and caching it if
// needed; cached reports whether it belongs to the cache (else the caller
// closes it after use).
func (c *cachingConn) stmt(ctx context.Context, query string) (s *cachedStmt, cached bool, err error) {
	if s, ok := c.stmts[query]; ok && !s.busy {
		return s, true, nil
	}
	ds, err := c.inner().PrepareContext(ctx, positional(query))
	if err != nil {
		return nil, false, err
	}
	s = &cachedStmt{stmt: ds}
	if _, taken := c.stmts[query]; taken || len(query) > maxCachedQueryBytes {
		return s, false, nil // in use by an open Rows, or too long to keep
	}
	if len(c.stmts) >= stmtCacheSize {
		c.evict()
	}
	c.stmts[query] = s
	return s, true, nil
}

// evict drops one idle statement (map order: an arbitrary one).
func (c *cachingConn) evict() {
	for q, s := range c.stmts {
		if !s.busy {
			_ = s.stmt.Close()
			delete(c.stmts, q)
			return
		}
	}
}

func (c *cachingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	s, cached, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	res, err := s.stmt.(driver.StmtExecContext).ExecContext(ctx, args)
	if !cached {
		_ = s.stmt.Close()
	}
	return res, err
}

func (c *cachingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	s, cached, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	rows, err := s.stmt.(driver.StmtQueryContext).QueryContext(ctx, args)
	if err != nil {
		if !cached {
			_ = s.stmt.Close()
		}
		return nil, err
	}
	s.busy = true
	return &cachedRows{Rows: rows, s: s, closeStmt: !cached}, nil
}

// cachedRows frees its statement for reuse when closed, and forwards the
// column type interfaces of the driver's rows.
type cachedRows struct {
	driver.Rows
	s         *cachedStmt
	closeStmt bool
	closed    bool
}

func (r *cachedRows) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	err := r.Rows.Close()
	r.s.busy = false
	if r.closeStmt {
		if e := r.s.stmt.Close(); err == nil {
			err = e
		}
	}
	return err
}

func (r *cachedRows) ColumnTypeDatabaseTypeName(i int) string {
	if t, ok := r.Rows.(driver.RowsColumnTypeDatabaseTypeName); ok {
		return t.ColumnTypeDatabaseTypeName(i)
	}
	return ""
}

func (r *cachedRows) ColumnTypeLength(i int) (int64, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeLength); ok {
		return t.ColumnTypeLength(i)
	}
	return 0, false
}

func (r *cachedRows) ColumnTypeNullable(i int) (bool, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeNullable); ok {
		return t.ColumnTypeNullable(i)
	}
	return false, false
}

func (r *cachedRows) ColumnTypePrecisionScale(i int) (int64, int64, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypePrecisionScale); ok {
		return t.ColumnTypePrecisionScale(i)
	}
	return 0, 0, false
}

func (r *cachedRows) ColumnTypeScanType(i int) reflect.Type {
	if t, ok := r.Rows.(driver.RowsColumnTypeScanType); ok {
		return t.ColumnTypeScanType(i)
	}
	return reflect.TypeFor[any]()
}
