package store_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/store"
	"github.com/prometheus/client_golang/prometheus"
)

// blocker is a write that holds the committer inside its batch until
// released, so that the writes queued meanwhile form the next batch.
type blocker struct {
	entered, release chan struct{}
	done             chan error
}

func block(t *testing.T, w *store.Writer, id int64) *blocker {
	t.Helper()
	b := &blocker{entered: make(chan struct{}), release: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		b.done <- w.Write(context.Background(), func(tx *sql.Tx) error {
			close(b.entered)
			<-b.release
			return insertItem(id)(tx)
		})
	}()
	<-b.entered
	return b
}

func (b *blocker) finish(t *testing.T) {
	t.Helper()
	close(b.release)
	if err := <-b.done; err != nil {
		t.Fatalf("blocking write: %v", err)
	}
}

// waitQueued waits until n writes are queued behind the committer.
func waitQueued(t *testing.T, w *store.Writer, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for w.Stats().Queued < n {
		if time.Now().After(deadline) {
			t.Fatalf("queued = %d, want %d", w.Stats().Queued, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// goWrite starts a Write and returns where its result will arrive.
func goWrite(ctx context.Context, w *store.Writer, fn func(*sql.Tx) error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- w.Write(ctx, fn) }()
	return ch
}

func TestWriterConcurrent(t *testing.T) {
	t.Parallel()
	engines(t, func(t *testing.T, newCfg func(t *testing.T) store.Config) {
		db := mustOpen(t, newCfg(t))
		w := mustWriter(t, db, store.WriterConfig{MaxBatch: 16})
		const writers, each = 32, 50
		var failed atomic.Int64
		concurrently(writers, func(g int) {
			for i := range each {
				id := int64(g*each + i)
				if err := w.Write(context.Background(), insertItem(id)); err != nil {
					t.Errorf("write %d: %v", id, err)
					failed.Add(1)
				}
			}
		})
		if n := countItems(t, db); n != writers*each {
			t.Fatalf("items = %d, want %d", n, writers*each)
		}
		st := w.Stats()
		if st.Writes != writers*each || st.Batches >= st.Writes {
			t.Errorf("stats %+v: want %d writes in fewer batches", st, writers*each)
		}
		t.Logf("stats: %+v", st)
	})
}

func TestWriterFailingWriteIsolated(t *testing.T) {
	t.Parallel()
	engines(t, func(t *testing.T, newCfg func(t *testing.T) store.Config) {
		db := mustOpen(t, newCfg(t))
		w := mustWriter(t, db, store.WriterConfig{})
		ctx := context.Background()
		b := block(t, w, 1)
		boom := errors.New("boom")
		ok1 := goWrite(ctx, w, insertItem(2))
		waitQueued(t, w, 1)
		bad := goWrite(ctx, w, func(tx *sql.Tx) error {
			if err := insertItem(3)(tx); err != nil {
				return err
			}
			return boom // after a successful insert: it must be undone
		})
		waitQueued(t, w, 2)
		dup := goWrite(ctx, w, insertItem(2)) // fails in SQL: duplicate key
		waitQueued(t, w, 3)
		ok2 := goWrite(ctx, w, insertItem(4))
		waitQueued(t, w, 4)
		before := w.Stats().Batches
		b.finish(t)

		if err := <-ok1; err != nil {
			t.Errorf("write 2: %v", err)
		}
		if err := <-bad; !errors.Is(err, boom) {
			t.Errorf("failing write: err = %v, want boom", err)
		}
		if err := <-dup; !store.IsConflict(err) {
			t.Errorf("duplicate write: err = %v, want a conflict", err)
		}
		if err := <-ok2; err != nil {
			t.Errorf("write 4: %v", err)
		}
		// before was read while the blocker's batch ran; the four writes
		// queued meanwhile joined it (the committer streams).
		if got := w.Stats().Batches - before; got != 1 {
			t.Errorf("the blocker and the four writes took %d batches, want 1", got)
		}
		for id, want := range map[int64]bool{1: true, 2: true, 3: false, 4: true} {
			if got := hasItem(t, db, id); got != want {
				t.Errorf("item %d present = %v, want %v", id, got, want)
			}
		}
	})
}

func TestWriterPanic(t *testing.T) {
	t.Parallel()
	db := mustOpen(t, store.Config{Dir: t.TempDir()})
	w := mustWriter(t, db, store.WriterConfig{})
	ctx := context.Background()
	b := block(t, w, 1)
	pan := make(chan any, 1)
	go func() {
		defer func() { pan <- recover() }()
		_ = w.Write(ctx, func(tx *sql.Tx) error {
			_ = insertItem(2)(tx)
			panic("write exploded")
		})
	}()
	waitQueued(t, w, 1)
	ok := goWrite(ctx, w, insertItem(3))
	waitQueued(t, w, 2)
	b.finish(t)
	if p := <-pan; p != "write exploded" {
		t.Errorf("recovered %v, want the write's panic", p)
	}
	if err := <-ok; err != nil {
		t.Errorf("write after the panicking one: %v", err)
	}
	if hasItem(t, db, 2) || !hasItem(t, db, 3) {
		t.Error("panicking write committed, or its neighbour did not")
	}
}

func TestWriterContext(t *testing.T) {
	t.Parallel()
	engines(t, func(t *testing.T, newCfg func(t *testing.T) store.Config) {
		db := mustOpen(t, newCfg(t))
		w := mustWriter(t, db, store.WriterConfig{})

		t.Run("cancelled while queued: not run", func(t *testing.T) {
			b := block(t, w, 100)
			ctx, cancel := context.WithCancel(context.Background())
			var ran atomic.Bool
			res := goWrite(ctx, w, func(tx *sql.Tx) error {
				ran.Store(true)
				return insertItem(101)(tx)
			})
			waitQueued(t, w, 1)
			cancel()
			if err := <-res; !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
			b.finish(t)
			// The next write goes through the same committer: once it is
			// done, the abandoned write has been passed over.
			if err := w.Write(context.Background(), insertItem(102)); err != nil {
				t.Fatal(err)
			}
			if ran.Load() || hasItem(t, db, 101) {
				t.Fatal("a write cancelled while queued was executed")
			}
		})

		t.Run("cancelled after taken: true outcome", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			err := w.Write(ctx, func(tx *sql.Tx) error {
				cancel() // the caller gives up while its write runs
				return insertItem(110)(tx)
			})
			if err != nil {
				t.Fatalf("err = %v, want nil: the write committed", err)
			}
			if !hasItem(t, db, 110) {
				t.Fatal("write not committed")
			}
		})

		t.Run("already cancelled", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if err := w.Write(ctx, insertItem(120)); !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
		})

		t.Run("deadline while queue full", func(t *testing.T) {
			small := mustWriter(t, db, store.WriterConfig{QueueWrites: 1, MaxBatch: 1})
			b := block(t, small, 130)
			first := goWrite(context.Background(), small, insertItem(131))
			waitQueued(t, small, 1)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			if err := small.Write(ctx, insertItem(132)); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want DeadlineExceeded (queue full)", err)
			}
			b.finish(t)
			if err := <-first; err != nil {
				t.Fatal(err)
			}
		})
	})
}

