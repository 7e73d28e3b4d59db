package sms

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/mipay-oss/mipay/httpx"
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/store"
)

// Party is the running SMS gateway.
type Party struct {
	db      *store.DB
	srv     *http.Server
	url     string
	served  chan error
	Service *Service
}

// Start opens the gateway's store and serves its HTTP API on
// env.Listen["http"].
func Start(ctx context.Context, env *node.Env) (node.Party, error) {
	return StartParty(ctx, env)
}

// StartParty is Start returning the concrete type (tests use Service).
func StartParty(ctx context.Context, env *node.Env) (*Party, error) {
	addr := env.Listen["http"]
	if addr == "" {
		return nil, fmt.Errorf("sms: no HTTP listen address (env.Listen[\"http\"])")
	}
	db, err := store.Open(ctx, env.Store, "sms", Migrations())
	if err != nil {
		return nil, fmt.Errorf("sms: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("sms: listen on %s: %w", addr, err)
	}
	log := env.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	svc := NewService(NewSQLStore(db))
	p := &Party{
		db:      db,
		srv:     httpx.NewServer("sms", Handler(svc), log, env.Metrics),
		url:     "http://" + ln.Addr().String(),
		served:  make(chan error, 1),
		Service: svc,
	}
	go func() { p.served <- p.srv.Serve(ln) }()
	log.Info("sms gateway listening", "party", "sms", "http", p.url)
	return p, nil
}

// Addrs implements node.Party.
func (p *Party) Addrs() map[string]string { return map[string]string{"http": p.url} }

// Close implements node.Party.
func (p *Party) Close(ctx context.Context) error {
	err := httpx.Shutdown(ctx, p.srv)
	if serr := <-p.served; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return errors.Join(err, p.db.Close())
}
