package transit_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/emv"
	"github.com/mipay-oss/mipay/transit"
	"github.com/mipay-oss/mipay/transit/transittest"
)

// signedRecords makes n gate records for the cards with valid TACs (as the
// cards would have made them), serials continuing from next.
func signedRecords(tb testing.TB, cards []string, next map[string]int64, n int) []transit.GateRecord {
	tb.Helper()
	master, err := emv.KeyFromBytes(transittest.TestMaster("sz", "dtk"))
	if err != nil {
		tb.Fatal(err)
	}
	tacKeys := map[string][8]byte{}
	for _, c := range cards {
		div, err := emv.EPurseDiversifier(c)
		if err != nil {
			tb.Fatal(err)
		}
		tacKeys[c] = emv.EPurseTACKey(emv.DiversifyKey(master, div))
	}
	term := [6]byte{0x11, 0x22, 0x33, 0x44, 0x55, 0x66}
	out := make([]transit.GateRecord, n)
	for i := range out {
		c := cards[i%len(cards)]
		tx := emv.EPurseTx{Amount: 200, Type: emv.EPurseTypePurchase, Terminal: term, Date: [4]byte{0x20, 0x26, 0x11, 0x26}, Time: [3]byte{0x08, 0x30, 0x00}}
		tsn := [4]byte{0, 0, byte(i >> 8), byte(i)}
		tac := emv.EPursePurchaseTAC(tacKeys[c], tx, tsn)
		out[i] = transit.GateRecord{CardNumber: c, OfflineSerial: next[c], AmountMinor: 200, Type: int(tx.Type), Terminal: "112233445566",
			TSN: int64(i & 0xFFFF), Date: "20261126", Time: "083000", TAC: fmt.Sprintf("%X", tac), Station: "bus-1"}
		next[c]++
	}
	return out
}

// BenchmarkClearing verifies and applies gate records in batches of 10,000
// over 200 cards; it reports records per second (the goal: 100,000).
func BenchmarkClearing(b *testing.B) {
	b.ReportAllocs()
	ctx := context.Background()
	a := transittest.NewAgency(b)
	var cards []string
	for i := range 200 {
		cards = append(cards, a.NewPhone(b, fmt.Sprint("u", i)).Issue(b, "sz"))
	}
	next := map[string]int64{}
	const batch = 10_000
	batches := make([][]transit.GateRecord, 0, 8)
	b.ResetTimer()
	var busy, cpu time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		if len(batches) == 0 {
			for range 8 {
				batches = append(batches, signedRecords(b, cards, next, batch))
			}
		}
		recs := batches[0]
		batches = batches[1:]
		b.StartTimer()
		start, cpu0 := time.Now(), cpuTime(b)
		res, err := a.Svc.Clear(ctx, transit.Batch{ID: fmt.Sprint("b", i), City: "sz", Terminal: "112233445566", Records: recs})
		busy += time.Since(start)
		cpu += time.Duration(cpuTime(b) - cpu0)
		if err != nil {
			b.Fatal(err)
		}
		if res.Cleared != batch {
			b.Fatalf("cleared %d of %d: %+v", res.Cleared, batch, res.Exceptions[:min(3, len(res.Exceptions))])
		}
	}
	b.ReportMetric(float64(b.N*batch)/busy.Seconds(), "records/s")
	b.ReportMetric(float64(b.N*batch)/cpu.Seconds(), "records/cpu-s")
}

// cpuTime is the process's user+system CPU time in nanoseconds: on a shared
// machine it says more than wall time.
func cpuTime(tb testing.TB) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
