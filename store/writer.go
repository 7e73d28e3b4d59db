package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

// Writer defaults.
const (
	// DefaultMaxBatch bounds the writes committed in one transaction.
	DefaultMaxBatch = 512
	// DefaultMaxWait bounds how long a batch waits for writers expected
	// back (see WriterConfig.MaxWait). It is about one fsync: waiting longer
	// costs more latency than the larger batch saves.
	DefaultMaxWait = 500 * time.Microsecond
	// DefaultQueueWrites bounds the writes waiting to be taken; Write blocks
	// (until its ctx ends) when the queue is full.
	DefaultQueueWrites = 4 * DefaultMaxBatch
	// MaxBatchWrites and MaxQueueWrites cap the configurable bounds.
	MaxBatchWrites = 1 << 16
	MaxQueueWrites = 1 << 20
	// DefaultBatchTimeout bounds one batch's transaction.
	DefaultBatchTimeout = 30 * time.Second
	// MaxCommitters bounds WriterConfig.Committers (each holds a
	// connection).
	MaxCommitters = DefaultPostgresConns / 2
	// DefaultBeginAttempts bounds retries of BEGIN when another process holds
	// the SQLite write lock beyond the busy timeout.
	DefaultBeginAttempts = 3
)

// ErrWriterClosed is returned by Write after Close.
var ErrWriterClosed = mipay.Errorf(mipay.EUNAVAILABLE, "store: writer is closed")

// WriterConfig tunes a Writer. The zero value gives the defaults.
type WriterConfig struct {
	// MaxBatch bounds the writes per transaction (DefaultMaxBatch).
	MaxBatch int
	// MaxWait bounds how long the committer, having taken the writes that
	// were queued, waits for more before it commits (DefaultMaxWait). It
	// waits only for the writers it expects back — as many as were in the
	// last batch or queued behind it — and stops as soon as they are in;
	// the first write after a pause longer than MaxWait is committed at
	// once. A negative value never waits.
	MaxWait time.Duration
	// QueueWrites bounds the writes waiting to be taken (DefaultQueueWrites).
	QueueWrites int
	// Registerer, when set, receives the writer's metrics, labelled with
	// the party and Name.
	Registerer prometheus.Registerer
	// Name tells the writers of one party apart in metrics ("" is "main").
	Name string
	// Committers is the number of batches in flight at once, each in its
	// own transaction (default 1). Only PostgreSQL can use more than one
	// (SQLite has one writer): it then overlaps the network round trips of
	// several batches and its group commit shares their WAL flushes. With
	// more than one, batches run concurrently: writes of different batches
	// that lock the same rows in different orders can deadlock, and the
	// write PostgreSQL picks as victim fails with its error (40P01), so
	// use it where writes touch disjoint rows or callers retry.
	Committers int
	// BatchTimeout bounds one batch from BEGIN to COMMIT
	// (DefaultBatchTimeout); a batch that overruns fails as a whole.
	BatchTimeout time.Duration
}

// Writer commits writes in batches: one goroutine takes the queued writes,
// runs each in its own savepoint of one transaction, commits, and then
// answers every caller of the batch. Under load one commit (one fsync)
// serves hundreds of writes.
type Writer struct {
	db  *DB
	cfg WriterConfig

	mu     sync.RWMutex // held shared while enqueuing, exclusively by Close
	closed bool
	queue  chan *writeReq
	done   chan struct{}

	collecting sync.Mutex   // held by the committer collecting a batch
	active     atomic.Int64 // Write calls in progress
	reqs       sync.Pool    // of *writeReq: a write allocates no request
	metrics    *writerMetrics
	stats      struct{ batches, writes, failed atomic.Int64 }
}

// WriterStats counts a Writer's work since it started.
type WriterStats struct {
	Batches       int64 // transactions run
	Writes        int64 // writes taken into batches
	FailedBatches int64 // transactions that failed to begin or commit
	Queued        int   // writes waiting to be taken now
}

// Stats reports counters of the writer's work.
func (w *Writer) Stats() WriterStats {
	return WriterStats{
		Batches:       w.stats.batches.Load(),
		Writes:        w.stats.writes.Load(),
		FailedBatches: w.stats.failed.Load(),
		Queued:        len(w.queue),
	}
}

