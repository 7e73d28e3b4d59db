package events

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// The JetStream client stops consuming by itself on a terminal error (the
// connection closed, the consumer deleted), simulated here with the
// consume context's Stop, while every worker is busy and a delivery waits
// for one. Closed is then closed before that delivery returns, so Close
// closed the work channel under it: the delivery goroutine panicked with a
// send on a closed channel (taking the process down). Close must return
// once the handlers in flight are done, without a panic.
func TestCloseAfterConsumeStoppedWithDeliveryWaiting(t *testing.T) {
	b := MustOpen(t, Config{Dir: t.TempDir()})
	started, release := make(chan struct{}, 10), make(chan struct{})
	var finished atomic.Int32
	sub, err := b.Subscribe(context.Background(), "wallet.busy", "busy", func(context.Context, Event) error {
		started <- struct{}{}
		<-release
		finished.Add(1)
		return nil
	}, WithConcurrency(2))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		mustPublish(t, b, "wallet.busy", payload{N: i})
	}
	for range 2 {
		select {
		case <-started:
		case <-time.After(waitFor):
			t.Fatal("handlers did not start")
		}
	}
	time.Sleep(100 * time.Millisecond) // the third event waits for a worker
	sub.(*subscription).cc.Stop()
	time.Sleep(200 * time.Millisecond) // the client unsubscribes
	closed := make(chan error, 1)
	go func() { closed <- sub.Close() }()
	time.Sleep(100 * time.Millisecond)
	close(release)
	select {
	case <-closed:
	case <-time.After(waitFor):
		t.Fatal("Close did not return")
	}
	if n := finished.Load(); n < 2 {
		t.Errorf("Close returned with %d of the 2 handlers in flight finished", n)
	}
}
