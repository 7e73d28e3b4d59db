package httpx

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
)

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

// BenchmarkWrapper is the cost the server wrapper (metrics, recovery,
// logger in context) adds to each request, served without a network.
func BenchmarkWrapper(b *testing.B) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/ping", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	for _, bc := range []struct {
		name string
		h    http.Handler
	}{{"bare mux", mux}, {"wrapped", Handler("bench", mux, nil, nil)}} {
		b.Run(bc.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/v1/ping", nil)
			b.ReportAllocs()
			defer reportCPU(b)()
			for b.Loop() {
				bc.h.ServeHTTP(httptest.NewRecorder(), req)
			}
		})
	}
}

func BenchmarkDecodeJSON(b *testing.B) {
	body := `{"pan":"6225881234567898","expiry":"2612","amount":1000,"nested":{"flag":true}}`
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		var c card
		if err := DecodeJSON(httptest.NewRecorder(), r, &c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkClientDo is a party-to-party JSON call over loopback, 16
// concurrent callers per CPU sharing the pooled client.
func BenchmarkClientDo(b *testing.B) {
	base := MustServe(b, "bench", testMux(), nil)
	c := &Client{Base: base}
	b.ReportAllocs()
	b.SetParallelism(16)
	defer reportCPU(b)()
	b.RunParallel(func(pb *testing.PB) {
		var out echoResp
		for pb.Next() {
			if err := c.Do(context.Background(), http.MethodPost, "/v1/echo", echoReq{Name: "x"}, &out); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