// Request states: a caller whose ctx ends while its write is queued marks it
// abandoned; the committer marks it taken before running it. Whoever moves
// it out of queued decides its fate.
const (
	reqQueued int32 = iota
	reqTaken
	reqAbandoned
)

type writeReq struct {
	ctx   context.Context
	fn    func(*sql.Tx) error
	state atomic.Int32
	err   error
	panic any
	done  chan struct{} // buffered(1): the committer never blocks on it
	enq   time.Time
}

// NewWriter starts a Writer on db. Close it before closing db.
func NewWriter(db *DB, cfg WriterConfig) *Writer {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	cfg.MaxBatch = min(cfg.MaxBatch, MaxBatchWrites)
	if cfg.MaxWait == 0 {
		cfg.MaxWait = DefaultMaxWait
	}
	if cfg.QueueWrites <= 0 {
		cfg.QueueWrites = max(DefaultQueueWrites, cfg.MaxBatch)
	}
	cfg.QueueWrites = min(cfg.QueueWrites, MaxQueueWrites)
	if cfg.Name == "" {
		cfg.Name = "main"
	}
	if cfg.Committers <= 0 || db.engine == SQLite {
		cfg.Committers = 1
	}
	cfg.Committers = min(cfg.Committers, MaxCommitters)
	if cfg.BatchTimeout <= 0 {
		cfg.BatchTimeout = DefaultBatchTimeout
	}
	w := &Writer{
		db:      db,
		cfg:     cfg,
		queue:   make(chan *writeReq, cfg.QueueWrites),
		done:    make(chan struct{}),
		metrics: newWriterMetrics(cfg.Registerer, db.party, cfg.Name),
	}
	w.reqs.New = func() any { return &writeReq{done: make(chan struct{}, 1)} }
	var wg sync.WaitGroup
	for range cfg.Committers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Profiles tell the writers apart by this label.
			name := cfg.Name
			if name == "" {
				name = "main"
			}
			pprof.Do(context.Background(), pprof.Labels("writer", db.party+"/"+name), func(context.Context) { w.run() })
		}()
	}
	go func() { wg.Wait(); close(w.done) }()
	return w
}

const (
	sqlSavepoint  = "SAVEPOINT w"
	sqlRelease    = "RELEASE SAVEPOINT w"
	sqlRollbackTo = "ROLLBACK TO SAVEPOINT w"
	// sqlRenew ends one write's savepoint and opens the next one's in one
	// round trip (PostgreSQL runs a multi-statement text without arguments
	// through the simple protocol).
	sqlRenew = sqlRelease + "; " + sqlSavepoint
)

// savepoints runs the savepoint protocol of one batch. One savepoint "w"
// is open while a write runs: on success it is released and a new one
// opened for the next write; on failure the transaction is rolled back to
// it and it stays open, unchanged, for the next write. COMMIT releases the
// last one.
type savepoints struct {
	ctx context.Context
	tx  *sql.Tx
	// oneTrip: send RELEASE and SAVEPOINT as one text (PostgreSQL: one
	// round trip). On SQLite two cached statements are cheaper than
	// parsing the script each time.
	oneTrip bool
}

func (w *Writer) savepoints(ctx context.Context, tx *sql.Tx) savepoints {
	if w.db.engine == SQLite {
		// The SQLite driver starts a goroutine per statement run with a
		// cancellable ctx; savepoint statements never wait, and the
		// batch's deadline still ends the transaction (database/sql
		// rolls it back).
		ctx = context.Background()
	}
	return savepoints{ctx: ctx, tx: tx, oneTrip: w.db.engine == Postgres}
}

func (sp savepoints) exec(query string) error {
	_, err := sp.tx.ExecContext(sp.ctx, query)
	return err
}

func (sp savepoints) open() error {
	if err := sp.exec(sqlSavepoint); err != nil {
		return fmt.Errorf("savepoint: %w", err)
	}
	return nil
}

func (sp savepoints) renew() error {
	var err error
	if sp.oneTrip {
		err = sp.exec(sqlRenew)
	} else if err = sp.exec(sqlRelease); err == nil {
		err = sp.exec(sqlSavepoint)
	}
	if err != nil {
		return fmt.Errorf("renew savepoint: %w", err)
	}
	return nil
}

func (sp savepoints) rollbackTo() error {
	if err := sp.exec(sqlRollbackTo); err != nil {
		return fmt.Errorf("rollback to savepoint: %w", err)
	}
	return nil
}

