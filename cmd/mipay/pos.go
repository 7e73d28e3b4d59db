package main

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/mipay-oss/mipay/config"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/nfc"
	"github.com/mipay-oss/mipay/pos"
	"github.com/mipay-oss/mipay/store"
)

// defaultNetworkAddr is where `mipay up` has the switch take acquirers.
const defaultNetworkAddr = "127.0.0.1:8500"

// runPOS is `mipay pos charge|history`.
func runPOS(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "Usage: mipay pos charge --amount 12.50 [flags] | mipay pos history [flags]")
		return usagef("pos: no subcommand given (charge or history)")
	}
	switch args[0] {
	case "charge":
		return runPOSCharge(ctx, args[1:], stdout, stderr)
	case "history":
		return runPOSHistory(ctx, args[1:], stdout, stderr)
	case "-h", "help", "--help":
		fmt.Fprintln(stderr, "Usage: mipay pos charge --amount 12.50 [flags] | mipay pos history [flags]")
		return nil
	}
	return usagef("pos: unknown subcommand %q (charge or history)", args[0])
}

type posFlags struct {
	data, terminal, merchant, city, country, mcc string
	asJSON                                       bool
}

func (f *posFlags) register(fs flagSet) {
	fs.StringVar(&f.data, "data", envOr("MIPAY_DATA", DefaultDataDir), "data directory (the terminal keeps its counters and history under DATA/pos)")
	fs.StringVar(&f.terminal, "terminal", pos.DefaultTerminalID, "terminal id (DE41, 8 characters)")
	fs.StringVar(&f.merchant, "merchant", pos.DefaultMerchantName, "merchant name (up to 25 characters)")
	fs.StringVar(&f.city, "city", pos.DefaultCity, "merchant city (up to 13 characters)")
	fs.StringVar(&f.country, "country", pos.DefaultCountry, "terminal country, ISO 3166 numeric")
	fs.StringVar(&f.mcc, "mcc", pos.DefaultMCC, "merchant category code")
	fs.BoolVar(&f.asJSON, "json", false, "print one JSON object")
}

type flagSet interface {
	StringVar(p *string, name, value, usage string)
	BoolVar(p *bool, name string, value bool, usage string)
}

func (f *posFlags) open(ctx context.Context, link pos.Link) (*pos.Terminal, error) {
	cfg := pos.TerminalConfig{ID: f.terminal, MerchantName: f.merchant, City: f.city, Country: f.country, MCC: f.mcc}
	t, err := pos.OpenTerminal(ctx, cfg, store.Config{Dir: filepath.Join(f.data, "pos")}, link)
	if err != nil {
		return nil, cliError(err)
	}
	return t, nil
}

