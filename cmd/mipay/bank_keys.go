package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/mipay-oss/mipay/atomicfile"
	"github.com/mipay-oss/mipay/issuer"
)

// `mipay bank keys list|rotate|revoke`: a bank's staff manage their own
// operator keys through the issuer host (issuer/operator_auth_keys.go),
// authenticated by a valid key of that bank. No key is ever printed except
// the new one of a rotation, once; keys are named by their ids.

var bankKeyCommands = []struct{ name, synopsis, help string }{
	{"list", "", "list the bank's operator keys: id, state, created, expires, revoked"},
	{"rotate", "[--grace 24h]", "make a new key (printed once); the bank's other keys stop working after the grace period"},
	{"revoke", "--key-id opk_…", "refuse a key of the bank from now on"},
}

func bankKeysUsage(w io.Writer) {
	fmt.Fprint(w, "Usage: mipay bank keys COMMAND --bank ISSUER_ID [--issuer-url URL] [--key KEY | --key-file FILE] [--json] ...\n\nCommands:\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	writeBankKeyCommands(tw)
	tw.Flush()
}

// writeBankKeyCommands writes one usage line per `mipay bank keys` command
// (here and in `mipay bank`'s usage).
func writeBankKeyCommands(tw io.Writer) {
	for _, c := range bankKeyCommands {
		fmt.Fprintf(tw, "  keys %s %s\t%s\n", c.name, c.synopsis, c.help)
	}
}

func runBankKeys(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		bankKeysUsage(stderr)
		return usagef("bank keys: name a command: list, rotate or revoke")
	}
	sub := args[0]
	switch sub {
	case "help", "-h", "-help", "--help":
		bankKeysUsage(stdout)
		return nil
	}
	synopsis, known := "", false
	for _, c := range bankKeyCommands {
		if c.name == sub {
			synopsis, known = c.synopsis, true
		}
	}
	if !known {
		return usagef("bank keys: unknown command %q: list, rotate or revoke", sub)
	}
	name := "bank keys " + sub
	fs := newFlagSet(name, "--bank ISSUER_ID "+synopsis+" [flags]", stderr)
	conn := addBankConnFlags(fs)
	var grace, keyID *string
	switch sub {
	case "rotate":
		grace = fs.String("grace", "", "how long the bank's other keys keep working (0s to 168h; default: the host's, 24h)")
	case "revoke":
		keyID = fs.String("key-id", "", "the id of the key to revoke (from `mipay bank keys list`)")
	}
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if err := conn.check(name); err != nil {
		return err
	}
	var body any
	switch sub {
	case "rotate":
		if *grace != "" {
			d, err := time.ParseDuration(*grace)
			if err != nil || d < 0 || d > issuer.MaxOperatorKeyGrace {
				return usagef("%s: --grace must be a duration from 0s to %s, such as 24h or 90m", name, issuer.MaxOperatorKeyGrace)
			}
		}
		body = issuer.OperatorKeyRotateRequest{Grace: *grace}
	case "revoke":
		if *keyID == "" {
			return usagef("%s: --key-id is required (see `mipay bank keys list`)", name)
		}
		if !issuer.IsOperatorKeyID(*keyID) {
			// Never repeat the value: it may be a key given by mistake.
			return usagef("%s: --key-id must be a key id such as opk_0123456789abcdef (not the key itself)", name)
		}
		body = issuer.OperatorKeyRevokeRequest{KeyID: *keyID}
	}
	c, from, err := conn.client(name)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, bankTimeout)
	defer cancel()
	path := "/v1/issuers/" + url.PathEscape(conn.bank) + "/operator-keys"
	switch sub {
	case "list":
		var out issuer.OperatorKeyList
		if err := c.Do(ctx, http.MethodGet, path, nil, &out); err != nil {
			return bankError(name, err)
		}
		if conn.asJSON {
			return json.NewEncoder(stdout).Encode(out)
		}
		printBankKeys(stdout, out.Keys)
		return nil
	case "rotate":
		var out issuer.OperatorKeyRotateResult
		if err := c.Do(ctx, http.MethodPost, path+"/rotate", body, &out); err != nil {
			return bankError(name, err)
		}
		// The old key came from a file: the new one replaces it there, or
		// the next command would fail once the grace period ends.
		var ferr error
		if from != "" {
			ferr = atomicfile.Write(from, []byte(out.Key+"\n"), 0o600) // the old key or the new one, never a part
		}
		if conn.asJSON {
			if err := json.NewEncoder(stdout).Encode(out); err != nil {
				return err
			}
		} else {
			fmt.Fprintf(stdout, "New operator key of %s (id %s):\n\n  %s\n\n", conn.bank, out.New.ID, out.Key)
			switch {
			case from != "" && ferr == nil:
				fmt.Fprintf(stdout, "It replaced the old key in %s. Store it in your secret store too: it is not shown again.\n", from)
			default:
				fmt.Fprintln(stdout, "Store it in your secret store now: it is not shown again.")
			}
		}
		if ferr != nil {
			return fmt.Errorf("%s: the key was rotated but %s still holds the old one (%v): put the new key there before the old one expires", name, from, ferr)
		}
		if conn.asJSON {
			return nil
		}
		for _, o := range out.Expiring {
			when := "now"
			if o.Expires != nil {
				when = o.Expires.Format(time.RFC3339)
			}
			note := ""
			if o.Current {
				note = " (the key used for this call)"
			}
			fmt.Fprintf(stdout, "Key %s%s stops working at %s.\n", o.ID, note, when)
		}
		return nil
	default: // revoke
		var out issuer.OperatorKeyRevokeResult
		if err := c.Do(ctx, http.MethodPost, path+"/revoke", body, &out); err != nil {
			return bankError(name, err)
		}
		if conn.asJSON {
			return json.NewEncoder(stdout).Encode(out)
		}
		fmt.Fprintf(stdout, "Key %s of %s is revoked: the issuer host refuses it from now on.\n", out.Revoked.ID, conn.bank)
		if out.Remaining == 0 {
			fmt.Fprintf(stdout, "%s has no valid operator key left: ask whoever runs the issuer host to set one (%s).\n", conn.bank, issuer.EnvOperatorKeys)
		} else {
			fmt.Fprintf(stdout, "%d valid key(s) left.\n", out.Remaining)
		}
		return nil
	}
}

func printBankKeys(w io.Writer, keys []issuer.OperatorKeyInfo) {
	if len(keys) == 0 {
		fmt.Fprintln(w, "No keys.")
		return
	}
	date := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.Format(time.RFC3339)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY ID\tSTATE\tCREATED\tEXPIRES\tREVOKED\t")
	for _, k := range keys {
		cur := ""
		if k.Current {
			cur = "(this key)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.State, k.Created.Format(time.RFC3339), date(k.Expires), date(k.Revoked), cur)
	}
	tw.Flush()
}