// Write runs fn inside the transaction of a batch and returns once that
// transaction has committed (durable: fsync on SQLite with synchronous=FULL,
// PostgreSQL's commit otherwise).
//
// fn runs in its own savepoint: when it returns an error its changes are
// rolled back, the other writes of the batch still commit, and Write returns
// fn's error. When the commit fails, every write of the batch fails with it.
// A panic in fn is re-raised in the caller of Write, after rollback.
//
// ctx bounds the wait in the queue: if ctx ends before the committer has
// taken the write, fn never runs and Write returns ctx's error. Once taken,
// the write runs to its true outcome and Write reports that outcome even if
// ctx ends meanwhile (a caller that gave up could not tell whether its
// write committed).
//
// fn must only use tx, must not keep it, must be quick (it holds up the
// batch), and must not call Write or DB.Tx (they would wait for this batch).
// Its statements may use the caller's ctx: if it ends mid-statement, that
// statement fails and only this write is rolled back (on PostgreSQL by a
// cancel request, which in rare races may hit the next write's statement
// instead). DB.WriteContext gives the cheapest ctx that is still safe on
// each engine: without cancellation on SQLite (the driver watches a
// cancellable ctx with a goroutine per statement), the caller's on
// PostgreSQL (BatchTimeout does not interrupt a statement already running).
func (w *Writer) Write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	w.active.Add(1)
	defer w.active.Add(-1)
	r := w.reqs.Get().(*writeReq)
	r.ctx, r.fn, r.err, r.panic = ctx, fn, nil, nil
	r.state.Store(reqQueued)
	if w.metrics != nil {
		r.enq = time.Now()
	}

	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		w.release(r)
		return ErrWriterClosed
	}
	select {
	case w.queue <- r:
		w.mu.RUnlock()
	case <-ctx.Done():
		w.mu.RUnlock()
		w.release(r)
		return ctx.Err()
	}

	select {
	case <-r.done:
	case <-ctx.Done():
		if r.state.CompareAndSwap(reqQueued, reqAbandoned) {
			// The committer will skip it and drop it; it still holds a
			// pointer, so r does not go back to the pool.
			return ctx.Err()
		}
		<-r.done // taken: wait for the true outcome
	}
	err, p := r.err, r.panic
	w.release(r)
	if p != nil {
		panic(p)
	}
	return err
}

func (w *Writer) release(r *writeReq) {
	r.ctx, r.fn, r.err, r.panic = nil, nil, nil, nil
	w.reqs.Put(r)
}

// Close stops taking new writes, commits those already queued, and returns
// when the committer has finished. Writes after Close return ErrWriterClosed.
func (w *Writer) Close() error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.queue)
	}
	w.mu.Unlock()
	<-w.done
	return nil
}

