package wallet

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// A card replaced by its bank (new card number and/or expiry) keeps its
// token: the phone pays on without binding again. The TSP's
// token.state_changed for the move carries the new last 4 digits and
// expiry (never the PAN; every later event carries the new last 4 too), and
// the wallet's card follows it so the user sees the card they now hold.

// cardReplaced reports whether an event's card digits differ from the
// card's: then the event (if not older than the card's last change) moves
// the card to them.
func cardReplaced(c *Card, e *TokenStateEvent) bool {
	return validLast4(e.PANLast4) && e.PANLast4 != c.PANLast4
}

func validLast4(s string) bool {
	if len(s) != 4 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// validYYMM accepts a card expiry as the TSP sends it.
func validYYMM(s string) bool {
	if !validLast4(s) {
		return false
	}
	m := (s[2]-'0')*10 + s[3] - '0'
	return m >= 1 && m <= 12
}

// applyCardReplaced records the card's new last 4 (at the event's time;
// an event older than the card's last change does nothing) and notifies the
// device with a card_state notification whose reason is the TSP's
// (CARD_REPLACED) and which names the old and new last 4 and the expiry.
func (s *Service) applyCardReplaced(ctx context.Context, c *Card, e *TokenStateEvent, at time.Time) error {
	changed, err := s.repo.setCardLast4(ctx, c.ID, e.PANLast4, at, s.now())
	if err != nil || !changed {
		return err
	}
	payload := map[string]string{
		"cardId": c.ID, "previousState": c.State, "state": c.State, "causedBy": clip(e.CausedBy), "reason": clip(e.Reason),
		"panLast4": e.PANLast4, "previousPanLast4": c.PANLast4, "bank": c.Bank,
	}
	if validYYMM(e.PANExpiry) {
		payload["cardExpiry"] = e.PANExpiry
	}
	if err := s.repo.notify(ctx, c.DeviceID, NotifyCardState, payload, s.now(), s.cfg.NotificationsKept); err != nil {
		return err
	}
	s.cfg.Log.InfoContext(ctx, "card replaced by the bank", "card", c.ID, "panLast4", e.PANLast4)
	c.PANLast4 = e.PANLast4
	s.hub.signal(c.DeviceID)
	return nil
}

// setCardLast4 moves a card to new last 4 digits decided at `at`, unless
// the card changed later than that (events may arrive out of order: an
// older event still carries the old digits) or is removed. It takes the
// card's change time forward, so an older state event is ignored after it.
func (r *repo) setCardLast4(ctx context.Context, id, last4 string, at, now time.Time) (bool, error) {
	var changed bool
	err := r.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx,
			`UPDATE cards SET pan_last4 = $2, state_ms = $3, updated_ms = $4
			 WHERE id = $1 AND pan_last4 <> $2 AND state <> $5 AND state <> $6 AND state_ms <= $3`,
			id, last4, ms(at), ms(now), StateDeactivated, StatePending)
		if err != nil {
			return fmt.Errorf("wallet: set card last 4: %w", err)
		}
		n, err := res.RowsAffected()
		changed = n == 1
		return err
	})
	return changed, err
}
