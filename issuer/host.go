package issuer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/store"
)

// Options configure a Host.
type Options struct {
	Ref    *config.Reference // the banks hosted and their demo cardholders
	DB     *store.DB         // the "issuer" store, opened with Migrations()
	Hasher Hasher            // keyed hashes of PANs, CVN2s and OTPs
	SMS    SMSSender         // sends OTP messages (nil: OTP sending fails with EUNAVAILABLE)
	Log    *slog.Logger
	// Writer tunes the group-commit writer of authorizations.
	Writer store.WriterConfig
	// Now is the clock (tests move it); nil is time.Now.
	Now func() time.Time
	// DedupEntries bounds the in-memory duplicate index (DefaultDedupEntries).
	DedupEntries int
	// TSP is the token service's issuer API (nil: card lifecycle calls fail
	// with EUNAVAILABLE).
	TSP TSPCards
	// Operators authenticates bank staff (operator_auth.go); nil refuses
	// every operator endpoint (401).
	Operators *Operators
	// Promotions is the network's campaign API, through which a bank
	// manages its campaigns (promo_api.go); nil: those calls fail with
	// EUNAVAILABLE.
	Promotions PromoCampaigns
}

// Host hosts every bank programme of the reference data over one store.
type Host struct {
	ref    *config.Reference
	banks  map[string]*config.Issuer
	db     *store.DB
	w      *store.Writer
	hasher Hasher
	sms    SMSSender
	tsp    TSPCards
	ops    *Operators
	promo  PromoCampaigns
	log    *slog.Logger
	now    func() time.Time

	mu     sync.RWMutex
	cards  map[string]*account // by card id; fixed after load
	byHash map[string]*account // by string(PAN hash); fixed after load
	byPAN  map[string]*account // PAN → account cache, memory only

	dedup *dedupIndex
	ids   idGen
	batch *authBatcher
	sql   *authSQL
}

// NewHost seeds the demo cardholders (first start only), loads the state and
// starts the writer.
func NewHost(ctx context.Context, o Options) (*Host, error) {
	if o.Ref == nil || o.DB == nil || o.Hasher == nil {
		return nil, errors.New("issuer: NewHost needs Ref, DB and Hasher")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.DedupEntries <= 0 {
		o.DedupEntries = DefaultDedupEntries
	}
	h := &Host{
		ref:    o.Ref,
		banks:  make(map[string]*config.Issuer, len(o.Ref.Issuers)),
		db:     o.DB,
		hasher: o.Hasher,
		sms:    o.SMS,
		tsp:    o.TSP,
		ops:    o.Operators,
		promo:  o.Promotions,
		log:    o.Log,
		now:    o.Now,
		cards:  make(map[string]*account),
		byHash: make(map[string]*account),
		byPAN:  make(map[string]*account),
		dedup:  newDedupIndex(o.DedupEntries),
	}
	for i := range o.Ref.Issuers {
		h.banks[o.Ref.Issuers[i].ID] = &o.Ref.Issuers[i]
	}
	if err := h.seed(ctx); err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	if err := h.load(ctx); err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	if o.Writer.Name == "" {
		o.Writer.Name = "authorizations"
	}
	h.w = store.NewWriter(o.DB, o.Writer)
	h.sql = newAuthSQL()
	h.batch = newAuthBatcher(h)
	return h, nil
}

// Close stops the writer (writes in flight finish). It does not close the
// store. Authorize must not be called after Close.
func (h *Host) Close() error {
	h.batch.close()
	return h.w.Close()
}

// Bank returns the hosted programme with this id.
func (h *Host) Bank(id string) (*config.Issuer, bool) {
	b, ok := h.banks[id]
	return b, ok
}

// DB returns the host's store (tests, the ledger check).
func (h *Host) DB() *store.DB { return h.db }
