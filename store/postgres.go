package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/mipay-oss/mipay"
)

// PostgreSQL bounds.
const (
	// DefaultPostgresConns bounds a party's PostgreSQL pool.
	DefaultPostgresConns = 16
	// cancelGrace is how long a statement whose ctx ended may take to
	// answer the cancel request before its connection is closed.
	cancelGrace = 2 * time.Second
)

func openPostgres(ctx context.Context, rawURL, schema string) (*DB, error) {
	shown := RedactURL(rawURL)
	if !strings.HasPrefix(rawURL, "postgres://") && !strings.HasPrefix(rawURL, "postgresql://") {
		return nil, mipay.Errorf(mipay.EINVALID,
			"store: database URL %s is not a PostgreSQL URL: use postgres://user:password@host:5432/dbname", shown)
	}
	cc, err := pgx.ParseConfig(rawURL)
	if err != nil {
		// pgx's message may quote the URL with its password; give only our own.
		return nil, mipay.Errorf(mipay.EINVALID,
			"store: database URL %s is not valid (%s): use postgres://user:password@host:5432/dbname", shown, parseReason(err))
	}
	// Every connection of the pool sees only the party's schema (plus
	// pg_catalog), so the same unqualified SQL runs as on SQLite.
	cc.RuntimeParams["search_path"] = schema
	// A ctx ending mid-statement cancels that statement on the server
	// (an error the Writer rolls back to the write's savepoint) instead of
	// closing the connection, which would fail the whole batch and every
	// write in it. Only if the server does not answer the cancel within
	// cancelGrace is the connection closed.
	cc.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: cancelGrace}
	}
	if cc.ConnectTimeout == 0 || cc.ConnectTimeout > DefaultConnectTimeout {
		cc.ConnectTimeout = DefaultConnectTimeout
	}
	pool := stdlib.OpenDB(*cc)
	pool.SetMaxOpenConns(DefaultPostgresConns)
	pool.SetMaxIdleConns(DefaultPostgresConns)

	where := fmt.Sprintf("schema %s of %s", schema, shown)
	pctx, cancel := context.WithTimeout(ctx, DefaultConnectTimeout)
	defer cancel()
	if err := pool.PingContext(pctx); err != nil {
		pool.Close()
		return nil, mipay.WrapError(mipay.EUNAVAILABLE, err,
			"store: cannot connect to PostgreSQL at %s (%s): start it or fix the database URL", shown, pgReason(err))
	}
	return &DB{DB: pool, write: pool, engine: Postgres, where: where}, nil
}

// RedactURL returns u with any password (in the user info or a password
// query parameter) replaced by "xxxxx", for messages.
func RedactURL(u string) string {
	if p, err := url.Parse(u); err == nil {
		if strings.Contains(strings.ToLower(p.RawQuery), "password") {
			q, err := url.ParseQuery(p.RawQuery)
			if err != nil {
				p.RawQuery = "xxxxx" // malformed: show none of it
			} else {
				for k := range q {
					if strings.EqualFold(k, "password") {
						q[k] = []string{"xxxxx"}
					}
				}
				p.RawQuery = q.Encode()
			}
		}
		return p.Redacted()
	}
	if strings.Contains(strings.ToLower(u), "password=") {
		return "(unparseable URL)"
	}
	// Unparseable (a bad port, say): redact by hand. The userinfo is what
	// lies between "://" and the last '@' before the path.
	i := strings.Index(u, "://")
	if i < 0 {
		return "(unparseable URL)"
	}
	rest := u[i+3:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	at := strings.LastIndex(rest[:end], "@")
	if at < 0 {
		return u
	}
	user := rest[:at]
	if c := strings.Index(user, ":"); c >= 0 {
		user = user[:c] + ":xxxxx"
	}
	return u[:i+3] + user + rest[at:]
}

// parseReason extracts pgx's short description of what is wrong with a URL.
// The wrapped cause (often a url.Error) and the outer text quote the URL,
// possibly with its password, so only pgx's own message part is kept.
func parseReason(err error) string {
	var pe *pgconn.ParseConfigError
	if !errors.As(err, &pe) {
		return "malformed"
	}
	s := pe.Error()
	if c := pe.Unwrap(); c != nil {
		s = strings.TrimSuffix(s, " ("+c.Error()+")")
	}
	if i := strings.LastIndex(s, "`: "); i >= 0 {
		return s[i+3:]
	}
	return "malformed"
}

// pgReason gives the short cause of a connection failure: the server's
// message, or the system error ("connection refused"), not pgx's full chain.
func pgReason(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Message
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timed out"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return "unknown host " + dnsErr.Name
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) && ce.Unwrap() != nil {
		return ce.Unwrap().Error()
	}
	return err.Error()
}

// quoteIdent quotes a PostgreSQL identifier. Party names are already
// restricted to [a-z0-9_], this is belt and braces.
func quoteIdent(s string) string { return pgx.Identifier{s}.Sanitize() }
