package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/httpx"
	"github.com/mipay-oss/mipay/issuer"
	"github.com/mipay-oss/mipay/node"
)

// `mipay bank`: the bank's staff act on one of their cards through the
// issuer host's operator endpoints (issuer/API.md, "Card lifecycle"), with
// their bank's operator key. Full PANs are checked locally (digits, Luhn)
// before anything is sent, and only masked numbers are ever printed.

const (
	defaultIssuerURL = "http://127.0.0.1:8430"
	// EnvBankKey is the operator key when neither --key nor --key-file is given.
	EnvBankKey     = "MIPAY_BANK_KEY"
	bankTimeout    = 30 * time.Second // one card call (the TSP may touch up to 1,000 tokens)
	maxBankReason  = 200
	maxBankIDBytes = 64
	maxKeyFile     = 1 << 10
)

// bankCommands are the sub-commands of `mipay bank` and what each does.
var bankCommands = []struct{ name, synopsis, help string }{
	{"tokens", "--pan PAN", "list the card's tokens (every device and state)"},
	{"suspend", "--pan PAN [--reason R]", "suspend every token of the card (the card itself stays usable)"},
	{"resume", "--pan PAN [--reason R]", "resume the card's tokens the bank suspended"},
	{"delete", "--pan PAN [--reason R]", "delete every token of the card for good"},
	{"report-stolen", "--pan PAN [--reason R]", "mark the card lost at the bank and suspend every token"},
	{"replace", "--old-pan PAN --new-pan PAN [--reason R]", "move the tokens to a new card of the bank (old card blocked)"},
}

func bankUsage(w io.Writer) {
	fmt.Fprint(w, "Usage: mipay bank COMMAND --bank ISSUER_ID [--issuer-url URL] [--key KEY | --key-file FILE] [--json] ...\n\n")
	fmt.Fprintf(w, "The operator key comes from --key, --key-file, %s, or else <data>/issuer/operator-keys/<bank>.key.\n\nCommands:\n", EnvBankKey)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range bankCommands {
		fmt.Fprintf(tw, "  %s %s\t%s\n", c.name, c.synopsis, c.help)
	}
	writeBankKeyCommands(tw) // bank_keys.go
	tw.Flush()
}

