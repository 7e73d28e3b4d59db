package promo

import (
	"context"
	"fmt"
	"testing"
)

// mustThousandCampaigns fills an engine with n campaigns of ten banks, most
// of them not matching the benchmark's payment (other MCCs or issuers).
func mustThousandCampaigns(b *testing.B, n int) *Engine {
	e, _ := MustOpenEngine(b, newClock(testNow).Now)
	banks := []string{"icbc-debit", "boc-debit", "ccb-debit", "abc-debit", "cmb-debit", "psbc-debit", "citic-debit", "ceb-debit", "cib-debit", "pab-debit"}
	for i := range n {
		c := fixedCampaign(fmt.Sprintf("c%04d", i), int64(100+i%50), 1_000_000_000)
		c.IssuerID = banks[i%len(banks)]
		c.Eligibility.MCCs = []string{fmt.Sprintf("%04d", 5000+i%100)}
		mustCreate(b, e, c)
	}
	return e
}

func BenchmarkCandidates1000(b *testing.B) {
	e := mustThousandCampaigns(b, 1000)
	p := payment("bench", 6000)
	p.MCC = "5010"
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if len(e.Candidates(p)) == 0 {
			b.Fatal("no candidate")
		}
	}
}

// BenchmarkReserveNoMatch1000 is the cost the switch pays for a payment no
// campaign matches (the common case): evaluation only, no write.
func BenchmarkReserveNoMatch1000(b *testing.B) {
	e := mustThousandCampaigns(b, 1000)
	p := payment("bench", 6000)
	p.MCC = "4111"
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, ok, err := e.Reserve(context.Background(), p); err != nil || ok {
			b.Fatal(ok, err)
		}
	}
}

func BenchmarkReserveGranted(b *testing.B) {
	e := mustThousandCampaigns(b, 1000)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p := payment("bench", 6000)
			p.CardKey = p.TxID
			p.MCC = "5010"
			if _, ok, err := e.Reserve(context.Background(), p); err != nil || !ok {
				b.Fatal(ok, err)
			}
		}
	})
}
