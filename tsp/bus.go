package tsp

import (
	"context"
	"fmt"

	"github.com/mipay-oss/mipay/events"
)

// BusSubscriber delivers token.state_changed from the events bus through a
// fan-out subscription: every switch node sees every change.
type BusSubscriber struct {
	Bus *events.Bus
}

// SubscribeStateChanges implements StateChangeSubscriber.
func (b BusSubscriber) SubscribeStateChanges(ctx context.Context, fn func(StateChange)) (func(), error) {
	sub, err := b.Bus.Subscribe(ctx, SubjectStateChanged, "", func(_ context.Context, e events.Event) error {
		var c StateChange
		if err := e.Decode(&c); err != nil {
			return fmt.Errorf("tsp: decode %s: %w", SubjectStateChanged, err)
		}
		fn(c)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return func() { _ = sub.Close() }, nil
}