// run is the committer. It streams: a batch's transaction begins with its
// first write, and each write runs as soon as it is taken, so the SQL of a
// batch overlaps with its callers coming back from the previous commit
// instead of waiting for all of them first.
func (w *Writer) run() {
	batch := make([]*writeReq, 0, w.cfg.MaxBatch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	expect := 1 // writers expected in the next batch
	for {
		first, ok := w.takeFirst(&expect)
		if !ok {
			return
		}
		var err error
		start := time.Now()
		if w.cfg.Committers > 1 {
			// Several committers: one collects (holding collecting) while
			// the others run their batches, whose statements overlap.
			batch = w.collect(append(batch[:0], first), min(expect, w.cfg.MaxBatch), timer)
			w.collecting.Unlock()
			err = w.runBatch(batch)
		} else {
			batch, err = w.stream(append(batch[:0], first), min(expect, w.cfg.MaxBatch), timer)
		}
		w.finish(batch, start, err)
		// The writers of this batch and those that queued meanwhile are
		// the population to expect next: callers answered now come back
		// within microseconds, and committing without them would split the
		// population into two alternating half batches, doubling fsyncs.
		expect = len(batch) + len(w.queue)
		if w.cfg.Committers > 1 {
			// The other committers' batches come back too: share the
			// writers in flight among the committers.
			expect = max(1, int(w.active.Load())/w.cfg.Committers)
		}
		clear(batch) // drop references for the GC
	}
}

// takeFirst blocks for the first write of a batch and claims it. If the
// writer was idle longer than the wait window, the next write is committed
// at once (expect = 1). It returns false once the queue is closed and empty.
// With several committers it returns holding collecting (see collect): one
// committer gathers a batch while the others run theirs.
func (w *Writer) takeFirst(expect *int) (*writeReq, bool) {
	several := w.cfg.Committers > 1
	for {
		if several {
			w.collecting.Lock()
		}
		var (
			r  *writeReq
			ok bool
		)
		select {
		case r, ok = <-w.queue:
		default:
			t0 := time.Now()
			r, ok = <-w.queue
			if time.Since(t0) > w.cfg.MaxWait {
				*expect = 1
			}
		}
		if ok && w.claim(r) {
			return r, true
		}
		if several {
			w.collecting.Unlock()
		}
		if !ok {
			return nil, false
		}
	}
}

// collect (several committers) gathers a batch without running it.
func (w *Writer) collect(batch []*writeReq, expect int, t *time.Timer) []*writeReq {
	batch, _ = w.gather(batch, expect, t, nil)
	return batch
}

// gather takes writes into batch — without waiting while more are queued,
// and waiting at most MaxWait in all while fewer than expect are in — and
// passes each to run (when not nil) as it is taken. It stops at the first
// error of run, which is the batch's.
func (w *Writer) gather(batch []*writeReq, expect int, t *time.Timer, run func(*writeReq) error) ([]*writeReq, error) {
	budget := w.cfg.MaxWait
	for len(batch) < w.cfg.MaxBatch {
		var wait time.Duration
		if len(batch) < expect && budget > 0 {
			wait = budget
		}
		t0 := time.Now()
		r, closed := w.take(wait, t)
		if wait > 0 {
			budget -= time.Since(t0)
		}
		if r == nil || closed {
			break
		}
		if !w.claim(r) {
			continue
		}
		batch = append(batch, r)
		if run != nil {
			if err := run(r); err != nil {
				return batch, err
			}
		}
	}
	return batch, nil
}

// take returns the next queued write, waiting up to wait for one
// (wait <= 0: only what is queued). closed reports a closed, drained queue.
func (w *Writer) take(wait time.Duration, t *time.Timer) (r *writeReq, closed bool) {
	select {
	case r, ok := <-w.queue:
		return r, !ok
	default:
	}
	if wait <= 0 {
		return nil, false
	}
	t.Reset(wait)
	defer t.Stop()
	select {
	case r, ok := <-w.queue:
		return r, !ok
	case <-t.C:
		return nil, false
	}
}

// claim takes a write out of the queue for running: from here on its caller
// waits for the outcome. A write whose caller gave up is dropped; one whose
// ctx ended before this point is answered with ctx's error without running,
// even if its caller has not noticed yet.
func (w *Writer) claim(r *writeReq) bool {
	if !r.state.CompareAndSwap(reqQueued, reqTaken) {
		return false // abandoned by its caller, which no longer waits
	}
	if err := r.ctx.Err(); err != nil {
		r.err = err
		r.done <- struct{}{}
		return false
	}
	return true
}

// stream runs one batch: it begins the transaction, runs the claimed first
// write, then runs writes as gather takes them, and commits. The returned
// error is the batch's (begin/commit/broken savepoint); each write's own
// error is in r.err.
func (w *Writer) stream(batch []*writeReq, expect int, t *time.Timer) ([]*writeReq, error) {
	bt, err := w.begin()
	if err != nil {
		return batch, err
	}
	if err := bt.run(batch[0]); err != nil {
		return batch, err
	}
	batch, err = w.gather(batch, expect, t, bt.run)
	if err != nil {
		return batch, err
	}
	return batch, bt.commit()
}

// finish records a batch's outcome and answers its callers.
func (w *Writer) finish(batch []*writeReq, start time.Time, err error) {
	for _, r := range batch {
		if err != nil && r.err == nil && r.panic == nil {
			r.err = err
		}
	}
	w.stats.batches.Add(1)
	w.stats.writes.Add(int64(len(batch)))
	if err != nil {
		w.stats.failed.Add(1)
	}
	if m := w.metrics; m != nil {
		m.observe(batch, start, err)
	}
	for _, r := range batch {
		r.done <- struct{}{}
	}
}

// runBatch runs writes already claimed as one batch (tests and the
// committer benchmark).
func (w *Writer) runBatch(batch []*writeReq) error {
	bt, err := w.begin()
	if err != nil {
		return err
	}
	for _, r := range batch {
		if err := bt.run(r); err != nil {
			return err
		}
	}
	return bt.commit()
}

// batchTx is the transaction of one batch, with its savepoint protocol
// (see savepoints): the savepoint of a write that succeeded is renewed only
// when another write follows, so the last one is released by COMMIT.
type batchTx struct {
	w      *Writer
	tx     *sql.Tx
	sp     savepoints
	cancel context.CancelFunc
	dirty  bool // the open savepoint holds a write that succeeded
}

func (w *Writer) begin() (*batchTx, error) {
	// The batch is not any one caller's: its own deadline bounds it, so a
	// stuck database fails the batch instead of hanging every caller.
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.BatchTimeout)
	var (
		tx  *sql.Tx
		err error
	)
	for attempt := 1; ; attempt++ {
		tx, err = w.db.write.BeginTx(ctx, nil)
		if err == nil || !isTransient(err) || attempt >= DefaultBeginAttempts {
			break
		}
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("store: %s writer: begin: %w", w.db.party, err)
	}
	bt := &batchTx{w: w, tx: tx, sp: w.savepoints(ctx, tx), cancel: cancel}
	if err := bt.sp.open(); err != nil {
		return nil, bt.fail(err)
	}
	return bt, nil
}

