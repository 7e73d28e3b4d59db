package main

import (
	"strings"
	"testing"
)

// `mipay bench auth --campaigns N` runs the alternation in one run and
// reports both throughputs and the cost; the matching campaigns really
// discount payments, and none while they are paused.
func TestBenchAuthCampaigns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts every party")
	}
	res := mustRunJSON[BenchResult](t, "bench", "auth", "--campaigns", "40", "--duration", "1s", "--concurrency", "4", "--json")
	cb := res.Campaigns
	if cb == nil || cb.Campaigns != 40 || cb.Matching != benchMatchingCampaigns || len(cb.Slices) != len(benchPattern) {
		t.Fatalf("campaigns %+v", cb)
	}
	if cb.With.Requests == 0 || cb.Without.Requests == 0 || cb.With.PerSecond <= 0 || cb.Without.PerSecond <= 0 {
		t.Fatalf("loads %+v / %+v", cb.With, cb.Without)
	}
	if want := (1 - cb.With.PerSecond/cb.Without.PerSecond) * 100; cb.CostPercent != want {
		t.Fatalf("cost %v, want %v", cb.CostPercent, want)
	}
	// The 4 tokens are cards of the first issuers, which the matching
	// campaigns cover: every payment with campaigns is discounted, and
	// none of the loads without.
	if cb.Discounted != int64(cb.With.Requests) || cb.DiscountedWithout != 0 {
		t.Fatalf("%d of %d payments discounted, %d without campaigns", cb.Discounted, cb.With.Requests, cb.DiscountedWithout)
	}
	if res.ResponseCodes["00"] == 0 || len(res.ResponseCodes) != 1 {
		t.Fatalf("response codes %v", res.ResponseCodes)
	}
	if res.Auth.CPUMicros <= 0 {
		t.Errorf("CPU per authorization %v", res.Auth.CPUMicros)
	}
	// Every authorization is durable at the switch, the TSP (its ATC) and
	// the issuer: their writers show in the breakdown.
	seen := map[string]bool{}
	for _, w := range res.Writers {
		if w.Batches == 0 || w.WritesPerBatch < 1 || w.CommitMillis <= 0 {
			t.Errorf("writer %+v", w)
		}
		seen[w.Party+"/"+w.Writer] = true
	}
	for _, want := range []string{"network/main", "tsp/authorizer", "issuer/authorizations"} {
		if !seen[want] {
			t.Errorf("no %s writer in the breakdown %+v", want, res.Writers)
		}
	}
	t.Run("bad input", func(t *testing.T) {
		for _, args := range [][]string{{"--campaigns", "-1"}, {"--campaigns", "20000"}, {"--campaigns", "5", "--country", "392", "--currency", "392"}} {
			code, _, errOut := runCmd(t, append([]string{"bench", "auth"}, args...)...)
			if code != 2 || !strings.Contains(errOut, "campaigns") {
				t.Errorf("%v: exit %d %s", args, code, errOut)
			}
		}
	})
}
