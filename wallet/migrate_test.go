package wallet

import (
	"context"
	"io/fs"
	"testing"
	"testing/fstest"
	"time"

	"github.com/mipay-oss/mipay/store"
	"github.com/mipay-oss/mipay/store/storetest"
)

// migrationsBefore is the wallet's migrations older than version `before`
// (a store as an older wallet left it).
func migrationsBefore(t *testing.T, before string) fs.FS {
	t.Helper()
	out := fstest.MapFS{}
	ms, err := fs.ReadDir(Migrations(), ".")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Name() >= before {
			continue
		}
		b, err := fs.ReadFile(Migrations(), m.Name())
		if err != nil {
			t.Fatal(err)
		}
		out[m.Name()] = &fstest.MapFile{Data: b}
	}
	return out
}

// TestPointsMigration: points recorded in transaction_points before
// migration 0070 are shown on their transactions after it; a transaction
// without points still shows none.
func TestPointsMigration(t *testing.T) {
	ctx := context.Background()
	cfg := storetest.Config(t)
	old, err := store.Open(ctx, cfg, "wallet", migrationsBefore(t, "0070"))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 26, 4, 0, 0, 0, time.UTC).UnixMilli()
	for _, q := range []string{
		`INSERT INTO devices (id, account_id, model, se_id, se_public_key, fingerprint_enrolled, created_ms)
		 VALUES ('dev1', 'acct1', 'Xiaomi 15', 'SE1', 'k', 1, 1)`,
		`INSERT INTO cards (id, device_id, account_id, token_ref, token_last4, state, created_ms, updated_ms)
		 VALUES ('card1', 'dev1', 'acct1', 'ref1', '1234', 'ACTIVE', 1, 1)`,
	} {
		if _, err := old.DB.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	for i, id := range []string{"tx-points", "tx-none"} {
		if _, err := old.DB.ExecContext(ctx,
			`INSERT INTO transactions (id, card_id, device_id, amount_minor, currency, merchant_name, approved,
			 response_code, auth_code, stan, rrn, time_ms, received_ms) VALUES ($1, 'card1', 'dev1', 6000, '156', 'Noodle House', 1,
			 '00', 'A1', '1', '1', $2, $2)`, id, at+int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := old.DB.ExecContext(ctx, `INSERT INTO transaction_points (transaction_id, card_id, earned, balance, time_ms)
		VALUES ('tx-points', 'card1', 60, 160, $1)`, at); err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}

	db, err := store.Open(ctx, cfg, "wallet", Migrations())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ts, err := newRepo(db, nil).transactions(ctx, "card1", time.Time{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*int64{}
	for _, tr := range ts {
		got[tr.ID] = tr.PointsEarned
	}
	if len(got) != 2 || got["tx-points"] == nil || *got["tx-points"] != 60 || got["tx-none"] != nil {
		t.Fatalf("points after migration: %+v", ts)
	}
}
