package tsp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/emv"
	"github.com/mipay-oss/mipay/events"
	"github.com/mipay-oss/mipay/hsm"
	"github.com/mipay-oss/mipay/store"
)

// The authorization side: the network switch calls Authorize in-process for
// every 0100/0200 whose DE2 lies in a token BIN range, and ARPC when the
// issuer has answered.

// Domain restriction of Mi Pay tokens: allowed DE22 PAN entry modes (first
// two digits). 07 = contactless chip; 09 = in-app (the SE made a cryptogram
// for an in-app purchase). Anything else — e-commerce 81, manual 01, magstripe
// 02/90 — is outside the token's domain.
const (
	EntryModeContactless = "07"
	EntryModeInApp       = "09"
	DefaultEntryModes    = EntryModeContactless + "," + EntryModeInApp
)

// Decline reasons of Authorize. The network maps them to DE39 (the one DE39
// table lives in network); the suggested codes are in brackets.
const (
	DeclineUnknownToken     = "UNKNOWN_TOKEN"     // no such token [14]
	DeclineTokenInactive    = "TOKEN_INACTIVE"    // not activated yet [62]
	DeclineTokenSuspended   = "TOKEN_SUSPENDED"   // [62]
	DeclineTokenDeactivated = "TOKEN_DEACTIVATED" // deleted [62]
	DeclineTokenExpired     = "TOKEN_EXPIRED"     // past its expiry month [54]
	DeclineExpiryMismatch   = "EXPIRY_MISMATCH"   // DE14 is not the token's expiry [54]
	DeclineDomain           = "DOMAIN"            // no cryptogram, wrong entry mode or requestor [57]
	DeclineCryptogram       = "CRYPTOGRAM"        // ARQC wrong, or ICC data inconsistent [05]
	DeclineReplay           = "ATC_REPLAY"        // ATC not above every accepted one [05]
	DeclineCVMRequired      = "CVM_REQUIRED"      // above the no-CVM limit without CDCVM or online PIN [65]
)

// AuthRequest is what the switch passes from a tokenized authorization.
type AuthRequest struct {
	Token            string // DE2: the DPAN
	Expiry           string // DE14 YYMM ("" when absent)
	PSN              int    // DE23 (-1 when absent; otherwise it must be the token's PSN)
	EntryMode        string // DE22, e.g. "072"
	TokenRequestorID string // when the message carries one ("" otherwise)
	AmountMinor      int64  // DE4
	// BillingAmountMinor is DE4 converted to CNY fen when the terminal's
	// currency is not CNY (0 otherwise): the no-CVM limit is in CNY.
	BillingAmountMinor int64
	Currency           string // DE49, e.g. "156"
	// ICC data from DE55.
	ICC       emv.TxData // 9F02 9F03 9F1A 95 5F2A 9A 9C 9F37 82 9F36
	ARQC      []byte     // 9F26, 8 bytes; empty when the message has no cryptogram
	IAD       []byte     // 9F10
	CTQ       []byte     // 9F6C (2 bytes), nil when absent
	OnlinePIN bool       // DE52 present
	// Requester names who de-tokenizes, for the log (e.g. the acquirer id);
	// "" uses the Authorizer's node name.
	Requester string
}

// AuthResult is the TSP's verdict.
type AuthResult struct {
	Approved bool   // de-tokenized: forward to the issuer with PAN
	Decline  string // a Decline… reason when not approved
	Message  string // a short text for logs / operators (no PAN)

	PAN              string // only when Approved
	PANExpiry        string // YYMM of the card, only when Approved
	TokenPSN         int
	IssuerID         string
	TokenRef         string
	PAR              string
	TokenRequestorID string
	DeviceID         string
	CryptogramValid  bool
	ATC              uint16
	TokenAssurance   string // how the binding was authenticated
	// AccountRef is the opaque reference of the wallet account the token
	// was made for (account_ref.go; "" when unknown): the same for every
	// card of one Mi account, for per-account promotion limits.
	AccountRef string
}

