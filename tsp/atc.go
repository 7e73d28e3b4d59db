package tsp

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mipay-oss/mipay/store"
)

// The ATC writes of concurrent authorizations are grouped here before they
// reach the store's group-commit Writer: one Writer write per group runs one
// UPDATE per token and one multi-row INSERT for the de-tokenization log,
// instead of a savepoint, an UPDATE and an INSERT per authorization.

// Bounds of the ATC batcher.
const (
	DefaultATCBatch    = 256  // authorizations per group
	DefaultATCQueue    = 8192 // authorizations waiting to be grouped
	DefaultATCInFlight = 4    // groups handed to the Writer at once
	atcWriteTimeout    = 10 * time.Second
)

// logIDs makes time-ordered de-tokenization log ids: milliseconds << 22 |
// node (10 bits, unique among running Authorizers) << 12 | sequence (12
// bits). Ordered ids append at the end of the table's B-tree.
type logIDs struct {
	node uint64
	mu   sync.Mutex
	ms   int64
	seq  uint64
}

func (g *logIDs) next(now time.Time) int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := now.UnixMilli()
	if m <= g.ms {
		m = g.ms // clock went back or same millisecond: continue the sequence
	} else {
		g.ms, g.seq = m, 0
	}
	if g.seq > 0xFFF { // 4096 ids in one millisecond: borrow the next one
		g.ms++
		m, g.seq = g.ms, 0
	}
	id := uint64(m)<<22 | g.node<<12 | g.seq
	g.seq++
	return int64(id)
}

// allocateNode records this Authorizer's start and returns its node number.
func allocateNode(ctx context.Context, db *store.DB, name string, now time.Time) (uint64, error) {
	for attempt := 0; attempt < 5; attempt++ {
		var n int64
		err := db.Tx(ctx, func(tx *sql.Tx) error {
			if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(n), 0) + 1 FROM authorizer_starts`).Scan(&n); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO authorizer_starts (n, node_name, started_at) VALUES ($1, $2, $3)`, n, name, ms(now))
			return err
		})
		if store.IsConflict(err) {
			continue // another node started at the same moment
		}
		if err != nil {
			return 0, fmt.Errorf("tsp: allocate authorizer node: %w", err)
		}
		return uint64(n) % 1024, nil
	}
	return 0, fmt.Errorf("tsp: allocate authorizer node: too many concurrent starts")
}

// atcReq is one authorization's ATC write.
type atcReq struct {
	ref      string
	atc      int
	log      *detokenization // nil: nothing de-tokenized
	accepted bool
	err      error
	done     chan struct{}
}

type atcBatcher struct {
	w        *store.Writer
	in       chan *atcReq
	slots    chan struct{}
	wg       sync.WaitGroup
	closed   atomic.Bool
	mu       sync.RWMutex // held shared while enqueuing, exclusively by close
	maxBatch int
	groups   atomic.Int64 // Writer writes made
	reqs     atomic.Int64 // authorizations in them
}

func newATCBatcher(w *store.Writer) *atcBatcher {
	b := &atcBatcher{w: w, in: make(chan *atcReq, DefaultATCQueue), slots: make(chan struct{}, DefaultATCInFlight), maxBatch: DefaultATCBatch}
	b.wg.Add(1)
	go b.run()
	return b
}

var reqPool = sync.Pool{New: func() any { return &atcReq{done: make(chan struct{}, 1)} }}

