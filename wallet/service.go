package wallet

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/mipay-oss/mipay"
	"github.com/prometheus/client_golang/prometheus"
)

// Config is the wallet service's configuration. Zero values take the
// Default… constants.
type Config struct {
	TSP              TSP     // required (StartWith makes an HTTPTSP to env's "tsp" peer)
	TSPToken         string  // the wallet's token requestor secret at the TSP (for StartWith's HTTPTSP)
	Roots            *Roots  // trusted SE vendor roots; nil trusts none
	Transit          Transit // hotlists a lost device's transit cards; nil: none
	Offers           Offers  // the bank offers a card qualifies for (rewards.go); nil: none
	TokenRequestorID string  // Mi Pay's token requestor id (11 digits)

	MaxCardsPerDevice   int
	SessionTTL          time.Duration
	MaxSignInFailures   int
	SignInFailureWindow time.Duration
	SignInLockout       time.Duration
	RecoveryCodes       int
	Argon2              Argon2Params
	MaxConcurrentHashes int
	PendingBindingTTL   time.Duration
	TSPKeyCacheTTL      time.Duration
	NotificationsKept   int
	LocationsKept       int
	NotificationPoll    time.Duration
	// MaxFailuresPerClient failed sign-ins per ClientFailureWindow from one
	// client address are allowed; more are refused (ELIMIT) until it ends.
	MaxFailuresPerClient int
	ClientFailureWindow  time.Duration

	Now     func() time.Time // clock; time.Now when nil (tests move it)
	Log     *slog.Logger
	Metrics prometheus.Registerer // where the wallet's counters go; nil: not exported
}

func (c *Config) defaults() {
	setDefault(&c.MaxCardsPerDevice, DefaultMaxCardsPerDevice)
	setDefault(&c.SessionTTL, DefaultSessionTTL)
	setDefault(&c.MaxSignInFailures, DefaultMaxSignInFailures)
	setDefault(&c.SignInFailureWindow, DefaultSignInFailureWindow)
	setDefault(&c.SignInLockout, DefaultSignInLockout)
	setDefault(&c.RecoveryCodes, DefaultRecoveryCodes)
	setDefault(&c.MaxConcurrentHashes, DefaultMaxConcurrentHashes)
	setDefault(&c.PendingBindingTTL, DefaultPendingBindingTTL)
	setDefault(&c.TSPKeyCacheTTL, DefaultTSPKeyCacheTTL)
	setDefault(&c.NotificationsKept, DefaultNotificationsKept)
	setDefault(&c.LocationsKept, DefaultLocationsKept)
	setDefault(&c.NotificationPoll, DefaultNotificationPoll)
	setDefault(&c.MaxFailuresPerClient, DefaultMaxFailuresPerClient)
	setDefault(&c.ClientFailureWindow, DefaultClientFailureWindow)
	if c.Argon2 == (Argon2Params{}) {
		c.Argon2 = DefaultArgon2
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Roots == nil {
		c.Roots = NewRoots()
	}
}

func setDefault[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// Service is the wallet's business logic. Every method taking an accountID
// acts only on that account's devices and cards: another account's ids are
// not found.
type Service struct {
	cfg     Config
	repo    *repo
	hub     *hub
	hashSem chan struct{}
	metrics *metrics

	clientFails *failLimiter
	// stopping is closed by Stop: waiting long polls and streams end.
	stopping chan struct{}
	stopOnce sync.Once

	keyMu      sync.Mutex
	key        json.RawMessage
	keyFetched time.Time
}

// NewService returns the service over its store.
func NewService(cfg Config, r *repo) *Service {
	cfg.defaults()
	return &Service{
		cfg: cfg, repo: r, hub: newHub(), hashSem: make(chan struct{}, cfg.MaxConcurrentHashes),
		clientFails: newFailLimiter(cfg.MaxFailuresPerClient, cfg.ClientFailureWindow),
		stopping:    make(chan struct{}),
		metrics:     newMetrics(cfg.Metrics),
	}
}

// Stop ends waiting long polls and notification streams (before shutdown).
func (s *Service) Stop() { s.stopOnce.Do(func() { close(s.stopping) }) }

func (s *Service) stopped() bool {
	select {
	case <-s.stopping:
		return true
	default:
		return false
	}
}

func (s *Service) now() time.Time { return s.cfg.Now().UTC() }

// newID returns prefix_ + 128 random bits in hex.
func newID(prefix string) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic("wallet: crypto/rand failed: " + err.Error()) // the platform's RNG never fails in practice
	}
	return prefix + "_" + hex.EncodeToString(b)
}