func runPOSCharge(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("pos charge", "--amount 12.50 [flags]", stderr)
	var pf posFlags
	pf.register(fs)
	amount := fs.String("amount", "", "amount in major units with the currency's decimals, e.g. 12.50 (CNY), 1200 (JPY), 12.345 (KWD)")
	currency := fs.String("currency", "156", "transaction currency, ISO 4217 numeric (392 JPY, 840 USD, 978 EUR, 344 HKD, 414 KWD)")
	listen := fs.String("listen", nfc.DefaultReaderAddr, "NFC reader address (phones tap by connecting; vpcd's default port)")
	network := fs.String("network", envOr("MIPAY_NETWORK_ADDR", defaultNetworkAddr), "the network switch's acquirer address (ISO 8583)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	cur, ok := config.CurrencyByNumeric(*currency)
	if !ok {
		return usagef("pos charge: --currency %q is not an ISO 4217 numeric code the network knows (e.g. 156 CNY, 392 JPY, 840 USD)", *currency)
	}
	minor, err := parseAmount(*amount, cur.MinorUnits)
	if err != nil {
		return usagef("pos charge: --amount: %v (%s has %d decimals)", err, cur.Code, cur.MinorUnits)
	}
	link, err := iso8583.Dial(ctx, iso8583.ClientConfig{Addr: *network})
	if err != nil {
		return fmt.Errorf("pos: cannot reach the network at %s (is `mipay up` running?): %w", *network, err)
	}
	defer link.Close()
	term, err := pf.open(ctx, link)
	if err != nil {
		return err
	}
	defer term.Close()
	reader, err := nfc.Listen(*listen)
	if err != nil {
		return usagef("%v", err)
	}
	defer reader.Close()
	status := func(s string) {
		if !pf.asJSON {
			fmt.Fprintln(stdout, s)
		}
	}
	status(fmt.Sprintf("Reader listening on %s (phone: mipay phone pay --reader %s)", reader.Addr(), reader.Addr()))
	rec, err := term.ChargeOnReader(ctx, reader, pos.Charge{AmountMinor: minor, Currency: *currency, Status: status})
	if err != nil {
		return err
	}
	if pf.asJSON {
		return json.NewEncoder(stdout).Encode(rec)
	}
	printReceipt(stdout, rec)
	return nil
}

func printReceipt(w io.Writer, r *pos.Receipt) {
	fmt.Fprintln(w, "------------- receipt -------------")
	fmt.Fprintf(w, "%s   terminal %s\n", r.Merchant, r.Terminal)
	fmt.Fprintf(w, "amount    %s\n", formatMinor(r.AmountMinor, r.Currency))
	if r.BillingAmountMinor > 0 {
		fmt.Fprintf(w, "billed    %s at %s\n", formatMinor(r.BillingAmountMinor, r.BillingCurrency), r.ConversionRate)
	}
	if r.TokenLast4 != "" {
		fmt.Fprintf(w, "card      Mi Pay UnionPay •••• %s\n", r.TokenLast4)
	}
	fmt.Fprintf(w, "result    %s", r.Outcome)
	if r.Response != "" {
		fmt.Fprintf(w, " — %s", r.Response)
	}
	if r.ResponseCode != "" {
		fmt.Fprintf(w, " (%s)", r.ResponseCode)
	}
	fmt.Fprintln(w)
	if r.DiscountMinor > 0 {
		// The bank funds the saving: the merchant is paid the full amount.
		fmt.Fprintf(w, "you saved %s with bank offer %s\n", formatMinor(r.DiscountMinor, r.Currency), r.CampaignID)
		fmt.Fprintf(w, "you paid  %s (merchant paid in full)\n", formatMinor(r.AmountMinor-r.DiscountMinor, r.Currency))
	}
	if r.AuthCode != "" {
		fmt.Fprintf(w, "auth code %s\n", r.AuthCode)
	}
	if r.RRN != "" {
		fmt.Fprintf(w, "STAN %s  RRN %s\n", r.STAN, r.RRN)
	}
	fmt.Fprintln(w, "-----------------------------------")
}

func runPOSHistory(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("pos history", "[flags]", stderr)
	var pf posFlags
	pf.register(fs)
	limit := fs.Int("limit", 20, "how many transactions, newest first")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *limit < 1 || *limit > 1000 {
		return usagef("pos history: --limit must be 1..1000")
	}
	term, err := pf.open(ctx, nil)
	if err != nil {
		return err
	}
	defer term.Close()
	hist, err := term.History(ctx, *limit)
	if err != nil {
		return err
	}
	if pf.asJSON {
		return json.NewEncoder(stdout).Encode(map[string]any{"transactions": hist})
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tSTAN\tRRN\tAMOUNT\tCARD\tRESULT\tAUTH")
	for _, r := range hist {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t•••• %s\t%s %s\t%s\n", r.Time.Format("2006-01-02 15:04:05"), r.STAN, r.RRN,
			formatMinor(r.AmountMinor, r.Currency), r.TokenLast4, r.Outcome, r.ResponseCode, r.AuthCode)
	}
	return tw.Flush()
}

// parseAmount turns "12.50" into minor units with the given decimals,
// refusing anything that is not a plain positive decimal.
func parseAmount(s string, decimals int) (int64, error) {
	if s == "" {
		return 0, fmt.Errorf("required")
	}
	whole, frac, hasDot := strings.Cut(s, ".")
	if whole == "" || (hasDot && (frac == "" || len(frac) > decimals)) {
		return 0, fmt.Errorf("%q is not an amount with at most %d decimals", s, decimals)
	}
	for _, c := range whole + frac {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not an amount", s)
		}
	}
	if len(whole) > 10 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	frac += strings.Repeat("0", decimals-len(frac))
	v, err := strconv.ParseInt(whole+frac, 10, 64)
	if err != nil {
		return 0, err
	}
	if v <= 0 {
		return 0, fmt.Errorf("amount must be above zero")
	}
	return v, nil
}

// formatMinor shows minor units with the currency's ISO 4217 decimals.
func formatMinor(minor int64, currency string) string { return pos.FormatAmount(minor, currency) }
