// Package node is what a party gets from the process that hosts it: the data
// directory, storage settings, the event bus, the HSM, a logger, the reference
// data, where it listens and where the other parties are. `mipay up` builds one
// Env per party in one process; `mipay serve ROLE` builds one.
package node

import (
	"context"
	"log/slog"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/events"
	"github.com/mipay-oss/mipay/hsm"
	"github.com/mipay-oss/mipay/store"
	"github.com/prometheus/client_golang/prometheus"
)

// Roles, in the order `mipay up` starts them (a party only calls parties
// started before it, except through events).
const (
	RoleSMS     = "sms"
	RoleIssuer  = "issuer"
	RoleTSP     = "tsp"
	RoleNetwork = "network"
	RoleWallet  = "wallet"
	RoleTransit = "transit"
)

// Env is everything a party needs from its host.
type Env struct {
	Role    string
	DataDir string       // the process's data directory (per-party files live under it)
	Store   store.Config // where the party opens its own store
	Bus     *events.Bus
	HSM     hsm.HSM
	Log     *slog.Logger
	Ref     *config.Reference
	Metrics prometheus.Registerer

	// Listen holds the addresses this party listens on, by name: "http" for its
	// HTTP API, "iso8583" for an ISO 8583 listener. "127.0.0.1:0" picks a port.
	Listen map[string]string
	// Peers holds where the other parties are, by role and name, e.g.
	// Peers["issuer"]["http"] = "http://127.0.0.1:8420".
	Peers map[string]map[string]string
}

// Peer returns the address of another party's endpoint, or "" when unknown.
func (e *Env) Peer(role, name string) string {
	if e.Peers == nil {
		return ""
	}
	return e.Peers[role][name]
}

// Party is a started party.
type Party interface {
	// Addrs reports what the party listens on, by name ("http", "iso8583"),
	// HTTP ones as URLs (http://127.0.0.1:8410), others as host:port.
	Addrs() map[string]string
	// Close stops accepting work, finishes what is in flight (bounded by ctx)
	// and closes the party's store.
	Close(ctx context.Context) error
}

// StartFunc starts a party.
type StartFunc func(ctx context.Context, env *Env) (Party, error)
