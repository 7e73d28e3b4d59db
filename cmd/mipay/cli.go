package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// exitCodeError carries the process exit code of a failed command.
type exitCodeError struct {
	code int
	err  error
}

func (e *exitCodeError) Error() string { return e.err.Error() }
func (e *exitCodeError) Unwrap() error { return e.err }

// usagef reports bad input from the command line or the environment: exit
// code 2, nothing done.
func usagef(format string, args ...any) error {
	return &exitCodeError{code: 2, err: fmt.Errorf(format, args...)}
}

// exitCode maps run's error to the process exit code: 0 on success, the code
// of an exitCodeError, 1 for any other failure.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var e *exitCodeError
	if errors.As(err, &e) {
		return e.code
	}
	return 1
}

// command is one sub-command of mipay.
type command struct {
	name string
	help string // one line
	run  func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands is the table of sub-commands, in the order `mipay help` lists
// them.
func commands() []command {
	return []command{
		{"up", "run every party in one process on loopback ports", runUp},
		{"serve", "run one party alone (e.g. over PostgreSQL and a NATS cluster)", runServe},
		{"version", "print the version, Go version and build information", runVersion},
		{"emv", "EMV and e-purse crypto and TLV toolbox: keys, ARQC/ARPC, MACs, decode TLV and ISO 8583", runEMV},
		{"phone", "the handset emulator: account, fingerprint, add cards, pay at a terminal, transactions", runPhone},
		{"pos", "a QuickPass POS terminal: charge (wait for a phone, authorize online) and history", runPOS},
		{"gate", "a transit gate with its PSAM: serve taps (entry, exit, bus), upload records, refresh the hotlist", runGate},
		{"bank", "the bank's staff: a card's tokens, suspend/resume/delete them, report it stolen, replace it", runBank},
		{"demo", "the whole story self-contained: account, phone, cards, payments, declines, notifications", runDemo},
		{"bench", "measure: bench auth drives tokenized authorizations through network, TSP and issuer", runBench},
	}
}

// run is the whole program: it dispatches args to a sub-command and prints a
// failure as one line on stderr. main only adds signals and the exit code,
// so tests call run directly.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	err := dispatch(ctx, args, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "mipay: %v\n", err)
	}
	return err
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		printUsage(stderr)
		return usagef("no command given")
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		printUsage(stdout)
		return nil
	}
	for _, c := range commands() {
		if c.name == name {
			err := c.run(ctx, args[1:], stdout, stderr)
			if errors.Is(err, flag.ErrHelp) {
				return nil // -h: the FlagSet printed the command's help
			}
			return err
		}
	}
	return usagef("unknown command %q: run `mipay help` for the list", name)
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, "mipay — a phone contactless-payment system (Mi Pay with UnionPay style), every party in one binary\n\n")
	fmt.Fprint(w, "Usage: mipay COMMAND [flags]   (mipay COMMAND -h for a command's flags)\n\nCommands:\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range commands() {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.help)
	}
	tw.Flush()
}

// newFlagSet returns a FlagSet for a sub-command that reports errors instead
// of exiting and writes its help to stderr.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("mipay "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: mipay %s %s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args into fs; a flag error becomes a usage error (exit
// 2) naming the command, -h/-help becomes flag.ErrHelp.
func parseFlags(fs *flag.FlagSet, args []string) error {
	// The FlagSet prints the error and the whole usage on failure; keep only
	// our one-line error by silencing it while parsing.
	out := fs.Output()
	usage := fs.Usage
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.SetOutput(out)
	fs.Usage = usage
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.Usage()
		return flag.ErrHelp
	case err != nil:
		return usagef("%s: %v (see `%s -h`)", strings.TrimPrefix(fs.Name(), "mipay "), err, fs.Name())
	}
	return nil
}

// noArgs refuses positional arguments for commands that take none.
func noArgs(fs *flag.FlagSet) error {
	if fs.NArg() > 0 {
		return usagef("%s: unexpected argument %q (see `%s -h`)", strings.TrimPrefix(fs.Name(), "mipay "), fs.Arg(0), fs.Name())
	}
	return nil
}

// listFlag is a repeatable flag of KEY=VALUE pairs.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }
