package main

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/mipay-oss/mipay/phone"
)

// cardRewards asks the wallet for each card's points and offers; a card
// whose rewards could not be read is left out (the card list still shows).
func cardRewards(ctx context.Context, p *phone.Phone, cards []phone.Card) map[string]phone.Rewards {
	out := make(map[string]phone.Rewards, len(cards))
	for _, c := range cards {
		if r, err := p.Rewards(ctx, c.ID); err == nil {
			out[c.ID] = r
		}
	}
	return out
}

func pointsText(r phone.Rewards) string {
	if r.Points == nil {
		return "0"
	}
	return strconv.FormatInt(r.Points.Balance, 10)
}

// printOffers lists, under the cards, the offers each qualifies for now.
func printOffers(w io.Writer, cards []phone.Card, rewards map[string]phone.Rewards) {
	for _, c := range cards {
		r, ok := rewards[c.ID]
		if !ok {
			continue
		}
		if r.OffersUnavailable {
			fmt.Fprintf(w, "Offers for %s: unavailable right now\n", c.ID)
			continue
		}
		if len(r.Offers) == 0 {
			continue
		}
		fmt.Fprintf(w, "Offers for %s (%s •••• %s):\n", c.ID, c.Bank, c.PANLast4)
		for _, o := range r.Offers {
			fmt.Fprintf(w, "  %s: %s (%s)\n", o.BankName, o.Text, o.Name)
		}
	}
}
