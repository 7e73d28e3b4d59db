package portal

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"

	"github.com/mipay-oss/mipay/httpx"
	"github.com/mipay-oss/mipay/node"
)

// EnvSecureCookies names the environment variable that marks the portal's
// cookies Secure (set it to true when a TLS proxy fronts the portal; the
// local parties serve plain HTTP on loopback).
const EnvSecureCookies = "MIPAY_PORTAL_SECURE_COOKIES"

// Party is a running portal.
type Party struct {
	srv    *http.Server
	addr   string
	cancel context.CancelFunc
	served chan error
}

// Start starts the portal of env on env.Listen["http"]; it calls the wallet
// and the transit agencies at env's peers.
func Start(ctx context.Context, env *node.Env) (node.Party, error) {
	return StartWith(ctx, env, Config{})
}

// StartWith is Start with a Config (fields left zero come from env and the
// defaults).
func StartWith(ctx context.Context, env *node.Env, cfg Config) (*Party, error) {
	if cfg.WalletURL == nil {
		cfg.WalletURL = func() string { return env.Peer(node.RoleWallet, "http") }
	}
	if cfg.TransitURL == nil {
		cfg.TransitURL = func() string { return env.Peer(node.RoleTransit, "http") }
	}
	if v := os.Getenv(EnvSecureCookies); v != "" && !cfg.Secure {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("portal: %s=%q: want true or false", EnvSecureCookies, v)
		}
		cfg.Secure = b
	}
	if cfg.Log == nil && env.Log != nil {
		cfg.Log = env.Log.With("party", Role)
	}
	s, err := New(cfg)
	if err != nil {
		return nil, err
	}
	listen := "127.0.0.1:0"
	if a := env.Listen["http"]; a != "" {
		listen = a
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("portal: listen %s: %w", listen, err)
	}
	p := &Party{addr: "http://" + ln.Addr().String(), served: make(chan error, 1)}
	p.srv = httpx.NewServer(Role, s.Handler(), s.cfg.Log, env.Metrics)
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.cancel = cancel
	go func() { p.served <- httpx.Serve(sctx, p.srv, ln) }()
	return p, nil
}

// Addrs reports the portal's URL under "http" (the pages are at /portal/).
func (p *Party) Addrs() map[string]string { return map[string]string{"http": p.addr} }

// URL is the portal's base URL.
func (p *Party) URL() string { return p.addr }

// Close stops the portal, finishing requests in flight (bounded by ctx).
func (p *Party) Close(ctx context.Context) error {
	err := httpx.Shutdown(ctx, p.srv)
	p.cancel()
	if serr := <-p.served; err == nil {
		err = serr
	}
	return err
}
