// Package local runs every party of mipay in one process on loopback ports
// chosen by the system (port 0): what `mipay demo`, `mipay bench` and the
// end-to-end tests need. Each party still talks to the others only through
// its protocol; the parties are started in dependency order and each one's
// addresses become the next ones' peers.
package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/events"
	"github.com/mipay-oss/mipay/hsm"
	"github.com/mipay-oss/mipay/issuer"
	"github.com/mipay-oss/mipay/network"
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/portal"
	"github.com/mipay-oss/mipay/sms"
	"github.com/mipay-oss/mipay/store"
	"github.com/mipay-oss/mipay/transit"
	"github.com/mipay-oss/mipay/tsp"
	"github.com/mipay-oss/mipay/wallet"
	"github.com/prometheus/client_golang/prometheus"
)

// Party is one party to start: its role, the endpoints it listens on and
// its Start function.
type Party struct {
	Role   string
	Listen []string
	Start  node.StartFunc
}

// Parties lists the parties in start order: a party may call only parties
// started before it (except through events).
func Parties() []Party {
	return []Party{
		{node.RoleSMS, []string{"http"}, sms.Start},
		{node.RoleIssuer, []string{"http", "iso8583"}, issuer.Start},
		{node.RoleTSP, []string{"http"}, tsp.Start},
		{node.RoleNetwork, []string{"http", "iso8583"}, network.Start},
		{node.RoleWallet, []string{"http"}, wallet.Start},
		{node.RoleTransit, []string{"http"}, transit.Start},
		{portal.Role, []string{"http"}, portal.Start},
	}
}

// Options configure Start.
type Options struct {
	DataDir string            // required: SQLite files, NATS, HSM, SE factory
	Store   store.Config      // default: SQLite under DataDir
	Ref     *config.Reference // default: config.Default()
	Log     *slog.Logger      // default: discard
	NATSURL string            // default: embedded
}

// System is every party running in this process.
type System struct {
	DataDir string
	Ref     *config.Reference
	Bus     *events.Bus
	HSM     *hsm.Soft
	Peers   map[string]map[string]string
	// Metrics is each party's registry (by role): what its /metrics serves.
	Metrics map[string]*prometheus.Registry
	parties []started
}

type started struct {
	role  string
	party node.Party
}

// Start starts every party.
func Start(ctx context.Context, o Options) (s *System, err error) {
	if o.DataDir == "" {
		return nil, errors.New("local: a data directory is required")
	}
	if o.Ref == nil {
		if o.Ref, err = config.Default(); err != nil {
			return nil, err
		}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Store.Dir == "" && o.Store.URL == "" {
		o.Store.Dir = o.DataDir
	}
	s = &System{DataDir: o.DataDir, Ref: o.Ref, Peers: map[string]map[string]string{}, Metrics: map[string]*prometheus.Registry{}}
	defer func() {
		if err != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			_ = s.Close(cctx)
			s = nil
		}
	}()
	if s.Bus, err = events.Open(ctx, events.Config{URL: o.NATSURL, Dir: filepath.Join(o.DataDir, "nats")}, o.Log); err != nil {
		return s, fmt.Errorf("events: %w", err)
	}
	if s.HSM, err = hsm.OpenSoft(ctx, hsm.SoftConfig{Dir: filepath.Join(o.DataDir, "hsm")}); err != nil {
		return s, fmt.Errorf("hsm: %w", err)
	}
	for _, p := range Parties() {
		listen := map[string]string{}
		for _, n := range p.Listen {
			listen[n] = "127.0.0.1:0"
		}
		s.Metrics[p.Role] = prometheus.NewRegistry()
		env := &node.Env{Role: p.Role, DataDir: o.DataDir, Store: o.Store, Bus: s.Bus, HSM: s.HSM,
			Log: o.Log.With("party", p.Role), Ref: o.Ref, Metrics: s.Metrics[p.Role], Listen: listen, Peers: s.Peers}
		party, err := p.Start(ctx, env)
		if err != nil {
			return s, fmt.Errorf("start %s: %w", p.Role, err)
		}
		s.parties = append(s.parties, started{p.Role, party})
		s.Peers[p.Role] = party.Addrs()
	}
	return s, nil
}

// URL is a party's HTTP address.
func (s *System) URL(role string) string { return s.Peers[role]["http"] }

// Addr is a party's endpoint address (e.g. "iso8583").
func (s *System) Addr(role, endpoint string) string { return s.Peers[role][endpoint] }

// Party returns a started party by role.
func (s *System) Party(role string) (node.Party, bool) {
	for _, p := range s.parties {
		if p.role == role {
			return p.party, true
		}
	}
	return nil, false
}

// StopParty closes one party (tests of a party going down).
func (s *System) StopParty(ctx context.Context, role string) error {
	for i, p := range s.parties {
		if p.role == role {
			s.parties = append(s.parties[:i], s.parties[i+1:]...)
			return p.party.Close(ctx)
		}
	}
	return fmt.Errorf("local: no party %s", role)
}

// Close stops the parties in reverse order, then the HSM and the bus.
func (s *System) Close(ctx context.Context) error {
	var errs []error
	for i := len(s.parties) - 1; i >= 0; i-- {
		if err := s.parties[i].party.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", s.parties[i].role, err))
		}
	}
	s.parties = nil
	if s.HSM != nil {
		errs = append(errs, s.HSM.Close())
		s.HSM = nil
	}
	if s.Bus != nil {
		errs = append(errs, s.Bus.Close())
		s.Bus = nil
	}
	return errors.Join(errs...)
}