// AuthorizerConfig is what NewAuthorizer needs.
type AuthorizerConfig struct {
	// Store says where the TSP's vault is (the same store the tsp party
	// opens). Alternatively DB gives an open one (then Close leaves it open).
	Store store.Config
	DB    *store.DB
	// HSM holds the TSP's keys (the same keys the tsp party uses). Keys,
	// when set, replaces it (tests).
	HSM  hsm.HSM
	Keys Keys
	// Bus, when set, delivers token.state_changed (fan-out subscription) to
	// drop cached tokens on every switch node. Subscriber overrides it.
	Bus        *events.Bus
	Subscriber StateChangeSubscriber
	Ref        *config.Reference
	Log        *slog.Logger
	// Node names this switch node in the de-tokenization log ("network").
	Node string
	// CacheTokens bounds the cached token records (DefaultCacheTokens).
	CacheTokens int
	// CacheTTL bounds how long a cached record is trusted without an event
	// (DefaultCacheTTL): the backstop should an event be lost.
	CacheTTL time.Duration
	// ARPCWindow and PendingARPC bound how long and how many verified
	// cryptograms wait for their ARPC (DefaultARPCWindow, DefaultPendingARPC).
	ARPCWindow  time.Duration
	PendingARPC int
	// Writer tunes the group-commit writer of ATC updates.
	Writer store.WriterConfig
	Now    func() time.Time
}

// Cache defaults.
const (
	DefaultCacheTokens = 1 << 20
	DefaultCacheTTL    = 10 * time.Second
	defaultNode        = "network"
)

// StateChangeSubscriber delivers token state changes (adapted from the
// events bus with an ephemeral, every-node subscription).
type StateChangeSubscriber interface {
	SubscribeStateChanges(ctx context.Context, fn func(StateChange)) (stop func(), err error)
}

// Authorizer de-tokenizes authorizations.
type Authorizer struct {
	db      *store.DB
	ownDB   bool
	w       *store.Writer
	keys    Keys
	ref     *config.Reference
	log     *slog.Logger
	node    string
	now     func() time.Time
	cache   *tokenCache
	pending *pendingSet
	logIDs  *logIDs
	atc     *atcBatcher
	stopSub func()
}

// NewAuthorizer opens the vault (or uses cfg.DB), starts the ATC writer and
// subscribes to state changes.
func NewAuthorizer(ctx context.Context, cfg AuthorizerConfig) (*Authorizer, error) {
	if cfg.Keys == nil && cfg.HSM != nil {
		cfg.Keys = NewHSMKeys(cfg.HSM)
	}
	if cfg.Keys == nil || cfg.Ref == nil {
		return nil, errors.New("tsp: authorizer needs keys and reference data")
	}
	a := &Authorizer{keys: cfg.Keys, ref: cfg.Ref, log: cfg.Log, node: cfg.Node, now: cfg.Now}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.node == "" {
		a.node = defaultNode
	}
	if a.now == nil {
		a.now = time.Now
	}
	if cfg.CacheTokens <= 0 {
		cfg.CacheTokens = DefaultCacheTokens
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = DefaultCacheTTL
	}
	a.cache = newTokenCache(cfg.CacheTokens, cfg.CacheTTL)
	if cfg.ARPCWindow <= 0 {
		cfg.ARPCWindow = DefaultARPCWindow
	}
	if cfg.PendingARPC <= 0 {
		cfg.PendingARPC = DefaultPendingARPC
	}
	a.pending = newPendingSet(cfg.ARPCWindow, cfg.PendingARPC)
	if cfg.DB != nil {
		a.db = cfg.DB
	} else {
		db, err := store.Open(ctx, cfg.Store, PartyName, Migrations())
		if err != nil {
			return nil, fmt.Errorf("tsp: authorizer store: %w", err)
		}
		a.db, a.ownDB = db, true
	}
	if cfg.Writer.Name == "" {
		cfg.Writer.Name = "authorizer"
	}
	nodeNum, err := allocateNode(ctx, a.db, a.node, a.now())
	if err != nil {
		if a.ownDB {
			a.db.Close()
		}
		return nil, err
	}
	a.logIDs = &logIDs{node: nodeNum}
	a.w = store.NewWriter(a.db, cfg.Writer)
	a.atc = newATCBatcher(a.w)
	if cfg.Subscriber == nil && cfg.Bus != nil {
		cfg.Subscriber = BusSubscriber{Bus: cfg.Bus}
	}
	if cfg.Subscriber != nil {
		stop, err := cfg.Subscriber.SubscribeStateChanges(ctx, func(c StateChange) { a.cache.drop(c.TokenRef) })
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("tsp: subscribe to token state changes: %w", err)
		}
		a.stopSub = stop
	}
	return a, nil
}

// Close stops the subscription, commits pending ATC writes and closes the
// store if the Authorizer opened it.
func (a *Authorizer) Close() error {
	if a.stopSub != nil {
		a.stopSub()
	}
	if a.atc != nil {
		a.atc.close()
	}
	var err error
	if a.w != nil {
		err = a.w.Close()
	}
	if a.ownDB {
		err = errors.Join(err, a.db.Close())
	}
	return err
}