// maxIDBytes bounds ids in paths and bodies.
const maxIDBytes = 64

// checkText bounds a free-text field.
func checkText(field, v string, min, max int) error {
	if len(v) < min || len(v) > max || !utf8.ValidString(v) || strings.ContainsAny(v, "\x00\r\n") {
		if min > 0 && v == "" {
			return mipay.Errorf(mipay.EINVALID, "%s is required", field)
		}
		return mipay.Errorf(mipay.EINVALID, "%s must be %d to %d bytes of text on one line", field, min, max)
	}
	return nil
}

// checkID refuses ids that cannot be ours (bounded, printable).
func checkID(field, v string) error {
	if v == "" {
		return mipay.Errorf(mipay.EINVALID, "%s is required", field)
	}
	if len(v) > maxIDBytes {
		return mipay.Errorf(mipay.ENOTFOUND, "%s not found", field)
	}
	return nil
}

// --- devices ---

// DeviceRegistration is what a phone sends to register.
type DeviceRegistration struct {
	Model               string
	SEID                string
	SEPublicKey         []byte
	CertificateChain    [][]byte
	FingerprintEnrolled bool
}

// Input bounds of device fields.
const (
	maxModelBytes = 128
	maxSEIDBytes  = 128
)

// RegisterDevice verifies the SE attestation and registers the device to the
// account. Registering the same SE again (same key, same account) returns the
// device as it is, updated.
func (s *Service) RegisterDevice(ctx context.Context, accountID string, reg DeviceRegistration) (*Device, error) {
	if err := checkText("model", reg.Model, 1, maxModelBytes); err != nil {
		return nil, err
	}
	if err := checkText("seId", reg.SEID, 1, maxSEIDBytes); err != nil {
		return nil, err
	}
	if err := parseSEPublicKey(reg.SEPublicKey); err != nil {
		return nil, err
	}
	roots, err := s.cfg.Roots.Pool()
	if err != nil {
		return nil, err
	}
	if err := VerifyAttestation(Attestation{SEID: reg.SEID, SEPublicKey: reg.SEPublicKey, Chain: reg.CertificateChain},
		roots, s.now()); err != nil {
		return nil, err
	}
	d := &Device{
		ID: newID("dev"), AccountID: accountID, Model: reg.Model, SEID: reg.SEID,
		SEPublicKey: reg.SEPublicKey, FingerprintEnrolled: reg.FingerprintEnrolled, Created: s.now(),
	}
	return s.repo.insertDevice(ctx, d)
}

// Devices lists the account's devices.
func (s *Service) Devices(ctx context.Context, accountID string) ([]Device, error) {
	return s.repo.devices(ctx, accountID)
}

// Device returns one of the account's devices.
func (s *Service) Device(ctx context.Context, accountID, deviceID string) (*Device, error) {
	if err := checkID("device", deviceID); err != nil {
		return nil, err
	}
	return s.repo.device(ctx, accountID, deviceID)
}

// SetFingerprint records whether a fingerprint is enrolled on the device.
func (s *Service) SetFingerprint(ctx context.Context, accountID, deviceID string, enrolled bool) (*Device, error) {
	if err := checkID("device", deviceID); err != nil {
		return nil, err
	}
	if err := s.repo.setFingerprint(ctx, accountID, deviceID, enrolled); err != nil {
		return nil, err
	}
	return s.repo.device(ctx, accountID, deviceID)
}

