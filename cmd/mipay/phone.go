package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/phone"
)

// Defaults where `mipay up` puts the wallet and the SMS gateway.
const (
	defaultWalletURL = "http://127.0.0.1:8410"
	defaultSMSURL    = "http://127.0.0.1:8440"
)

// phoneCommand is one `mipay phone` sub-command.
type phoneCommand struct {
	name, synopsis, help string
	flags                func(fs *flag.FlagSet) func(ctx context.Context, p *phone.Phone, out *phoneOut) error
}

// phoneOut prints for a person, or one JSON object with --json.
type phoneOut struct {
	w    io.Writer
	json bool
}

func (o *phoneOut) result(v any, human func(w io.Writer)) error {
	if o.json {
		enc := json.NewEncoder(o.w)
		return enc.Encode(v)
	}
	human(o.w)
	return nil
}

func phoneCommands() []phoneCommand {
	return []phoneCommand{
		{"register", "--number N --email E --password P", "create a Mi account with this phone's number", func(fs *flag.FlagSet) func(context.Context, *phone.Phone, *phoneOut) error {
			number := fs.String("number", "", "the phone's (SIM) number, e.g. 13800130001")
			email := fs.String("email", "", "e-mail address")
			password := fs.String("password", "", "account password")
			return func(ctx context.Context, p *phone.Phone, o *phoneOut) error {
				if *number == "" || *email == "" || *password == "" {
					return usagef("phone register: --number, --email and --password are required")
				}
				codes, err := p.Register(ctx, *number, *email, *password)
				if err != nil {
					return err
				}
				return o.result(map[string]any{"number": *number, "recoveryCodes": codes}, func(w io.Writer) {
					fmt.Fprintf(w, "Mi account created for %s.\nRecovery codes (keep them; each works once):\n  %s\n", *number, strings.Join(codes, "\n  "))
				})
			}
		}},
		{"login", "--login PHONE|EMAIL --password P", "sign in and register this handset (SE attestation) to the account", func(fs *flag.FlagSet) func(context.Context, *phone.Phone, *phoneOut) error {
			login := fs.String("login", "", "phone number or e-mail")
			password := fs.String("password", "", "account password")
			return func(ctx context.Context, p *phone.Phone, o *phoneOut) error {
				if *login == "" || *password == "" {
					return usagef("phone login: --login and --password are required")
				}
				if err := p.Login(ctx, *login, *password); err != nil {
					return err
				}
				return o.result(map[string]any{"deviceId": p.DeviceID(), "seId": p.SE().ID()}, func(w io.Writer) {
					fmt.Fprintf(w, "Signed in. This phone is device %s (secure element %s).\n", p.DeviceID(), p.SE().ID())
				})
			}
		}},
		{"enroll-finger", "", "enroll your fingerprint (Mi Pay needs one)", func(fs *flag.FlagSet) func(context.Context, *phone.Phone, *phoneOut) error {
			return func(ctx context.Context, p *phone.Phone, o *phoneOut) error {
				if err := p.EnrollFinger(ctx); err != nil {
					return err
				}
				return o.result(map[string]any{"enrolled": true}, func(w io.Writer) { fmt.Fprintln(w, "Fingerprint enrolled.") })
			}
		}},
		{"add-card", "--pan N --expiry YYMM [--cvn2 NNN] [--name N] [--bank-phone N]", "bind a bank card (card data is sealed to the TSP on the phone)", func(fs *flag.FlagSet) func(context.Context, *phone.Phone, *phoneOut) error {
			var c phone.CardDetails
			fs.StringVar(&c.PAN, "pan", "", "card number")
			fs.StringVar(&c.Expiry, "expiry", "", "expiry YYMM")
			fs.StringVar(&c.CVN2, "cvn2", "", "CVN2 (credit cards)")
			fs.StringVar(&c.Name, "name", "", "cardholder name")
			fs.StringVar(&c.Phone, "bank-phone", "", "the mobile number registered at the bank (default: this phone's number)")
			return func(ctx context.Context, p *phone.Phone, o *phoneOut) error {
				if c.PAN == "" || c.Expiry == "" {
					return usagef("phone add-card: --pan and --expiry are required")
				}
				if c.Phone == "" {
					c.Phone = p.Number()
				}
				res, err := p.AddCard(ctx, c)
				if err != nil {
					return err
				}
				return o.result(res, func(w io.Writer) { printBind(w, res) })
			}
		}},
		{"sms", "", "show the SMS this phone's number received", func(fs *flag.FlagSet) func(context.Context, *phone.Phone, *phoneOut) error {
			return func(ctx context.Context, p *phone.Phone, o *phoneOut) error {
				msgs, err := p.Messages(ctx)
				if err != nil {
					return err
				}
				return o.result(map[string]any{"messages": msgs}, func(w io.Writer) {
					if len(msgs) == 0 {
						fmt.Fprintln(w, "No messages.")
					}
					for _, m := range msgs {
						fmt.Fprintf(w, "%s  %s: %s\n", m.Time, m.Sender, m.Text)
					}
				})
			}
		}},
		{"verify-otp", "--card ID [--code NNNNNN]", "confirm a binding with the SMS code (default: the latest code received)", func(fs *flag.FlagSet) func(context.Context, *phone.Phone, *phoneOut) error {
			card := fs.String("card", "", "card id from add-card")
			code := fs.String("code", "", "the code from the SMS (default: read it from the phone's messages)")
			return func(ctx context.Context, p *phone.Phone, o *phoneOut) error {
				if *card == "" {
					return usagef("phone verify-otp: --card is required")
				}
				if *code == "" {
					c, err := p.LastCode(ctx)
					if err != nil {
						return err
					}
					*code = c
				}
				res, err := p.VerifyOTP(ctx, *card, *code)
				if err != nil {
					return err
				}
				return o.result(res, func(w io.Writer) { fmt.Fprintf(w, "Card %s is active and ready to pay.\n", res.CardID) })
			}
		}},
		{"resend-otp", "--card ID", "ask the bank to send the code again", func(fs *flag.FlagSet) func(context.Context, *phone.Phone, *phoneOut) error {
			card := fs.String("card", "", "card id from add-card")
			return func(ctx context.Context, p *phone.Phone, o *phoneOut) error {
				if *card == "" {
					return usagef("phone resend-otp: --card is required")
				}
				res, err := p.ResendOTP(ctx, *card)
				if err != nil {
					return err
				}
				return o.result(res, func(w io.Writer) { fmt.Fprintf(w, "A new code was sent to %s.\n", res.OTPSentTo) })
			}
		}},
		{"cards", "", "list this phone's cards", func(fs *flag.FlagSet) func(context.Context, *phone.Phone, *phoneOut) error {
			return func(ctx context.Context, p *phone.Phone, o *phoneOut) error {
				cards, err := p.Cards(ctx)
				if err != nil {
					return err
				}
				rewards := cardRewards(ctx, p, cards)
				return o.result(map[string]any{"cards": cards, "rewards": rewards}, func(w io.Writer) {
					if len(cards) == 0 {
						fmt.Fprintln(w, "No cards yet: mipay phone add-card …")
						return
					}
					tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
					fmt.Fprintln(tw, "ID\tBANK\tPRODUCT\tCARD\tTOKEN\tSTATE\tDEFAULT\tPOINTS")
					for _, c := range cards {
						def := ""
						if c.Default {
							def = "yes"
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t•••• %s\t•••• %s\t%s\t%s\t%s\n", c.ID, c.Bank, c.Product, c.PANLast4, c.TokenLast4, c.State, def, pointsText(rewards[c.ID]))
					}
					tw.Flush()
					printOffers(w, cards, rewards)
				})
			}
		}},
		{"default", "--card ID", "make a card the default for paying", func(fs *flag.FlagSet) func(context.Context, *phone.Phone, *phoneOut) error {
			card := fs.String("card", "", "card id")
			return func(ctx context.Context, p *phone.Phone, o *phoneOut) error {
				if *card == "" {
					return usagef("phone default: --card is required")
				}
				if err := p.SetDefault(ctx, *card); err != nil {
					return err
				}
				return o.result(map[string]any{"defaultCardId": *card}, func(w io.Writer) { fmt.Fprintf(w, "Card %s is now the default.\n", *card) })
			}
		}},
		{"remove-card", "--card ID", "remove a card from this phone", func(fs *flag.FlagSet) func(context.Context, *phone.Phone, *phoneOut) error {
			card := fs.String("card", "", "card id")
			return func(ctx context.Context, p *phone.Phone, o *phoneOut) error {
				if *card == "" {
					return usagef("phone remove-card: --card is required")
				}
				if err := p.RemoveCard(ctx, *card); err != nil {
					return err
				}
				return o.result(map[string]any{"removed": *card}, func(w io.Writer) { fmt.Fprintf(w, "Card %s removed.\n", *card) })
			}
		}},
		{"pay", "--reader ADDR [--card ID] [--finger ok|wrong|none]", "pay at a terminal: fingerprint, then tap", func(fs *flag.FlagSet) func(context.Context, *phone.Phone, *phoneOut) error {
			reader := fs.String("reader", "127.0.0.1:35963", "the terminal's NFC reader (vsmartcard vpcd address)")
			card := fs.String("card", "", "card id (default: the default card)")
			finger := fs.String("finger", "ok", "what touches the sensor: ok, wrong or none")
			return func(ctx context.Context, p *phone.Phone, o *phoneOut) error {
				f, err := phone.ParseFinger(*finger)
				if err != nil {
					return usagef("phone pay: %v", mipay.ErrorMessage(err))
				}
				res, err := p.Pay(ctx, phone.PayOptions{CardID: *card, Finger: f, Reader: *reader})
				if err != nil {
					return err
				}
				return o.result(res, func(w io.Writer) {
					fmt.Fprintf(w, "Paying with %s %s •••• %s (token •••• %s)\n", res.Card.Bank, res.Card.Product, res.Card.PANLast4, res.Card.TokenLast4)
					if res.Matched {
						fmt.Fprintln(w, "Fingerprint matched: card armed for one payment.")
					} else {
						fmt.Fprintln(w, "Fingerprint not recognised: the terminal will say \"See phone\".")
					}
					fmt.Fprintln(w, "Tapped the terminal.")
				})
			}
		}},
		{"transactions", "[--card ID]", "list payments", func(fs *flag.FlagSet) func(context.Context, *phone.Phone, *phoneOut) error {
			card := fs.String("card", "", "card id (default: every card)")
			return func(ctx context.Context, p *phone.Phone, o *phoneOut) error {
				txs, err := p.Transactions(ctx, *card)
				if err != nil {
					return err
				}
				return o.result(map[string]any{"transactions": txs}, func(w io.Writer) {
					if len(txs) == 0 {
						fmt.Fprintln(w, "No transactions.")
					}
					for _, t := range txs {
						status := "approved"
						if !t.Approved {
							status = "declined (" + t.ResponseCode + ")"
						}
						if t.Reversed {
							status = "reversed"
						}
						extra := ""
						if t.BillingAmountMinor > 0 {
							extra += fmt.Sprintf("  billed %s at %s", formatMinor(t.BillingAmountMinor, "156"), t.ConversionRate)
						}
						if t.SavingText != "" {
							extra += "  " + t.SavingText
						}
						if t.PointsEarned != nil {
							extra += fmt.Sprintf("  +%d points", *t.PointsEarned)
						}
						if t.PointsReversed != nil {
							extra += fmt.Sprintf("  %d points reversed", *t.PointsReversed)
						}
						fmt.Fprintf(w, "%s  %s  %s  token •••• %s  %s%s\n", t.Time, formatMinor(t.AmountMinor, t.Currency), t.MerchantName, t.TokenLast4, status, extra)
					}
				})
			}
		}},
		{"notifications", "[--after SEQ] [--wait 0]", "show the phone's notifications", func(fs *flag.FlagSet) func(context.Context, *phone.Phone, *phoneOut) error {
			after := fs.Int64("after", 0, "show notifications after this sequence number")
			wait := fs.Int("wait", 0, "seconds to wait for one when there are none")
			return func(ctx context.Context, p *phone.Phone, o *phoneOut) error {
				ns, err := p.Notifications(ctx, *after, *wait)
				if err != nil {
					return err
				}
				return o.result(map[string]any{"notifications": ns}, func(w io.Writer) {
					if len(ns) == 0 {
						fmt.Fprintln(w, "No notifications.")
					}
					for _, n := range ns {
						b, _ := json.Marshal(n.Payload)
						fmt.Fprintf(w, "#%d %s %s %s\n", n.Seq, n.Time, n.Kind, b)
					}
				})
			}
		}},
	}
}

func printBind(w io.Writer, r *phone.BindResult) {
	switch r.Decision {
	case phone.DecisionApproved:
		fmt.Fprintf(w, "Approved: card %s added", r.CardID)
		if r.Card != nil {
			fmt.Fprintf(w, " (%s •••• %s, token •••• %s)", r.Card.Bank, r.Card.PANLast4, r.Card.TokenLast4)
		}
		fmt.Fprintln(w, " and ready to pay.")
	case phone.DecisionOTP:
		fmt.Fprintf(w, "The bank needs to confirm it's you: a code was sent by SMS to %s.\n", r.OTPSentTo)
		fmt.Fprintf(w, "Card id %s. Next: mipay phone sms, then mipay phone verify-otp --card %s --code NNNNNN\n", r.CardID, r.CardID)
	default:
		msg := r.Message
		if msg == "" {
			msg = r.Reason
		}
		fmt.Fprintf(w, "Declined: %s\n", msg)
	}
}

// runPhone is `mipay phone SUBCOMMAND`.
func runPhone(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmds := phoneCommands()
	cmds = append(cmds, transitPhoneCommands()...)
	cmds = append(cmds, syncPhoneCommands()...)
	if len(args) == 0 || args[0] == "-h" || args[0] == "help" || args[0] == "--help" {
		fmt.Fprintln(stderr, "Usage: mipay phone SUBCOMMAND --phone NAME [flags]\n\nSubcommands:")
		tw := tabwriter.NewWriter(stderr, 0, 0, 2, ' ', 0)
		for _, c := range cmds {
			fmt.Fprintf(tw, "  %s %s\t%s\n", c.name, c.synopsis, c.help)
		}
		tw.Flush()
		if len(args) == 0 {
			return usagef("phone: no subcommand given")
		}
		return nil
	}
	for _, c := range cmds {
		if c.name != args[0] {
			continue
		}
		fs := newFlagSet("phone "+c.name, "--phone NAME "+c.synopsis, stderr)
		name := fs.String("phone", "", "the handset's name (its state lives under DATA/phones/NAME)")
		data := fs.String("data", envOr("MIPAY_DATA", DefaultDataDir), "data directory (the SE factory and the phones live here)")
		walletURL := fs.String("wallet", envOr("MIPAY_WALLET_URL", defaultWalletURL), "the wallet server")
		smsURL := fs.String("sms", envOr("MIPAY_SMS_URL", defaultSMSURL), "the SMS gateway (the phone's SIM reads its messages here)")
		asJSON := fs.Bool("json", false, "print one JSON object")
		act := c.flags(fs)
		if err := parseFlags(fs, args[1:]); err != nil {
			return err
		}
		if err := noArgs(fs); err != nil {
			return err
		}
		if *name == "" {
			return usagef("phone %s: --phone NAME is required", c.name)
		}
		p, err := phone.Open(ctx, phone.Config{DataDir: *data, Name: *name, WalletURL: *walletURL, SMSURL: *smsURL})
		if err != nil {
			return cliError(err) // e.g. the phone is in use by another mipay process: exit 1 with that message
		}
		defer p.Close() // releases the phone's SE lock for the next command
		return cliError(act(ctx, p, &phoneOut{w: stdout, json: *asJSON}))
	}
	return usagef("phone: unknown subcommand %q (see `mipay phone help`)", args[0])
}

// cliError turns a mipay error into the line a user reads: bad input exits 2.
func cliError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(*exitCodeError); ok {
		return err
	}
	switch mipay.ErrorCode(err) {
	case mipay.EINVALID, mipay.ETOOLARGE:
		return usagef("%s", mipay.ErrorMessage(err))
	case mipay.EINTERNAL:
		return err
	}
	return fmt.Errorf("%s", mipay.ErrorMessage(err))
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
