package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/mipay-oss/mipay/httpx"
	"github.com/mipay-oss/mipay/network"
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/node/local"
	"github.com/mipay-oss/mipay/pos"
	"github.com/mipay-oss/mipay/promo"
)

// `mipay bench auth --campaigns N` (issue 8): what evaluating bank
// promotions costs the authorization path. One run, one system: after the
// usual load (with no active campaign: the seeded ones are paused), N
// campaigns are created through the campaign API (a few match the
// benchmark's payments and give a discount; the rest are built to be looked
// at and refused, same issuer and category but a minimum amount or BIN
// range the payments miss, or to sit in categories the payments are not
// in). Then loads with and without them (all paused) alternate in the order
// with, without, without, with, with, without, each half --duration long,
// so a slow drift of a shared machine or of the growing stores weighs on
// both alike. Each side's throughput is its requests over its seconds.

// benchMatchingCampaigns is how many of the N campaigns apply by default
// (--matching).
const benchMatchingCampaigns = 5

// maxBenchCampaigns bounds --campaigns (promo.DefaultMaxActiveCampaigns).
const maxBenchCampaigns = promo.DefaultMaxActiveCampaigns

// CampaignBench is the campaigns part of BenchResult.
type CampaignBench struct {
	Campaigns int `json:"campaigns"`
	Matching  int `json:"matching"`
	// Without and With add up their slices (percentiles are the slices'
	// means); Slices is every slice in the order run.
	Without LoadStats    `json:"without"`
	With    LoadStats    `json:"with"`
	Slices  []BenchSlice `json:"slices"`
	// Discounted is how many answers of the loads with campaigns carried a
	// saving; DiscountedWithout the same of the loads without (0: pausing
	// works).
	Discounted        int64 `json:"discounted"`
	DiscountedWithout int64 `json:"discountedWithout"`
	// CostPercent is how much throughput the campaigns cost:
	// (1 - with/without) × 100; the target is at most 5.
	CostPercent float64 `json:"costPercent"`
}

// BenchSlice is one load of the alternation.
type BenchSlice struct {
	Campaigns bool      `json:"campaigns"`
	Load      LoadStats `json:"load"`
}

// promoAdmin drives the switch's campaign API as the operator does.
type promoAdmin struct{ c httpx.Client }

func newPromoAdmin(sys *local.System) (*promoAdmin, error) {
	secret, err := network.LoadAdminToken(sys.DataDir)
	if err != nil {
		return nil, err
	}
	return &promoAdmin{c: httpx.Client{Base: sys.URL(node.RoleNetwork), Token: secret, HTTP: &http.Client{Timeout: 30 * time.Second}}}, nil
}

// setAll moves every campaign listed to status (pause, resume).
func (a *promoAdmin) setAll(ctx context.Context, action string, only func(promo.Campaign) bool) (int, error) {
	var list struct {
		Campaigns []promo.Campaign `json:"campaigns"`
	}
	if err := a.c.Do(ctx, http.MethodGet, "/v1/promo/campaigns", nil, &list); err != nil {
		return 0, err
	}
	n := 0
	for _, c := range list.Campaigns {
		if c.Status == promo.StatusEnded || !only(c) {
			continue
		}
		if err := a.c.Do(ctx, http.MethodPost, "/v1/promo/campaigns/"+c.ID+"/"+action, struct{}{}, nil); err != nil {
			return n, fmt.Errorf("bench: %s %s: %w", action, c.ID, err)
		}
		n++
	}
	return n, nil
}

// benchCampaigns are n campaigns over the reference's issuers: the first
// matching ones give 0.10 CNY off the benchmark's 1.00 CNY
// payments (category pos.DefaultMCC, Mi Pay), the others never apply.
func benchCampaigns(sys *local.System, n, matching int) []promo.Campaign {
	now := time.Now()
	out := make([]promo.Campaign, 0, n)
	issuers := sys.Ref.Issuers
	for i := range n {
		is := issuers[i%len(issuers)]
		c := promo.Campaign{
			ID: fmt.Sprintf("bench-%05d", i), BankName: is.BankCode, IssuerID: is.ID, Name: "bench", Currency: promo.Currency,
			Benefit:     promo.Benefit{Kind: promo.BenefitFixed, AmountMinor: 10},
			Limits:      promo.Limits{BudgetMinor: promo.MaxAmountMinor},
			Window:      promo.Window{Start: now.Add(-time.Hour), End: now.Add(30 * 24 * time.Hour)},
			Eligibility: promo.Eligibility{Channel: promo.ChannelMiPay},
		}
		switch {
		case i < matching:
			c.Eligibility.MCCs = []string{pos.DefaultMCC}
		case i%3 == 0: // another category: not even looked at
			c.Eligibility.MCCs = []string{"5812"}
		case i%3 == 1: // any category, looked at: the amount is too small
			c.Eligibility.MinAmountMinor = 1_000_000
		default: // the payments' category, looked at: another BIN range
			c.Eligibility.MCCs = []string{pos.DefaultMCC}
			c.Eligibility.BINRanges = []promo.BINRange{{Low: "999990", High: "999999"}}
		}
		out = append(out, c)
	}
	return out
}

