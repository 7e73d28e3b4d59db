package e2e

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/nfc"
	"github.com/mipay-oss/mipay/phone"
	"github.com/mipay-oss/mipay/pos"
)

// BenchmarkTap measures real taps on loopback: a phone's SE over the
// vsmartcard link to a QuickPass terminal's reader kernel (PPSE, SELECT
// AID, GPO, READ RECORD), the terminal's 0200 over TCP through the network,
// the TSP (ARQC, ATC) and the issuer (hold, durable), and the answer with
// its ARPC back on the terminal. Issue 5's target: p99 under 30 ms.
//
// tap: from the phone entering the field (the fingerprint already matched)
// to the terminal's receipt. phone.Pay: the whole phone.Pay call to the
// receipt, including the phone's card lookup at the wallet over HTTP and
// the fingerprint match. authorization: the 0200 alone, from the terminal's
// link to the answer (the card read in-process beforehand, not timed): what
// the network, TSP and issuer add, so the rest of a tap is the terminal and
// the radio.
func BenchmarkTap(b *testing.B) {
	s := mustStart(b, "", func(r *config.Reference) { liftLimits(r, "icbc-debit") })
	term := s.newTerminal(b, "BNCH0001")
	p, _ := s.boundPhone(b, "bench", "icbc-debit", 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, err := nfc.Listen("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	ref := p.SE().Cards()[0].TokenRef
	if err := p.SE().Select(ref); err != nil {
		b.Fatal(err)
	}

	// charge runs one charge at the terminal while phoneSide taps, and
	// returns how long from just before phoneSide to the receipt.
	charge := func(b *testing.B, phoneSide func() error) time.Duration {
		type result struct {
			rec *pos.Receipt
			err error
			at  time.Time
		}
		done := make(chan result, 1)
		go func() {
			rec, err := term.ChargeOnReader(ctx, r, pos.Charge{AmountMinor: 100, Currency: "156"})
			done <- result{rec, err, time.Now()}
		}()
		start := time.Now()
		if err := phoneSide(); err != nil {
			b.Fatalf("phone: %v", err)
		}
		res := <-done
		if res.err != nil || res.rec.Outcome != pos.OutcomeApproved {
			b.Fatalf("charge: %+v %v", res.rec, res.err)
		}
		return res.at.Sub(start)
	}
	run := func(b *testing.B, phoneSide func() error) {
		b.ReportAllocs()
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for range b.N {
			lat = append(lat, charge(b, phoneSide))
		}
		b.StopTimer()
		reportPercentiles(b, lat)
	}

	b.Run("tap", func(b *testing.B) {
		run(b, func() error {
			if err := p.SE().Arm(ref); err != nil {
				return err
			}
			return nfc.Tap(ctx, r.Addr(), p.SE())
		})
	})
	b.Run("authorization", func(b *testing.B) {
		card := newCardSource(b, p.SE())
		var stan uint32
		b.ReportAllocs()
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for range b.N {
			b.StopTimer()
			m, err := card.next(ctx, 100)
			if err != nil {
				b.Fatal(err)
			}
			stan++
			stamp(m, "BNCH0002", stan, fmt.Sprintf("77%010d", stan))
			b.StartTimer()
			start := time.Now()
			resp, err := term.link.c.Send(ctx, m)
			lat = append(lat, time.Since(start))
			if err != nil || resp.String(39) != "00" {
				b.Fatalf("authorization: %v %v", resp, err)
			}
		}
		b.StopTimer()
		reportPercentiles(b, lat)
	})
	b.Run("phone.Pay", func(b *testing.B) {
		run(b, func() error {
			_, err := p.Pay(ctx, phone.PayOptions{Finger: phone.FingerOK, Reader: r.Addr()})
			return err
		})
	})
}

// reportPercentiles reports p50 and p99 of lat in milliseconds.
func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	q := func(p float64) float64 {
		i := max(int(math.Ceil(p*float64(len(lat))))-1, 0)
		return float64(lat[i]) / float64(time.Millisecond)
	}
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
}
