package tsp

import (
	"sync"
	"sync/atomic"
	"time"
)

// cacheEntry is what an authorization needs of a token, immutable except
// lastATC. The sealed PAN is cached, never the plaintext.
type cacheEntry struct {
	ref, dpan, par    string
	issuerID          string
	psn               int
	expiry, panExpiry string
	expiryEnd         time.Time
	state             State
	entryModes        string
	requestorID       string
	deviceID          string
	assurance         string
	accountRef        string // account_ref.go
	panSealed         []byte
	lastATC           atomic.Int64
	loaded            time.Time
}

func newCacheEntry(t *Token, now time.Time) *cacheEntry {
	end, err := expiryEnd(t.Expiry)
	if err != nil {
		end = time.Time{} // an unreadable expiry is an expired token
	}
	e := &cacheEntry{
		ref: t.Ref, dpan: t.DPAN, par: t.PAR, issuerID: t.IssuerID, psn: t.PSN, expiry: t.Expiry,
		panExpiry: t.PANExpiry, expiryEnd: end, state: t.State, entryModes: t.EntryModes,
		requestorID: t.RequestorID, deviceID: t.DeviceID, assurance: t.Assurance,
		panSealed: t.PANSealed, loaded: now,
	}
	e.lastATC.Store(int64(t.LastATC))
	return e
}

func (e *cacheEntry) raiseATC(atc int) {
	for {
		cur := e.lastATC.Load()
		if int64(atc) <= cur || e.lastATC.CompareAndSwap(cur, int64(atc)) {
			return
		}
	}
}

// tokenCache holds token records by DPAN, with an index by reference for
// invalidation. Bounded: when full, an arbitrary entry is evicted (map
// iteration order), which is enough for a cache whose misses cost one read.
type tokenCache struct {
	mu   sync.RWMutex
	byDP map[string]*cacheEntry
	refs map[string]string // ref → dpan
	max  int
	ttl  time.Duration
	// gen counts drops: a record read from the store before a drop is not
	// cached after it (it may predate the change that caused the drop).
	gen atomic.Uint64
}

func newTokenCache(max int, ttl time.Duration) *tokenCache {
	return &tokenCache{byDP: make(map[string]*cacheEntry), refs: make(map[string]string), max: max, ttl: ttl}
}

func (c *tokenCache) get(dpan string, now time.Time) (*cacheEntry, bool) {
	c.mu.RLock()
	e, ok := c.byDP[dpan]
	c.mu.RUnlock()
	if !ok || now.Sub(e.loaded) > c.ttl {
		return nil, false
	}
	return e, true
}

func (c *tokenCache) byRef(ref string) (*cacheEntry, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	dp, ok := c.refs[ref]
	if !ok {
		return nil, false
	}
	e, ok := c.byDP[dp]
	return e, ok
}

func (c *tokenCache) generation() uint64 { return c.gen.Load() }

// put stores e (read from the store when the generation was gen) and
// returns the entry to use. The highest known ATC survives a reload. When a
// drop happened since gen, e is used for this request but not cached.
func (c *tokenCache) put(e *cacheEntry, gen uint64) *cacheEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen.Load() != gen {
		return e
	}
	if old, ok := c.byDP[e.dpan]; ok {
		e.raiseATC(int(old.lastATC.Load()))
	} else if len(c.byDP) >= c.max {
		for dp, victim := range c.byDP {
			delete(c.byDP, dp)
			delete(c.refs, victim.ref)
			break
		}
	}
	c.byDP[e.dpan] = e
	c.refs[e.ref] = e.dpan
	return e
}

// drop forgets a token (a state change event, or a lost ATC race).
func (c *tokenCache) drop(ref string) {
	c.mu.Lock()
	if dp, ok := c.refs[ref]; ok {
		delete(c.byDP, dp)
		delete(c.refs, ref)
	}
	c.gen.Add(1)
	c.mu.Unlock()
}

func (c *tokenCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.byDP)
}
