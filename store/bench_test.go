package store_test

import (
	"context"
	"database/sql"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/store"
	"github.com/mipay-oss/mipay/store/storetest"
)

// benchWriters is the concurrency the target is stated for.
const benchWriters = 64

// BenchmarkWriterWait compares wait windows (tuning aid).
func BenchmarkWriterWait(b *testing.B) {
	for _, d := range []time.Duration{-1, 100 * time.Microsecond, 300 * time.Microsecond, time.Millisecond, 3 * time.Millisecond} {
		b.Run(d.String(), func(b *testing.B) {
			benchWriter(b, store.Config{Dir: b.TempDir()}, store.WriterConfig{MaxWait: d})
		})
	}
}

// BenchmarkWriter measures acknowledged durable single-row inserts through
// the group-commit Writer with 64 concurrent writers. b.N is the total
// number of writes; it reports writes/s and the p99 wait of one Write.
func BenchmarkWriter(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) {
		benchWriter(b, store.Config{Dir: b.TempDir()}, store.WriterConfig{})
	})
	b.Run("postgres", func(b *testing.B) {
		base := storetest.Postgres()
		if base == "" {
			b.Skip(storetest.EnvPostgres + " not set")
		}
		benchWriter(b, store.Config{URL: storetest.CreateDatabase(b, base)}, store.WriterConfig{})
	})
	b.Run("postgres-4-committers", func(b *testing.B) {
		base := storetest.Postgres()
		if base == "" {
			b.Skip(storetest.EnvPostgres + " not set")
		}
		benchWriter(b, store.Config{URL: storetest.CreateDatabase(b, base)}, store.WriterConfig{Committers: 4})
	})
}

func benchWriter(b *testing.B, cfg store.Config, wcfg store.WriterConfig) {
	db := mustOpen(b, cfg)
	w := store.NewWriter(db, wcfg)
	defer w.Close()
	ctx := context.Background()
	var next atomic.Int64
	base := warmUp(b, w, &next)
	waits := make([][]time.Duration, benchWriters)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	var wg sync.WaitGroup
	for g := range benchWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, b.N/benchWriters+1)
			for {
				id := next.Add(1)
				if id > int64(b.N) {
					break
				}
				t0 := time.Now()
				err := w.Write(ctx, func(tx *sql.Tx) error {
					_, err := tx.ExecContext(ctx, "INSERT INTO items (id, val) VALUES ($1, $2)", id, "benchmark value")
					return err
				})
				lat = append(lat, time.Since(t0))
				if err != nil {
					b.Error(err)
					return
				}
			}
			waits[g] = lat
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	b.StopTimer()
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	all := slices.Concat(waits...)
	slices.Sort(all)
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
		b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "writes/s")
	st := w.Stats()
	if batches := st.Batches - base.Batches; batches > 0 {
		b.ReportMetric(float64(st.Writes-base.Writes)/float64(batches), "writes/batch")
		b.ReportMetric(float64(elapsed.Microseconds())/float64(batches), "µs/batch")
	}
}

// benchWarmUpWrites is how many writes run before the clock starts: enough
// for SQLite's WAL to pass its checkpoint threshold and be restarted, so the
// measured commits overwrite a WAL file of its working size as in a running
// system. A fresh database's first commits append to a growing file, and on
// ext4 an fsync that extends a file also flushes metadata (2-3x the cost).
const benchWarmUpWrites = 50_000

// warmUp runs benchWarmUpWrites inserts (negative ids, apart from those
// measured) and returns the writer's counters after them.
func warmUp(b *testing.B, w *store.Writer, next *atomic.Int64) store.WriterStats {
	b.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	for range benchWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				id := next.Add(1)
				if id > benchWarmUpWrites {
					return
				}
				err := w.Write(ctx, func(tx *sql.Tx) error {
					_, err := tx.Exec("INSERT INTO items (id, val) VALUES ($1, $2)", -id, "warm-up value")
					return err
				})
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	next.Store(0)
	return w.Stats()
}

// cpuTime is the process's user+system CPU time: on a shared machine it
// tells CPU cost per write apart from waiting.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkTxInsert is the baseline the Writer is measured against: each of
// 64 concurrent writers commits its own transaction (one fsync per write on
// SQLite).
func BenchmarkTxInsert(b *testing.B) {
	db := mustOpen(b, store.Config{Dir: b.TempDir()})
	ctx := context.Background()
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(benchWriters / max(1, runtime.GOMAXPROCS(0)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := next.Add(1)
			err := db.Tx(ctx, func(tx *sql.Tx) error {
				_, err := tx.Exec("INSERT INTO items (id, val) VALUES ($1, $2)", id, "benchmark value")
				return err
			})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
}