func runBank(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		bankUsage(stderr)
		return usagef("bank: name a command: tokens, suspend, resume, delete, report-stolen, replace or keys")
	}
	sub := args[0]
	switch sub {
	case "help", "-h", "-help", "--help":
		bankUsage(stdout)
		return nil
	case "keys":
		return runBankKeys(ctx, args[1:], stdout, stderr) // bank_keys.go
	}
	synopsis := ""
	for _, c := range bankCommands {
		if c.name == sub {
			synopsis = c.synopsis
		}
	}
	if synopsis == "" {
		return usagef("bank: unknown command %q: tokens, suspend, resume, delete, report-stolen, replace or keys", sub)
	}
	fs := newFlagSet("bank "+sub, "--bank ISSUER_ID "+synopsis+" [flags]", stderr)
	conn := addBankConnFlags(fs)
	reason := fs.String("reason", "", "reason recorded with the change (default: the bank's, e.g. CARD_STOLEN)")
	var pan, oldPAN, newPAN *string
	if sub == "replace" {
		oldPAN = fs.String("old-pan", "", "the card being replaced (full card number)")
		newPAN = fs.String("new-pan", "", "the new card, already issued by the bank (full card number)")
	} else {
		pan = fs.String("pan", "", "the card (full card number; only masked numbers are printed)")
	}
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	name := "bank " + sub
	if err := conn.check(name); err != nil {
		return err
	}
	if len(*reason) > maxBankReason {
		return usagef("%s: --reason must be at most %d bytes", name, maxBankReason)
	}
	if sub == "tokens" && *reason != "" {
		return usagef("%s: --reason is for changes, not for listing", name)
	}
	var body any
	switch sub {
	case "replace":
		if err := checkCardFlag("--old-pan", *oldPAN); err != nil {
			return usagef("%s: %v", name, err)
		}
		if err := checkCardFlag("--new-pan", *newPAN); err != nil {
			return usagef("%s: %v", name, err)
		}
		if *oldPAN == *newPAN {
			return usagef("%s: --old-pan and --new-pan are the same card", name)
		}
		body = issuer.CardReplaceRequest{OldPAN: *oldPAN, NewPAN: *newPAN, Reason: *reason}
	case "tokens":
		if err := checkCardFlag("--pan", *pan); err != nil {
			return usagef("%s: %v", name, err)
		}
		body = issuer.CardRequest{PAN: *pan}
	case "report-stolen":
		if err := checkCardFlag("--pan", *pan); err != nil {
			return usagef("%s: %v", name, err)
		}
		body = issuer.CardActionRequest{PAN: *pan, Reason: *reason}
	default: // suspend, resume, delete
		if err := checkCardFlag("--pan", *pan); err != nil {
			return usagef("%s: %v", name, err)
		}
		body = issuer.CardActionRequest{PAN: *pan, Action: sub, Reason: *reason}
	}
	c, _, err := conn.client(name)
	if err != nil {
		return err
	}
	path := "/v1/issuers/" + url.PathEscape(conn.bank) + "/cards/"
	switch sub {
	case "suspend", "resume", "delete":
		path += "token-actions"
	default:
		path += sub
	}
	ctx, cancel := context.WithTimeout(ctx, bankTimeout)
	defer cancel()
	if sub == "replace" {
		var out issuer.CardReplaceResult
		if err := c.Do(ctx, http.MethodPost, path, body, &out); err != nil {
			return bankError(name, err)
		}
		if conn.asJSON {
			return json.NewEncoder(stdout).Encode(out)
		}
		fmt.Fprintf(stdout, "Card %s (%s) replaced by %s (%s, expires %s); the old card is now %s.\n",
			out.OldPAN, out.OldCardID, out.NewPAN, out.NewCardID, out.NewExpiry, out.OldCardStatus)
		printBankTokens(stdout, out.Tokens)
		fmt.Fprintf(stdout, "%d of %d token(s) moved to the new card: the phones pay on without adding it again.\n", out.Replaced, len(out.Tokens))
		return nil
	}
	var out issuer.CardActionResult
	if err := c.Do(ctx, http.MethodPost, path, body, &out); err != nil {
		return bankError(name, err)
	}
	if conn.asJSON {
		return json.NewEncoder(stdout).Encode(out)
	}
	fmt.Fprintf(stdout, "Card %s (%s): %s at the bank.\n", out.PAN, out.CardID, out.CardStatus)
	printBankTokens(stdout, out.Tokens)
	if sub != "tokens" {
		fmt.Fprintf(stdout, "%d of %d token(s) changed.\n", out.Changed, len(out.Tokens))
	}
	return nil
}

func printBankTokens(w io.Writer, toks []issuer.TSPCardToken) {
	if len(toks) == 0 {
		fmt.Fprintln(w, "No tokens.")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TOKEN\tLAST 4\tDEVICE\tSTATE\tNOTE")
	for _, t := range toks {
		note := ""
		switch {
		case t.Reason != "":
			note = "unchanged: " + t.Reason
		case t.Changed:
			note = "changed"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.TokenRef, t.TokenLast4, t.DeviceID, t.State, note)
	}
	tw.Flush()
}

// bankError says what the issuer host answered, in a way staff can act on.
func bankError(name string, err error) error {
	switch mipay.ErrorCode(err) {
	case mipay.EUNAUTHORIZED:
		return fmt.Errorf("%s: the issuer host refused the operator key: %s", name, mipay.ErrorMessage(err))
	case mipay.EFORBIDDEN:
		return fmt.Errorf("%s: %s (check --bank)", name, mipay.ErrorMessage(err))
	case mipay.ELIMIT:
		return fmt.Errorf("%s: %s", name, mipay.ErrorMessage(err))
	case mipay.EUNAVAILABLE:
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%s: the issuer host did not answer within %s", name, bankTimeout)
		}
	}
	return fmt.Errorf("%s: %w", name, err)
}

func checkIssuerURL(v string) (string, error) {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not an http(s) URL such as %s", v, defaultIssuerURL)
	}
	return strings.TrimRight(v, "/"), nil
}

func checkBankID(id string) error {
	if id == "" {
		return errors.New("required: your bank's issuer id (mipay's reference data, e.g. icbc-debit)")
	}
	if len(id) > maxBankIDBytes {
		return fmt.Errorf("at most %d characters", maxBankIDBytes)
	}
	for _, r := range id {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' && r != '_' {
			return fmt.Errorf("%q: lower-case letters, digits, '-' and '_' only", id)
		}
	}
	return nil
}

