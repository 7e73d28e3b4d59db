package main

import (
	"context"
	"testing"

	"github.com/mipay-oss/mipay/store"
	"github.com/mipay-oss/mipay/wallet"
)

// TestBenchAuthWalletCaughtUp: when bench auth reads its CPU figure the
// wallet has recorded every authorization of the load (its share of the
// work is in the figure), and the result says how long that took.
func TestBenchAuthWalletCaughtUp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts every party")
	}
	dir := t.TempDir()
	r := mustRunJSON[BenchResult](t, "bench", "auth", "--duration", "1s", "--concurrency", "8", "--json", "--data", dir)
	if r.Auth.Requests == 0 || r.Auth.Errors != 0 || r.WalletCatchUpSeconds < 0 {
		t.Fatalf("%+v", r)
	}
	db, err := store.Open(context.Background(), store.Config{Dir: dir}, "wallet", wallet.Migrations())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.DB.QueryRow(`SELECT COUNT(*) FROM transactions`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != r.Auth.Requests {
		t.Errorf("the wallet recorded %d transactions of the %d authorizations", n, r.Auth.Requests)
	}
}
