package gate_test

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/nfc"
	"github.com/mipay-oss/mipay/transit/gate"
	"github.com/mipay-oss/mipay/transit/transittest"
)

// BenchmarkGateTap is a bus tap over the loopback NFC link, from the
// phone entering the field (SELECT) to the gate opening, PSAM work included,
// and both durable writes of a tap: the gate's intent (journal fdatasync)
// and the card's debit (SE journal fdatasync), which overlap. Both live under b.TempDir(),
// so put TMPDIR on the disk being measured. It reports p50 and p99 (the
// goal: p99 under 20 ms).
func BenchmarkGateTap(b *testing.B) {
	b.ReportAllocs()
	ctx := context.Background()
	a := transittest.NewAgency(b)
	g := mustGate(b, a, b.TempDir(), "sz", "bus-1", gate.ModeBus)
	ph := a.NewPhone(b, "bench")
	card := ph.Issue(b, "sz")
	fare := a.City(b, "sz").BusFareMinor
	topups := 0
	topUp := func() {
		topups++
		if _, err := ph.TopUp(ctx, card, 100000-ph.Balance(b, card), fmt.Sprint("bench-", topups), transittest.CutNone); err != nil {
			b.Fatal(err)
		}
	}
	topUp()
	r, err := nfc.Listen("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	lat := make([]time.Duration, 0, 1024)
	b.ResetTimer()
	for b.Loop() {
		if ph.Balance(b, card) < fare {
			b.StopTimer()
			topUp()
			b.StartTimer()
		}
		done := make(chan error, 1)
		go func() { done <- nfc.Tap(ctx, r.Addr(), ph.SE) }()
		sess, err := r.Wait(ctx)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		res, err := g.Process(ctx, sess)
		lat = append(lat, time.Since(start))
		sess.Close()
		<-done
		if err != nil || !res.Open {
			b.Fatalf("tap: %+v %v", res, err)
		}
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
