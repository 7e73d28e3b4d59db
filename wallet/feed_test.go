package wallet

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/store"
)

// TestFeedCountsDue: a feed is due for a prune at its first notification
// counted (it may have taken any number uncounted) and then at every
// pruneStride-th, whatever the other feeds do, and the counts stay bounded.
func TestFeedCountsDue(t *testing.T) {
	var c feedCounts
	for k := 1; k <= 3*pruneStride; k++ {
		want := k == 1 || k%pruneStride == 0
		if got := c.due("other"); got != want {
			t.Fatalf("other feed's notification %d: due %v", k, got)
		}
		if got := c.due("dev"); got != want {
			t.Fatalf("notification %d: due %v", k, got)
		}
	}
	for i := range maxFeedCounts + 10 {
		c.due(fmt.Sprintf("dev-%d", i))
	}
	if n := len(c.m); n > maxFeedCounts {
		t.Errorf("%d feeds counted, want at most %d", n, maxFeedCounts)
	}
}

// TestFeedNumbersUnderConcurrentWrites: notifications appended to one feed
// by concurrent transactions of their own (as several wallet nodes would
// on PostgreSQL; SQLite serializes them) are numbered 1…n, each once.
func TestFeedNumbersUnderConcurrentWrites(t *testing.T) {
	e := mustWallet(t)
	u := e.mustUser()
	r := newRepo(e.repo.db, nil) // every notify its own transaction
	const writers, each = 8, 5
	errs := make(chan error, writers*each)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				errs <- r.notify(context.Background(), u.deviceID, NotifyCommand, map[string]int{"w": w, "i": i}, e.clock.Now(), DefaultNotificationsKept)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	ns, err := r.notifications(context.Background(), u.deviceID, 0, writers*each+1, DefaultNotificationsKept)
	if err != nil {
		t.Fatal(err)
	}
	if len(ns) != writers*each {
		t.Fatalf("%d notifications, want %d", len(ns), writers*each)
	}
	for i, n := range ns {
		if n.Seq != int64(i+1) {
			t.Fatalf("notification %d numbered %d", i+1, n.Seq)
		}
	}
	// A device that is not there gets nothing and says so.
	if err := r.notify(context.Background(), "no-such-device", NotifyCommand, 1, e.clock.Now(), 5); err == nil || !strings.Contains(err.Error(), "device not found") {
		t.Errorf("notify to a missing device: %v", err)
	}
}

// TestEventWriteEndsWithItsHandler: on PostgreSQL a transaction event's
// write that waits for its device's row (locked by another wallet node's
// write) ends when its handler's ctx ends; it must not wait as long as the
// lock is held, holding up its batch and every write queued behind it. A
// redelivery then records the transaction once.
func TestEventWriteEndsWithItsHandler(t *testing.T) {
	e := mustWallet(t)
	if e.repo.db.Engine() != store.Postgres {
		t.Skip("PostgreSQL only: a SQLite batch holds the write lock from BEGIN, its statements wait for no other writer")
	}
	u := e.mustUser()
	ref := e.tokenRef(e.mustCard(u, "green"))
	ctx := context.Background()
	other, err := e.repo.db.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback()
	if _, err := other.ExecContext(ctx, `SELECT id FROM devices WHERE id = $1 FOR UPDATE`, u.deviceID); err != nil {
		t.Fatal(err)
	}
	hctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.svc.HandleTransaction(hctx, "ev", txEvent(ref, "tx-locked", 100, true)) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the event was recorded while its device's row was locked")
		}
	case <-time.After(5 * time.Second):
		other.Rollback()
		<-done
		t.Fatal("the event's write outlived its handler's ctx by seconds, waiting for a row lock")
	}
	if err := other.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.HandleTransaction(ctx, "ev", txEvent(ref, "tx-locked", 100, true)); err != nil {
		t.Fatal(err)
	}
	if n := e.rows("transactions"); n != 1 {
		t.Errorf("%d transactions after the redelivery, want 1", n)
	}
	l := e.call("GET", "/v1/devices/"+u.deviceID+"/notifications?wait=0s", u.token, nil).want(t, 200)
	kinds := 0
	for _, n := range l.body["notifications"].([]any) {
		if n.(map[string]any)["kind"] == NotifyTransaction {
			kinds++
		}
	}
	if kinds != 1 {
		t.Errorf("%d transaction notifications, want 1: %s", kinds, l.raw)
	}

	// A reversal's write too.
	other, err = e.repo.db.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback()
	if _, err := other.ExecContext(ctx, `SELECT id FROM devices WHERE id = $1 FOR UPDATE`, u.deviceID); err != nil {
		t.Fatal(err)
	}
	hctx, cancel = context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	rev := json.RawMessage(`{"transactionId":"tx-locked","tokenRef":"` + ref + `","amountMinor":100,"currency":"156"}`)
	go func() { done <- e.svc.HandleReversal(hctx, "ev", rev) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the reversal was recorded while its device's row was locked")
		}
	case <-time.After(5 * time.Second):
		other.Rollback()
		<-done
		t.Fatal("the reversal's write outlived its handler's ctx by seconds, waiting for a row lock")
	}
}

// TestFeedBoundedWhenCountsAreLost: a feed stays within keep+pruneStride-1
// rows however often this process's counts are lost — by restarts (a new
// repo for every few notifications) or by the counts being emptied when
// full (more devices notified than maxFeedCounts): a lost count must not
// mean a feed that is never pruned again.
func TestFeedBoundedWhenCountsAreLost(t *testing.T) {
	const keep = 5
	for _, lose := range []string{"restart", "full"} {
		t.Run(lose, func(t *testing.T) {
			e := mustWallet(t)
			u := e.mustUser()
			r := newRepo(e.repo.db, e.writer.Write)
			for i := range 3 * pruneStride {
				switch {
				case lose == "restart" && i%4 == 0:
					r = newRepo(e.repo.db, e.writer.Write)
				case lose == "full":
					for d := range maxFeedCounts {
						r.feeds.due(fmt.Sprintf("other-%d", d))
					}
				}
				if err := r.notify(context.Background(), u.deviceID, NotifyCommand, i, e.clock.Now(), keep); err != nil {
					t.Fatal(err)
				}
				var n int
				if err := e.repo.db.DB.QueryRow(`SELECT COUNT(*) FROM notifications WHERE device_id = $1`, u.deviceID).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n > keep+pruneStride-1 {
					t.Fatalf("after %d notifications the feed holds %d rows, want at most %d", i+1, n, keep+pruneStride-1)
				}
			}
		})
	}
}