// TSPKey returns the TSP's encryption key document, cached for
// TSPKeyCacheTTL, with the wallet's tokenRequestorId added: the phone binds
// its card data blob to it (the TSP's associated data is
// "mipay tsp card data v1\x00" + tokenRequestorId).
func (s *Service) TSPKey(ctx context.Context) (json.RawMessage, error) {
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	if s.key != nil && s.now().Sub(s.keyFetched) < s.cfg.TSPKeyCacheTTL {
		return s.key, nil
	}
	k, err := s.cfg.TSP.EncryptionKey(ctx)
	if err != nil {
		return nil, err
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(k, &doc); err != nil || doc == nil {
		return nil, mipay.WrapError(mipay.EUNAVAILABLE, err, "the token service's key could not be read")
	}
	doc["tokenRequestorId"], _ = json.Marshal(s.cfg.TokenRequestorID)
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("wallet: encode TSP key: %w", err)
	}
	s.key, s.keyFetched = out, s.now()
	return out, nil
}

// --- cards ---

// deviceScore is the wallet's view of a device's risk, 1 (high risk) to 5
// (low): an attested device with a fingerprint starts at 5 and loses a point
// for being registered less than a day ago and one for an account younger
// than a day.
func deviceScore(d *Device, accountAge time.Duration, now time.Time) int {
	score := 5
	if !d.FingerprintEnrolled {
		score -= 2
	}
	if now.Sub(d.Created) < 24*time.Hour {
		score--
	}
	if accountAge < 24*time.Hour {
		score--
	}
	return max(score, 1)
}

// StartBinding starts binding a card to a device: the card data blob (sealed
// to the TSP's key, unreadable here) goes to the TSP with the device and risk
// data. Only a token's references and display data are kept. A DECLINED
// decision creates nothing; so does an error.
func (s *Service) StartBinding(ctx context.Context, accountID, deviceID, encryptedCardData string) (*Binding, error) {
	if err := checkID("device", deviceID); err != nil {
		return nil, err
	}
	if encryptedCardData == "" {
		return nil, mipay.Errorf(mipay.EINVALID, "encryptedCardData is required")
	}
	if len(encryptedCardData) > MaxEncryptedCardDataBytes {
		return nil, mipay.Errorf(mipay.ETOOLARGE, "encryptedCardData is larger than %d bytes", MaxEncryptedCardDataBytes)
	}
	if _, err := base64.StdEncoding.DecodeString(encryptedCardData); err != nil {
		return nil, mipay.Errorf(mipay.EINVALID, "encryptedCardData must be base64 (the card data sealed to the TSP's key)")
	}
	d, err := s.repo.device(ctx, accountID, deviceID)
	if err != nil {
		return nil, err
	}
	if !d.FingerprintEnrolled {
		return nil, mipay.Errorf(mipay.EFORBIDDEN, "enroll a fingerprint on this device before adding a card")
	}
	acct, err := s.repo.account(ctx, accountID)
	if err != nil {
		return nil, err
	}
	now := fromMS(ms(s.now())) // as the store keeps it, so answers match later reads
	c := &Card{ID: newID("card"), DeviceID: d.ID, AccountID: accountID, Created: now}
	if err := s.repo.reserveCard(ctx, c, s.cfg.MaxCardsPerDevice, s.cfg.PendingBindingTTL); err != nil {
		return nil, err
	}
	// From here the TSP may create a token: finish even if the caller goes
	// away, so no token is left without its card (bounded by the TSP timeout).
	ctx = context.WithoutCancel(ctx)
	age := now.Sub(acct.Created)
	resp, err := s.tokenize(ctx, &TokenizeRequest{
		TokenRequestorID:  s.cfg.TokenRequestorID,
		AccountID:         accountID,
		EncryptedCardData: encryptedCardData,
		Device: DeviceInfo{
			DeviceID: d.ID, SEID: d.SEID, Model: d.Model,
			SEPublicKey: base64.StdEncoding.EncodeToString(d.SEPublicKey),
		},
		Risk: RiskInfo{AccountAgeDays: int(age / (24 * time.Hour)), DeviceScore: deviceScore(d, age, now)},
	})
	if err != nil {
		s.dropReservation(ctx, c.ID)
		return nil, err
	}
	switch resp.Decision {
	case DecisionDeclined:
		s.dropReservation(ctx, c.ID)
		msg := resp.Message
		if msg == "" {
			msg = "The bank declined adding this card."
		}
		return &Binding{Decision: DecisionDeclined, Reason: resp.Reason, Message: msg}, nil
	case DecisionApproved, DecisionRequireAuth:
	default:
		s.dropReservation(ctx, c.ID)
		return nil, mipay.Errorf(mipay.EUNAVAILABLE, "the token service gave an unknown decision, try again later")
	}
	if resp.TokenRef == "" {
		s.dropReservation(ctx, c.ID)
		return nil, mipay.Errorf(mipay.EUNAVAILABLE, "the token service gave no token, try again later")
	}
	c.TokenRef, c.PAR = resp.TokenRef, resp.PAR
	c.PANLast4, c.TokenLast4, c.TokenExpiry = resp.PANLast4, resp.TokenLast4, resp.TokenExpiry
	c.IssuerID, c.Bank, c.Product, c.Art, c.CardType = resp.IssuerID, resp.Bank, resp.Product, resp.Art, resp.CardType
	c.State = resp.State
	if c.State == "" {
		c.State = StateInactive
		if resp.Decision == DecisionApproved {
			c.State = StateActive
		}
	}
	c.Updated = fromMS(ms(s.now()))
	if err := s.repo.completeCard(ctx, c); err != nil {
		// The TSP holds a token the wallet could not record: delete it so it
		// cannot be used, and report the failure.
		if _, derr := s.cfg.TSP.Lifecycle(ctx, c.TokenRef, "delete", CausedByTokenRequestor, "WALLET_STORE_FAILURE"); derr != nil {
			s.cfg.Log.ErrorContext(ctx, "token left at the TSP after a store failure", "card", c.ID, "err", derr)
		}
		s.dropReservation(ctx, c.ID)
		return nil, err
	}
	return &Binding{Decision: resp.Decision, CardID: c.ID, Card: c, Methods: resp.Methods,
		Reason: resp.Reason, Message: resp.Message}, nil
}

