package wallet

import (
	"context"
	"fmt"
	"testing"
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

// BenchmarkHandleTransaction: recording one transaction.authorized event
// (card lookup, insert, notification) in the service.
func BenchmarkHandleTransaction(b *testing.B) {
	e := mustWallet(b)
	u := e.mustUser()
	ref := e.tokenRef(e.mustCard(u, "green"))
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := e.svc.HandleTransaction(ctx, "ev", txEvent(ref, fmt.Sprintf("tx-%d", i), 100, true)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandleTransactionParallel shows the group-commit writer at work:
// many events recorded concurrently share commits.
func BenchmarkHandleTransactionParallel(b *testing.B) {
	e := mustWallet(b)
	u := e.mustUser()
	ref := e.tokenRef(e.mustCard(u, "green"))
	ctx := context.Background()
	var n atomicCounter
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := e.svc.HandleTransaction(ctx, "ev", txEvent(ref, fmt.Sprintf("tx-%d", n.next()), 100, true)); err != nil {
				b.Fatal(err)
			}
		}
	})
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