func TestWriterCommitFailure(t *testing.T) {
	t.Parallel()
	engines(t, func(t *testing.T, newCfg func(t *testing.T) store.Config) {
		db := mustOpen(t, newCfg(t))
		w := mustWriter(t, db, store.WriterConfig{})
		ctx := context.Background()
		b := block(t, w, 1)
		good := goWrite(ctx, w, insertItem(2))
		waitQueued(t, w, 1)
		// The deferred foreign key is checked only at COMMIT: the statement
		// succeeds and the whole batch's commit fails.
		orphan := goWrite(ctx, w, func(tx *sql.Tx) error {
			_, err := tx.Exec("INSERT INTO children (id, item_id) VALUES ($1, $2)", 1, 999)
			return err
		})
		waitQueued(t, w, 2)
		// The two queued writes join the blocker's running batch (the
		// committer streams), so its commit fails for all three.
		close(b.release)
		for name, ch := range map[string]<-chan error{"blocker": b.done, "good": good, "orphan": orphan} {
			err := <-ch
			if err == nil || !strings.Contains(err.Error(), "commit") {
				t.Errorf("%s write: err = %v, want the commit's error", name, err)
			}
		}
		if hasItem(t, db, 1) || hasItem(t, db, 2) {
			t.Error("a write of the failed batch is present")
		}
		if st := w.Stats(); st.FailedBatches != 1 {
			t.Errorf("FailedBatches = %d, want 1", st.FailedBatches)
		}
		// The writer goes on.
		if err := w.Write(ctx, insertItem(3)); err != nil {
			t.Fatalf("write after failed commit: %v", err)
		}
		if !hasItem(t, db, 3) {
			t.Fatal("write after failed commit missing")
		}
	})
}