// run runs one write in its savepoint. The error returned is the batch's
// (its transaction is then rolled back); the write's own is in r.err.
func (bt *batchTx) run(r *writeReq) error {
	if bt.dirty {
		if err := bt.sp.renew(); err != nil {
			return bt.fail(err)
		}
		bt.dirty = false
	}
	r.err, r.panic = callFn(r.fn, bt.tx)
	if r.err == nil && r.panic == nil {
		bt.dirty = true
		return nil
	}
	if r.err == nil {
		r.err = errors.New("store: write panicked")
	}
	if err := bt.sp.rollbackTo(); err != nil {
		return bt.fail(err)
	}
	return nil
}

func (bt *batchTx) commit() error {
	defer bt.cancel()
	if err := bt.tx.Commit(); err != nil {
		return fmt.Errorf("store: %s writer: commit: %w", bt.w.db.party, err)
	}
	return nil
}

func (bt *batchTx) fail(err error) error {
	_ = bt.tx.Rollback()
	bt.cancel()
	return fmt.Errorf("store: %s writer: %w", bt.w.db.party, err)
}

func callFn(fn func(*sql.Tx) error, tx *sql.Tx) (err error, p any) {
	defer func() {
		if v := recover(); v != nil {
			p = v
		}
	}()
	return fn(tx), nil
}

type writerMetrics struct {
	batch  prometheus.Observer
	commit prometheus.Observer
	wait   prometheus.Observer
	failed prometheus.Counter
}

func newWriterMetrics(reg prometheus.Registerer, party, name string) *writerMetrics {
	if reg == nil {
		return nil
	}
	labels := prometheus.Labels{"party": party, "writer": name}
	batch := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "mipay_store_writer_batch_writes", Help: "Writes per group commit.",
		ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(1, 2, 11),
	})
	commit := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "mipay_store_writer_batch_seconds", Help: "Time to run and commit one batch.",
		ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(0.0001, 2, 15),
	})
	wait := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "mipay_store_writer_write_seconds", Help: "Time from Write to its batch committed.",
		ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(0.0001, 2, 15),
	})
	failed := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "mipay_store_writer_failed_batches_total", Help: "Batches whose transaction failed.",
		ConstLabels: labels,
	})
	return &writerMetrics{
		batch:  registered(reg, batch),
		commit: registered(reg, commit),
		wait:   registered(reg, wait),
		failed: registered(reg, failed),
	}
}

func (m *writerMetrics) observe(batch []*writeReq, start time.Time, err error) {
	now := time.Now()
	m.batch.Observe(float64(len(batch)))
	m.commit.Observe(now.Sub(start).Seconds())
	for _, r := range batch {
		m.wait.Observe(now.Sub(r.enq).Seconds())
	}
	if err != nil {
		m.failed.Inc()
	}
}

// registered registers c, or returns the collector already registered under
// the same name and labels (a writer reopened in the same process). A
// conflicting descriptor leaves the metric unexported rather than fail the
// writer over metrics.
func registered[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	c, _ = promreg.Register(reg, c)
	return c
}
