package wallet

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/config"
)

// Reversals (issue 8): an acquirer's reversal of an approval reaches the
// wallet as transaction.reversed once the issuer acknowledged it, with the
// points it took back and the card's balance after it. The wallet marks the
// transaction reversed (its points shown as 0, pointsReversed what was taken
// back), restores the card's balance (newest wins, as with approvals) and
// notifies the phone "Payment of 60.00 CNY reversed".

// Subject and durable consumer of reversals.
const (
	SubjectTransactionReversed = "transaction.reversed"
	DurableReversals           = "wallet-reversals"
	// NotifyTransactionReversed is the notification of a reversal; its
	// payload is a TransactionReversal.
	NotifyTransactionReversed = "transaction_reversed"
)

// ReversalEvent is the payload of transaction.reversed as the switch
// publishes it (no PAN). TransactionID is the original's.
type ReversalEvent struct {
	TransactionID string       `json:"transactionId"`
	TokenRef      string       `json:"tokenRef"`
	AmountMinor   int64        `json:"amountMinor"`
	Currency      string       `json:"currency"`
	MerchantName  string       `json:"merchantName"`
	Time          time.Time    `json:"time"`
	DiscountMinor int64        `json:"discountMinor"`
	Points        *EventPoints `json:"points"`
}

// TransactionReversal is the notification of a reversal.
type TransactionReversal struct {
	TransactionID  string    `json:"transactionId"`
	CardID         string    `json:"cardId"`
	AmountMinor    int64     `json:"amountMinor"`
	Currency       string    `json:"currency"`
	MerchantName   string    `json:"merchantName,omitempty"`
	DiscountMinor  int64     `json:"discountMinor,omitempty"`
	PointsReversed *int64    `json:"pointsReversed,omitempty"`
	Time           time.Time `json:"time"`
	Text           string    `json:"text"`
}

// reversalText is what the phone shows: "Payment of 60.00 CNY reversed"
// (DE49's numeric currency named by its code, in its minor units).
func reversalText(amountMinor int64, currency string) string {
	exp, name := 2, currency
	if c, ok := config.CurrencyByNumeric(currency); ok {
		exp, name = c.MinorUnits, c.Code
	}
	div := int64(1)
	for range exp {
		div *= 10
	}
	if exp == 0 {
		return fmt.Sprintf("Payment of %d %s reversed", amountMinor, name)
	}
	return fmt.Sprintf("Payment of %d.%0*d %s reversed", amountMinor/div, exp, amountMinor%div, name)
}

// HandleReversal records a reversal of one of the wallet's cards' approvals
// once (by the original's transaction id): a redelivery, or a second
// reversal of the same payment, changes nothing.
func (s *Service) HandleReversal(ctx context.Context, eventID string, data json.RawMessage) error {
	var e ReversalEvent
	if err := json.Unmarshal(data, &e); err != nil || e.TransactionID == "" || e.TokenRef == "" {
		// A malformed event will not get better on redelivery.
		s.cfg.Log.ErrorContext(ctx, "malformed reversal event dropped", "event", eventID, "err", err)
		return nil
	}
	c, err := s.repo.tokenCard(ctx, e.TokenRef)
	if mipay.ErrorCode(err) == mipay.ENOTFOUND {
		return nil
	}
	if err != nil {
		return err
	}
	at := s.eventTime(e.Time)
	n := &TransactionReversal{TransactionID: clip(e.TransactionID), CardID: c.cardID, AmountMinor: e.AmountMinor,
		Currency: clip(e.Currency), MerchantName: clip(e.MerchantName), Time: at.UTC()}
	if e.DiscountMinor > 0 && e.DiscountMinor <= e.AmountMinor {
		n.DiscountMinor = e.DiscountMinor
	}
	pts := e.Points
	if pts != nil && (pts.Earned < 0 || pts.Earned > maxEventPoints || pts.Balance < -maxEventPoints || pts.Balance > maxEventPoints) {
		pts = nil // unbelievable: the reversal is still recorded
	}
	if pts != nil {
		n.PointsReversed = &pts.Earned
	}
	n.Text = reversalText(n.AmountMinor, n.Currency)
	inserted, err := s.repo.recordReversal(ctx, c.deviceID, n, pts, s.now(), s.cfg.NotificationsKept)
	if err != nil {
		return err
	}
	if inserted {
		s.hub.signal(c.deviceID)
	}
	return nil
}

// recordReversal stores the reversal, the card's balance after it and the
// notification in one write; false when it was recorded before.
func (r *repo) recordReversal(ctx context.Context, deviceID string, n *TransactionReversal, pts *EventPoints, now time.Time, keep int) (bool, error) {
	body, err := encodeNotification(n)
	if err != nil {
		return false, err
	}
	var inserted bool
	err = r.write(ctx, func(tx *sql.Tx) error {
		ctx := r.db.WriteContext(ctx) // as in insertTransaction
		inserted = false
		var reversed sql.NullInt64
		if n.PointsReversed != nil {
			reversed = sql.NullInt64{Int64: *n.PointsReversed, Valid: true}
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO transaction_reversals (transaction_id, card_id, points_reversed, discount_minor, time_ms)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT (transaction_id) DO NOTHING`, n.TransactionID, n.CardID, reversed, n.DiscountMinor, ms(n.Time))
		if err != nil {
			return fmt.Errorf("wallet: record reversal: %w", err)
		}
		if k, _ := res.RowsAffected(); k == 0 {
			return nil
		}
		inserted = true
		if pts != nil {
			// The reversal's balance is the card's newest unless a later
			// approval's already arrived (same rule as recordPoints).
			_, err = tx.ExecContext(ctx, `INSERT INTO card_points (card_id, balance, as_of_ms, transaction_id) VALUES ($1, $2, $3, $4)
				ON CONFLICT (card_id) DO UPDATE SET balance = excluded.balance, as_of_ms = excluded.as_of_ms,
				transaction_id = excluded.transaction_id
				WHERE card_points.as_of_ms < excluded.as_of_ms
				   OR (card_points.as_of_ms = excluded.as_of_ms AND card_points.transaction_id < excluded.transaction_id)`,
				n.CardID, pts.Balance, ms(n.Time), "rev-"+n.TransactionID)
			if err != nil {
				return fmt.Errorf("wallet: card points: %w", err)
			}
		}
		return r.appendTx(ctx, tx, deviceID, NotifyTransactionReversed, body, now, keep)
	})
	return inserted, err
}

// addReversals marks the reversed transactions of a page (one query): a
// reversed transaction earned no points in the end.
func (r *repo) addReversals(ctx context.Context, ts []Transaction) error {
	if len(ts) == 0 {
		return nil
	}
	idx, in, args := transactionIDsIn(ts)
	rows, err := r.db.DB.QueryContext(ctx, `SELECT transaction_id, points_reversed, time_ms FROM transaction_reversals WHERE transaction_id IN (`+
		in+`)`, args...)
	if err != nil {
		return fmt.Errorf("wallet: transaction reversals: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var pts sql.NullInt64
		var at int64
		if err := rows.Scan(&id, &pts, &at); err != nil {
			return fmt.Errorf("wallet: transaction reversals: %w", err)
		}
		i, ok := idx[id]
		if !ok {
			continue
		}
		t := &ts[i]
		t.Reversed = true
		when := fromMS(at)
		t.ReversedAt = &when
		if pts.Valid {
			v := pts.Int64
			t.PointsReversed = &v
		}
		if t.PointsEarned != nil {
			zero := int64(0)
			t.PointsEarned = &zero
		}
	}
	return rows.Err()
}
