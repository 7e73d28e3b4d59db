package wallet

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/mipay-oss/mipay"
)

// A device-wide action (switch-off, found it, remove) goes to the TSP as
// one batch of the device's tokens (POST /v1/tokens/lifecycle) and the
// answered states are recorded in one wallet write: a device with many
// cards is switched off in about the time of one card. A TSP without the
// batch endpoint gets the card-by-card calls.

// maxBatchTokens is the TSP's bound on one batch (tsp.MaxBatchTokens).
const maxBatchTokens = 1000

// TokenResult is what the TSP did to one token of a batch.
type TokenResult struct {
	TokenRef string `json:"tokenUniqueReference"`
	State    string `json:"state"`
	Changed  bool   `json:"changed"`
	Code     string `json:"code"`
	Reason   string `json:"reason"`
	Message  string `json:"message"`
}

// BatchTSP is a TSP that changes many tokens in one call (HTTPTSP is one).
type BatchTSP interface {
	LifecycleBatch(ctx context.Context, tokenRefs []string, action, causedBy, reason string) ([]TokenResult, error)
}

// errNoBatch: the TSP has no batch endpoint; act card by card.
var errNoBatch = errors.New("wallet: the TSP has no batch lifecycle")

// LifecycleBatch implements BatchTSP.
func (t *HTTPTSP) LifecycleBatch(ctx context.Context, tokenRefs []string, action, causedBy, reason string) ([]TokenResult, error) {
	var out struct {
		Results []TokenResult `json:"results"`
	}
	err := t.do(ctx, http.MethodPost, "/v1/tokens/lifecycle",
		map[string]any{"tokenRefs": tokenRefs, "action": action, "causedBy": causedBy, "reason": reason}, &out)
	if mipay.ErrorCode(err) == mipay.ENOTFOUND {
		return nil, errNoBatch // an older TSP: the route is unknown
	}
	if err != nil {
		return nil, err
	}
	if len(out.Results) != len(tokenRefs) {
		return nil, mipay.Errorf(mipay.EUNAVAILABLE, "the token service answered %d results for %d cards", len(out.Results), len(tokenRefs))
	}
	return out.Results, nil
}

// cardStatePayload is the card_state notification of a state change.
func cardStatePayload(c *Card, state, causedBy, reason string) map[string]string {
	return map[string]string{
		"cardId": c.ID, "previousState": c.State, "state": state, "causedBy": causedBy, "reason": reason,
		"panLast4": c.PANLast4, "bank": c.Bank,
	}
}

// deviceActionBatch runs action on cards (indexes into out.Cards) through
// the TSP's batch and records every answered state in one write. errNoBatch
// when the TSP cannot; any other error is reported on each card, as the
// card-by-card path does.
func (s *Service) deviceActionBatch(ctx context.Context, bt BatchTSP, cards []*Card, idx []int, out *DeviceChange, action, reason string) error {
	type update struct {
		card  *Card
		state string
		at    int // index in out.Cards
	}
	var ups []update
	for lo := 0; lo < len(cards); lo += maxBatchTokens {
		chunk := cards[lo:min(lo+maxBatchTokens, len(cards))]
		refs := make([]string, len(chunk))
		for i, c := range chunk {
			refs[i] = c.TokenRef
		}
		res, err := bt.LifecycleBatch(ctx, refs, action, CausedByCardholder, reason)
		if errors.Is(err, errNoBatch) && lo == 0 {
			return errNoBatch
		}
		for i, c := range chunk {
			ch := &out.Cards[idx[lo+i]]
			switch {
			case err != nil:
				ch.Error = mipay.ErrorMessage(err)
			case res[i].TokenRef != c.TokenRef:
				ch.Error = "the token service answered for another card"
			case !res[i].Changed:
				ch.Error = res[i].Message
				if ch.Error == "" {
					ch.Error = "the token service did not change this card"
				}
			default:
				switch res[i].State {
				case StateInactive, StateActive, StateSuspended, StateDeactivated:
					ups = append(ups, update{c, res[i].State, idx[lo+i]})
				default:
					ch.Error = "the token service reported an unknown token state"
				}
			}
		}
	}
	if len(ups) == 0 {
		return nil
	}
	now := s.now()
	changed := make([]bool, len(ups))
	err := s.repo.write(ctx, func(tx *sql.Tx) error {
		var payloads []any
		for k, u := range ups {
			ok, err := setCardStateTx(ctx, tx, u.card.ID, u.state, now, now)
			if err != nil {
				return err
			}
			changed[k] = ok
			if ok {
				payloads = append(payloads, cardStatePayload(u.card, u.state, CausedByCardholder, reason))
			}
		}
		// The cards are of one device (deviceAction lists one).
		return s.repo.notifyManyTx(ctx, tx, out.DeviceID, NotifyCardState, payloads, now, s.cfg.NotificationsKept)
	})
	if err != nil {
		// The TSP made the changes; its events will bring them here.
		s.cfg.Log.ErrorContext(ctx, "recording a device's card states failed", "device", out.DeviceID, "cards", len(ups), "err", err)
		for _, u := range ups {
			out.Cards[u.at].Error = mipay.ErrorMessage(err)
		}
		return nil
	}
	signalled := map[string]bool{}
	for k, u := range ups {
		out.Cards[u.at].State, out.Cards[u.at].Changed = u.state, u.state != u.card.State
		if changed[k] && !signalled[u.card.DeviceID] {
			signalled[u.card.DeviceID] = true
			s.hub.signal(u.card.DeviceID)
		}
	}
	s.cfg.Log.InfoContext(ctx, "device cards changed", "device", out.DeviceID, "action", action, "cards", len(ups), "took", time.Since(now).String())
	return nil
}

// HandleTokenStates records the changes of a TSP batch (token.states_changed:
// {"changes": [token.state_changed payloads]}), each as HandleTokenState
// does; a change the wallet already recorded (its own call's answer) costs
// a read only.
func (s *Service) HandleTokenStates(ctx context.Context, eventID string, data json.RawMessage) error {
	var ev struct {
		Changes []TokenStateEvent `json:"changes"`
	}
	if err := json.Unmarshal(data, &ev); err != nil {
		s.cfg.Log.ErrorContext(ctx, "malformed token states event dropped", "event", eventID, "err", err)
		return nil
	}
	for i := range ev.Changes {
		if ev.Changes[i].TokenRef == "" {
			continue
		}
		if err := s.applyTokenState(ctx, eventID, &ev.Changes[i]); err != nil {
			return err // redelivered: the changes already recorded are skipped
		}
	}
	return nil
}