// tokenize calls the TSP and counts the outcome.
func (s *Service) tokenize(ctx context.Context, req *TokenizeRequest) (*TokenizeResponse, error) {
	resp, err := s.cfg.TSP.Tokenize(ctx, req)
	switch {
	case err != nil:
		s.metrics.bindings.WithLabelValues("error").Inc()
	case resp.Decision == DecisionApproved || resp.Decision == DecisionRequireAuth || resp.Decision == DecisionDeclined:
		s.metrics.bindings.WithLabelValues(resp.Decision).Inc()
	default:
		s.metrics.bindings.WithLabelValues("unknown").Inc()
	}
	return resp, err
}

func (s *Service) dropReservation(ctx context.Context, cardID string) {
	if err := s.repo.dropPendingCard(ctx, cardID); err != nil {
		// The reservation stops counting after PendingBindingTTL anyway.
		s.cfg.Log.WarnContext(ctx, "could not drop a card reservation", "card", cardID, "err", err)
	}
}

// Card returns one of the account's cards.
func (s *Service) Card(ctx context.Context, accountID, cardID string) (*Card, error) {
	if err := checkID("card", cardID); err != nil {
		return nil, err
	}
	return s.repo.card(ctx, accountID, cardID)
}

// liveCard is Card for actions that need a token that still exists.
func (s *Service) liveCard(ctx context.Context, accountID, cardID string) (*Card, error) {
	c, err := s.Card(ctx, accountID, cardID)
	if err != nil {
		return nil, err
	}
	if c.State == StateDeactivated {
		return nil, mipay.Errorf(mipay.ECONFLICT, "this card was removed")
	}
	return c, nil
}

// maxMethodIDBytes and maxOTPBytes bound OTP inputs.
const (
	maxMethodIDBytes = 64
	maxOTPBytes      = 12
)

