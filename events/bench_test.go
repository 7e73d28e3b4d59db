package events

import (
	"context"
	"syscall"
	"testing"
)

// BenchmarkPublish is one acknowledged publish to the embedded server.
func BenchmarkPublish(b *testing.B) {
	for _, sync := range []bool{false, true} {
		name := "periodic sync"
		if sync {
			name = "sync always"
		}
		b.Run(name, func(b *testing.B) {
			bus := MustOpen(b, Config{Dir: b.TempDir(), SyncAlways: sync, MaxBytes: 256 << 20})
			v := payload{N: 1, Text: "token 1234 state ACTIVE"}
			ctx := context.Background()
			b.Run("serial", func(b *testing.B) {
				b.ReportAllocs()
				defer reportCPU(b)()
				for b.Loop() {
					if err := bus.Publish(ctx, "bench.x", v); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("parallel", func(b *testing.B) {
				b.ReportAllocs()
				b.SetParallelism(16)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := bus.Publish(ctx, "bench.x", v); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		})
	}
}

// reportCPU reports process CPU time per op (user+system): on a shared
// machine it says more than wall-clock ns/op. Use as defer reportCPU(b)().
func reportCPU(b *testing.B) func() {
	start := cpuNanos(b)
	return func() { b.ReportMetric(float64(cpuNanos(b)-start)/float64(b.N), "cpu-ns/op") }
}

func cpuNanos(tb testing.TB) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
