package phone

import (
	"context"
	"fmt"
	"net/url"
	"strconv"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/nfc"
)

// PayOptions is one payment at a terminal.
type PayOptions struct {
	CardID string // "" = the default card
	Finger Finger
	Reader string // the terminal's NFC reader address
}

// PayResult is what happened on the phone's side.
type PayResult struct {
	Card    Card `json:"card"`
	Matched bool `json:"fingerprintMatched"`
	Tapped  bool `json:"tapped"` // the phone was in the reader's field
}

// Pay picks the card, takes the fingerprint and taps the reader. A matching
// fingerprint arms the card's applet for one transaction; without a match
// the tap still happens, and the terminal shows "See phone".
func (p *Phone) Pay(ctx context.Context, o PayOptions) (*PayResult, error) {
	p.mu.Lock()
	card, ref, err := p.payCard(ctx, o.CardID)
	if err != nil {
		p.mu.Unlock()
		return nil, err
	}
	res := &PayResult{Card: card}
	if err := p.se.Select(ref); err != nil {
		p.mu.Unlock()
		return nil, err
	}
	if p.matchFinger(o.Finger) {
		if err := p.se.Arm(ref); err != nil {
			p.mu.Unlock()
			return nil, err
		}
		res.Matched = true
	}
	p.mu.Unlock()
	if err := nfc.Tap(ctx, o.Reader, p.se); err != nil {
		return res, err
	}
	res.Tapped = true
	return res, nil
}

// payCard finds the card to pay with. Callers hold mu.
func (p *Phone) payCard(ctx context.Context, cardID string) (Card, string, error) {
	cards, err := p.cards(ctx)
	if err != nil {
		return Card{}, "", err
	}
	for _, c := range cards {
		if (cardID == "" && c.Default) || c.ID == cardID {
			ref, ok := p.app.CardTokens[c.ID]
			if !ok || !c.InSE {
				return Card{}, "", mipay.Errorf(mipay.ECONFLICT, "card %s is not installed on this phone", c.ID)
			}
			if c.State != "ACTIVE" {
				return Card{}, "", mipay.Errorf(mipay.ECONFLICT, "card •••• %s is %s and cannot pay", c.PANLast4, c.State)
			}
			return c, ref, nil
		}
	}
	if cardID == "" {
		return Card{}, "", mipay.Errorf(mipay.ENOTFOUND, "no default card: add a card first")
	}
	return Card{}, "", mipay.Errorf(mipay.ENOTFOUND, "no card %s on this phone", cardID)
}

// Transaction is a payment as the wallet recorded it.
type Transaction struct {
	ID           string `json:"id"`
	CardID       string `json:"cardId"`
	AmountMinor  int64  `json:"amountMinor"`
	Currency     string `json:"currency"`
	MerchantName string `json:"merchantName"`
	Approved     bool   `json:"approved"`
	ResponseCode string `json:"responseCode"`
	AuthCode     string `json:"authCode,omitempty"`
	TokenLast4   string `json:"tokenLast4,omitempty"`
	Time         string `json:"time"`
	// A bank offer applied at authorization: what the cardholder saved.
	DiscountMinor int64  `json:"discountMinor,omitempty"`
	OfferBank     string `json:"offerBank,omitempty"`
	SavingText    string `json:"savingText,omitempty"`
	// PointsEarned is the rewards points the approval earned (nil: the
	// issuer said nothing).
	PointsEarned *int64 `json:"pointsEarned,omitempty"`
	// Reversed: the acquirer reversed the approval; PointsReversed is what
	// the issuer took back with it.
	Reversed       bool   `json:"reversed,omitempty"`
	PointsReversed *int64 `json:"pointsReversed,omitempty"`
	// Paying abroad: the CNY billing amount and the rate.
	BillingAmountMinor int64  `json:"billingAmountMinor,omitempty"`
	ConversionRate     string `json:"conversionRate,omitempty"`
}

// Transactions lists a card's transactions (every card's when cardID is "").
func (p *Phone) Transactions(ctx context.Context, cardID string) ([]Transaction, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids := []string{cardID}
	if cardID == "" {
		cards, err := p.cards(ctx)
		if err != nil {
			return nil, err
		}
		ids = ids[:0]
		for _, c := range cards {
			ids = append(ids, c.ID)
		}
	}
	var all []Transaction
	for _, id := range ids {
		var out struct {
			Transactions []Transaction `json:"transactions"`
		}
		if err := p.wallet.Do(ctx, "GET", "/v1/cards/"+url.PathEscape(id)+"/transactions", nil, &out); err != nil {
			return nil, err
		}
		all = append(all, out.Transactions...)
	}
	return all, nil
}

// Notification is a push message to the device.
type Notification struct {
	Seq     int64          `json:"seq"`
	Kind    string         `json:"kind"`
	Time    string         `json:"time"`
	Payload map[string]any `json:"payload"`
}

// Notifications returns the device's notifications after seq (long-polling
// up to waitSeconds when there are none).
func (p *Phone) Notifications(ctx context.Context, after int64, waitSeconds int) ([]Notification, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.requireDevice(); err != nil {
		return nil, err
	}
	var out struct {
		Notifications []Notification `json:"notifications"`
	}
	q := "?after=" + strconv.FormatInt(after, 10) + "&wait=" + strconv.Itoa(waitSeconds) + "s"
	if err := p.wallet.Do(ctx, "GET", "/v1/devices/"+url.PathEscape(p.app.DeviceID)+"/notifications"+q, nil, &out); err != nil {
		return nil, err
	}
	return out.Notifications, nil
}

func (r PayResult) String() string {
	return fmt.Sprintf("%s •••• %s", r.Card.Bank, r.Card.PANLast4)
}
