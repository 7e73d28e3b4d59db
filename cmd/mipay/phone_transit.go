package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/phone"
)

// defaultTransitURL is the transit agencies' address under `mipay up`.
const defaultTransitURL = "http://127.0.0.1:8450"

func transitFlag(fs *flag.FlagSet) *string {
	return fs.String("transit", envOr("MIPAY_TRANSIT_URL", defaultTransitURL), "the transit agencies")
}

func money(minor int64) string { return fmt.Sprintf("%d.%02d", minor/100, minor%100) }

// transitPhoneCommands are the Mi Wallet app's transit card commands.
func transitPhoneCommands() []phoneCommand {
	return []phoneCommand{
		{"transit-issue", "--city ID [--card ID] [--finger ok|wrong|none]", "get a transit card of a city (a fee is paid in-app with a bound card)", func(fs *flag.FlagSet) func(context.Context, *phone.Phone, *phoneOut) error {
			agency := transitFlag(fs)
			city := fs.String("city", "", "the city: bj, sh, sz, gz, wh, cq")
			card := fs.String("card", "", "the bound card paying the fee (default: the default card)")
			finger := fs.String("finger", "ok", "what touches the sensor when paying")
			return func(ctx context.Context, p *phone.Phone, o *phoneOut) error {
				if *city == "" {
					return usagef("phone transit-issue: --city is required")
				}
				f, err := phone.ParseFinger(*finger)
				if err != nil {
					return usagef("phone transit-issue: %v", mipay.ErrorMessage(err))
				}
				tc, err := p.TransitIssue(ctx, phone.TransitIssueOptions{Agency: *agency, City: *city, CardID: *card, Finger: f})
				if err != nil {
					return err
				}
				return o.result(tc, func(w io.Writer) {
					fmt.Fprintf(w, "%s card %s installed (balance %s CNY). Top it up with `mipay phone transit-topup`.\n", tc.Label, tc.CardNumber, money(tc.BalanceMinor))
				})
			}
		}},
		{"transit-topup", "--amount 50.00 [--card NUMBER] [--pay-card ID] [--finger ok]", "top up a transit card, paid in-app with a bound card", func(fs *flag.FlagSet) func(context.Context, *phone.Phone, *phoneOut) error {
			agency := transitFlag(fs)
			amount := fs.String("amount", "", "CNY, e.g. 50.00")
			card := fs.String("card", "", "the transit card number (default: the only one)")
			pay := fs.String("pay-card", "", "the bound card paying (default: the default card)")
			finger := fs.String("finger", "ok", "what touches the sensor when paying")
			return func(ctx context.Context, p *phone.Phone, o *phoneOut) error {
				minor, err := parseAmount(*amount, 2)
				if err != nil || minor <= 0 {
					return usagef("phone transit-topup: --amount must be a positive amount such as 50.00")
				}
				f, err := phone.ParseFinger(*finger)
				if err != nil {
					return usagef("phone transit-topup: %v", mipay.ErrorMessage(err))
				}
				tc, err := p.TransitTopUp(ctx, phone.TransitTopUpOptions{Agency: *agency, CardNumber: *card, AmountMinor: minor, CardID: *pay, Finger: f})
				if err != nil {
					return err
				}
				return o.result(tc, func(w io.Writer) {
					fmt.Fprintf(w, "Topped up %s CNY: card %s now holds %s CNY.\n", money(minor), tc.CardNumber, money(tc.BalanceMinor))
				})
			}
		}},
		{"transit-cards", "", "list the transit cards (balance in the SE, the agency's status)", func(fs *flag.FlagSet) func(context.Context, *phone.Phone, *phoneOut) error {
			agency := transitFlag(fs)
			return func(ctx context.Context, p *phone.Phone, o *phoneOut) error {
				cards, err := p.TransitCards(ctx, *agency)
				if err != nil {
					return err
				}
				return o.result(map[string]any{"cards": cards}, func(w io.Writer) {
					if len(cards) == 0 {
						fmt.Fprintln(w, "No transit cards: `mipay phone transit-issue --city sz`.")
					}
					for _, c := range cards {
						where := "on this phone"
						if !c.InSE {
							where = "on another device"
						}
						fmt.Fprintf(w, "%-4s %s  %-44s balance %8s CNY  %s  %s", c.City, c.CardNumber, c.Label, money(c.BalanceMinor), c.Status, where)
						if c.PendingLoad != "" {
							fmt.Fprintf(w, "  (unfinished top-up %s: run transit-resume)", c.PendingLoad)
						}
						fmt.Fprintln(w)
					}
				})
			}
		}},
		{"transit-history", "[--card NUMBER]", "the transit card's last transactions (as the SE logged them)", func(fs *flag.FlagSet) func(context.Context, *phone.Phone, *phoneOut) error {
			card := fs.String("card", "", "the transit card number (default: the only one)")
			return func(ctx context.Context, p *phone.Phone, o *phoneOut) error {
				h, err := p.TransitHistory(*card)
				if err != nil {
					return err
				}
				return o.result(map[string]any{"history": h}, func(w io.Writer) {
					for _, e := range h {
						sign := "-"
						switch {
						case e.Kind == "load":
							sign = "+"
						case e.AmountMinor == 0:
							sign = " " // a metro entry records the station, it charges nothing
						}
						fmt.Fprintf(w, "%s  %-8s %s%s CNY  terminal %s  #%d\n", e.Time, e.Kind, sign, money(e.AmountMinor), e.Terminal, e.Serial)
					}
				})
			}
		}},
		{"transit-resume", "[--card NUMBER]", "finish an unfinished top-up (the app does this before any top-up)", func(fs *flag.FlagSet) func(context.Context, *phone.Phone, *phoneOut) error {
			agency := transitFlag(fs)
			card := fs.String("card", "", "the transit card number (default: the only one)")
			return func(ctx context.Context, p *phone.Phone, o *phoneOut) error {
				if err := p.TransitResume(ctx, *agency, *card); err != nil {
					return err
				}
				return o.result(map[string]bool{"resumed": true}, func(w io.Writer) { fmt.Fprintln(w, "No top-up left unfinished.") })
			}
		}},
		{"transit-move", "--to-phone NAME [--card NUMBER]", "move a transit card and its cleared balance to another phone of the account", func(fs *flag.FlagSet) func(context.Context, *phone.Phone, *phoneOut) error {
			agency := transitFlag(fs)
			card := fs.String("card", "", "the transit card number (default: the only one)")
			to := fs.String("to-phone", "", "the other handset's name (signed in to the same account)")
			return func(ctx context.Context, p *phone.Phone, o *phoneOut) error {
				if *to == "" {
					return usagef("phone transit-move: --to-phone is required")
				}
				other, err := p.Sibling(ctx, *to)
				if err != nil {
					return err
				}
				tc, err := p.TransitMove(ctx, *agency, *card, other)
				if err != nil {
					return err
				}
				return o.result(tc, func(w io.Writer) {
					fmt.Fprintf(w, "Moved to phone %s as card %s with %s CNY; the old card is blocked at every gate.\n", *to, tc.CardNumber, money(tc.BalanceMinor))
				})
			}
		}},
		{"transit-tap", "--reader ADDR", "hold the phone to a transit gate (express mode: no fingerprint)", func(fs *flag.FlagSet) func(context.Context, *phone.Phone, *phoneOut) error {
			reader := fs.String("reader", "127.0.0.1:35964", "the gate's NFC reader")
			return func(ctx context.Context, p *phone.Phone, o *phoneOut) error {
				if err := p.TransitTap(ctx, *reader); err != nil {
					return err
				}
				return o.result(map[string]bool{"tapped": true}, func(w io.Writer) { fmt.Fprintln(w, "Tapped the gate (express mode).") })
			}
		}},
	}
}
