package main

import (
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/node/local"
	"github.com/mipay-oss/mipay/portal"
)

// Endpoint names a party listens on (node.Env.Listen keys).
const (
	endpointHTTP    = "http"
	endpointISO8583 = "iso8583"
)

// DefaultPortBase is the first port of `mipay up`; every endpoint has a fixed
// offset from it, so the defaults are:
//
//	wallet  http     8410
//	tsp     http     8420
//	issuer  http     8430   iso8583 8431 (the switch connects here)
//	sms     http     8440
//	transit http     8450
//	portal  http     8460   (lost-phone web pages at /portal)
//	portal  http     8460   (the lost-phone pages at /portal/)
//	network http     8490   iso8583 8500 (acquirers and POS connect here)
const DefaultPortBase = 8410

// partySpec is one party `mipay up` can start.
type partySpec struct {
	role  string
	start node.StartFunc
}

// endpointSpec is one listener of a party and its default port offset.
type endpointSpec struct {
	name   string
	offset int
}

// partySpecs lists the parties in the order `mipay up` starts them (a party
// may call only parties started before it, except through events) and
// closes them in reverse. The list is node/local's, so that `up`, `demo`,
// `bench` and the end-to-end tests run the same parties; a party is wired in
// by adding it there.
func partySpecs() []partySpec {
	var specs []partySpec
	for _, p := range local.Parties() {
		specs = append(specs, partySpec{role: p.Role, start: p.Start})
	}
	return specs
}

// roleEndpoints is every endpoint of every party role, including roles whose
// package is not wired in yet, so that peers default to the fixed ports.
func roleEndpoints() map[string][]endpointSpec {
	return map[string][]endpointSpec{
		node.RoleWallet:  {{endpointHTTP, 0}},
		node.RoleTSP:     {{endpointHTTP, 10}},
		node.RoleIssuer:  {{endpointHTTP, 20}, {endpointISO8583, 21}},
		node.RoleSMS:     {{endpointHTTP, 30}},
		node.RoleTransit: {{endpointHTTP, 40}},
		portal.Role:      {{endpointHTTP, 50}},
		node.RoleNetwork: {{endpointHTTP, 80}, {endpointISO8583, 90}},
	}
}
