package network

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/mipay-oss/mipay/iso8583"
)

// SubjectTransactionReversed is the event of an acquirer's reversal of a
// tokenized approval, published once the issuer acknowledged it.
const SubjectTransactionReversed = "transaction.reversed"

// ReversalEvent is the payload of transaction.reversed (no PAN). It names
// the original by the transactionId its transaction.authorized carried.
type ReversalEvent struct {
	TransactionID string    `json:"transactionId"`
	TokenRef      string    `json:"tokenRef"`
	TokenLast4    string    `json:"tokenLast4"`
	IssuerID      string    `json:"issuerId"`
	AmountMinor   int64     `json:"amountMinor"`
	Currency      string    `json:"currency"`
	MerchantName  string    `json:"merchantName"`
	STAN          string    `json:"stan"`
	RRN           string    `json:"rrn"`
	Time          time.Time `json:"time"`
	// DiscountMinor is the saving the reversal took back (the issuer's
	// discount booking, DE124 tag 02 of its 0410).
	DiscountMinor int64 `json:"discountMinor,omitempty"`
	// Points: Earned is the points the reversal took back, Balance the
	// card's balance after it (DE124 tags 05/06 of the 0410); nil when the
	// issuer said nothing (a repeat acknowledged without them).
	Points *EventPoints `json:"points,omitempty"`
}

// reversalEventID keeps the event's id apart from the original's (the bus
// deduplicates by id).
func reversalEventID(origKey string) string { return "rev-" + transactionID(origKey) }

func reversalEvent(origKey string, r *authRecord, answer *iso8583.Message, now time.Time) (*outboxEvent, error) {
	e := ReversalEvent{TransactionID: transactionID(origKey), TokenRef: r.TokenRef, TokenLast4: r.TokenLast4,
		IssuerID: r.IssuerID, AmountMinor: r.AmountMinor, Currency: r.Currency, MerchantName: trimMerchant(r.Merchant),
		STAN: r.STAN, RRN: r.RRN, Time: now.UTC()}
	if answer != nil && answer.String(39) == RCApproved {
		e.Points = pointsOf(answer)
		if answer.Has(iso8583.FieldPromotion) {
			if f, err := iso8583.ParsePromotion(answer.String(iso8583.FieldPromotion)); err == nil && f.DiscountAmount != "" {
				if d, err := strconv.ParseInt(f.DiscountAmount, 10, 64); err == nil && d > 0 && d <= r.AmountMinor {
					e.DiscountMinor = d
				}
			}
		}
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	return &outboxEvent{ID: reversalEventID(origKey), Subject: SubjectTransactionReversed, Payload: b}, nil
}
