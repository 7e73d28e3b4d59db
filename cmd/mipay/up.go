package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/events"
	"github.com/mipay-oss/mipay/hsm"
	"github.com/mipay-oss/mipay/logmask"
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/store"
	"github.com/prometheus/client_golang/prometheus"
)

func runUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("up", "[flags]", stderr)
	var hf hostFlags
	hf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	p, err := hf.plan(ctx, partySpecs())
	if err != nil {
		return err
	}
	log := newLogger(stderr, p.logLevel)
	h, err := start(ctx, p, log)
	if err != nil {
		return err
	}
	printParties(stdout, p, h)
	printDemoCards(stdout, p.ref)
	fmt.Fprintln(stdout, "Next, in another terminal: `go run ./cmd/mipay phone help` (register, log in, enroll a finger, add a card),")
	fmt.Fprintln(stdout, "or `go run ./cmd/mipay demo` for the whole story on its own data.")
	fmt.Fprintln(stdout, "\nCtrl-C stops every party; running `mipay up` again continues from the same data.")
	return h.serveUntilDone(ctx)
}

// printParties prints where every started party listens.
func printParties(w io.Writer, p *hostPlan, h *host) {
	storage := "SQLite files in " + p.dataDir
	if p.store.URL != "" {
		storage = "PostgreSQL " + store.RedactURL(p.store.URL)
	}
	bus := "embedded NATS in " + filepath.Join(p.dataDir, "nats")
	if p.natsURL != "" {
		bus = "NATS " + redactUserinfo(p.natsURL)
	}
	fmt.Fprintf(w, "mipay %s: %d parties running\n", version, len(h.parties))
	fmt.Fprintf(w, "  data:   %s\n  events: %s\n\n", storage, bus)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTY\tENDPOINT\tADDRESS")
	for _, sp := range h.parties {
		addrs := sp.party.Addrs()
		for _, name := range slices.Sorted(maps.Keys(addrs)) {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", sp.role, name, addrs[name])
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
}

// printDemoCards prints the demo cards of the reference data that carry a
// note (all made up), so a newcomer has card data to type.
func printDemoCards(w io.Writer, ref *config.Reference) {
	type card struct {
		is *config.Issuer
		c  *config.Cardholder
	}
	var cards []card
	for i := range ref.Issuers {
		is := &ref.Issuers[i]
		for j := range is.Cardholders {
			if is.Cardholders[j].Note != "" {
				cards = append(cards, card{is, &is.Cardholders[j]})
			}
		}
	}
	if len(cards) == 0 { // a --config file without notes: show a few anyway
		for i := 0; i < len(ref.Issuers) && len(cards) < 3; i++ {
			if len(ref.Issuers[i].Cardholders) > 0 {
				cards = append(cards, card{&ref.Issuers[i], &ref.Issuers[i].Cardholders[0]})
			}
		}
	}
	if len(cards) == 0 {
		return
	}
	fmt.Fprintln(w, "DEMO CARDS: made-up test data seeded into the issuer hosts (not real cards); bind one to a phone:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "BANK\tPAN\tEXPIRY\tCVN2\tPHONE\tNAME\tSHOWS")
	for _, c := range cards {
		cvn2 := c.c.CVN2
		if cvn2 == "" {
			cvn2 = "-"
		}
		fmt.Fprintf(tw, "%s %s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.is.BankCode, c.is.CardType, c.c.PAN, c.c.Expiry, cvn2, c.c.Phone, c.c.Name, c.c.Note)
	}
	tw.Flush()
	fmt.Fprintln(w)
}

func sortedKeys(m map[string]bool) []string {
	return slices.Sorted(maps.Keys(m))
}

// Environment variables read by `up` and `serve` (a flag wins over its
// variable).
const (
	envDataDir     = "MIPAY_DATA"
	envDatabaseURL = "MIPAY_DATABASE_URL"
	envNATSURL     = "MIPAY_NATS_URL"
	envHSMKey      = "MIPAY_HSM_MASTER_KEY"
)

// Defaults of the host process.
const (
	DefaultDataDir = "./mipay-data"
	DefaultHost    = "127.0.0.1"
	// DefaultShutdownTimeout bounds a graceful shutdown: parties get this
	// long, together, to finish what is in flight.
	DefaultShutdownTimeout = 15 * time.Second
	// maxPortOffset is the largest endpoint offset from --port-base.
	maxPortOffset = 90
)

// hostFlags are the flags `up` and `serve` share.
type hostFlags struct {
	data, db, nats, natsListen, config, host, logLevel string
	portBase                                           int
	listen, peers                                      listFlag
}

func (h *hostFlags) register(fs *flag.FlagSet) {
	data := DefaultDataDir
	if v := os.Getenv(envDataDir); v != "" {
		data = v
	}
	fs.StringVar(&h.data, "data", data, "data `directory`: SQLite files, embedded NATS, HSM master key (env "+envDataDir+")")
	fs.StringVar(&h.db, "db", "", "PostgreSQL `URL` postgres://user:password@host:5432/db; default SQLite files under --data (env "+envDatabaseURL+")")
	fs.StringVar(&h.nats, "nats", "", "NATS `URL`s nats://host:4222[,nats://…]; default an embedded server under --data (env "+envNATSURL+")")
	fs.StringVar(&h.natsListen, "nats-listen", "", "also let NATS clients reach the embedded server at `HOST:PORT` (default: in-process only)")
	fs.StringVar(&h.config, "config", "", "reference data JSON `file` replacing the embedded default (banks, BINs, demo cards)")
	fs.StringVar(&h.host, "host", DefaultHost, "`address` the parties listen on")
	fs.IntVar(&h.portBase, "port-base", DefaultPortBase, "first `port`; every endpoint has a fixed offset from it (see README)")
	fs.Var(&h.listen, "listen", "one endpoint's address, `ROLE.NAME=HOST:PORT` (repeatable; port 0 picks a free port)")
	fs.Var(&h.peers, "peer", "where a party run elsewhere is, `ROLE.NAME=ADDRESS` (repeatable): http as a URL, iso8583 as HOST:PORT; default the fixed ports on --host")
	fs.StringVar(&h.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
}

// hostPlan is everything `up` or `serve` will do, resolved and checked before
// anything is created.
type hostPlan struct {
	dataDir    string
	store      store.Config
	natsURL    string
	natsListen string
	hsmKey     string // MIPAY_HSM_MASTER_KEY, or "" for <data>/hsm/master.key
	ref        *config.Reference
	logLevel   slog.Level
	parties    []plannedParty
	// peers is where every party is, by role and endpoint; HTTP endpoints
	// as URLs.
	peers map[string]map[string]string
}

// plannedParty is one party to start and the addresses it listens on.
type plannedParty struct {
	spec   partySpec
	listen map[string]string
}

// plan checks the flags and the environment and returns what to start. Every
// problem is a usage error (exit 2); nothing is written.
func (h *hostFlags) plan(ctx context.Context, specs []partySpec) (*hostPlan, error) {
	p := &hostPlan{dataDir: h.data}
	var err error
	if p.logLevel, err = parseLogLevel(h.logLevel); err != nil {
		return nil, err
	}
	if p.ref, err = loadReference(h.config); err != nil {
		return nil, err
	}
	if p.store, err = storeConfig(h.data, h.db); err != nil {
		return nil, err
	}
	if p.natsURL, err = natsURL(h.nats); err != nil {
		return nil, err
	}
	if h.natsListen != "" {
		if p.natsURL != "" {
			return nil, usagef("--nats-listen is for the embedded NATS server; with an external one (--nats or %s) leave it out", envNATSURL)
		}
		if err := checkFree("--nats-listen", h.natsListen); err != nil {
			return nil, err
		}
		p.natsListen = h.natsListen
	}
	p.hsmKey = os.Getenv(envHSMKey)
	if err := checkHSMKey(p.hsmKey); err != nil {
		return nil, err
	}
	if err := checkDataDir(h.data); err != nil {
		return nil, err
	}
	if p.parties, err = h.planListeners(specs); err != nil {
		return nil, err
	}
	if p.peers, err = h.planPeers(p.parties); err != nil {
		return nil, err
	}
	// Last, as they take a network round trip (and up to
	// DefaultCheckTimeout when a server does not answer).
	if err := checkDatabase(ctx, p.store.URL); err != nil {
		return nil, err
	}
	if err := checkNATS(ctx, p.natsURL); err != nil {
		return nil, err
	}
	return p, nil
}

// planPeers says where every party is: the parties of this process where
// they listen; the others where --peer says, by default on their fixed
// ports on --host (as `mipay serve` of that party would listen).
func (h *hostFlags) planPeers(parties []plannedParty) (map[string]map[string]string, error) {
	all := map[string]bool{}
	for role := range roleEndpoints() {
		all[role] = true
	}
	given, err := parseEndpointFlags("--peer", h.peers, all)
	if err != nil {
		return nil, err
	}
	peers := map[string]map[string]string{}
	for role, eps := range roleEndpoints() {
		for _, ep := range eps {
			addr := net.JoinHostPort(h.host, strconv.Itoa(h.portBase+ep.offset))
			setPeer(peers, role, ep.name, peerAddr(ep.name, addr))
		}
	}
	local := map[string]bool{}
	for _, pp := range parties {
		local[pp.spec.role] = true
		for name, addr := range pp.listen {
			setPeer(peers, pp.spec.role, name, peerAddr(name, addr))
		}
	}
	for _, key := range slices.Sorted(maps.Keys(given)) {
		role, name, _ := strings.Cut(key, ".")
		val := given[key]
		if local[role] {
			return nil, usagef("--peer %s: party %s runs in this process; move it with --listen %s=HOST:PORT instead", key, role, key)
		}
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

func parseLogLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, usagef("--log-level %q: use debug, info, warn or error", s)
	}
	return l, nil
}

func loadReference(path string) (*config.Reference, error) {
	if path == "" {
		ref, err := config.Default()
		if err != nil {
			return nil, fmt.Errorf("embedded reference data: %w", err) // a bug, not bad input
		}
		return ref, nil
	}
	ref, err := config.Load(path)
	if err != nil {
		return nil, usagef("--config: %v", err)
	}
	return ref, nil
}

// storeConfig resolves --db or MIPAY_DATABASE_URL and checks the URL's syntax
// (checkDatabase then connects once).
func storeConfig(dataDir, flagURL string) (store.Config, error) {
	u, src := flagURL, "--db"
	if u == "" {
		u, src = os.Getenv(envDatabaseURL), envDatabaseURL
	}
	cfg := store.Config{Dir: dataDir, URL: u}
	if u == "" {
		return cfg, nil
	}
	shown := store.RedactURL(u)
	if !strings.HasPrefix(u, "postgres://") && !strings.HasPrefix(u, "postgresql://") {
		return cfg, usagef("%s %s is not a PostgreSQL URL: use postgres://user:password@host:5432/dbname, or leave it unset for SQLite files under --data", src, shown)
	}
	if _, err := pgx.ParseConfig(u); err != nil {
		return cfg, usagef("%s %s is not a valid PostgreSQL URL: use postgres://user:password@host:5432/dbname", src, shown)
	}
	return cfg, nil
}

// natsURL resolves --nats or MIPAY_NATS_URL ("" = embedded server) and
// checks each comma-separated server URL.
func natsURL(flagURL string) (string, error) {
	u, src := flagURL, "--nats"
	if u == "" {
		u, src = os.Getenv(envNATSURL), envNATSURL
	}
	if u == "" {
		return "", nil
	}
	for _, s := range strings.Split(u, ",") {
		p, err := url.Parse(strings.TrimSpace(s))
		ok := err == nil && p.Host != ""
		if ok {
			switch p.Scheme {
			case "nats", "tls", "ws", "wss":
			default:
				ok = false
			}
		}
		if !ok {
			return "", usagef("%s %q is not a NATS URL: use nats://host:4222 (several separated by commas), or leave it unset for an embedded server", src, redactUserinfo(s))
		}
	}
	return u, nil
}

// DefaultCheckTimeout bounds each reachability check of an external service
// before start.
const DefaultCheckTimeout = 5 * time.Second

// checkDatabase connects once to the PostgreSQL database, if one is
// configured, so that a wrong host, database or password is reported before
// anything is created.
func checkDatabase(ctx context.Context, u string) error {
	if u == "" {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, DefaultCheckTimeout)
	defer cancel()
	conn, err := pgx.Connect(cctx, u)
	if err != nil {
		return usagef("cannot connect to PostgreSQL at %s (%s): start it, or fix the URL in --db or %s", store.RedactURL(u), innermost(err), envDatabaseURL)
	}
	return conn.Close(cctx)
}

// checkNATS dials the external NATS servers, if configured, until one
// answers.
func checkNATS(ctx context.Context, urls string) error {
	if urls == "" {
		return nil
	}
	var last error
	for _, s := range strings.Split(urls, ",") {
		p, err := url.Parse(strings.TrimSpace(s))
		if err != nil {
			return err // natsURL checked the syntax
		}
		host := p.Host
		if p.Port() == "" {
			host = net.JoinHostPort(p.Hostname(), "4222")
		}
		d := net.Dialer{Timeout: DefaultCheckTimeout}
		c, err := d.DialContext(ctx, "tcp", host)
		if err == nil {
			return c.Close()
		}
		last = err
	}
	return usagef("cannot reach NATS at %s (%s): start it, or fix --nats or %s", redactUserinfo(urls), innermost(last), envNATSURL)
}

// innermost returns the text of the deepest wrapped error: the short cause
// ("connection refused") without the wrappers' context, which may quote a
// URL.
func innermost(err error) string {
	for {
		var next error
		switch e := err.(type) {
		case interface{ Unwrap() error }:
			next = e.Unwrap()
		case interface{ Unwrap() []error }: // joined: the first attempt's cause
			if errs := e.Unwrap(); len(errs) > 0 {
				next = errs[0]
			}
		}
		if next == nil {
			return strings.ReplaceAll(err.Error(), "\n", "; ")
		}
		err = next
	}
}

// redactUserinfo hides credentials in a URL that may not parse.
func redactUserinfo(s string) string {
	if i, j := strings.Index(s, "://"), strings.LastIndex(s, "@"); i >= 0 && j > i {
		return s[:i+3] + "…@" + s[j+1:]
	}
	return s
}

func checkHSMKey(k string) error {
	if k == "" {
		return nil
	}
	if len(k) != 64 || strings.Trim(strings.ToLower(k), "0123456789abcdef") != "" {
		return usagef("%s must be 64 hex characters (a 32-byte key); unset it to keep the master key in <data>/hsm/master.key", envHSMKey)
	}
	return nil
}

// checkDataDir checks that dir is, or can be created as, a writable
// directory. It creates nothing that stays: writability is tested by
// creating and removing a temporary file, the only test that sees
// read-only mounts and ACLs.
func checkDataDir(dir string) error {
	if dir == "" {
		return usagef("--data is empty: give the data directory, e.g. --data %s", DefaultDataDir)
	}
	probe := dir
	for {
		st, err := os.Stat(probe)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			parent := filepath.Dir(probe)
			if parent == probe {
				return usagef("--data %s: no existing parent directory: choose another directory with --data", dir)
			}
			probe = parent
			continue
		}
		if err != nil {
			return usagef("--data %s: %s: choose another directory with --data", dir, pathReason(err))
		}
		if !st.IsDir() {
			if probe == dir {
				return usagef("--data %s is a file, not a directory: choose a directory with --data", dir)
			}
			return usagef("--data %s: %s is a file, not a directory: choose another directory with --data", dir, probe)
		}
		break
	}
	f, err := os.CreateTemp(probe, ".mipay-write-test-*")
	if err != nil {
		what := "is not writable"
		if probe != dir {
			what = "cannot be created in " + probe
		}
		return usagef("--data %s %s (%s): fix the permissions or choose another directory with --data", dir, what, pathReason(err))
	}
	name := f.Name()
	return errors.Join(f.Close(), os.Remove(name))
}

func pathReason(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// planListeners resolves every endpoint of the parties to start (fixed
// offsets from --port-base, overridden by --listen) and checks that each
// address is free by listening on it. Port 0 is replaced by a free port.
func (h *hostFlags) planListeners(specs []partySpec) ([]plannedParty, error) {
	if h.portBase < 1 || h.portBase+maxPortOffset > 65535 {
		return nil, usagef("--port-base %d: use a port from 1 to %d", h.portBase, 65535-maxPortOffset)
	}
	overrides, err := parseEndpointFlags("--listen", h.listen, specRoles(specs))
	if err != nil {
		return nil, err
	}
	var (
		planned []plannedParty
		held    []net.Listener
		owner   = map[string]string{} // address → role.name
	)
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for _, s := range specs {
		pp := plannedParty{spec: s, listen: map[string]string{}}
		for _, ep := range roleEndpoints()[s.role] {
			key := s.role + "." + ep.name
			addr, ok := overrides[key]
			if !ok {
				addr = net.JoinHostPort(h.host, strconv.Itoa(h.portBase+ep.offset))
			}
			if _, _, err := net.SplitHostPort(addr); err != nil {
				return nil, usagef("%s address %q is not HOST:PORT: fix --listen %s=HOST:PORT or --host", key, addr, key)
			}
			if other, dup := owner[addr]; dup {
				return nil, usagef("%s and %s would both listen on %s: give one of them another address with --listen", other, key, addr)
			}
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return nil, usagef("%s cannot listen on %s (%s): stop what uses the port, or choose others with --port-base or --listen %s=HOST:PORT", key, addr, listenReason(err), key)
			}
			held = append(held, l)
			addr = l.Addr().String()
			owner[addr] = key
			pp.listen[ep.name] = addr
		}
		planned = append(planned, pp)
	}
	return planned, nil
}

// checkFree checks that addr is HOST:PORT and free.
func checkFree(what, addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return usagef("%s %q is not HOST:PORT", what, addr)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return usagef("%s %s: cannot listen (%s): stop what uses the port or choose another", what, addr, listenReason(err))
	}
	return l.Close()
}

func listenReason(err error) string {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		var se *os.SyscallError
		if errors.As(oe.Err, &se) {
			return se.Err.Error()
		}
		return oe.Err.Error()
	}
	return err.Error()
}

func specRoles(specs []partySpec) map[string]bool {
	roles := map[string]bool{}
	for _, s := range specs {
		roles[s.role] = true
	}
	return roles
}

// parseEndpointFlags parses ROLE.NAME=VALUE flags for the given roles.
func parseEndpointFlags(flagName string, values []string, roles map[string]bool) (map[string]string, error) {
	out := map[string]string{}
	for _, v := range values {
		key, val, ok := strings.Cut(v, "=")
		role, name, ok2 := strings.Cut(key, ".")
		if !ok || !ok2 || val == "" {
			return nil, usagef("%s %q: write ROLE.NAME=ADDRESS, e.g. %s wallet.http=127.0.0.1:8410", flagName, v, flagName)
		}
		if !roles[role] {
			return nil, usagef("%s %q: unknown party %q (known: %s)", flagName, v, role, strings.Join(sortedKeys(roles), ", "))
		}
		if !hasEndpoint(role, name) {
			return nil, usagef("%s %q: party %s has no endpoint %q (it has: %s)", flagName, v, role, name, strings.Join(endpointNames(role), ", "))
		}
		out[key] = val
	}
	return out, nil
}

func hasEndpoint(role, name string) bool {
	for _, ep := range roleEndpoints()[role] {
		if ep.name == name {
			return true
		}
	}
	return false
}

func endpointNames(role string) []string {
	var names []string
	for _, ep := range roleEndpoints()[role] {
		names = append(names, ep.name)
	}
	return names
}

// peerAddr is how other parties reach an endpoint listening on addr: HTTP as
// a URL, others as host:port; a wildcard listen address is reached on
// loopback.
func peerAddr(endpoint, addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err == nil {
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			host = "127.0.0.1"
		}
		addr = net.JoinHostPort(host, port)
	}
	if endpoint == endpointHTTP {
		return "http://" + addr
	}
	return addr
}

func setPeer(peers map[string]map[string]string, role, name, addr string) {
	if peers[role] == nil {
		peers[role] = map[string]string{}
	}
	peers[role][name] = addr
}

// host is the running process: the shared services and the started parties.
type host struct {
	log     *slog.Logger
	bus     *events.Bus
	hsm     hsm.HSM
	parties []startedParty
}

type startedParty struct {
	role  string
	party node.Party
}

// newLogger returns the process logger: text on stderr, every PAN masked.
func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(logmask.NewHandler(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})))
}