// RequestOTP asks the TSP (and so the bank) to send, or resend, the binding
// code by the chosen method.
func (s *Service) RequestOTP(ctx context.Context, accountID, cardID, methodID string) (*OTPRequest, error) {
	if err := checkText("methodId", methodID, 1, maxMethodIDBytes); err != nil {
		return nil, err
	}
	c, err := s.liveCard(ctx, accountID, cardID)
	if err != nil {
		return nil, err
	}
	if c.State != StateInactive {
		return nil, mipay.Errorf(mipay.ECONFLICT, "this card does not need a code (it is %s)", c.State)
	}
	return s.cfg.TSP.RequestAuthentication(ctx, c.TokenRef, methodID)
}

// OTPResult is the answer to a verified code.
type OTPResult struct {
	Result string `json:"result"` // VERIFIED
	Card   *Card  `json:"card"`
}

// VerifyOTP submits the binding code; a verified code makes the card ACTIVE.
// A wrong code (attempts left), an expired code or a locked binding come
// back as errors with the TSP's message; a locked binding's token is
// deleted, and so the card removed.
func (s *Service) VerifyOTP(ctx context.Context, accountID, cardID, code string) (*OTPResult, error) {
	if code == "" {
		return nil, mipay.Errorf(mipay.EINVALID, "code is required")
	}
	if len(code) > maxOTPBytes || strings.Trim(code, "0123456789") != "" {
		return nil, mipay.Errorf(mipay.EINVALID, "code must be the digits of the SMS")
	}
	c, err := s.liveCard(ctx, accountID, cardID)
	if err != nil {
		return nil, err
	}
	if c.State != StateInactive {
		return nil, mipay.Errorf(mipay.ECONFLICT, "this card does not need a code (it is %s)", c.State)
	}
	ctx = context.WithoutCancel(ctx) // a verified code must be recorded
	state, err := s.cfg.TSP.VerifyAuthentication(ctx, c.TokenRef, code)
	if mipay.ErrorCode(err) == mipay.ELOCKED {
		if cerr := s.changeCardState(ctx, c, StateDeactivated, CausedByIssuer, "OTP_LOCKED", s.now()); cerr != nil {
			s.cfg.Log.WarnContext(ctx, "could not remove a locked binding's card", "card", c.ID, "err", cerr)
		}
	}
	if err != nil {
		return nil, err
	}
	if state == "" {
		state = StateActive
	}
	if err := s.changeCardState(ctx, c, state, CausedByCardholder, "OTP_VERIFIED", s.now()); err != nil {
		return nil, err
	}
	card, err := s.repo.card(ctx, accountID, cardID)
	if err != nil {
		return nil, err
	}
	return &OTPResult{Result: "VERIFIED", Card: card}, nil
}

// changeCardState records a state and notifies the device when it changed.
func (s *Service) changeCardState(ctx context.Context, c *Card, state, causedBy, reason string, at time.Time) error {
	switch state {
	case StateInactive, StateActive, StateSuspended, StateDeactivated:
	default:
		return mipay.Errorf(mipay.EUNAVAILABLE, "the token service reported an unknown token state")
	}
	changed, err := s.repo.setCardState(ctx, c.ID, state, at, s.now())
	if err != nil || !changed {
		return err
	}
	payload := cardStatePayload(c, state, causedBy, reason)
	if err := s.repo.notify(ctx, c.DeviceID, NotifyCardState, payload, s.now(), s.cfg.NotificationsKept); err != nil {
		return err
	}
	s.hub.signal(c.DeviceID)
	return nil
}

// Cards lists a device's cards (removed ones only with includeRemoved).
func (s *Service) Cards(ctx context.Context, accountID, deviceID string, includeRemoved bool) ([]Card, error) {
	if _, err := s.Device(ctx, accountID, deviceID); err != nil {
		return nil, err
	}
	return s.repo.cards(ctx, accountID, deviceID, includeRemoved)
}

