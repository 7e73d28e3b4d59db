package issuer

import (
	"context"
	"fmt"
	"net/http"

	"github.com/mipay-oss/mipay"
)

// The bank's staff look at the tokens of a card (which devices, which
// states) before acting on them. The TSP is asked: it knows every token of
// the card, including those moved to it by a replacement.

// TSPCardTokens is the TSP's POST /v1/issuer/cards/tokens.
type TSPCardTokens struct {
	PAN string `json:"pan"`
}

// String hides the PAN.
func (r TSPCardTokens) String() string { return fmt.Sprintf("{pan:%s}", maskPAN(r.PAN)) }

// CardRequest names one card by its PAN (operator requests that only read).
type CardRequest struct {
	PAN string `json:"pan"`
}

// String hides the PAN.
func (r CardRequest) String() string { return fmt.Sprintf("{pan:%s}", maskPAN(r.PAN)) }

// CardTokens lists the tokens of one of the bank's cards. A card without
// tokens answers an empty list.
func (h *Host) CardTokens(ctx context.Context, issuerID string, req CardRequest) (CardActionResult, error) {
	a, err := h.bankCard(ctx, issuerID, "pan", req.PAN)
	if err != nil {
		return CardActionResult{}, err
	}
	t, err := h.tspCards()
	if err != nil {
		return CardActionResult{}, err
	}
	out := CardActionResult{CardID: a.card.ID, PAN: a.card.Masked(), CardStatus: a.currentStatus(), Tokens: []TSPCardToken{}}
	res, err := t.CardTokens(ctx, TSPCardTokens{PAN: req.PAN})
	if mipay.ErrorCode(err) == mipay.ENOTFOUND {
		return out, nil
	}
	if err != nil {
		return CardActionResult{}, fmt.Errorf("issuer: TSP card tokens: %w", err)
	}
	out.Tokens = res.Tokens
	return out, nil
}

// CardTokens implements TSPCards.
func (c *HTTPTSP) CardTokens(ctx context.Context, req TSPCardTokens) (TSPCardResult, error) {
	return c.card(ctx, "/v1/issuer/cards/tokens", req)
}

func (h *Host) handleCardTokens(w http.ResponseWriter, r *http.Request) {
	bankCall(w, r, h.CardTokens)
}
