package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/hsm"
	"github.com/mipay-oss/mipay/httpx"
	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/promo"
	"github.com/mipay-oss/mipay/store"
	"github.com/mipay-oss/mipay/tsp"
)

// Party is a running switch node: the acquirer listener (ISO 8583), the
// links to issuer hosts, the TSP's authorization side in-process, and an
// HTTP listener for /healthz and /metrics.
type Party struct {
	Switch *Switch
	db     *store.DB
	auth   *tsp.Authorizer
	promo  *promo.Service
	links  *issuerLinks
	iso    *iso8583.Server
	isoLn  net.Listener
	srv    *http.Server
	httpLn net.Listener
	served chan error
	addrs  map[string]string
}

// Start starts a switch node. The issuers' ISO 8583 hosts are
// env.Peers["issuer"]["iso8583"] (every bank) or ["iso8583:<issuer id>"]
// for a bank whose host is elsewhere; acquirers connect to
// env.Listen["iso8583"].
func Start(ctx context.Context, env *node.Env) (node.Party, error) {
	return StartParty(ctx, env)
}

// StartParty is Start returning the concrete type.
func StartParty(ctx context.Context, env *node.Env) (p *Party, err error) {
	if env.HSM == nil || env.Ref == nil {
		return nil, errors.New("network: the environment has no HSM or reference data")
	}
	isoAddr := env.Listen["iso8583"]
	if isoAddr == "" {
		return nil, errors.New("network: no acquirer listen address (env.Listen[\"iso8583\"])")
	}
	p = &Party{served: make(chan error, 2), addrs: map[string]string{}}
	defer func() {
		if err != nil {
			p.closeAll(context.Background())
		}
	}()
	if p.db, err = store.Open(ctx, env.Store, node.RoleNetwork, Migrations()); err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	acfg := tsp.AuthorizerConfig{Store: env.Store, Keys: tsp.NewHSMKeys(env.HSM), Ref: env.Ref, Log: env.Log, Node: node.RoleNetwork,
		Writer: store.WriterConfig{Registerer: env.Metrics, Name: "authorizer"}}
	if env.Bus != nil {
		acfg.Subscriber = tsp.BusSubscriber{Bus: env.Bus}
	}
	if p.auth, err = tsp.NewAuthorizer(ctx, acfg); err != nil {
		return nil, fmt.Errorf("network: TSP authorizer: %w", err)
	}
	p.links = &issuerLinks{env: env, clients: map[string]*iso8583.Client{}}
	if err := env.HSM.EnsureKey(ctx, AdvicePANKey, hsm.AES256); err != nil {
		return nil, fmt.Errorf("network: advice PAN key: %w", err)
	}
	cfg := Config{Ref: env.Ref, DB: p.db, Tokens: p.auth, Issuers: p.links.get, Log: env.Log, NodeID: node.RoleNetwork,
		Writer: store.WriterConfig{Registerer: env.Metrics}, PANSealer: env.HSM}
	if env.Bus != nil {
		cfg.Bus = env.Bus
	}
	// Bank promotions: the engine's own store (party "promo"), defaults
	// seeded on first start.
	if p.promo, err = promo.Start(ctx, env.Store, env.Log, env.Metrics); err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	cfg.Promotions = p.promo
	if p.Switch, err = New(ctx, cfg); err != nil {
		return nil, err
	}
	if p.isoLn, err = net.Listen("tcp", isoAddr); err != nil {
		return nil, fmt.Errorf("network: listen on %s: %w", isoAddr, err)
	}
	p.addrs["iso8583"] = p.isoLn.Addr().String()
	p.iso = iso8583.NewServer(iso8583.ServerConfig{Logger: env.Log}, p.Switch.Handle)
	go func() { p.served <- p.iso.Serve(p.isoLn) }()
	if a := env.Listen["http"]; a != "" {
		if p.httpLn, err = net.Listen("tcp", a); err != nil {
			return nil, fmt.Errorf("network: listen on %s: %w", a, err)
		}
		p.addrs["http"] = "http://" + p.httpLn.Addr().String()
		secret, err := LoadAdminToken(env.DataDir)
		if err != nil {
			return nil, err
		}
		p.srv = httpx.NewServer(node.RoleNetwork, withPromoAPI(p.Switch.AdminHandler(secret), p.promo.Engine, secret, env.Ref), env.Log, env.Metrics)
		go func() { p.served <- p.srv.Serve(p.httpLn) }()
	}
	return p, nil
}

// Addrs implements node.Party.
func (p *Party) Addrs() map[string]string { return p.addrs }

// Close implements node.Party: stop taking requests, let the workers and
// writers finish, close links and store.
func (p *Party) Close(ctx context.Context) error { return p.closeAll(ctx) }

func (p *Party) closeAll(ctx context.Context) error {
	var errs []error
	if p.isoLn != nil {
		errs = append(errs, p.isoLn.Close())
	}
	if p.srv != nil {
		errs = append(errs, httpx.Shutdown(ctx, p.srv))
	}
	if p.Switch != nil {
		errs = append(errs, p.Switch.Close())
	}
	if p.links != nil {
		p.links.close()
	}
	if p.auth != nil {
		errs = append(errs, p.auth.Close())
	}
	if p.promo != nil {
		errs = append(errs, p.promo.Close())
	}
	if p.db != nil {
		errs = append(errs, p.db.Close())
	}
	var out []error
	for _, e := range errs {
		if e != nil && !errors.Is(e, net.ErrClosed) && !errors.Is(e, http.ErrServerClosed) {
			out = append(out, e)
		}
	}
	return errors.Join(out...)
}

// issuerLinks holds one ISO 8583 client per issuer host address, dialled
// when first needed, so a switch starts while an issuer host is down.
type issuerLinks struct {
	env     *node.Env
	mu      sync.Mutex
	clients map[string]*iso8583.Client
	failed  map[string]time.Time
}

// redialAfter is how long a failed dial is not retried by requests (the
// client reconnects on its own once connected).
const redialAfter = time.Second

func (l *issuerLinks) addr(issuerID string) string {
	if a := l.env.Peer(node.RoleIssuer, "iso8583:"+issuerID); a != "" {
		return a
	}
	return l.env.Peer(node.RoleIssuer, "iso8583")
}

func (l *issuerLinks) get(issuerID string) (IssuerLink, bool) {
	addr := l.addr(issuerID)
	if addr == "" {
		return nil, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if c, ok := l.clients[addr]; ok {
		return c, true
	}
	if t, ok := l.failed[addr]; ok && time.Since(t) < redialAfter {
		return unavailableLink{}, true
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := iso8583.Dial(ctx, iso8583.ClientConfig{Addr: addr, Logger: l.env.Log})
	if err != nil {
		if l.failed == nil {
			l.failed = map[string]time.Time{}
		}
		l.failed[addr] = time.Now()
		return unavailableLink{}, true
	}
	l.clients[addr] = c
	return c, true
}

func (l *issuerLinks) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.clients {
		c.Close()
	}
}

// unavailableLink answers like a link whose issuer host is down.
type unavailableLink struct{}

func (unavailableLink) Send(context.Context, *iso8583.Message) (*iso8583.Message, error) {
	return nil, mipay.Errorf(mipay.EUNAVAILABLE, "issuer host unreachable")
}