// Invalidate drops a token from the cache (what a state change event does).
func (a *Authorizer) Invalidate(tokenRef string) { a.cache.drop(tokenRef) }

func decline(res AuthResult, reason, msg string) (AuthResult, error) {
	res.Approved, res.Decline, res.Message = false, reason, msg
	return res, nil
}

// Authorize checks a tokenized authorization and, when every check passes,
// returns the PAN. Declines are results (err nil); err is for failures of the
// store or HSM (the switch answers 96 "system malfunction").
//
// Checks in order: token known; state ACTIVE; not expired and DE14 matching;
// domain (cryptogram present, entry mode, token requestor); ICC data
// consistent with the message; ATC above the cached last ATC; ARQC (HSM);
// CDCVM or online PIN above the no-CVM limit; then the ATC is raised durably
// (conditional update through the group-commit writer) together with the
// de-tokenization log entry, before the PAN is returned.
func (a *Authorizer) Authorize(ctx context.Context, req AuthRequest) (AuthResult, error) {
	var res AuthResult
	e, err := a.lookup(ctx, req.Token)
	if err != nil {
		if mipay.ErrorCode(err) == mipay.ENOTFOUND {
			return decline(res, DeclineUnknownToken, "unknown token")
		}
		return res, err
	}
	res.TokenRef, res.IssuerID, res.TokenPSN, res.PAR = e.ref, e.issuerID, e.psn, e.par
	res.TokenRequestorID, res.DeviceID, res.TokenAssurance = e.requestorID, e.deviceID, e.assurance
	res.AccountRef = e.accountRef
	switch e.state {
	case StateActive:
	case StateSuspended:
		return decline(res, DeclineTokenSuspended, "token suspended")
	case StateInactive:
		return decline(res, DeclineTokenInactive, "token not active")
	default:
		return decline(res, DeclineTokenDeactivated, "token deleted")
	}
	now := a.now()
	if !now.Before(e.expiryEnd) {
		return decline(res, DeclineTokenExpired, "token expired")
	}
	if req.Expiry != "" && req.Expiry != e.expiry {
		return decline(res, DeclineExpiryMismatch, "expiry does not match the token")
	}
	if len(req.ARQC) == 0 {
		return decline(res, DeclineDomain, "token used without a cryptogram")
	}
	if !e.entryModeAllowed(req.EntryMode) {
		return decline(res, DeclineDomain, "entry mode outside the token's domain")
	}
	if req.TokenRequestorID != "" && req.TokenRequestorID != e.requestorID {
		return decline(res, DeclineDomain, "token requestor outside the token's domain")
	}
	cvr, ok := parseIADPBOC(req.IAD)
	if len(req.ARQC) != 8 || !ok {
		return decline(res, DeclineCryptogram, "cryptogram data malformed")
	}
	if amt, ok := bcdAmount(req.ICC.Amount); !ok || amt != req.AmountMinor {
		return decline(res, DeclineCryptogram, "ICC amount does not match DE4")
	}
	if req.PSN >= 0 && req.PSN != e.psn {
		return decline(res, DeclineCryptogram, "DE23 is not the token's PSN")
	}
	atc := req.ICC.ATCValue()
	res.ATC = atc
	if int64(atc) <= e.lastATC.Load() {
		return decline(res, DeclineReplay, "ATC replayed")
	}
	var arqc [8]byte
	copy(arqc[:], req.ARQC)
	data := emv.ARQCDataPBOC(&req.ICC, cvr)
	valid, _, err := a.keys.VerifyARQC(ctx, e.issuerID, e.dpan, e.psn, atc, data, arqc, [2]byte{})
	if err != nil {
		return res, fmt.Errorf("tsp: verify ARQC: %w", err)
	}
	if !valid {
		return decline(res, DeclineCryptogram, "ARQC does not verify")
	}
	res.CryptogramValid = true
	// The no-CVM limit is in CNY fen: abroad, the switch passes the billing
	// amount it converted DE4 to.
	cvmAmount := req.AmountMinor
	if req.BillingAmountMinor > 0 {
		cvmAmount = req.BillingAmountMinor
	}
	cvmOK := cvmAmount <= a.ref.NoCVMLimitMinor || req.OnlinePIN || (len(req.CTQ) >= 2 && req.CTQ[1]&CTQByte2CDCVM != 0)
	var pan string
	if cvmOK {
		pan, err = a.keys.OpenPAN(ctx, e.panSealed, panAAD(e.ref))
		if err != nil {
			return res, fmt.Errorf("tsp: open PAN of %s: %w", e.ref, err)
		}
	}
	// A genuine cryptogram consumes its ATC even when CVM fails: the same
	// ARQC must never be accepted later.
	var logEntry *detokenization
	if cvmOK {
		requester := req.Requester
		if requester == "" {
			requester = a.node
		}
		logEntry = &detokenization{ID: a.logIDs.next(now), TokenRef: e.ref, Requester: requester, Purpose: "authorization", ATC: int(atc), At: now}
	}
	accepted, err := a.atc.accept(ctx, e.ref, int(atc), logEntry)
	if err != nil {
		return res, fmt.Errorf("tsp: record ATC: %w", err)
	}
	if !accepted {
		// Another node (or a concurrent request) accepted this ATC or a
		// higher one first; forget our cached value.
		a.cache.drop(e.ref)
		return decline(res, DeclineReplay, "ATC replayed")
	}
	e.raiseATC(int(atc))
	a.pending.put(pendingKey{e.ref, atc}, pendingARQC{issuerID: e.issuerID, dpan: e.dpan, psn: e.psn, data: data, arqc: arqc}, now)
	if !cvmOK {
		return decline(res, DeclineCVMRequired, "cardholder verification required above the no-CVM limit")
	}
	res.Approved, res.PAN, res.PANExpiry, res.Message = true, pan, e.panExpiry, "de-tokenized"
	return res, nil
}

