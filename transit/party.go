package transit

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/events"
	"github.com/mipay-oss/mipay/httpx"
	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/store"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations is the transit store's schema.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the embedded directory exists: a build error, not a runtime one
	}
	return sub
}

// OperatorTokenFile is where the agency keeps the token its gates and
// operators present (under <data>/transit, 0600).
const OperatorTokenFile = "operator.token"

// DefaultSweepInterval is how often abandoned loads are refunded.
const DefaultSweepInterval = 30 * time.Second

// Party is the running transit agencies.
type Party struct {
	db      *store.DB
	srv     *http.Server
	url     string
	served  chan error
	stop    context.CancelFunc
	swept   chan struct{}
	link    *lazyLink
	subs    []events.Subscription
	Service *Service
}

// Start opens the agencies' store, ensures every city's keys, and serves
// the HTTP API on env.Listen["http"]. Payments go to the network's
// acquirer port (env.Peer("network", "iso8583")), accounts are the wallet's
// (env.Peer("wallet", "http")).
func Start(ctx context.Context, env *node.Env) (node.Party, error) {
	return StartParty(ctx, env)
}

// StartParty is Start returning the concrete type.
func StartParty(ctx context.Context, env *node.Env) (*Party, error) {
	addr := env.Listen["http"]
	if addr == "" {
		return nil, fmt.Errorf("transit: no HTTP listen address (env.Listen[\"http\"])")
	}
	if env.HSM == nil || env.Ref == nil {
		return nil, fmt.Errorf("transit: the HSM and the reference data are required")
	}
	token, err := OperatorToken(env.DataDir)
	if err != nil {
		return nil, err
	}
	db, err := store.Open(ctx, env.Store, "transit", Migrations())
	if err != nil {
		return nil, fmt.Errorf("transit: %w", err)
	}
	link := &lazyLink{addr: env.Peer("network", "iso8583"), env: env}
	svc, err := New(ctx, Config{DB: db, HSM: env.HSM, Ref: env.Ref, Log: env.Log,
		Acquirer: &ISO8583Acquirer{Link: link}, Accounts: WalletAccounts{Base: env.Peer("wallet", "http")}})
	if err != nil {
		db.Close()
		return nil, err
	}
	var subs []events.Subscription
	if env.Bus != nil {
		if subs, err = svc.subscribeDevices(ctx, env.Bus); err != nil {
			db.Close()
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		for _, sub := range subs {
			sub.Close()
		}
		db.Close()
		return nil, fmt.Errorf("transit: listen on %s: %w", addr, err)
	}
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	p := &Party{
		db: db, srv: httpx.NewServer("transit", Handler(svc, token), env.Log, env.Metrics),
		url: "http://" + ln.Addr().String(), served: make(chan error, 1), stop: stop, swept: make(chan struct{}),
		link: link, subs: subs, Service: svc,
	}
	go func() { p.served <- p.srv.Serve(ln) }()
	go p.sweep(sctx, env)
	env.Log.Info("transit agencies listening", "party", "transit", "http", p.url, "cities", len(svc.Cities()))
	return p, nil
}

func (p *Party) sweep(ctx context.Context, env *node.Env) {
	defer close(p.swept)
	t := time.NewTicker(DefaultSweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := p.Service.Sweep(ctx); err != nil && ctx.Err() == nil {
				env.Log.Warn("transit sweep", "err", err)
			}
		}
	}
}

// Addrs implements node.Party.
func (p *Party) Addrs() map[string]string { return map[string]string{"http": p.url} }

// Close implements node.Party.
func (p *Party) Close(ctx context.Context) error {
	p.stop()
	<-p.swept
	var err error
	for _, sub := range p.subs {
		err = errors.Join(err, sub.Close())
	}
	err = errors.Join(err, httpx.Shutdown(ctx, p.srv))
	if serr := <-p.served; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	err = errors.Join(err, p.link.Close())
	return errors.Join(err, p.db.Close())
}

// OperatorToken reads (creating on first use, 0600) the agency's operator
// token under <dataDir>/transit.
func OperatorToken(dataDir string) (string, error) {
	dir := filepath.Join(dataDir, "transit")
	path := filepath.Join(dir, OperatorTokenFile)
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("transit: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(raw)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) { // another process made it first
		b, err := os.ReadFile(path)
		return strings.TrimSpace(string(b)), err
	}
	if err != nil {
		return "", fmt.Errorf("transit: %w", err)
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return "", err
	}
	return tok, f.Close()
}

// lazyLink dials the network on first use (the network may start after us
// in `serve` deployments) and keeps the client.
type lazyLink struct {
	addr string
	env  *node.Env
	mu   sync.Mutex
	c    *iso8583.Client
}

func (l *lazyLink) Send(ctx context.Context, req *iso8583.Message) (*iso8583.Message, error) {
	l.mu.Lock()
	c := l.c
	if c == nil {
		if l.addr == "" {
			l.mu.Unlock()
			return nil, mipay.Errorf(mipay.EUNAVAILABLE, "no network acquirer address configured")
		}
		var err error
		c, err = iso8583.Dial(ctx, iso8583.ClientConfig{Addr: l.addr, Logger: l.env.Log})
		if err != nil {
			l.mu.Unlock()
			return nil, err
		}
		l.c = c
	}
	l.mu.Unlock()
	return c.Send(ctx, req)
}

func (l *lazyLink) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.c != nil {
		return l.c.Close()
	}
	return nil
}
