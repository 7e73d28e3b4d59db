package events

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestBurstsHandledPromptly: sustained loads of events published in batches
// (as the switch's outbox publishes) to a durable subscriber handling many
// at once are handled as fast as they come. Under such a load the
// JetStream client can lose track of its pull (nats.go issue 1622: events
// left unprocessed, no pull waiting at the server); it notices only when
// two idle heartbeats are missed. With the client's defaults that stalled
// the subscriber 30 s in about half of the runs of this test; with
// DefaultPullHeartbeat about 1 s.
func TestBurstsHandledPromptly(t *testing.T) {
	if testing.Short() || raceDetector {
		t.Skip("publishes 120,000 events and bounds how long they take")
	}
	b := MustOpen(t, Config{Dir: t.TempDir(), MaxBytes: 256 << 20})
	var handled atomic.Int64
	// Publishing keeps at most inFlight events unhandled, so it goes on as
	// fast as they are handled.
	const inFlight = 4096
	room := make(chan struct{}, inFlight)
	mustSubscribe(t, b, "burst.x", "burst-test", func(context.Context, Event) error {
		handled.Add(1)
		<-room
		return nil
	}, WithConcurrency(64))
	ctx := context.Background()
	const rounds, perRound = 2, 60000
	batch := make([]Outgoing, 250)
	pad := strings.Repeat("x", 400) // about a transaction event
	worst := time.Duration(0)
	for r := range rounds {
		start := time.Now()
		for i := 0; i < perRound; i += len(batch) {
			for k := range batch {
				room <- struct{}{}
				batch[k] = Outgoing{ID: fmt.Sprintf("r%d-%d", r, i+k), Subject: "burst.x", Data: payload{N: i + k, Text: pad}}
			}
			if _, err := b.PublishBatch(ctx, batch); err != nil {
				t.Fatal(err)
			}
		}
		want := int64((r + 1) * perRound)
		for handled.Load() < want {
			if time.Since(start) > 25*time.Second { // a round takes ~3 s; a stall of the client defaults 30 s more
				t.Fatalf("round %d: %d of %d events handled after %s", r, handled.Load(), want, time.Since(start))
			}
			time.Sleep(time.Millisecond)
		}
		worst = max(worst, time.Since(start))
	}
	t.Logf("worst round: %s", worst)
}
