package wallet

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// TestFeedCountsDue: a feed is due for a prune at every pruneStride-th
// notification counted for it, whatever the other feeds do, and the counts
// stay bounded.
func TestFeedCountsDue(t *testing.T) {
	var c feedCounts
	for round := 1; round <= 3; round++ {
		for i := 1; i <= pruneStride; i++ {
			if got := c.due("other"); got != (i == pruneStride) {
				t.Fatalf("round %d, other feed's notification %d: due %v", round, i, got)
			}
			if got := c.due("dev"); got != (i == pruneStride) {
				t.Fatalf("round %d, notification %d: due %v", round, i, got)
			}
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
