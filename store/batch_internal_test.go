package store

import (
	"context"
	"database/sql"
	"syscall"
	"testing"
	"testing/fstest"
)

// BenchmarkRunBatch measures the committer alone: one batch of 64
// single-row inserts per iteration (savepoints, inserts, durable commit),
// without the goroutine hand-offs. ns/op is per batch.
func BenchmarkRunBatch(b *testing.B) {
	b.Run("background-ctx", func(b *testing.B) { benchRunBatch(b, context.Background()) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.Run("request-ctx", func(b *testing.B) { benchRunBatch(b, ctx) })
}

func benchRunBatch(b *testing.B, ctx context.Context) {
	mig := fstest.MapFS{"0001_t.sql": {Data: []byte("CREATE TABLE items (id BIGINT PRIMARY KEY, val TEXT NOT NULL);")}}
	db, err := Open(context.Background(), Config{Dir: b.TempDir()}, "bench", mig)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	w := NewWriter(db, WriterConfig{})
	defer w.Close()
	const n = 64
	var next int64
	batch := make([]*writeReq, n)
	for i := range batch {
		batch[i] = &writeReq{fn: func(tx *sql.Tx) error {
			next++
			_, err := tx.ExecContext(ctx, "INSERT INTO items (id, val) VALUES ($1, $2)", next, "benchmark value")
			return err
		}}
	}
	b.ReportAllocs()
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	for b.Loop() {
		if err := w.runBatch(batch); err != nil {
			b.Fatal(err)
		}
	}
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/write")
	b.ReportMetric(float64(cpu)/float64(b.N*n), "cpu-ns/write")
}
