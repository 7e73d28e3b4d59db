package issuer

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mipay-oss/mipay/store"
)

// Authorizations are written in groups: a few batcher goroutines each take
// what is queued (up to maxAuthGroup) and write it as one Writer write with
// multi-row INSERTs, so statement, savepoint and driver overhead is paid
// per group rather than per authorization; the store's Writer then commits
// the groups of all batchers in one transaction (one fsync). Each caller is
// answered after the commit that holds its rows.
const (
	// maxAuthGroup bounds the authorizations of one group write.
	maxAuthGroup = 256
	// authBatchers is how many groups can be in the Writer's hands at once
	// (one collects while others wait for their commit).
	authBatchers = 4
	// authQueue bounds the authorizations waiting for a batcher.
	authQueue = 4 * maxAuthGroup
)

// authChunks are the row counts of the multi-row statements; a group is
// written as a sum of them, so the store's statement cache holds a few
// texts, not one per group size (and each text stays under its size bound).
var authChunks = []int{16, 4, 1}

// authJob is one authorization waiting to be written.
type authJob struct {
	req  *AuthRequest
	rec  *authRecord
	ms   int64
	err  error
	done chan struct{}
}

// authBatcher writes authorization groups through the host's Writer.
type authBatcher struct {
	h  *Host
	in chan *authJob

	mu     sync.RWMutex // held shared while queueing, exclusively by close
	closed bool
	wg     sync.WaitGroup
}

func newAuthBatcher(h *Host) *authBatcher {
	b := &authBatcher{h: h, in: make(chan *authJob, authQueue)}
	for range authBatchers {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			b.run()
		}()
	}
	return b
}

// close stops taking writes (later ones fail with store.ErrWriterClosed)
// and returns once the queued ones are written.
func (b *authBatcher) close() {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.in)
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// write queues one authorization and waits until it is durable (or failed).
func (b *authBatcher) write(ctx context.Context, req *AuthRequest, rec *authRecord, now time.Time) error {
	j := &authJob{req: req, rec: rec, ms: now.UnixMilli(), done: make(chan struct{})}
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return store.ErrWriterClosed
	}
	select {
	case b.in <- j:
	case <-ctx.Done():
		b.mu.RUnlock()
		return ctx.Err()
	}
	b.mu.RUnlock()
	<-j.done
	return j.err
}

func (b *authBatcher) run() {
	group := make([]*authJob, 0, maxAuthGroup)
	for first := range b.in {
		group = append(group[:0], first)
	drain:
		for len(group) < maxAuthGroup {
			select {
			case j, ok := <-b.in:
				if !ok {
					break drain
				}
				group = append(group, j)
			default:
				break drain
			}
		}
		b.writeGroup(group)
	}
}

// writeGroup writes group in one Writer write. When that fails as a whole
// (one bad row fails the group's statements) each job is written alone, so
// one poison row cannot fail its neighbours.
func (b *authBatcher) writeGroup(group []*authJob) {
	q := b.h.sql
	err := b.h.w.Write(context.Background(), func(tx *sql.Tx) error { return q.writeAuthRows(tx, group) })
	if err != nil && len(group) > 1 {
		for _, j := range group {
			j.err = b.h.w.Write(context.Background(), func(tx *sql.Tx) error { return q.writeAuthRows(tx, []*authJob{j}) })
			close(j.done)
		}
		return
	}
	for _, j := range group {
		if j.err == nil {
			j.err = err
		}
		close(j.done)
	}
}

// writeAuthRows inserts the group's authorizations, then the holds of the
// approved ones that were inserted. A job whose identity is already stored
// gets errIdentTaken and no hold. Statements run with a background context:
// once the writer took the write it runs to its end anyway.
func (q *authSQL) writeAuthRows(tx *sql.Tx, group []*authJob) error {
	ctx := context.Background()
	for _, j := range group {
		j.err = nil
	}
	inserted := make(map[string]bool, len(group))
	for rest := group; len(rest) > 0; {
		n := chunkFor(len(rest))
		if err := q.insertAuthChunk(ctx, tx, rest[:n], inserted); err != nil {
			return err
		}
		rest = rest[n:]
	}
	holds := make([]*authJob, 0, len(group))
	for _, j := range group {
		switch {
		case !inserted[j.rec.id]:
			j.err = errIdentTaken
		case j.rec.approved:
			holds = append(holds, j)
		}
	}
	return q.bookApprovals(ctx, tx, holds)
}