// benchPattern is the order of the loads: true with campaigns.
var benchPattern = []bool{true, false, false, true, true, false}

// runCampaigns creates the campaigns and runs the alternation.
func (b *authBench) runCampaigns(ctx context.Context, sys *local.System, cards []benchCard, admin *promoAdmin, codes map[string]int) (*CampaignBench, error) {
	cb := &CampaignBench{Campaigns: b.campaigns, Matching: min(b.matching, b.campaigns)}
	fmt.Fprintf(b.progress, "creating %d campaigns through the campaign API…\n", b.campaigns)
	ours := map[string]bool{}
	for _, c := range benchCampaigns(sys, b.campaigns, cb.Matching) {
		if err := admin.c.Do(ctx, http.MethodPost, "/v1/promo/campaigns", c, nil); err != nil {
			return nil, fmt.Errorf("bench: create campaign %s: %w", c.ID, err)
		}
		ours[c.ID] = true
	}
	mine := func(c promo.Campaign) bool { return ours[c.ID] }
	full := b.duration
	defer func() { b.duration = full }()
	b.duration = full / 2
	active := true
	var with, without []LoadStats
	for i, on := range benchPattern {
		if on != active {
			action := map[bool]string{true: "resume", false: "pause"}[on]
			if _, err := admin.setAll(ctx, action, mine); err != nil {
				return nil, err
			}
			active = on
		}
		queues, err := makeBenchMessages(cards, b.messagesPerToken())
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(b.progress, "load %d of %d, %s campaigns…\n", i+1, len(benchPattern), map[bool]string{true: "with", false: "without"}[on])
		b.terminalPrefix = fmt.Sprintf("C%d", i)
		before := b.discounted.Load()
		s, _, err := b.drive(ctx, sys.Addr(node.RoleNetwork, "iso8583"), queues, codes, walletCatchUp(sys, new(float64)))
		if err != nil {
			return nil, err
		}
		cb.Slices = append(cb.Slices, BenchSlice{Campaigns: on, Load: s})
		if on {
			with = append(with, s)
			cb.Discounted += b.discounted.Load() - before
		} else {
			without = append(without, s)
			cb.DiscountedWithout += b.discounted.Load() - before
		}
	}
	cb.With, cb.Without = sumLoads(with), sumLoads(without)
	if cb.Without.PerSecond > 0 {
		cb.CostPercent = (1 - cb.With.PerSecond/cb.Without.PerSecond) * 100
	}
	return cb, nil
}

// sumLoads adds loads up: requests over seconds; latencies are the means of
// the loads' figures.
func sumLoads(ls []LoadStats) LoadStats {
	var out LoadStats
	if len(ls) == 0 {
		return out
	}
	for _, l := range ls {
		out.Requests += l.Requests
		out.Errors += l.Errors
		out.Seconds += l.Seconds
		out.P50Millis += l.P50Millis / float64(len(ls))
		out.P99Millis += l.P99Millis / float64(len(ls))
		out.P999Millis += l.P999Millis / float64(len(ls))
		out.MeanMillis += l.MeanMillis / float64(len(ls))
	}
	if out.Seconds > 0 {
		out.PerSecond = float64(out.Requests) / out.Seconds
	}
	return out
}

func printCampaignBench(w io.Writer, cb *CampaignBench) {
	line := func(name string, s LoadStats) {
		fmt.Fprintf(w, "%-22s %8.0f/s  p50 %6.2f ms  p99 %6.2f ms  (%d requests, %d errors, %.1fs)\n",
			name, s.PerSecond, s.P50Millis, s.P99Millis, s.Requests, s.Errors, s.Seconds)
	}
	for i, sl := range cb.Slices {
		line(fmt.Sprintf("  load %d %s", i+1, map[bool]string{true: "with", false: "without"}[sl.Campaigns]), sl.Load)
	}
	line("without campaigns", cb.Without)
	line(fmt.Sprintf("with %d campaigns", cb.Campaigns), cb.With)
	fmt.Fprintf(w, "campaign cost  %.1f%% of throughput (%.0f/s with %d active, %d matching, vs %.0f/s without; %d payments discounted; target ≤ 5%%)\n",
		cb.CostPercent, cb.With.PerSecond, cb.Campaigns, cb.Matching, cb.Without.PerSecond, cb.Discounted)
}
