package network

import (
	"strconv"

	"github.com/mipay-oss/mipay/iso8583"
)

// EventPoints is a card's rewards points as its issuer answered an approval
// (DE124 tags 05 and 06 of the 0210). The points ledger is the issuer's,
// keyed by its own card id, which no other party sees: the wallet learns a
// card's balance only from these answers, carried in transaction.authorized.
// The acquirer's answer never gets them (the merchant need not know).
type EventPoints struct {
	Earned  int64 `json:"earned"`
	Balance int64 `json:"balance"`
}

// maxPoints bounds what is believed of an issuer's answer (12 digits fit).
const maxPoints = 999_999_999_999

// pointsOf reads the points of an issuer's approval; nil when it sent none
// or something unreadable (a payment is never declined for its points).
func pointsOf(answer *iso8583.Message) *EventPoints {
	if !answer.Has(iso8583.FieldPromotion) {
		return nil
	}
	f, err := iso8583.ParsePromotion(answer.String(iso8583.FieldPromotion))
	if err != nil || f.PointsEarned == "" || f.PointsBalance == "" {
		return nil
	}
	earned, err1 := strconv.ParseInt(f.PointsEarned, 10, 64)
	balance, err2 := strconv.ParseInt(f.PointsBalance, 10, 64)
	if err1 != nil || err2 != nil || earned < 0 || earned > maxPoints || balance < -maxPoints || balance > maxPoints {
		return nil
	}
	return &EventPoints{Earned: earned, Balance: balance}
}