// start creates the data directory, opens the bus and the HSM and starts the
// planned parties in order. On failure it closes what it started.
func start(ctx context.Context, p *hostPlan, log *slog.Logger) (h *host, err error) {
	if err := os.MkdirAll(p.dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", p.dataDir, err)
	}
	h = &host{log: log}
	defer func() {
		if err != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultShutdownTimeout)
			defer cancel()
			if cerr := h.close(cctx); cerr != nil {
				log.Error("closing after a failed start", "err", cerr)
			}
			h = nil
		}
	}()
	h.bus, err = events.Open(ctx, events.Config{URL: p.natsURL, Dir: filepath.Join(p.dataDir, "nats"), Listen: p.natsListen}, log.With("component", "events"))
	if err != nil {
		return h, fmt.Errorf("events: %w", err)
	}
	soft, err := hsm.OpenSoft(ctx, hsm.SoftConfig{Dir: filepath.Join(p.dataDir, "hsm"), MasterKeyHex: p.hsmKey})
	if err != nil {
		return h, fmt.Errorf("hsm: %w", err)
	}
	h.hsm = soft
	for _, pp := range p.parties {
		env := &node.Env{
			Role:    pp.spec.role,
			DataDir: p.dataDir,
			Store:   p.store,
			Bus:     h.bus,
			HSM:     h.hsm,
			Log:     log,
			Ref:     p.ref,
			Metrics: prometheus.NewRegistry(),
			Listen:  pp.listen,
			Peers:   p.peers,
		}
		party, err := pp.spec.start(ctx, env)
		if err != nil {
			return h, fmt.Errorf("start %s: %w", pp.spec.role, err)
		}
		h.parties = append(h.parties, startedParty{pp.spec.role, party})
		log.Info("party started", "party", pp.spec.role, "addrs", party.Addrs())
	}
	return h, nil
}

// close stops the parties in reverse order of start, then the HSM and the
// bus, all within ctx.
func (h *host) close(ctx context.Context) error {
	var errs []error
	for i := len(h.parties) - 1; i >= 0; i-- {
		sp := h.parties[i]
		if err := sp.party.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", sp.role, err))
		}
	}
	h.parties = nil
	if h.hsm != nil {
		if c, ok := h.hsm.(io.Closer); ok {
			if err := c.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close hsm: %w", err))
			}
		}
	}
	if h.bus != nil {
		if err := h.bus.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close events: %w", err))
		}
	}
	return errors.Join(errs...)
}

// serveUntilDone waits for ctx (a signal) and shuts the host down within
// DefaultShutdownTimeout.
func (h *host) serveUntilDone(ctx context.Context) error {
	<-ctx.Done()
	h.log.Info("shutting down", "timeout", DefaultShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultShutdownTimeout)
	defer cancel()
	if err := h.close(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	h.log.Info("stopped")
	return nil
}
