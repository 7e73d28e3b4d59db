package e2e

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/httpx"
	"github.com/mipay-oss/mipay/node"
)

// BenchmarkSwitchOffPropagation: the time from the wallet's answer to a
// switch-off (what the portal's button calls) to the first 62 at the switch
// for the phone's genuine cryptograms, and back from "found it" to the
// first 00. Reports p50/p99 of the switch-off side.
func BenchmarkSwitchOffPropagation(b *testing.B) {
	// Each round pays until the first approval: raise the card's hourly
	// approvals limit so the issuer's velocity check (65) does not end a
	// long run.
	s := mustStart(b, "", func(r *config.Reference) {
		for i := range r.Issuers {
			r.Issuers[i].Limits.VelocityPerHour = 0
		}
	})
	term := s.newTerminal(b, "BNCH0001")
	o := s.newOwner(b, "bench-lost", "icbc-debit", 0)
	payer := &cardPayer{src: newCardSource(b, o.p.SE()), c: term.link.c}
	ctx := context.Background()
	// A portal-grade session: password, then the e-mailed code.
	w := httpx.Client{Base: s.url(node.RoleWallet), HTTP: &http.Client{Timeout: 10 * time.Second}}
	var ch struct {
		ID string `json:"challengeId"`
	}
	if err := w.Do(ctx, "POST", "/v1/portal/challenges", map[string]string{"login": o.login, "password": portalPassword}, &ch); err != nil {
		b.Fatal(err)
	}
	var sess struct {
		Token string `json:"token"`
	}
	if err := w.Do(ctx, "POST", "/v1/portal/challenges/"+ch.ID+"/verify", map[string]string{"emailCode": s.lastEmailCode(b, o.email)}, &sess); err != nil {
		b.Fatal(err)
	}
	w.Token = sess.Token
	dev := "/v1/devices/" + o.p.DeviceID()
	until := func(rc string) time.Duration {
		start := time.Now()
		for got := payer.pay(b); got != rc; got = payer.pay(b) {
			if time.Since(start) > 10*time.Second {
				b.Fatalf("no %s within 10s (last answer %s)", rc, got)
			}
		}
		return time.Since(start)
	}
	b.ReportAllocs()
	var lat []time.Duration
	b.ResetTimer()
	for b.Loop() {
		if err := w.Do(ctx, "POST", dev+"/switch-off", struct{}{}, nil); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, until("62"))
		if err := w.Do(ctx, "POST", dev+"/found", struct{}{}, nil); err != nil {
			b.Fatal(err)
		}
		until("00")
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[(len(lat)*99)/100].Microseconds())/1000, "p99-ms")
}
