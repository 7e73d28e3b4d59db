package phone

import (
	"context"
	"net/url"
)

// Offer is a bank offer a card qualifies for now, as the wallet lists it.
type Offer struct {
	CampaignID string `json:"campaignId"`
	BankName   string `json:"bankName"`
	Name       string `json:"name"`
	Text       string `json:"text"` // "10.00 CNY off from 50.00 CNY"
	Ends       string `json:"ends"`
}

// CardPoints is a card's rewards points balance as of its newest approval.
type CardPoints struct {
	Balance int64  `json:"balance"`
	AsOf    string `json:"asOf"`
}

// Rewards is a card's points and offers.
type Rewards struct {
	CardID            string      `json:"cardId"`
	Points            *CardPoints `json:"points"` // nil before the card's first approval
	Offers            []Offer     `json:"offers"`
	OffersUnavailable bool        `json:"offersUnavailable,omitempty"`
}

// Rewards asks the wallet for a card's points balance and the offers it
// qualifies for now.
func (p *Phone) Rewards(ctx context.Context, cardID string) (Rewards, error) {
	var out Rewards
	err := p.wallet.Do(ctx, "GET", "/v1/cards/"+url.PathEscape(cardID)+"/rewards", nil, &out)
	return out, err
}
