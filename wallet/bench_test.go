package wallet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/store"
)

// BenchmarkStartBinding: a green binding through the wallet's HTTP API
// (session check, device and 8-card checks, reservation, tokenize at an
// in-memory TSP over loopback HTTP, completion). Each device takes 8 cards,
// so a new device is registered (outside the timer) every 8, and a new
// account every 20 devices.
func BenchmarkStartBinding(b *testing.B) {
	e := mustWallet(b)
	u := e.mustUser()
	body := scenario("green")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i > 0 && i%DefaultMaxCardsPerDevice == 0 {
			b.StopTimer()
			if i%(DefaultMaxCardsPerDevice*MaxDevicesPerAccount) == 0 {
				u = e.mustUser()
			} else {
				s := e.vendor.issue(b, fmt.Sprintf("SE-BENCH-%d", i))
				u.deviceID = e.call("POST", "/v1/devices", u.token, s.body("Xiaomi 15", true)).want(b, 201).str("id")
			}
			b.StartTimer()
		}
		e.call("POST", "/v1/devices/"+u.deviceID+"/cards", u.token, body).want(b, 201)
	}
}

// BenchmarkListCards: the phone's card list over HTTP (session check and one
// query).
func BenchmarkListCards(b *testing.B) {
	e := mustWallet(b)
	u := e.mustUser()
	for i := 0; i < 4; i++ {
		e.mustCard(u, "green")
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e.call("GET", "/v1/devices/"+u.deviceID+"/cards", u.token, nil).want(b, 200)
	}
}

// benchDevices is how many devices (one card each) the transaction
// benchmarks spread their events over, as `mipay bench auth` binds one card
// on each of --concurrency phones (256 in the profiled runs): every event
// of a commit then touches its own device's feed and card.
const benchDevices = 256

// benchRefs registers n devices with one ACTIVE card each (16 devices per
// account) and returns the cards' token references.
func benchRefs(b *testing.B, e *env, n int) []string {
	b.Helper()
	refs := make([]string, 0, n)
	var u *user
	for i := range n {
		if i%16 == 0 {
			u = e.mustUser()
		} else {
			s := e.vendor.issue(b, fmt.Sprintf("SE-TXBENCH-%d-%d", userSeq.Add(1), i))
			u.deviceID = e.call("POST", "/v1/devices", u.token, s.body("Xiaomi 15", true)).want(b, 201).str("id")
		}
		refs = append(refs, e.tokenRef(e.mustCard(u, "green")))
	}
	return refs
}

// benchTxEvent is a transaction.authorized event as the switch publishes
// it for `mipay bench auth`: an approval with the issuer's points, a fresh
// transaction id (24 hex digits) and a time with the switch's nanoseconds.
func benchTxEvent(ref string, i int64) json.RawMessage {
	id := sha256.Sum256(fmt.Appendf(nil, "bench-%d", i))
	b, _ := json.Marshal(map[string]any{
		"transactionId": hex.EncodeToString(id[:12]), "tokenRef": ref, "tokenLast4": "1234", "issuerId": "ICBC",
		"amountMinor": 1250, "currency": "156", "merchantName": "Luckin Coffee", "approved": true,
		"responseCode": "00", "authCode": "A1B2C3", "stan": fmt.Sprintf("%06d", i%1000000),
		"rrn": fmt.Sprintf("6330%08d", i%100000000), "time": time.Date(2026, 11, 26, 1, 30, 0, int(i%1e9), time.UTC),
		"points": map[string]int64{"earned": 12, "balance": 1000 + i},
	})
	return b
}

// benchTxEvents makes n events (made before the timer starts), spread
// round-robin over the cards.
func benchTxEvents(refs []string, n int) []json.RawMessage {
	evs := make([]json.RawMessage, n)
	for i := range evs {
		evs[i] = benchTxEvent(refs[i%len(refs)], int64(i))
	}
	return evs
}