// accept raises ref's last ATC to atc if it is higher and logs the
// de-tokenization, durably, and reports whether the ATC was fresh.
func (b *atcBatcher) accept(ctx context.Context, ref string, atc int, log *detokenization) (bool, error) {
	r := reqPool.Get().(*atcReq)
	r.ref, r.atc, r.log, r.accepted, r.err = ref, atc, log, false, nil
	b.mu.RLock()
	if b.closed.Load() {
		b.mu.RUnlock()
		reqPool.Put(r)
		return false, store.ErrWriterClosed
	}
	select {
	case b.in <- r:
		b.mu.RUnlock()
	case <-ctx.Done():
		b.mu.RUnlock()
		reqPool.Put(r)
		return false, ctx.Err()
	}
	// Once queued the write runs to its outcome; the caller waits for it
	// (a caller that gave up could not tell whether its ATC was recorded).
	<-r.done
	accepted, err := r.accepted, r.err
	r.log = nil
	reqPool.Put(r)
	return accepted, err
}

func (b *atcBatcher) run() {
	defer b.wg.Done()
	for r := range b.in {
		batch := []*atcReq{r}
	fill:
		for len(batch) < b.maxBatch {
			select {
			case r, ok := <-b.in:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		b.slots <- struct{}{}
		b.wg.Add(1)
		go func(batch []*atcReq) {
			defer b.wg.Done()
			defer func() { <-b.slots }()
			b.commit(batch)
		}(batch)
	}
}

func (b *atcBatcher) commit(batch []*atcReq) {
	b.groups.Add(1)
	b.reqs.Add(int64(len(batch)))
	ctx, cancel := context.WithTimeout(context.Background(), atcWriteTimeout)
	defer cancel()
	err := b.w.Write(ctx, func(tx *sql.Tx) error {
		var logs []*detokenization
		for _, r := range batch {
			res, err := tx.ExecContext(ctx, `UPDATE token_atc SET last_atc = $1 WHERE ref = $2 AND last_atc < $3`, r.atc, r.ref, r.atc)
			if err != nil {
				return fmt.Errorf("tsp: accept ATC: %w", err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return fmt.Errorf("tsp: accept ATC: %w", err)
			}
			r.accepted = n == 1
			if r.accepted && r.log != nil {
				logs = append(logs, r.log)
			}
		}
		return insertDetokenizations(ctx, tx, logs)
	})
	for _, r := range batch {
		if err != nil {
			r.accepted, r.err = false, err
		}
		r.done <- struct{}{}
	}
}

func (b *atcBatcher) close() {
	b.mu.Lock()
	if !b.closed.Swap(true) {
		close(b.in)
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// logInsertSizes are the row counts of the multi-row INSERTs used, largest
// first: a few fixed statement texts, so each is parsed once per connection
// (the store caches prepared statements by text).
var logInsertSizes = [...]int{8, 1}

// logInsertSQL holds the INSERT text for each size.
var logInsertSQL = func() map[int]string {
	m := make(map[int]string, len(logInsertSizes))
	for _, n := range logInsertSizes {
		var sb strings.Builder
		sb.WriteString(`INSERT INTO detokenization_log (id, token_ref, requester, purpose, atc, at) VALUES `)
		for i := 0; i < n; i++ {
			if i > 0 {
				sb.WriteByte(',')
			}
			k := 6 * i
			fmt.Fprintf(&sb, "($%d,$%d,$%d,$%d,$%d,$%d)", k+1, k+2, k+3, k+4, k+5, k+6)
		}
		m[n] = sb.String()
	}
	return m
}()

// insertDetokenizations writes log entries with multi-row INSERTs.
func insertDetokenizations(ctx context.Context, tx *sql.Tx, logs []*detokenization) error {
	args := make([]any, 0, 6*logInsertSizes[0])
	for len(logs) > 0 {
		n := 1
		for _, size := range logInsertSizes {
			if len(logs) >= size {
				n = size
				break
			}
		}
		args = args[:0]
		for _, d := range logs[:n] {
			args = append(args, d.ID, d.TokenRef, d.Requester, d.Purpose, d.ATC, ms(d.At))
		}
		if _, err := tx.ExecContext(ctx, logInsertSQL[n], args...); err != nil {
			return fmt.Errorf("tsp: log de-tokenization: %w", err)
		}
		logs = logs[n:]
	}
	return nil
}