// checkCardFlag refuses a card number that cannot be one, before anything
// is sent; the message never repeats the number.
func checkCardFlag(flagName, pan string) error {
	switch {
	case pan == "":
		return fmt.Errorf("%s is required", flagName)
	case len(pan) < 13 || len(pan) > 19 || strings.Trim(pan, "0123456789") != "":
		return fmt.Errorf("%s must be the card number's 13 to 19 digits", flagName)
	case !config.LuhnValid(pan):
		return fmt.Errorf("%s is not a valid card number (check digit)", flagName)
	}
	return nil
}

// bankConn is what every `mipay bank` command needs to reach the issuer
// host as the bank's staff: the flags and, once checked, a client.
type bankConn struct {
	issuerURL, bank, key, keyFile, data string
	asJSON                              bool
	base                                string // issuerURL, checked
}

// addBankConnFlags defines the flags of bankConn on fs.
func addBankConnFlags(fs *flag.FlagSet) *bankConn {
	b := &bankConn{}
	fs.StringVar(&b.issuerURL, "issuer-url", envOr("MIPAY_ISSUER_URL", defaultIssuerURL), "the issuer host's HTTP API")
	fs.StringVar(&b.bank, "bank", envOr("MIPAY_BANK", ""), "your bank's issuer id (e.g. icbc-debit)")
	fs.StringVar(&b.key, "key", "", "a valid operator key of your bank (prefer --key-file or "+EnvBankKey+": a flag is visible to other local users)")
	fs.StringVar(&b.keyFile, "key-file", "", "a file holding a valid operator key of your bank")
	fs.StringVar(&b.data, "data", envOr("MIPAY_DATA", DefaultDataDir), "data directory of `mipay up` (the key file it made, when no key is given)")
	fs.BoolVar(&b.asJSON, "json", false, "print the issuer host's answer as JSON")
	return b
}

// check checks --issuer-url and --bank (usage errors of command name).
func (b *bankConn) check(name string) error {
	base, err := checkIssuerURL(b.issuerURL)
	if err != nil {
		return usagef("%s: --issuer-url: %v", name, err)
	}
	if err := checkBankID(b.bank); err != nil {
		return usagef("%s: --bank: %v", name, err)
	}
	b.base = base
	return nil
}

// client finds the operator key and gives the client that sends it, and
// the file the key came from ("" for --key or the environment).
func (b *bankConn) client(name string) (httpx.Client, string, error) {
	k, from, err := bankKeyFrom(b.key, b.keyFile, b.data, b.bank)
	if err != nil {
		return httpx.Client{}, "", usagef("%s: %v", name, err)
	}
	return httpx.Client{Base: b.base, Token: k, HTTP: &http.Client{Timeout: bankTimeout}}, from, nil
}

// bankKeyFrom finds the operator key: --key, --key-file, MIPAY_BANK_KEY,
// then the file `mipay up` made for the bank under the data directory; and
// which file it came from ("" for --key or the environment).
func bankKeyFrom(key, keyFile, dataDir, bank string) (string, string, error) {
	if key != "" && keyFile != "" {
		return "", "", errors.New("give --key or --key-file, not both")
	}
	from := ""
	if key == "" && keyFile != "" {
		b, err := readKeyFile(keyFile)
		if err != nil {
			return "", "", fmt.Errorf("--key-file: %w", err)
		}
		key, from = b, keyFile
		if key == "" {
			return "", "", fmt.Errorf("--key-file %s is empty", keyFile)
		}
	}
	if key == "" {
		key = strings.TrimSpace(os.Getenv(EnvBankKey))
	}
	if key == "" && dataDir != "" {
		p := filepath.Join(dataDir, node.RoleIssuer, issuer.OperatorKeyDir, bank+".key")
		b, err := readKeyFile(p)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", "", err
		}
		key, from = b, p
	}
	if key == "" {
		return "", "", fmt.Errorf("no operator key: give --key-file FILE, set %s, or run where `mipay up` keeps its data (--data)", EnvBankKey)
	}
	if strings.ContainsAny(key, " \t\r\n") {
		return "", "", errors.New("the operator key holds white space: check the key file")
	}
	return key, from, nil
}

func readKeyFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxKeyFile {
		return "", fmt.Errorf("%s is larger than a key (%d bytes)", path, maxKeyFile)
	}
	return strings.TrimSpace(string(b)), nil
}
