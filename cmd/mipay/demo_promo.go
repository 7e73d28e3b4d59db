package main

import (
	"context"
	"fmt"
	"time"

	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/phone"
	"github.com/mipay-oss/mipay/pos"
	"github.com/mipay-oss/mipay/store"
)

// The promotions part of the story (issue 8): ICBC's seeded Mi Pay offer
// (10 CNY off from 50 CNY at restaurants and cafés, MCC 5812/5814) applies to
// the bound ICBC credit card at a restaurant. The terminal is approved for
// the full amount (the merchant is paid in full) and its receipt shows the
// saving; the phone's notification says "Saved 10.00 CNY with ICBC offer".

const (
	demoRestaurantMCC    = "5812"
	demoRestaurantAmount = 6000 // CNY fen, above the offer's 50.00 minimum
	demoRestaurantName   = "Noodle House"
)

// restaurant opens a terminal at a restaurant (once).
func (d *demo) restaurant(ctx context.Context) (*pos.Terminal, error) {
	if d.cafe != nil {
		return d.cafe, nil
	}
	c, err := iso8583.Dial(ctx, iso8583.ClientConfig{Addr: d.sys.Addr(node.RoleNetwork, "iso8583")})
	if err != nil {
		return nil, err
	}
	t, err := pos.OpenTerminal(ctx, pos.TerminalConfig{ID: "NOODLE01", MerchantName: demoRestaurantName, MCC: demoRestaurantMCC},
		store.Config{Dir: d.sys.DataDir, Prefix: "pos_noodle"}, &capturingLink{c: c})
	if err != nil {
		c.Close()
		return nil, err
	}
	d.cafe = t
	return t, nil
}

func (d *demo) payWithOffer(ctx context.Context) (string, error) {
	if d.credit == "" {
		return "", fmt.Errorf("no ICBC credit card bound")
	}
	term, err := d.restaurant(ctx)
	if err != nil {
		return "", err
	}
	rec, err := d.tapOn(ctx, term, d.credit, demoRestaurantAmount, "156", phone.FingerOK)
	if err != nil {
		return "", err
	}
	if rec.Outcome != pos.OutcomeApproved || rec.AmountMinor != demoRestaurantAmount {
		return "", fmt.Errorf("terminal shows %s %s for %s", rec.Outcome, rec.Response, formatMinor(rec.AmountMinor, rec.Currency))
	}
	if rec.DiscountMinor <= 0 {
		return "", fmt.Errorf("approved, but the receipt shows no saving (no offer applied)")
	}
	text, err := d.savingOnPhone(ctx, rec.RRN)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("merchant approved for the full %s; receipt: you saved %s with bank offer %s; phone: %q",
		formatMinor(rec.AmountMinor, rec.Currency), formatMinor(rec.DiscountMinor, rec.Currency), rec.CampaignID, text), nil
}

// savingOnPhone waits for the restaurant payment's notification on the phone
// (the credit card's payment with the receipt's RRN) and returns the saving
// it shows.
func (d *demo) savingOnPhone(ctx context.Context, rrn string) (string, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		ns, err := d.phone.Notifications(ctx, 0, 1)
		if err != nil {
			return "", err
		}
		for _, n := range ns {
			p := n.Payload
			if n.Kind != "transaction" || p["cardId"] != d.credit || p["rrn"] != rrn || p["amountMinor"] != float64(demoRestaurantAmount) {
				continue
			}
			text, _ := p["savingText"].(string)
			if text == "" || p["discountMinor"] == nil {
				return "", fmt.Errorf("the phone's notification shows no saving: %v", p)
			}
			return text, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no notification of the restaurant payment (RRN %s) on the phone", rrn)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
