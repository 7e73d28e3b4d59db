package tsp

import (
	"context"
	"fmt"

	"github.com/mipay-oss/mipay/events"
)

// BusSubscriber delivers token.state_changed and token.states_changed (a
// batch's changes) from the events bus through fan-out subscriptions:
// every switch node sees every change.
type BusSubscriber struct {
	Bus *events.Bus
}

// SubscribeStateChanges implements StateChangeSubscriber.
func (b BusSubscriber) SubscribeStateChanges(ctx context.Context, fn func(StateChange)) (func(), error) {
	one, err := b.Bus.Subscribe(ctx, SubjectStateChanged, "", func(_ context.Context, e events.Event) error {
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
	many, err := b.Bus.Subscribe(ctx, SubjectStatesChanged, "", func(_ context.Context, e events.Event) error {
		var cs StateChanges
		if err := e.Decode(&cs); err != nil {
			return fmt.Errorf("tsp: decode %s: %w", SubjectStatesChanged, err)
		}
		for _, c := range cs.Changes {
			fn(c)
		}
		return nil
	})
	if err != nil {
		_ = one.Close()
		return nil, err
	}
	return func() { _ = one.Close(); _ = many.Close() }, nil
}
