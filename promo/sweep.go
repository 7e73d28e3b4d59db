package promo

import (
	"context"
	"fmt"
	"time"
)

// Sweeping stranded reservations (issue 8). The switch reserves before it
// forwards to the issuer and settles (confirm or release) before it records
// its decision. A switch that crashes in between leaves a reservation
// "reserved" that nobody will settle: its budget and counters would stay
// taken for good. The sweeper releases reservations still "reserved" after
// a bound far above any authorization's life (issuer timeout, stand-in,
// confirmation), through Release, so each is given back exactly
// once even when several nodes sweep the same store at once.
//
// Every outcome that keeps a discount confirms its reservation (issuer
// approval and stand-in alike), durably before the switch answers, so only
// payments no approval was answered for are swept: a switch that crashed
// after the issuer approved but before answering is reversed by the
// acquirer's 0400, and the issuer gives its discount back.

// Sweeper defaults.
const (
	// DefaultSweepAge is how old an unsettled reservation must be before it
	// is released: more than twice the longest authorization (issuer
	// timeout 2 s, stand-in) and twice DefaultConfirmTimeout, so a
	// confirmation still in flight is never overtaken.
	DefaultSweepAge = 2 * DefaultConfirmTimeout
	// DefaultSweepInterval is how often Service sweeps.
	DefaultSweepInterval = 30 * time.Second
	// sweepBatch bounds the reservations one Sweep pass looks at.
	sweepBatch = 500
)

// Sweep releases the reservations still "reserved" that were made more than
// olderThan ago (by the engine's clock) and reports how many this call gave
// back. Running it again, or on another node, releases none twice.
func (e *Engine) Sweep(ctx context.Context, olderThan time.Duration) (int, error) {
	if olderThan <= 0 {
		return 0, invalid("sweep: age must be positive")
	}
	cutoff := e.now().Add(-olderThan).UnixMilli()
	released := 0
	for {
		ids, err := e.stranded(ctx, cutoff)
		if err != nil {
			return released, err
		}
		for _, id := range ids {
			ok, err := e.Release(ctx, id)
			if err != nil {
				return released, fmt.Errorf("promo: sweep %s: %w", id, err)
			}
			if ok {
				released++
				e.log.InfoContext(ctx, "promo: released a stranded reservation", "reservation", id)
			}
		}
		if len(ids) < sweepBatch {
			return released, nil
		}
	}
}

func (e *Engine) stranded(ctx context.Context, cutoff int64) ([]string, error) {
	rows, err := e.db.DB.QueryContext(ctx, `SELECT id FROM reservations WHERE state = 'reserved' AND created_at < $1
		ORDER BY created_at LIMIT $2`, cutoff, sweepBatch)
	if err != nil {
		return nil, fmt.Errorf("promo: stranded reservations: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("promo: stranded reservations: %w", err)
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// RunSweeper sweeps every interval until ctx ends.
func (e *Engine) RunSweeper(ctx context.Context, interval, olderThan time.Duration) {
	if interval <= 0 {
		interval = DefaultSweepInterval
	}
	if olderThan <= 0 {
		olderThan = DefaultSweepAge
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := e.Sweep(ctx, olderThan); err != nil && ctx.Err() == nil {
				e.log.WarnContext(ctx, "promo: sweep", "err", err)
			}
		}
	}
}
