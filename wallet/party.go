package wallet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/mipay-oss/mipay/events"
	"github.com/mipay-oss/mipay/httpx"
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/store"
)

// EnvSERoots names the environment variable listing extra SE vendor root
// PEM files the wallet trusts (separated like PATH), besides the emulator
// factory's <data>/se-factory/root.pem.
const EnvSERoots = "MIPAY_WALLET_SE_ROOTS"

// EnvTSPToken names the environment variable holding the wallet's token
// requestor secret at the TSP (the TSP reads the same variable), used when
// Config.TSPToken is empty; without it the secret is read from the file the
// TSP creates, TSPTokenPath(dataDir).
const EnvTSPToken = "MIPAY_TSP_REQUESTOR_TOKEN"

// TSPTokenPath is where the TSP keeps the requestor secret under a data
// directory (see tsp/API.md).
func TSPTokenPath(dataDir string) string { return filepath.Join(dataDir, "tsp", "requestor.token") }

// FactoryRootPath is where the handset emulator's SE factory keeps its root
// certificate (see package se) under a data directory.
func FactoryRootPath(dataDir string) string {
	return filepath.Join(dataDir, "se-factory", "root.pem")
}

// Party is a running wallet: its HTTP API, its store, its subscriptions.
type Party struct {
	svc    *Service
	db     *store.DB
	writer *store.Writer
	srv    *http.Server
	addr   string
	subs   []events.Subscription
	cancel context.CancelFunc
	served chan error

	closeOnce sync.Once
	closeErr  error
}

// Start starts the wallet party of env: store, TSP client (env's "tsp"
// peer, with the requestor secret of MIPAY_TSP_REQUESTOR_TOKEN or
// <data>/tsp/requestor.token), SE vendor roots (the emulator factory's root under env.DataDir,
// plus MIPAY_WALLET_SE_ROOTS), event subscriptions and the HTTP API on
// env.Listen["http"].
func Start(ctx context.Context, env *node.Env) (node.Party, error) {
	return StartWith(ctx, env, Config{})
}

// StartWith is Start with a Config: fields left zero are taken from env and
// the defaults (tests and in-process setups set TSP, Roots, Now, limits).
func StartWith(ctx context.Context, env *node.Env, cfg Config) (*Party, error) {
	if cfg.TSP == nil {
		if cfg.TSPToken == "" {
			cfg.TSPToken = strings.TrimSpace(os.Getenv(EnvTSPToken))
		}
		if cfg.TSPToken != "" || env.DataDir == "" {
			cfg.TSP = NewHTTPTSP(env.Peer(node.RoleTSP, "http"), cfg.TSPToken, DefaultTSPTimeout)
		} else {
			// Parties of one `mipay up` share the data directory where the
			// TSP keeps the secret; it is read when first needed, so the
			// wallet may also start before the TSP ever ran.
			cfg.TSP = NewHTTPTSPTokenFile(env.Peer(node.RoleTSP, "http"), TSPTokenPath(env.DataDir), DefaultTSPTimeout)
		}
	}
	if cfg.MaxCardsPerDevice == 0 && env.Ref != nil {
		cfg.MaxCardsPerDevice = env.Ref.DeviceCardLimit() // the reference data's per-device limit (default 8)
	}
	if cfg.Transit == nil {
		// Read at each call: the transit party starts after the wallet.
		cfg.Transit = &HTTPTransit{Base: func() string { return env.Peer(node.RoleTransit, "http") }}
	}
	if cfg.Offers == nil {
		// The promotions engine's query is on the switch's HTTP listener.
		cfg.Offers = &HTTPOffers{Base: func() string { return env.Peer(node.RoleNetwork, "http") }}
	}
	if cfg.Roots == nil {
		files := []string{FactoryRootPath(env.DataDir)}
		if v := os.Getenv(EnvSERoots); v != "" {
			for _, f := range filepath.SplitList(v) {
				if f = strings.TrimSpace(f); f != "" {
					files = append(files, f)
				}
			}
		}
		cfg.Roots = NewRoots(files...)
	}
	if cfg.TokenRequestorID == "" && env.Ref != nil && len(env.Ref.TokenRequestors) > 0 {
		cfg.TokenRequestorID = env.Ref.TokenRequestors[0].ID
	}
	if cfg.Log == nil {
		cfg.Log = env.Log
	}
	if cfg.Metrics == nil {
		cfg.Metrics = env.Metrics
	}
	if cfg.Log != nil {
		cfg.Log = cfg.Log.With("party", node.RoleWallet)
	}

	db, err := store.Open(ctx, env.Store, node.RoleWallet, Migrations())
	if err != nil {
		return nil, fmt.Errorf("wallet: open store: %w", err)
	}
	w := store.NewWriter(db, store.WriterConfig{Registerer: env.Metrics})
	p := &Party{db: db, writer: w, served: make(chan error, 1)}
	p.svc = NewService(cfg, newRepo(db, w.Write))

	if env.Bus != nil {
		if err := p.subscribe(ctx, env.Bus); err != nil {
			p.closeStore()
			return nil, err
		}
	}

	listen := "127.0.0.1:0"
	if a := env.Listen["http"]; a != "" {
		listen = a
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		p.stopSubs()
		p.closeStore()
		return nil, fmt.Errorf("wallet: listen %s: %w", listen, err)
	}
	p.addr = "http://" + ln.Addr().String()
	p.srv = httpx.NewServer(node.RoleWallet, NewAPI(p.svc).Handler(), cfg.Log, env.Metrics)
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.cancel = cancel
	go func() { p.served <- httpx.Serve(sctx, p.srv, ln) }()
	return p, nil
}

