package issuer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"

	"github.com/mipay-oss/mipay/hsm"
	"github.com/mipay-oss/mipay/httpx"
	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/store"
)

// HashKey is the HSM handle of the issuer host's HMAC key (card index, CVN2
// and OTP hashes).
const HashKey hsm.Handle = "issuer/card-hash"

// hsmHasher is a Hasher over the HSM.
type hsmHasher struct {
	h   hsm.HSM
	key hsm.Handle
}

func (x hsmHasher) HMAC(ctx context.Context, data []byte) ([]byte, error) {
	return x.h.HMAC(ctx, x.key, data)
}

// Party is the running issuer host: its HTTP API and its ISO 8583 server.
type Party struct {
	Host *Host

	db      *store.DB
	httpSrv *http.Server
	isoSrv  *iso8583.Server
	addrs   map[string]string
	served  chan error
}

// Start opens the issuer store, seeds the demo cardholders on first start,
// and serves the issuer API on env.Listen["http"] and ISO 8583 on
// env.Listen["iso8583"]. OTP messages go to env.Peer("sms", "http").
func Start(ctx context.Context, env *node.Env) (node.Party, error) {
	return StartParty(ctx, env)
}

// StartParty is Start returning the concrete type (tests reach the Host).
func StartParty(ctx context.Context, env *node.Env) (*Party, error) {
	log := env.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("party", node.RoleIssuer)
	httpAddr, isoAddr := env.Listen["http"], env.Listen["iso8583"]
	if httpAddr == "" || isoAddr == "" {
		return nil, errors.New(`issuer: needs listen addresses env.Listen["http"] and env.Listen["iso8583"]`)
	}
	if env.HSM == nil || env.Ref == nil {
		return nil, errors.New("issuer: needs the HSM and the reference data")
	}
	if err := env.HSM.EnsureKey(ctx, HashKey, hsm.HMACSHA256); err != nil {
		return nil, fmt.Errorf("issuer: hash key: %w", err)
	}
	db, err := store.Open(ctx, env.Store, node.RoleIssuer, Migrations())
	if err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	keys, err := ParseOperatorKeys(env.Ref, os.Getenv(EnvOperatorKeys))
	if err != nil {
		db.Close()
		return nil, err
	}
	opCfg := OperatorConfig{Keys: keys}
	if env.DataDir != "" {
		opCfg.Dir = filepath.Join(env.DataDir, node.RoleIssuer, OperatorKeyDir)
	}
	ops, err := OpenOperators(ctx, db, env.Ref, opCfg)
	if err != nil {
		db.Close()
		return nil, err
	}
	if len(ops.Generated) > 0 {
		log.Info("new bank operator keys written: hand each to its bank and delete the file", "dir", opCfg.Dir, "banks", len(ops.Generated))
	}
	var sms SMSSender
	if u := env.Peer(node.RoleSMS, "http"); u != "" {
		sms = NewHTTPSMS(u)
	} else {
		log.Warn("no SMS gateway configured: one-time codes cannot be sent")
	}
	host, err := NewHost(ctx, Options{Ref: env.Ref, DB: db, Hasher: hsmHasher{env.HSM, HashKey}, SMS: sms, Log: log,
		// The TSP starts after the issuer host: its address is read at each call.
		TSP:    NewHTTPTSP(func() string { return env.Peer(node.RoleTSP, "http") }, env.DataDir),
		Writer: store.WriterConfig{Registerer: env.Metrics}, Operators: ops,
		// The switch (and its campaign API) starts after the issuer host.
		Promotions: NewHTTPPromo(func() string { return env.Peer(node.RoleNetwork, "http") }, env.DataDir)})
	if err != nil {
		db.Close()
		return nil, err
	}
	p := &Party{Host: host, db: db, served: make(chan error, 2), addrs: map[string]string{}}
	httpLn, err := net.Listen("tcp", httpAddr)
	if err != nil {
		p.closeStore()
		return nil, fmt.Errorf("issuer: listen on %s: %w", httpAddr, err)
	}
	isoLn, err := net.Listen("tcp", isoAddr)
	if err != nil {
		httpLn.Close()
		p.closeStore()
		return nil, fmt.Errorf("issuer: listen on %s: %w", isoAddr, err)
	}
	p.httpSrv = httpx.NewServer(node.RoleIssuer, host.Handler(), log, env.Metrics)
	p.isoSrv = iso8583.NewServer(iso8583.ServerConfig{Logger: log}, host.ISOHandler())
	p.addrs["http"] = "http://" + httpLn.Addr().String()
	p.addrs["iso8583"] = isoLn.Addr().String()
	go func() { p.served <- p.httpSrv.Serve(httpLn) }()
	go func() { p.served <- p.isoSrv.Serve(isoLn) }()
	log.Info("issuer host listening", "http", p.addrs["http"], "iso8583", p.addrs["iso8583"], "issuers", len(env.Ref.Issuers))
	return p, nil
}

// Addrs implements node.Party.
func (p *Party) Addrs() map[string]string {
	out := make(map[string]string, len(p.addrs))
	for k, v := range p.addrs {
		out[k] = v
	}
	return out
}

// Close stops the listeners, lets requests in flight finish (bounded by ctx),
// then stops the writer and closes the store.
func (p *Party) Close(ctx context.Context) error {
	err := p.isoSrv.Close()
	err = errors.Join(err, httpx.Shutdown(ctx, p.httpSrv))
	for range 2 {
		if serr := <-p.served; serr != nil && !errors.Is(serr, http.ErrServerClosed) && !errors.Is(serr, iso8583.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
	}
	return errors.Join(err, p.closeStore())
}

func (p *Party) closeStore() error {
	return errors.Join(p.Host.Close(), p.db.Close())
}
