package wallet

import (
	"fmt"
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