// DefaultTransactionConcurrency is how many transaction.authorized events
// the wallet handles at once.
const DefaultTransactionConcurrency = 64

func (p *Party) subscribe(ctx context.Context, bus *events.Bus) error {
	handlers := []struct {
		subject, durable string
		fn               func(context.Context, string, []byte) error
		concurrency      int
	}{
		// Authorizations are recorded once each by id, and a card's points
		// balance keeps the newest: their order does not matter, so many
		// are handled at once and share the store's group commits.
		{SubjectTransactionAuthorized, DurableTransactions, func(ctx context.Context, id string, data []byte) error {
			return p.svc.HandleTransaction(ctx, id, data)
		}, DefaultTransactionConcurrency},
		{SubjectTransactionReversed, DurableReversals, func(ctx context.Context, id string, data []byte) error {
			return p.svc.HandleReversal(ctx, id, data)
		}, 1},
		{SubjectTokenStateChanged, DurableTokenStates, func(ctx context.Context, id string, data []byte) error {
			return p.svc.HandleTokenState(ctx, id, data)
		}, 1},
		{SubjectTokenStatesChanged, DurableTokenStateBatches, func(ctx context.Context, id string, data []byte) error {
			return p.svc.HandleTokenStates(ctx, id, data)
		}, 1},
	}
	for _, h := range handlers {
		sub, err := bus.Subscribe(ctx, h.subject, h.durable, func(ctx context.Context, e events.Event) error {
			err := h.fn(ctx, e.ID, e.Data)
			result := "ok"
			if err != nil {
				result = "retry"
			}
			p.svc.metrics.events.WithLabelValues(h.subject, result).Inc()
			return err
		}, events.WithConcurrency(h.concurrency))
		if err != nil {
			p.stopSubs()
			return fmt.Errorf("wallet: subscribe %s: %w", h.subject, err)
		}
		p.subs = append(p.subs, sub)
	}
	return nil
}

// Addrs reports the HTTP API's URL under "http".
func (p *Party) Addrs() map[string]string { return map[string]string{"http": p.addr} }

// URL is the HTTP API's base URL (http://127.0.0.1:port).
func (p *Party) URL() string { return p.addr }

// Service is the party's service, for in-process callers (the portal, tests).
func (p *Party) Service() *Service { return p.svc }

// Close stops the HTTP API (finishing requests in flight, bounded by ctx),
// the subscriptions and the store.
func (p *Party) Close(ctx context.Context) error {
	p.closeOnce.Do(func() {
		var errs []error
		p.svc.Stop()
		if p.srv != nil {
			if err := httpx.Shutdown(ctx, p.srv); err != nil {
				errs = append(errs, err)
			}
			p.cancel()
			if err := <-p.served; err != nil {
				errs = append(errs, err)
			}
		}
		p.stopSubs()
		errs = append(errs, p.closeStore())
		p.closeErr = errors.Join(errs...)
	})
	return p.closeErr
}

func (p *Party) stopSubs() {
	for _, s := range p.subs {
		_ = s.Close()
	}
	p.subs = nil
}

func (p *Party) closeStore() error {
	return errors.Join(p.writer.Close(), p.db.Close())
}