// BenchmarkHandleReversal: recording transaction.reversed events one at a
// time, as the wallet's reversal subscription (concurrency 1) does, over
// benchDevices devices whose approvals were recorded before the timer.
func BenchmarkHandleReversal(b *testing.B) {
	e := mustWallet(b)
	refs := benchRefs(b, e, benchDevices)
	evs := benchTxEvents(refs, b.N)
	ctx := context.Background()
	revs := make([]json.RawMessage, b.N)
	for i, ev := range evs {
		if err := handleBenchEvent(ctx, e.svc.HandleTransaction, ev); err != nil {
			b.Fatal(err)
		}
		var a TransactionEvent
		if err := json.Unmarshal(ev, &a); err != nil {
			b.Fatal(err)
		}
		revs[i], _ = json.Marshal(map[string]any{"transactionId": a.TransactionID, "tokenRef": a.TokenRef,
			"amountMinor": a.AmountMinor, "currency": a.Currency, "merchantName": a.MerchantName,
			"time": a.Time.Add(time.Minute), "points": map[string]int64{"earned": 12, "balance": 1000}})
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, w0 := cpuNanos(b), e.writer.Stats()
	for i := 0; i < b.N; i++ {
		if err := handleBenchEvent(ctx, e.svc.HandleReversal, revs[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuNanos(b)-cpu0)/1e3/float64(b.N), "cpu-µs/event")
	reportWrites(b, e, w0)
}

// handleBenchEvent handles one event with handle as the subscription does:
// with a context bounded by the handler's timeout.
func handleBenchEvent(ctx context.Context, handle func(context.Context, string, json.RawMessage) error, ev json.RawMessage) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return handle(ctx, "ev", ev)
}

// reportWrites reports the writer's commits and writes per event since w0.
func reportWrites(b *testing.B, e *env, w0 store.WriterStats) {
	w := e.writer.Stats()
	b.ReportMetric(float64(w.Batches-w0.Batches)/float64(b.N), "commits/event")
	b.ReportMetric(float64(w.Writes-w0.Writes)/float64(b.N), "writes/event")
}

// cpuNanos is the process's user+system CPU time: on a shared machine CPU
// per event says more than wall-clock time.
func cpuNanos(b *testing.B) int64 {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkHandleTransaction: recording one transaction.authorized event
// (card lookup, insert, points, notification) in the service, one at a
// time, over benchDevices devices. cpu-µs/event is the whole process's CPU
// (handler, writer, SQLite) per event.
func BenchmarkHandleTransaction(b *testing.B) {
	e := mustWallet(b)
	evs := benchTxEvents(benchRefs(b, e, benchDevices), b.N)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, w0 := cpuNanos(b), e.writer.Stats()
	for i := 0; i < b.N; i++ {
		if err := handleBenchEvent(ctx, e.svc.HandleTransaction, evs[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuNanos(b)-cpu0)/1e3/float64(b.N), "cpu-µs/event")
	reportWrites(b, e, w0)
}

// BenchmarkHandleTransactionParallel is the wallet's subscription under
// load: DefaultTransactionConcurrency events in flight (as
// events.WithConcurrency runs them), over benchDevices devices, sharing the
// group-commit writer's commits.
func BenchmarkHandleTransactionParallel(b *testing.B) {
	e := mustWallet(b)
	evs := benchTxEvents(benchRefs(b, e, benchDevices), b.N)
	ctx := context.Background()
	var n atomicCounter
	b.ReportAllocs()
	b.SetParallelism(max(1, DefaultTransactionConcurrency/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	cpu0, w0 := cpuNanos(b), e.writer.Stats()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := handleBenchEvent(ctx, e.svc.HandleTransaction, evs[n.next()-1]); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(cpuNanos(b)-cpu0)/1e3/float64(b.N), "cpu-µs/event")
	reportWrites(b, e, w0)
}

// BenchmarkStartBindingParallel: green bindings from many phones at once
// (each goroutine its own account; a new device every 8 cards, timed), so
// the group-commit writer batches the reservations and completions.
func BenchmarkStartBindingParallel(b *testing.B) {
	e := mustWallet(b)
	body := scenario("green")
	var seq atomicCounter
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		u := e.mustUser()
		n := 0
		for pb.Next() {
			if n > 0 && n%DefaultMaxCardsPerDevice == 0 {
				if n%(DefaultMaxCardsPerDevice*MaxDevicesPerAccount) == 0 {
					u = e.mustUser()
				} else {
					s := e.vendor.issue(b, fmt.Sprintf("SE-PBENCH-%d", seq.next()))
					u.deviceID = e.call("POST", "/v1/devices", u.token, s.body("Xiaomi 15", true)).want(b, 201).str("id")
				}
			}
			e.call("POST", "/v1/devices/"+u.deviceID+"/cards", u.token, body).want(b, 201)
			n++
		}
	})
}
