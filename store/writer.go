package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/prometheus/client_golang/prometheus"
)

// Writer defaults.
const (
	// DefaultMaxBatch bounds the writes committed in one transaction.
	DefaultMaxBatch = 512
	// DefaultMaxWait bounds how long a batch that has begun waits for more
	// writes while writers are arriving. An idle writer commits a lone
	// write at once; see WriterConfig.MaxWait.
	DefaultMaxWait = 200 * time.Microsecond
	// DefaultQueueWrites bounds the writes waiting to be taken; Write blocks
	// (until its ctx ends) when the queue is full.
	DefaultQueueWrites = 4 * DefaultMaxBatch
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
	// were queued, keeps collecting more before it commits
	// (DefaultMaxWait). It waits only while writes keep arriving, never for
	// the first write after a pause; a negative value never waits.
	MaxWait time.Duration
	// QueueWrites bounds the writes waiting to be taken (DefaultQueueWrites).
	QueueWrites int
	// Registerer, when set, receives the writer's metrics, labelled with
	// the party and Name.
	Registerer prometheus.Registerer
	// Name tells the writers of one party apart in metrics ("" is "main").
	Name string
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

	metrics *writerMetrics
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

var reqPool = sync.Pool{New: func() any { return &writeReq{done: make(chan struct{}, 1)} }}

// NewWriter starts a Writer on db. Close it before closing db.
func NewWriter(db *DB, cfg WriterConfig) *Writer {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = DefaultMaxWait
	}
	if cfg.QueueWrites <= 0 {
		cfg.QueueWrites = max(DefaultQueueWrites, cfg.MaxBatch)
	}
	if cfg.Name == "" {
		cfg.Name = "main"
	}
	w := &Writer{
		db:      db,
		cfg:     cfg,
		queue:   make(chan *writeReq, cfg.QueueWrites),
		done:    make(chan struct{}),
		metrics: newWriterMetrics(cfg.Registerer, db.party, cfg.Name),
	}
	go w.run()
	return w
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
// write committed). fn gets tx only; use ctx captured by the closure for
// cancellation of its statements if needed.
//
// fn must only use tx, must not keep it, must be quick (it holds up the
// batch), and must not call Write or DB.Tx (they would wait for this batch).
func (w *Writer) Write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := reqPool.Get().(*writeReq)
	r.ctx, r.fn, r.err, r.panic = ctx, fn, nil, nil
	r.state.Store(reqQueued)
	if w.metrics != nil {
		r.enq = time.Now()
	}

	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		r.release()
		return ErrWriterClosed
	}
	select {
	case w.queue <- r:
		w.mu.RUnlock()
	case <-ctx.Done():
		w.mu.RUnlock()
		r.release()
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
	r.release()
	if p != nil {
		panic(p)
	}
	return err
}

func (r *writeReq) release() {
	r.ctx, r.fn, r.err, r.panic = nil, nil, nil, nil
	reqPool.Put(r)
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

// run is the committer.
func (w *Writer) run() {
	defer close(w.done)
	batch := make([]*writeReq, 0, w.cfg.MaxBatch)
	for {
		r, ok := <-w.queue
		if !ok {
			return
		}
		batch = w.collect(append(batch[:0], r))
		if len(batch) > 0 {
			w.commit(batch)
		}
		clear(batch) // drop references for the GC
	}
}

// collect takes what is queued, then — if writes are still arriving — waits
// up to MaxWait for more. It drops writes whose callers gave up.
func (w *Writer) collect(batch []*writeReq) []*writeReq {
	// drain takes whatever is queued right now.
	drain := func() bool {
		for len(batch) < w.cfg.MaxBatch {
			select {
			case r, ok := <-w.queue:
				if !ok {
					return false
				}
				batch = append(batch, r)
			default:
				return true
			}
		}
		return true
	}
	open := drain()
	if open && w.cfg.MaxWait > 0 && len(batch) > 1 && len(batch) < w.cfg.MaxBatch {
		// More than one write was waiting: callers are concurrent, and
		// those answered by the last commit are coming back. Wait a short
		// while for them; stop early when the batch fills.
		t := time.NewTimer(w.cfg.MaxWait)
	wait:
		for len(batch) < w.cfg.MaxBatch {
			select {
			case r, ok := <-w.queue:
				if !ok {
					break wait
				}
				batch = append(batch, r)
			case <-t.C:
				break wait
			}
		}
		t.Stop()
	}
	// Take the writes: from here on their callers wait for the outcome.
	n := 0
	for _, r := range batch {
		if r.state.CompareAndSwap(reqQueued, reqTaken) {
			batch[n] = r
			n++
		}
	}
	clear(batch[n:])
	return batch[:n]
}

// commit runs one batch and answers its callers.
func (w *Writer) commit(batch []*writeReq) {
	start := time.Now()
	err := w.runBatch(batch)
	for _, r := range batch {
		if err != nil && r.err == nil && r.panic == nil {
			r.err = err
		}
	}
	if m := w.metrics; m != nil {
		m.observe(batch, start, err)
	}
	for _, r := range batch {
		r.done <- struct{}{}
	}
}

// runBatch executes the batch in one transaction; the returned error is the
// batch's (begin/commit/broken savepoint); each write's own error is in r.err.
func (w *Writer) runBatch(batch []*writeReq) error {
	ctx := context.Background() // the batch is not any one caller's
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
		return fmt.Errorf("store: %s writer: begin: %w", w.db.party, err)
	}
	for _, r := range batch {
		if err := w.runOne(ctx, tx, r); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("store: %s writer: %w", w.db.party, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: %s writer: commit: %w", w.db.party, err)
	}
	return nil
}

// runOne runs one write in its savepoint. It returns an error only when the
// transaction itself is broken.
func (w *Writer) runOne(ctx context.Context, tx *sql.Tx, r *writeReq) error {
	if _, err := tx.ExecContext(ctx, "SAVEPOINT w"); err != nil {
		return fmt.Errorf("savepoint: %w", err)
	}
	r.err, r.panic = callFn(r.fn, tx)
	if r.err == nil && r.panic == nil {
		if _, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT w"); err != nil {
			return fmt.Errorf("release savepoint: %w", err)
		}
		return nil
	}
	if r.panic != nil && r.err == nil {
		r.err = errors.New("store: write panicked")
	}
	if _, err := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT w"); err != nil {
		return fmt.Errorf("rollback to savepoint: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT w"); err != nil {
		return fmt.Errorf("release savepoint: %w", err)
	}
	return nil
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
		batch:  register(reg, batch).(prometheus.Histogram),
		commit: register(reg, commit).(prometheus.Histogram),
		wait:   register(reg, wait).(prometheus.Histogram),
		failed: register(reg, failed).(prometheus.Counter),
	}
}

// register registers c, or returns the collector already registered under
// the same name and labels (a writer reopened in the same process).
func register(reg prometheus.Registerer, c prometheus.Collector) prometheus.Collector {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			return are.ExistingCollector
		}
		// A conflicting descriptor: keep the metric unregistered rather
		// than fail the writer over metrics.
	}
	return c
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
