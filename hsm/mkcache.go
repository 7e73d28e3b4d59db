package hsm

import (
	"container/list"
	"sync"

	"github.com/mipay-oss/mipay/emv"
)

// mkKey names a derived ICC master key.
type mkKey struct {
	imk Handle
	pan string
	psn int
}

type mkEntry struct {
	k  mkKey
	mk emv.Key
	// The session key of the last ATC seen: a transaction's ARQC is
	// verified once at authorization and again when the ARPC is made.
	atc   uint16
	sk    emv.Key
	hasSK bool
}

// mkCache is a bounded LRU of derived ICC master keys, so the switch's ARQC
// path skips the derivation (two 3DES and, above 16 digits, SHA-1) for cards
// it saw recently.
type mkCache struct {
	mu    sync.Mutex
	max   int
	order *list.List // front = most recent; values are *mkEntry
	items map[mkKey]*list.Element
}

func newMKCache(max int) *mkCache {
	return &mkCache{max: max, order: list.New(), items: make(map[mkKey]*list.Element)}
}

func (c *mkCache) get(k mkKey) (emv.Key, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[k]
	if !ok {
		return emv.Key{}, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*mkEntry).mk, true
}

// sessionKey returns the cached session key of (k, atc), if any.
func (c *mkCache) sessionKey(k mkKey, atc uint16) (emv.Key, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[k]
	if !ok {
		return emv.Key{}, false
	}
	ent := e.Value.(*mkEntry)
	if !ent.hasSK || ent.atc != atc {
		return emv.Key{}, false
	}
	c.order.MoveToFront(e)
	return ent.sk, true
}

// putSessionKey remembers the session key of (k, atc) in k's entry, if it
// is still cached.
func (c *mkCache) putSessionKey(k mkKey, atc uint16, sk emv.Key) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		ent := e.Value.(*mkEntry)
		ent.atc, ent.sk, ent.hasSK = atc, sk, true
	}
}

func (c *mkCache) put(k mkKey, mk emv.Key) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.order.MoveToFront(e)
		return
	}
	c.items[k] = c.order.PushFront(&mkEntry{k: k, mk: mk})
	for c.order.Len() > c.max {
		old := c.order.Back()
		ent := old.Value.(*mkEntry)
		clear(ent.mk[:])
		clear(ent.sk[:])
		delete(c.items, ent.k)
		c.order.Remove(old)
	}
}

func (c *mkCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.items {
		ent := e.Value.(*mkEntry)
		clear(ent.mk[:])
		clear(ent.sk[:])
	}
	c.order.Init()
	clear(c.items)
}

func (c *mkCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
