package tsp

import (
	"sync"
	"time"
)

// The HSM makes an ARPC only together with verifying the ARQC (it never
// hands out the session key). The issuer's answer code arrives after
// Authorize returned, so the Authorizer keeps the MAC input of every
// verified cryptogram for a while and, when the switch asks for the ARPC,
// has the HSM verify it again with the real ARC.

// Bounds of the pending cryptograms.
const (
	// DefaultARPCWindow is how long after Authorize the ARPC can be made:
	// well beyond any issuer timeout.
	DefaultARPCWindow = 30 * time.Second
	// DefaultPendingARPC bounds the pending cryptograms (~150 bytes each).
	DefaultPendingARPC = 1 << 18
)

type pendingKey struct {
	ref string
	atc uint16
}

type pendingARQC struct {
	issuerID, dpan string
	psn            int
	data           []byte
	arqc           [8]byte
}

// pendingSet is two generations of maps: an entry lives between one and two
// windows (or less when the set fills up), with no per-entry timers.
type pendingSet struct {
	mu      sync.Mutex
	cur     map[pendingKey]pendingARQC
	prev    map[pendingKey]pendingARQC
	rotated time.Time
	window  time.Duration
	max     int
}

func newPendingSet(window time.Duration, max int) *pendingSet {
	return &pendingSet{cur: map[pendingKey]pendingARQC{}, window: window, max: max}
}

func (p *pendingSet) put(k pendingKey, v pendingARQC, now time.Time) {
	p.mu.Lock()
	if now.Sub(p.rotated) > p.window || len(p.cur) >= p.max/2 {
		p.prev, p.cur, p.rotated = p.cur, make(map[pendingKey]pendingARQC, len(p.cur)), now
	}
	p.cur[k] = v
	p.mu.Unlock()
}

func (p *pendingSet) get(k pendingKey) (pendingARQC, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if v, ok := p.cur[k]; ok {
		return v, true
	}
	v, ok := p.prev[k]
	return v, ok
}
