package main

import (
	"context"
	"io"
	"strings"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", "ROLE [flags]   (ROLE: "+strings.Join(wiredRoles(), ", ")+")", stderr)
	var hf hostFlags
	hf.register(fs)
	// The role comes first (`mipay serve wallet --db …`); flags may also
	// come first (`mipay serve --db … wallet`).
	var role string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		role, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if role == "" && fs.NArg() > 0 {
		role = fs.Arg(0)
		if err := parseFlags(fs, fs.Args()[1:]); err != nil {
			return err
		}
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if role == "" {
		return usagef("serve: which party? give a ROLE: %s", strings.Join(wiredRoles(), ", "))
	}
	spec, ok := specByRole(role)
	if !ok {
		return usagef("serve: unknown party %q: choose one of %s", role, strings.Join(wiredRoles(), ", "))
	}
	p, err := hf.plan(ctx, []partySpec{spec})
	if err != nil {
		return err
	}
	log := newLogger(stderr, p.logLevel)
	h, err := start(ctx, p, log)
	if err != nil {
		return err
	}
	printParties(stdout, p, h)
	return h.serveUntilDone(ctx)
}

func specByRole(role string) (partySpec, bool) {
	for _, s := range partySpecs() {
		if s.role == role {
			return s, true
		}
	}
	return partySpec{}, false
}

func wiredRoles() []string {
	var roles []string
	for _, s := range partySpecs() {
		roles = append(roles, s.role)
	}
	return roles
}
