package wallet

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/mipay-oss/mipay/store"
)

// A device's notification feed is numbered 1, 2, 3… (a client resumes after
// the last number it saw) and shows its newest keep notifications.
//
// Numbers. On PostgreSQL several wallet nodes may write one device's feed
// at once, so the next number comes from devices.notify_seq, bumped under
// the row's lock. On SQLite a writer holds the database's write lock from
// BEGIN to COMMIT (whatever the process), so the feed's newest number, read
// inside the write, is the last one taken: appending costs no write to the
// devices row, which was one more page to copy into the savepoint journal
// and the WAL for every transaction event. The newest notification is never
// pruned (feedKeep), so the number survives restarts; devices.notify_seq
// is left as it is on SQLite, so a wallet from before this scheme, which
// numbered from it, must not run on a store this one wrote (its numbers
// would collide; since migration 0070 its points writes fail anyway).
//
// Pruning. Rows beyond the newest keep are deleted once per pruneStride
// notifications of a feed — when this process appended pruneStride to it
// since it last pruned it, or at its first to a feed it holds no count for
// (the one-statement append does not tell the number), or when several at
// once cross a multiple of pruneStride (notifyManyTx) — so a feed holds
// about keep+pruneStride rows,
// and readers show only the newest keep (repo.notifications): what a device
// sees is what a prune at every notification showed, for one DELETE per
// pruneStride notifications.

// pruneStride is how many notifications a feed takes between prunes.
const pruneStride = 16

// feedKeep is how many notifications a feed shows: at least the newest,
// whose number the next one follows.
func feedKeep(keep int) int64 { return int64(max(keep, 1)) }

// takeSeqs takes the next n numbers of a device's feed and returns the
// last; a device that is not there is not found.
func (r *repo) takeSeqs(ctx context.Context, tx *sql.Tx, deviceID string, n int) (int64, error) {
	var last int64
	if r.db.Engine() == store.Postgres {
		err := tx.QueryRowContext(ctx,
			`UPDATE devices SET notify_seq = notify_seq + $2 WHERE id = $1 RETURNING notify_seq`, deviceID, n).Scan(&last)
		if err != nil {
			return 0, notFound(err, "device")
		}
		return last, nil
	}
	err := tx.QueryRowContext(ctx,
		`SELECT COALESCE((SELECT MAX(seq) FROM notifications WHERE device_id = $1), 0) FROM devices WHERE id = $2`,
		deviceID, deviceID).Scan(&last)
	if err != nil {
		return 0, notFound(err, "device")
	}
	return last + int64(n), nil
}

// Appending one notification is one INSERT that takes the number itself:
// on PostgreSQL from the row-locking bump of notify_seq (a data-modifying
// WITH, one round trip instead of two), on SQLite from the feed's newest.
// Both are Execs: a query inside the writer's transaction costs
// database/sql a goroutine watching the batch's deadline.
const (
	sqlAppendPostgres = `WITH s AS (UPDATE devices SET notify_seq = notify_seq + 1 WHERE id = $1 RETURNING notify_seq)
		INSERT INTO notifications (device_id, seq, kind, payload, created_ms) SELECT $2, notify_seq, $3, $4, $5 FROM s`
	sqlAppendSQLite = `INSERT INTO notifications (device_id, seq, kind, payload, created_ms)
		SELECT id, COALESCE((SELECT MAX(seq) FROM notifications WHERE device_id = $1), 0) + 1, $2, $3, $4
		FROM devices WHERE id = $5`
)

// notifyTx appends a notification to a device's feed inside tx; a device
// that is not there is not found.
func (r *repo) notifyTx(ctx context.Context, tx *sql.Tx, deviceID, kind string, payload any, now time.Time, keep int) error {
	body, err := encodeNotification(payload)
	if err != nil {
		return err
	}
	return r.appendTx(ctx, tx, deviceID, kind, body, now, keep)
}

// encodeNotification is a notification's payload as stored. The hot paths
// encode before their write, so the JSON is made by the event's handler
// rather than by the writer every write waits for.
func encodeNotification(payload any) ([]byte, error) {
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("wallet: encode notification: %w", err)
	}
	return body, nil
}

// appendTx is notifyTx with the payload encoded.
func (r *repo) appendTx(ctx context.Context, tx *sql.Tx, deviceID, kind string, body []byte, now time.Time, keep int) error {
	var (
		res sql.Result
		err error
	)
	if r.db.Engine() == store.Postgres {
		res, err = tx.ExecContext(ctx, sqlAppendPostgres, deviceID, deviceID, kind, string(body), ms(now))
	} else {
		res, err = tx.ExecContext(ctx, sqlAppendSQLite, deviceID, kind, string(body), ms(now), deviceID)
	}
	if err != nil {
		return fmt.Errorf("wallet: insert notification: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return notFound(cmp.Or(err, sql.ErrNoRows), "device")
	}
	// The number is not known here: prune after every pruneStride
	// notifications this process appended to the feed.
	if !r.feeds.due(deviceID) {
		return nil
	}
	if _, err := tx.ExecContext(ctx,
		`DELETE FROM notifications WHERE device_id = $1
		 AND seq <= (SELECT MAX(seq) FROM notifications WHERE device_id = $2) - $3`,
		deviceID, deviceID, feedKeep(keep)); err != nil {
		return fmt.Errorf("wallet: prune notifications: %w", err)
	}
	return nil
}

// maxFeedCounts bounds feedCounts (it is emptied when full).
const maxFeedCounts = 1 << 16

// feedCounts counts, per device, the notifications this process appended
// since it last pruned the device's feed. A feed it has no count for (since
// it started, or since the counts were emptied when full) may have taken
// any number unpruned, so it is pruned at its next notification: a lost
// count must not leave a feed unpruned for good (restarts, or more devices
// notified than maxFeedCounts between a device's notifications, would
// otherwise lose its count again and again). A write rolled back after
// counting only delays a prune. What the device sees does not depend on it.
type feedCounts struct {
	mu sync.Mutex
	m  map[string]int
}

// due counts one notification for the device and reports whether its feed
// is to be pruned now.
func (c *feedCounts) due(deviceID string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxFeedCounts {
		c.m = map[string]int{}
	}
	n, counted := c.m[deviceID]
	if !counted {
		c.m[deviceID] = 1
		return true
	}
	if n+1 < pruneStride {
		c.m[deviceID] = n + 1
		return false
	}
	c.m[deviceID] = 0
	return true
}

// notifyManyTx is notifyTx for several notifications of one device: the
// numbers are taken once and the feed pruned at most once.
func (r *repo) notifyManyTx(ctx context.Context, tx *sql.Tx, deviceID, kind string, payloads []any, now time.Time, keep int) error {
	if len(payloads) == 0 {
		return nil
	}
	last, err := r.takeSeqs(ctx, tx, deviceID, len(payloads))
	if err != nil {
		return err
	}
	first := last - int64(len(payloads))
	seq := first
	// Only the newest `keep` are shown: older ones of this batch are not written.
	skip := max(int64(len(payloads))-feedKeep(keep), 0)
	for i, p := range payloads {
		seq++
		if int64(i) < skip {
			continue
		}
		body, err := encodeNotification(p)
		if err != nil {
			return err
		}
		if err := insertNotification(ctx, tx, deviceID, seq, kind, body, now); err != nil {
			return err
		}
	}
	return pruneFeed(ctx, tx, deviceID, first, last, keep)
}

func insertNotification(ctx context.Context, tx *sql.Tx, deviceID string, seq int64, kind string, body []byte, now time.Time) error {
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO notifications (device_id, seq, kind, payload, created_ms) VALUES ($1, $2, $3, $4, $5)`,
		deviceID, seq, kind, string(body), ms(now)); err != nil {
		return fmt.Errorf("wallet: insert notification: %w", err)
	}
	return nil
}

// pruneFeed deletes the notifications beyond the newest keep when the
// feed's numbers went from `from` to last across a multiple of
// pruneStride.
func pruneFeed(ctx context.Context, tx *sql.Tx, deviceID string, from, last int64, keep int) error {
	if from/pruneStride == last/pruneStride {
		return nil
	}
	if _, err := tx.ExecContext(ctx,
		`DELETE FROM notifications WHERE device_id = $1 AND seq <= $2`, deviceID, last-feedKeep(keep)); err != nil {
		return fmt.Errorf("wallet: prune notifications: %w", err)
	}
	return nil
}
