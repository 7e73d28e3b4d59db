package wallet

import (
	"context"
	"errors"
	"sync"

	"github.com/mipay-oss/mipay"
)

// Token lifecycle from the cardholder's side: one card, or every card of a
// device at once (the lost-phone switch-off of the portal and its "found
// it"). Each change goes to the TSP first (which tells the issuer and
// publishes the event every switch node invalidates its cache on); the
// wallet records the state the TSP answers.

// Default reasons recorded with cardholder changes.
const (
	ReasonDeviceLost       = "DEVICE_LOST"
	ReasonDeviceFound      = "DEVICE_FOUND"
	ReasonCardholder       = "CARDHOLDER_REQUEST"
	ReasonRemovedFromPhone = "REMOVED_BY_CARDHOLDER"
	maxReasonBytes         = 100
)

// CardChange is what happened to one card in a lifecycle action.
type CardChange struct {
	CardID  string `json:"cardId"`
	State   string `json:"state"`
	Changed bool   `json:"changed"`
	Error   string `json:"error,omitempty"` // user-safe message when the TSP refused
}

// DeviceChange is the answer to a device-wide action.
type DeviceChange struct {
	DeviceID string       `json:"deviceId"`
	Cards    []CardChange `json:"cards"`
	Command  *Command     `json:"command,omitempty"` // the WIPE queued by a switch-off
	// TransitHotlisted are the device's transit cards a switch-off put on
	// the agencies' hotlists; TransitError says why that did not happen.
	TransitHotlisted []string `json:"transitHotlisted,omitempty"`
	TransitError     string   `json:"transitError,omitempty"`
	// TransitRestored are the transit cards "found it" took off the
	// hotlists (only those the switch-off had put there).
	TransitRestored []string `json:"transitRestored,omitempty"`
}

func checkReason(reason, def string) (string, error) {
	if reason == "" {
		return def, nil
	}
	if err := checkText("reason", reason, 1, maxReasonBytes); err != nil {
		return "", err
	}
	return reason, nil
}

// SuspendCard suspends one card's token (caused by the cardholder).
func (s *Service) SuspendCard(ctx context.Context, accountID, cardID, reason string) (*Card, error) {
	return s.cardAction(ctx, accountID, cardID, "suspend", reason, ReasonCardholder)
}

// ResumeCard resumes a card the cardholder suspended (the TSP refuses to
// resume an issuer's suspension).
func (s *Service) ResumeCard(ctx context.Context, accountID, cardID, reason string) (*Card, error) {
	return s.cardAction(ctx, accountID, cardID, "resume", reason, ReasonCardholder)
}

func (s *Service) cardAction(ctx context.Context, accountID, cardID, action, reason, def string) (*Card, error) {
	reason, err := checkReason(reason, def)
	if err != nil {
		return nil, err
	}
	c, err := s.liveCard(ctx, accountID, cardID)
	if err != nil {
		return nil, err
	}
	if ch := s.applyToCard(context.WithoutCancel(ctx), c, action, reason); ch.Error != "" {
		return nil, ch.err
	}
	return s.repo.card(ctx, accountID, cardID)
}

// cardResult carries the error next to its user-safe text.
type cardResult struct {
	CardChange
	err error
}

// applyToCard runs one TSP lifecycle action and records the new state.
func (s *Service) applyToCard(ctx context.Context, c *Card, action, reason string) cardResult {
	out := cardResult{CardChange: CardChange{CardID: c.ID, State: c.State}}
	state, err := s.cfg.TSP.Lifecycle(ctx, c.TokenRef, action, CausedByCardholder, reason)
	if err == nil && state == "" {
		err = mipay.Errorf(mipay.EUNAVAILABLE, "the token service did not say the card's new state")
	}
	if err == nil {
		err = s.changeCardState(ctx, c, state, CausedByCardholder, reason, s.now())
	}
	if err != nil {
		out.err, out.Error = err, mipay.ErrorMessage(err)
		return out
	}
	out.Changed, out.State = state != c.State, state
	return out
}

// maxParallelTSPCalls bounds the TSP calls of one device-wide action.
const maxParallelTSPCalls = 4