func TestWriterClose(t *testing.T) {
	t.Parallel()
	engines(t, func(t *testing.T, newCfg func(t *testing.T) store.Config) {
		db := mustOpen(t, newCfg(t))
		w := store.NewWriter(db, store.WriterConfig{})
		ctx := context.Background()
		b := block(t, w, 1)
		var results []<-chan error
		for i := range 10 {
			results = append(results, goWrite(ctx, w, insertItem(int64(10+i))))
		}
		waitQueued(t, w, 10)
		closed := make(chan error, 1)
		go func() { closed <- w.Close() }()
		// Close must not return while writes are queued.
		select {
		case err := <-closed:
			t.Fatalf("Close returned (%v) before the queue drained", err)
		case <-time.After(20 * time.Millisecond):
		}
		b.finish(t)
		if err := <-closed; err != nil {
			t.Fatal(err)
		}
		for i, ch := range results {
			if err := <-ch; err != nil {
				t.Errorf("queued write %d: %v", i, err)
			}
		}
		if n := countItems(t, db); n != 11 {
			t.Fatalf("items = %d, want 11", n)
		}
		if err := w.Write(ctx, insertItem(99)); !errors.Is(err, store.ErrWriterClosed) {
			t.Fatalf("Write after Close: %v, want ErrWriterClosed", err)
		}
		if err := w.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
}

// TestWriterIdleNoWait: a lone write of an idle writer is committed without
// waiting for the batch window.
func TestWriterIdleNoWait(t *testing.T) {
	t.Parallel()
	db := mustOpen(t, store.Config{Dir: t.TempDir()})
	w := mustWriter(t, db, store.WriterConfig{MaxWait: 5 * time.Second})
	for i := range 5 {
		start := time.Now()
		if err := w.Write(context.Background(), insertItem(int64(i))); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 2500*time.Millisecond {
			t.Fatalf("lone write %d took %v: it waited for the batch window", i, d)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestWriterMetrics(t *testing.T) {
	t.Parallel()
	db := mustOpen(t, store.Config{Dir: t.TempDir()})
	reg := prometheus.NewRegistry()
	w := mustWriter(t, db, store.WriterConfig{Registerer: reg})
	for i := range 3 {
		if err := w.Write(context.Background(), insertItem(int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, mf := range mfs {
		found[mf.GetName()] = true
		if mf.GetName() == "mipay_store_writer_batch_writes" {
			if c := mf.GetMetric()[0].GetHistogram().GetSampleCount(); c != 3 {
				t.Errorf("batch histogram count = %d, want 3", c)
			}
		}
	}
	for _, name := range []string{"mipay_store_writer_batch_writes", "mipay_store_writer_batch_seconds", "mipay_store_writer_write_seconds"} {
		if !found[name] {
			t.Errorf("metric %s not registered", name)
		}
	}
	// A second writer of the same party and name shares the metrics.
	w2 := mustWriter(t, db, store.WriterConfig{Registerer: reg})
	if err := w2.Write(context.Background(), insertItem(10)); err != nil {
		t.Fatal(err)
	}
}

func TestWriterBatchTimeout(t *testing.T) {
	t.Parallel()
	engines(t, func(t *testing.T, newCfg func(t *testing.T) store.Config) {
		db := mustOpen(t, newCfg(t))
		w := mustWriter(t, db, store.WriterConfig{BatchTimeout: 50 * time.Millisecond})
		ctx := context.Background()
		err := w.Write(ctx, func(tx *sql.Tx) error {
			time.Sleep(150 * time.Millisecond)
			return insertItem(1)(tx)
		})
		if err == nil {
			t.Fatal("a batch running past BatchTimeout committed")
		}
		if hasItem(t, db, 1) {
			t.Fatal("write of the timed-out batch is present")
		}
		if err := w.Write(ctx, insertItem(2)); err != nil {
			t.Fatalf("write after a timed-out batch: %v", err)
		}
	})
}

func TestWriterCommitters(t *testing.T) {
	t.Parallel()
	engines(t, func(t *testing.T, newCfg func(t *testing.T) store.Config) {
		db := mustOpen(t, newCfg(t))
		w := mustWriter(t, db, store.WriterConfig{Committers: 4})
		concurrently(16, func(g int) {
			for i := range 40 {
				if err := w.Write(context.Background(), insertItem(int64(g*40+i))); err != nil {
					t.Errorf("write: %v", err)
				}
			}
		})
		if n := countItems(t, db); n != 16*40 {
			t.Fatalf("items = %d, want %d", n, 16*40)
		}
	})
}

// TestWriterCallerCtxInsideWrite: a write function that (against the advice)
// runs its statements with its caller's ctx, which ends mid-statement, fails
// alone; the other writes of the batch commit.
func TestWriterCallerCtxInsideWrite(t *testing.T) {
	t.Parallel()
	engines(t, func(t *testing.T, newCfg func(t *testing.T) store.Config) {
		db := mustOpen(t, newCfg(t))
		w := mustWriter(t, db, store.WriterConfig{})
		slow := "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000000) SELECT COUNT(*) FROM c"
		if db.Engine() == store.Postgres {
			slow = "SELECT pg_sleep(5)"
		}
		b := block(t, w, 1)
		ok1 := goWrite(context.Background(), w, insertItem(2))
		waitQueued(t, w, 1)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		started := make(chan struct{})
		cancelled := goWrite(ctx, w, func(tx *sql.Tx) error {
			if err := insertItem(3)(tx); err != nil {
				return err
			}
			close(started)
			_, err := tx.ExecContext(ctx, slow)
			return err
		})
		waitQueued(t, w, 2)
		ok2 := goWrite(context.Background(), w, insertItem(4))
		waitQueued(t, w, 3)
		go func() {
			<-started
			time.Sleep(50 * time.Millisecond)
			cancel()
		}()
		b.finish(t)
		if err := <-cancelled; err == nil {
			t.Error("the cancelled write succeeded")
		}
		for name, ch := range map[string]<-chan error{"write 2": ok1, "write 4": ok2} {
			if err := <-ch; err != nil {
				t.Errorf("%s, in the batch of the cancelled one: %v", name, err)
			}
		}
		for id, want := range map[int64]bool{1: true, 2: true, 3: false, 4: true} {
			if got := hasItem(t, db, id); got != want {
				t.Errorf("item %d present = %v, want %v", id, got, want)
			}
		}
	})
}

// TestWriterOutcomesMatchStore hammers a writer with writes that succeed,
// fail, have short deadlines or are cancelled, while it is closed midway.
// Whatever happens, Write's answer must be the truth: nil exactly for the
// writes that are in the store.
func TestWriterOutcomesMatchStore(t *testing.T) {
	t.Parallel()
	engines(t, func(t *testing.T, newCfg func(t *testing.T) store.Config) {
		db := mustOpen(t, newCfg(t))
		w := store.NewWriter(db, store.WriterConfig{MaxBatch: 8, QueueWrites: 16})
		const writers, each = 16, 60
		results := make([][]error, writers)
		var sent atomic.Int64
		closed := make(chan struct{})
		go func() {
			for sent.Load() < writers*each/2 {
				time.Sleep(time.Millisecond)
			}
			w.Close()
			close(closed)
		}()
		boom := errors.New("boom")
		concurrently(writers, func(g int) {
			results[g] = make([]error, each)
			for i := range each {
				id := int64(g*each + i)
				ctx, cancel := context.Background(), context.CancelFunc(func() {})
				switch i % 4 {
				case 1:
					ctx, cancel = context.WithTimeout(context.Background(), time.Duration(i%7)*100*time.Microsecond)
				case 2:
					ctx, cancel = context.WithCancel(context.Background())
					go func() { time.Sleep(time.Duration(i%5) * 50 * time.Microsecond); cancel() }()
				}
				results[g][i] = w.Write(ctx, func(tx *sql.Tx) error {
					if err := insertItem(id)(tx); err != nil {
						return err
					}
					if i%9 == 0 {
						return boom
					}
					return nil
				})
				cancel()
				sent.Add(1)
			}
		})
		<-closed
		var ok, failed, closedErrs int
		for g := range writers {
			for i, err := range results[g] {
				id := int64(g*each + i)
				present := hasItem(t, db, id)
				switch {
				case err == nil && !present:
					t.Errorf("write %d: acknowledged but absent", id)
				case err != nil && present:
					t.Errorf("write %d: failed (%v) but present", id, err)
				case err == nil:
					ok++
				case errors.Is(err, store.ErrWriterClosed):
					closedErrs++
				default:
					failed++
				}
			}
		}
		t.Logf("%d committed, %d failed or cancelled, %d after Close", ok, failed, closedErrs)
		if ok == 0 || closedErrs == 0 {
			t.Errorf("the mix did not happen: %d committed, %d after Close", ok, closedErrs)
		}
	})
}