// SetDefaultCard makes a card of the device its default for payments.
func (s *Service) SetDefaultCard(ctx context.Context, accountID, deviceID, cardID string) (*Device, error) {
	if err := checkID("device", deviceID); err != nil {
		return nil, err
	}
	if err := checkID("cardId", cardID); err != nil {
		return nil, err
	}
	if _, err := s.repo.device(ctx, accountID, deviceID); err != nil {
		return nil, err
	}
	if err := s.repo.setDefaultCard(ctx, accountID, deviceID, cardID); err != nil {
		return nil, err
	}
	return s.repo.device(ctx, accountID, deviceID)
}

// RemoveCard deletes the card's token at the TSP (caused by the cardholder)
// and marks the card DEACTIVATED.
func (s *Service) RemoveCard(ctx context.Context, accountID, cardID string) (*Card, error) {
	c, err := s.liveCard(ctx, accountID, cardID)
	if err != nil {
		return nil, err
	}
	ctx = context.WithoutCancel(ctx) // a token deleted at the TSP must be recorded here
	state, err := s.cfg.TSP.Lifecycle(ctx, c.TokenRef, "delete", CausedByCardholder, "REMOVED_BY_CARDHOLDER")
	switch mipay.ErrorCode(err) {
	case "":
	case mipay.ENOTFOUND:
		// The TSP no longer knows the token: it is gone either way.
		state = StateDeactivated
	case mipay.ECONFLICT:
		// Already deleted at the TSP (by the bank, say) before its event
		// reached the wallet?
		if st, serr := s.cfg.TSP.TokenState(ctx, c.TokenRef); serr != nil || st != StateDeactivated {
			return nil, err
		}
		state = StateDeactivated
	default:
		return nil, err
	}
	if state == "" {
		state = StateDeactivated
	}
	if err := s.changeCardState(ctx, c, state, CausedByCardholder, "REMOVED_BY_CARDHOLDER", s.now()); err != nil {
		return nil, err
	}
	return s.repo.card(ctx, accountID, cardID)
}

// Provisioning relays the TSP's SE profile of an ACTIVE card (its keys sealed
// to the device's SE key, unreadable here).
func (s *Service) Provisioning(ctx context.Context, accountID, cardID string) (json.RawMessage, error) {
	c, err := s.liveCard(ctx, accountID, cardID)
	if err != nil {
		return nil, err
	}
	if c.State != StateActive {
		return nil, mipay.Errorf(mipay.ECONFLICT, "the card is %s: it can be installed once it is ACTIVE", c.State)
	}
	return s.cfg.TSP.Provisioning(ctx, c.TokenRef)
}

// ConfirmProvisioned records that the device installed the card's profile
// and tells the TSP.
func (s *Service) ConfirmProvisioned(ctx context.Context, accountID, cardID string) (*Card, error) {
	c, err := s.liveCard(ctx, accountID, cardID)
	if err != nil {
		return nil, err
	}
	if c.State != StateActive && c.State != StateSuspended {
		return nil, mipay.Errorf(mipay.ECONFLICT, "the card is %s: it cannot have been installed", c.State)
	}
	ctx = context.WithoutCancel(ctx)
	if err := s.cfg.TSP.ConfirmProvisioning(ctx, c.TokenRef); err != nil {
		return nil, err
	}
	if err := s.repo.setProvisioned(ctx, c.ID, s.now()); err != nil {
		return nil, err
	}
	return s.repo.card(ctx, accountID, cardID)
}

// Transactions lists a card's transactions, newest first, older than before
// (all when zero), at most limit.
func (s *Service) Transactions(ctx context.Context, accountID, cardID string, before time.Time, limit int) ([]Transaction, error) {
	if _, err := s.Card(ctx, accountID, cardID); err != nil {
		return nil, err
	}
	if limit <= 0 || limit > MaxTransactionsPerPage {
		limit = MaxTransactionsPerPage
	}
	ts, err := s.repo.transactions(ctx, cardID, before, limit)
	if err != nil {
		return nil, err
	}
	return ts, s.repo.addReversals(ctx, ts)
}