// deviceAction applies action to every card of the device in one of the
// states `from`, in parallel (bounded).
func (s *Service) deviceAction(ctx context.Context, accountID, deviceID, action, reason string, from ...string) (*DeviceChange, error) {
	cards, err := s.Cards(ctx, accountID, deviceID, false)
	if err != nil {
		return nil, err
	}
	ctx = context.WithoutCancel(ctx) // changes made at the TSP must be recorded
	out := &DeviceChange{DeviceID: deviceID, Cards: make([]CardChange, len(cards))}
	var todo []*Card
	var idx []int
	for i := range cards {
		c := &cards[i]
		out.Cards[i] = CardChange{CardID: c.ID, State: c.State}
		for _, f := range from {
			if c.State == f {
				todo, idx = append(todo, c), append(idx, i)
				break
			}
		}
	}
	// One TSP call and one write for the whole device (lifecycle_batch.go).
	if bt, ok := s.cfg.TSP.(BatchTSP); ok && len(todo) > 0 {
		if err := s.deviceActionBatch(ctx, bt, todo, idx, out, action, reason); !errors.Is(err, errNoBatch) {
			return out, err
		}
	}
	sem := make(chan struct{}, maxParallelTSPCalls)
	var wg sync.WaitGroup
	for k, c := range todo {
		i := idx[k]
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			out.Cards[i] = s.applyToCard(ctx, c, action, reason).CardChange
		}()
	}
	wg.Wait()
	return out, nil
}

// SwitchOffDevice is "switch off Mi Pay on this device": every ACTIVE card
// of the device is SUSPENDED at once (reason DEVICE_LOST unless given), the
// device's transit cards are hotlisted (with the caller's session bearer,
// when given and a transit agency is configured) and a WIPE is queued for
// the device's next sync. Cards the TSP refused, and a transit failure, are
// reported in the answer; the rest is done regardless.
func (s *Service) SwitchOffDevice(ctx context.Context, accountID, deviceID, reason, bearer string) (*DeviceChange, error) {
	reason, err := checkReason(reason, ReasonDeviceLost)
	if err != nil {
		return nil, err
	}
	out, err := s.deviceAction(ctx, accountID, deviceID, "suspend", reason, StateActive)
	if err != nil {
		return nil, err
	}
	ctx = context.WithoutCancel(ctx)
	if bearer != "" && s.cfg.Transit != nil {
		nums, err := s.cfg.Transit.HotlistDevice(ctx, bearer, deviceID, reason)
		switch {
		case errors.Is(err, errNoTransit):
		case err != nil:
			out.TransitError = mipay.ErrorMessage(err)
			s.cfg.Log.WarnContext(ctx, "transit hotlist failed", "device", deviceID, "err", err)
		default:
			out.TransitHotlisted = nums
		}
	}
	cmd, err := s.QueueCommand(ctx, accountID, deviceID, CommandWipe)
	if err != nil {
		return nil, err
	}
	out.Command = cmd
	return out, nil
}

// DeviceFound is "found it": the device's SUSPENDED cards are resumed and,
// with the caller's session bearer, the transit cards its switch-off
// hotlisted come off the agencies' hotlists (a transit failure is reported
// in the answer, like the switch-off's).
func (s *Service) DeviceFound(ctx context.Context, accountID, deviceID, reason, bearer string) (*DeviceChange, error) {
	reason, err := checkReason(reason, ReasonDeviceFound)
	if err != nil {
		return nil, err
	}
	out, err := s.deviceAction(ctx, accountID, deviceID, "resume", reason, StateSuspended)
	if err != nil {
		return nil, err
	}
	if bearer != "" && s.cfg.Transit != nil {
		ctx = context.WithoutCancel(ctx)
		nums, err := s.cfg.Transit.RestoreDevice(ctx, bearer, deviceID)
		switch {
		case errors.Is(err, errNoTransit):
		case err != nil:
			out.TransitError = mipay.ErrorMessage(err)
			s.cfg.Log.WarnContext(ctx, "transit hotlist lift failed", "device", deviceID, "err", err)
		default:
			out.TransitRestored = nums
		}
	}
	return out, nil
}

// RemoveDeviceCards deletes every card of the device for good.
func (s *Service) RemoveDeviceCards(ctx context.Context, accountID, deviceID, reason string) (*DeviceChange, error) {
	reason, err := checkReason(reason, ReasonRemovedFromPhone)
	if err != nil {
		return nil, err
	}
	return s.deviceAction(ctx, accountID, deviceID, "delete", reason, StateActive, StateInactive, StateSuspended)
}