// ARPC makes the ARPC (method 1) for the issuer's answer code arc, on behalf
// of the issuer, with the token's keys: tag 91 = ARPC ‖ ARC. It works for a
// cryptogram this Authorizer verified within DefaultARPCWindow (the HSM
// verifies it again and makes the ARPC in one operation).
func (a *Authorizer) ARPC(ctx context.Context, tokenRef string, atc uint16, arqc [8]byte, arc [2]byte) ([8]byte, error) {
	p, ok := a.pending.get(pendingKey{tokenRef, atc})
	if !ok || p.arqc != arqc {
		return [8]byte{}, mipay.Errorf(mipay.ENOTFOUND, "no verified cryptogram of this token and ATC is pending")
	}
	valid, arpc, err := a.keys.VerifyARQC(ctx, p.issuerID, p.dpan, p.psn, atc, p.data, arqc, arc)
	if err != nil {
		return [8]byte{}, fmt.Errorf("tsp: ARPC: %w", err)
	}
	if !valid {
		return [8]byte{}, fmt.Errorf("tsp: ARPC: the pending cryptogram no longer verifies")
	}
	return arpc, nil
}

// lookup returns the cached token record for a DPAN, loading it on a miss.
func (a *Authorizer) lookup(ctx context.Context, dpan string) (*cacheEntry, error) {
	if len(dpan) < minPANDigits || len(dpan) > maxPANDigits || !allDigits(dpan) {
		return nil, errNoToken
	}
	now := a.now()
	if e, ok := a.cache.get(dpan, now); ok {
		return e, nil
	}
	gen := a.cache.generation()
	r, err := NewVault(a.db).ByDPAN(ctx, dpan)
	if err != nil {
		return nil, err
	}
	e := newCacheEntry(&r.Token, now)
	if e.accountRef, err = loadAccountRef(ctx, a.db.DB, r.Ref); err != nil {
		return nil, err
	}
	return a.cache.put(e, gen), nil
}

func (e *cacheEntry) entryModeAllowed(de22 string) bool {
	if len(de22) < 2 {
		return false
	}
	mode := de22[:2]
	for m := range strings.SplitSeq(e.entryModes, ",") {
		if m == mode {
			return true
		}
	}
	return false
}

// parseIADPBOC checks a PBOC CVN 01 IAD (07 ‖ key index ‖ 01 ‖ CVR(4) ‖
// algorithm ‖ …) and returns the CVR the ARQC covers.
func parseIADPBOC(iad []byte) (cvr [4]byte, ok bool) {
	if len(iad) < iadMinBytes || len(iad) > 32 || iad[0] != iadLengthByte || iad[2] != CVN01 || iad[3] != cvrLengthByte {
		return cvr, false
	}
	copy(cvr[:], iad[3:7])
	return cvr, true
}

// bcdAmount decodes a 6-byte n12 amount.
func bcdAmount(b [6]byte) (int64, bool) {
	var v int64
	for _, c := range b {
		hi, lo := c>>4, c&0x0F
		if hi > 9 || lo > 9 {
			return 0, false
		}
		v = v*100 + int64(hi)*10 + int64(lo)
	}
	return v, true
}
