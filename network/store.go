package network

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"sync"
	"time"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations is the switch's schema.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the embed pattern above guarantees the directory
	}
	return sub
}

func insertAuth(ctx context.Context, tx *sql.Tx, r *authRecord, now time.Time) error {
	var billMinor, rateVersion int64
	var rate string
	if r.Bill.converted() {
		billMinor, rate, rateVersion = r.Bill.AmountMinor, r.Bill.Rate.DE10(), r.Bill.Version
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO auths (dup_key, mti, token_ref, token_last4, issuer_id, processing,
		amount_minor, currency, stan, rrn, tx_time, acquirer, terminal, merchant, rc, auth_code, stand_in, reversed,
		answer, created_at, country, billing_minor, billing_rate, rate_version)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,0,$18,$19,$20,$21,$22,$23)`,
		r.Key, r.MTI, r.TokenRef, r.TokenLast4, r.IssuerID, r.Processing, r.AmountMinor, r.Currency, r.STAN, r.RRN,
		r.TxTime, r.Acquirer, r.Terminal, r.Merchant, r.RC, r.AuthCode, boolInt(r.StandIn), r.Answer, now.UnixMilli(),
		r.Country, billMinor, rate, rateVersion)
	if err != nil {
		return fmt.Errorf("network: insert authorization: %w", err)
	}
	return nil
}

func insertReversal(ctx context.Context, tx *sql.Tx, origKey, mti, reason string, now time.Time) error {
	id := make([]byte, 12)
	_, _ = rand.Read(id)
	// A second reversal of the same original is the same debt: ON CONFLICT
	// keeps one row, so the issuer is asked once.
	_, err := tx.ExecContext(ctx, `INSERT INTO issuer_reversals (id, orig_key, mti, reason, attempts, done, last_error,
		created_at, updated_at) VALUES ($1,$2,$3,$4,0,0,'',$5,$5) ON CONFLICT (orig_key) DO NOTHING`,
		hex.EncodeToString(id), origKey, mti, reason, now.UnixMilli())
	if err != nil {
		return fmt.Errorf("network: queue reversal: %w", err)
	}
	return nil
}

func insertOutbox(ctx context.Context, tx *sql.Tx, e *outboxEvent) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO outbox (id, subject, payload, created_at) VALUES ($1,$2,$3,$4)
		ON CONFLICT (id) DO NOTHING`, e.ID, e.Subject, e.Payload, time.Now().UnixMilli())
	if err != nil {
		return fmt.Errorf("network: outbox: %w", err)
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// loadRecent fills the duplicate index with the answers of the last window,
// so that after a restart a retransmission still gets its stored answer
// without a store read per request.
func (s *Switch) loadRecent(ctx context.Context) error {
	since := s.now().Add(-s.cfg.DuplicateWindow)
	rows, err := s.db.DB.QueryContext(ctx, `SELECT dup_key, answer, created_at FROM auths WHERE created_at >= $1 ORDER BY created_at`, since.UnixMilli())
	if err != nil {
		return fmt.Errorf("network: load duplicate index: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var key string
		var answer []byte
		var at int64
		if err := rows.Scan(&key, &answer, &at); err != nil {
			return err
		}
		s.recent.put(key, answer, time.UnixMilli(at))
	}
	if err := rows.Err(); err != nil {
		return err
	}
	s.recent.setComplete(since)
	return nil
}

// recentIndex holds the answers of recent requests by duplicate key. It is
// complete from some instant on: a key absent from it whose transmission
// time is after that instant (plus skew) was never answered.
type recentIndex struct {
	mu       sync.Mutex
	max      int
	m        map[string]recentEntry
	ring     []string // insertion order, for eviction
	head     int
	complete time.Time
}

type recentEntry struct {
	answer []byte
	at     time.Time
}

// clockSkew is how far an acquirer's DE7 may run ahead of or behind ours.
const clockSkew = 5 * time.Minute

func newRecentIndex(max int) *recentIndex {
	return &recentIndex{max: max, m: make(map[string]recentEntry)}
}

func (r *recentIndex) get(key string) ([]byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.m[key]
	return e.answer, ok
}

func (r *recentIndex) setComplete(t time.Time) {
	r.mu.Lock()
	r.complete = t
	r.mu.Unlock()
}

// covers reports whether the index is complete for a message transmitted at
// t: an earlier identical message carried the same DE7, so it was answered
// around t; if that is after the instant the index is complete from (with
// room for clock skew), a miss is authoritative.
func (r *recentIndex) covers(t time.Time) bool {
	if t.IsZero() {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return t.After(r.complete.Add(clockSkew))
}

func (r *recentIndex) put(key string, answer []byte, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.m[key]; ok {
		return
	}
	if len(r.ring) < r.max {
		r.ring = append(r.ring, key)
	} else {
		old := r.ring[r.head]
		if e, ok := r.m[old]; ok {
			// From now on the index no longer holds everything since old's time.
			if e.at.After(r.complete) {
				r.complete = e.at
			}
			delete(r.m, old)
		}
		r.ring[r.head] = key
		r.head = (r.head + 1) % r.max
	}
	r.m[key] = recentEntry{answer: answer, at: at}
}