// bookApprovals writes what the stored approvals jobs book: their holds,
// cross-border fees and promotions.
func (q *authSQL) bookApprovals(ctx context.Context, tx *sql.Tx, jobs []*authJob) error {
	for rest := jobs; len(rest) > 0; {
		n := chunkFor(len(rest))
		if err := q.insertHoldChunk(ctx, tx, rest[:n]); err != nil {
			return err
		}
		rest = rest[n:]
	}
	if err := writeFees(ctx, tx, jobs); err != nil {
		return err
	}
	return writePromotions(ctx, tx, jobs)
}

func chunkFor(n int) int {
	for _, c := range authChunks {
		if n >= c {
			return c
		}
	}
	return 1
}

// Columns of one authorization row, and of one posting row.
const (
	authCols    = 21
	postingCols = 7
)

// authSQL holds the multi-row statements by row count.
type authSQL struct {
	auth, hold map[int]string
}

// newAuthSQL builds the statements (the same text on both engines: the
// store's SQLite statement cache binds their $1…$n by position).
func newAuthSQL() *authSQL {
	q := &authSQL{auth: map[int]string{}, hold: map[int]string{}}
	for _, n := range authChunks {
		q.auth[n] = `INSERT INTO authorizations (id, issuer_id, card_id, pan_first6, pan_last4, mti, proc_code,
		amount_minor, currency, ident, alt_ident, fingerprint, response_code, auth_code, approved,
		token_ref, token_last4, token_requestor, cryptogram_result, day, created_ms, reversed, reversed_ms) VALUES ` +
			placeholders(n, authCols, ", 0, 0") + ` ON CONFLICT (ident) DO NOTHING RETURNING id`
		q.hold[n] = `INSERT INTO postings (entry_id, leg, issuer_id, account, amount_minor, auth_id, created_ms, kind) VALUES ` +
			placeholders(2*n, postingCols, ", '"+kindHold+"'")
	}
	return q
}

// placeholders returns rows tuples of cols placeholders, each followed by
// the literal tail.
func placeholders(rows, cols int, tail string) string {
	var b strings.Builder
	p := 1
	for r := range rows {
		if r > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for c := range cols {
			if c > 0 {
				b.WriteString(", ")
			}
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(p))
			p++
		}
		b.WriteString(tail)
		b.WriteByte(')')
	}
	return b.String()
}

func (q *authSQL) insertAuthChunk(ctx context.Context, tx *sql.Tx, jobs []*authJob, inserted map[string]bool) error {
	args := make([]any, 0, len(jobs)*authCols)
	for _, j := range jobs {
		rec, req := j.rec, j.req
		var cardID any
		first6, last4 := "", ""
		if rec.acct != nil {
			cardID = rec.cardID
			first6, last4 = rec.acct.card.First6, rec.acct.card.Last4
		} else if len(req.PAN) >= 10 {
			first6, last4 = req.PAN[:6], req.PAN[len(req.PAN)-4:]
		}
		approved := 0
		if rec.approved {
			approved = 1
		}
		args = append(args, rec.id, rec.issuerID, cardID, first6, last4, req.MTI, req.ProcessingCode, rec.amount,
			req.Currency, rec.ident, rec.alt, rec.fingerprint, string(rec.code), rec.authCode, approved,
			req.TokenRef, req.TokenLast4, req.TokenRequestorID, req.CryptogramResult, rec.day, j.ms)
	}
	rows, err := tx.QueryContext(ctx, q.auth[len(jobs)], args...)
	if err != nil {
		return fmt.Errorf("insert authorizations: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return fmt.Errorf("insert authorizations: %w", err)
		}
		inserted[id] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("insert authorizations: %w", err)
	}
	return nil
}

// insertHoldChunk posts each job's hold: available → held, two legs.
func (q *authSQL) insertHoldChunk(ctx context.Context, tx *sql.Tx, jobs []*authJob) error {
	args := make([]any, 0, 2*len(jobs)*postingCols)
	for _, j := range jobs {
		rec := j.rec
		entry := "hold/" + rec.id
		args = append(args,
			entry, 1, rec.issuerID, heldAccount(rec.cardID), rec.amount, rec.id, j.ms,
			entry, 2, rec.issuerID, availableAccount(rec.cardID), -rec.amount, rec.id, j.ms)
	}
	if _, err := tx.ExecContext(ctx, q.hold[len(jobs)], args...); err != nil {
		return fmt.Errorf("insert holds: %w", err)
	}
	return nil
}
