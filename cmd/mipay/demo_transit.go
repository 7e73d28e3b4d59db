package main

import (
	"context"
	"fmt"

	"github.com/mipay-oss/mipay/nfc"
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/phone"
	"github.com/mipay-oss/mipay/transit"
	"github.com/mipay-oss/mipay/transit/gate"
)

// The transit part of the story: a Shenzhen card issued and topped up with
// in-app payments from the bound debit card, then ridden through three gates
// offline in express mode (no fingerprint).

func (d *demo) agency() (string, error) {
	a := d.sys.URL(node.RoleTransit)
	if a == "" {
		return "", fmt.Errorf("no transit agency running")
	}
	return a, nil
}

func (d *demo) transitIssue(ctx context.Context) (string, error) {
	agency, err := d.agency()
	if err != nil {
		return "", err
	}
	tc, err := d.phone.TransitIssue(ctx, phone.TransitIssueOptions{Agency: agency, City: "sz", Finger: phone.FingerOK})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s card %s in the secure element; issuance fee paid in-app with the bound debit card", tc.Label, tc.CardNumber), nil
}

func (d *demo) transitTopUp(ctx context.Context) (string, error) {
	agency, err := d.agency()
	if err != nil {
		return "", err
	}
	tc, err := d.phone.TransitTopUp(ctx, phone.TransitTopUpOptions{Agency: agency, AmountMinor: 5000, Finger: phone.FingerOK})
	if err != nil {
		return "", err
	}
	if tc.BalanceMinor != 5000 {
		return "", fmt.Errorf("balance %s after topping up 50.00", formatMinor(tc.BalanceMinor, "156"))
	}
	return "50.00 CNY paid, then loaded (MAC1/MAC2/TAC): balance 50.00 CNY", nil
}

func (d *demo) transitRide(ctx context.Context) (string, error) {
	agency, err := d.agency()
	if err != nil {
		return "", err
	}
	city, ok := d.sys.Ref.City("sz")
	if !ok || len(city.Stations) < 7 {
		return "", fmt.Errorf("no Shenzhen metro in the reference data")
	}
	token, err := transit.OperatorToken(d.sys.DataDir)
	if err != nil {
		return "", err
	}
	rides := []struct {
		station string
		mode    gate.Mode
	}{{city.Stations[0].ID, gate.ModeEntry}, {city.Stations[6].ID, gate.ModeExit}, {"bus-1", gate.ModeBus}}
	var charged []int64
	for _, r := range rides {
		cfg := gate.Config{DataDir: d.sys.DataDir, City: city, Station: r.station, Mode: r.mode, Agency: agency, OperatorToken: token}
		if _, err := gate.Provision(ctx, cfg); err != nil {
			return "", err
		}
		g, err := gate.Open(ctx, cfg)
		if err != nil {
			return "", err
		}
		out, err := d.gateTap(ctx, g)
		if uerr := func() error { _, err := g.Upload(ctx); return err }(); err == nil {
			err = uerr
		}
		g.Close()
		if err != nil {
			return "", err
		}
		if !out.Open {
			return "", fmt.Errorf("the %s gate at %s stayed shut", r.mode, r.station)
		}
		charged = append(charged, out.ChargedMinor)
	}
	return fmt.Sprintf("metro in at %s (%s), out at %s (%s), bus (%s): gates opened offline, no fingerprint",
		city.Stations[0].ID, formatMinor(charged[0], "156"), city.Stations[6].ID, formatMinor(charged[1], "156"), formatMinor(charged[2], "156")), nil
}

// gateTap has the phone tap a gate's reader in express mode.
func (d *demo) gateTap(ctx context.Context, g *gate.Gate) (gate.Result, error) {
	r, err := nfc.Listen("127.0.0.1:0")
	if err != nil {
		return gate.Result{}, err
	}
	defer r.Close()
	done := make(chan error, 1)
	go func() { done <- d.phone.TransitTap(ctx, r.Addr()) }()
	sess, err := r.Wait(ctx)
	if err != nil {
		return gate.Result{}, err
	}
	out, perr := g.Process(ctx, sess)
	sess.Close()
	if err := <-done; err != nil {
		return gate.Result{}, err
	}
	return out, perr
}

func (d *demo) transitBalance(ctx context.Context) (string, error) {
	agency, err := d.agency()
	if err != nil {
		return "", err
	}
	cards, err := d.phone.TransitCards(ctx, agency)
	if err != nil {
		return "", err
	}
	if len(cards) != 1 {
		return "", fmt.Errorf("%d transit cards", len(cards))
	}
	hist, err := d.phone.TransitHistory("")
	if err != nil {
		return "", err
	}
	c := cards[0]
	if c.ShadowBalance != c.BalanceMinor {
		return "", fmt.Errorf("card holds %s but the agency cleared %s", formatMinor(c.BalanceMinor, "156"), formatMinor(c.ShadowBalance, "156"))
	}
	return fmt.Sprintf("balance %s (the agency's cleared shadow balance agrees), %d entries in the card's history",
		formatMinor(c.BalanceMinor, "156"), len(hist)), nil
}
