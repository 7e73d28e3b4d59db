package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", "ROLE [flags]   (ROLE: "+strings.Join(wiredRoles(), ", ")+")", stderr)
	var hf hostFlags
	var peers listFlag
	hf.register(fs)
	fs.Var(&peers, "peer", "where another party is, `ROLE.NAME=ADDRESS` (repeatable): http as a URL, iso8583 as HOST:PORT; default the fixed ports on --host")
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
	if p.peers, err = servePeers(&hf, p, peers); err != nil {
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

// servePeers is where the other parties are for a party served alone: the
// fixed ports on --host unless --peer says otherwise; the served party's own
// endpoints are what it listens on.
func servePeers(hf *hostFlags, p *hostPlan, flags []string) (map[string]map[string]string, error) {
	all := map[string]bool{}
	for role := range roleEndpoints() {
		all[role] = true
	}
	given, err := parseEndpointFlags("--peer", flags, all)
	if err != nil {
		return nil, err
	}
	peers := map[string]map[string]string{}
	for role, eps := range roleEndpoints() {
		for _, ep := range eps {
			addr := net.JoinHostPort(hf.host, fmt.Sprint(hf.portBase+ep.offset))
			setPeer(peers, role, ep.name, peerAddr(ep.name, addr))
		}
	}
	for _, pp := range p.parties {
		for name, addr := range pp.listen {
			setPeer(peers, pp.spec.role, name, peerAddr(name, addr))
		}
	}
	for key, val := range given {
		role, name, _ := strings.Cut(key, ".")
		if err := checkPeerAddr(name, val); err != nil {
			return nil, usagef("--peer %s=%s: %v", key, val, err)
		}
		setPeer(peers, role, name, strings.TrimRight(val, "/"))
	}
	return peers, nil
}

func checkPeerAddr(endpoint, addr string) error {
	if endpoint == endpointHTTP {
		u, err := url.Parse(addr)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("want a URL such as http://10.0.0.5:8420")
		}
		return nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("want HOST:PORT such as 10.0.0.5:8500")
	}
	return nil
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
	if len(roles) == 0 {
		return []string{"(none in this build)"}
	}
	return slices.Clip(roles)
}
