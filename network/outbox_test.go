package network

import (
	"context"
	"strings"
	"testing"

	"github.com/mipay-oss/mipay/store"
	"github.com/mipay-oss/mipay/store/storetest"
)

// TestOutboxOldestUsesIndex: taking the oldest events reads them through an
// index, not by sorting the whole outbox, which after an outage of the bus
// holds every event since (SQLite's plan; PostgreSQL picks by statistics).
func TestOutboxOldestUsesIndex(t *testing.T) {
	db := storetest.Open(t, "network", Migrations())
	if db.Engine() != store.SQLite {
		t.Skip("the plan checked is SQLite's")
	}
	rows, err := db.DB.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+outboxOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, notUsed int
		var detail string
		if err := rows.Scan(&id, &parent, &notUsed, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(plan, "; ")
	if !strings.Contains(got, "outbox_created") || strings.Contains(got, "TEMP B-TREE") {
		t.Errorf("plan %q: want the outbox_created index and no sort", got)
	}
}
