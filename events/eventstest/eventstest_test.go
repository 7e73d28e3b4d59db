package eventstest

import (
	"context"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/events"
)

func roundTrip(t *testing.T, b *events.Bus) {
	t.Helper()
	got := make(chan events.Event, 1)
	if _, err := b.Subscribe(context.Background(), "t.x", "", func(_ context.Context, e events.Event) error {
		got <- e
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(context.Background(), "t.x", 1); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-got:
		if string(e.Data) != "1" {
			t.Errorf("data %s", e.Data)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
	}
}

func TestOpen(t *testing.T) { roundTrip(t, Open(t)) }

func TestOpenExternal(t *testing.T) { roundTrip(t, OpenExternal(t)) }
