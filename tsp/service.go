package tsp

import (
	"context"
	"crypto/ecdh"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/config"
)

// Keys is what the TSP asks its HSM for. Secret keys never leave it: card
// data is opened inside it, PANs are sealed and hashed by it, card keys leave
// it only sealed to an SE. HSMKeys implements it over hsm.HSM.
type Keys interface {
	// BoxPublicKey is the uncompressed P-256 point of KeyBox.
	BoxPublicKey(ctx context.Context) ([]byte, error)
	// OpenCardData opens a cryptobox blob sealed to KeyBox.
	OpenCardData(ctx context.Context, blob, aad []byte) ([]byte, error)
	// SealPAN and OpenPAN encrypt a PAN under KeyVault (AES-256-GCM).
	SealPAN(ctx context.Context, pan string, aad []byte) ([]byte, error)
	OpenPAN(ctx context.Context, sealed, aad []byte) (string, error)
	// MAC is HMAC-SHA256 under KeyPANHMAC.
	MAC(ctx context.Context, data []byte) ([]byte, error)
	// SealICCKey derives the token's ICC master key from the issuer's IMK
	// and returns it sealed (cryptobox) to sePub with aad.
	SealICCKey(ctx context.Context, issuerID, dpan string, psn int, sePub, aad []byte) ([]byte, error)
	// VerifyARQC checks a PBOC CVN 01 ARQC over data with the session key
	// of atc and, when valid, makes the method 1 ARPC for arc.
	VerifyARQC(ctx context.Context, issuerID, dpan string, psn int, atc uint16, data []byte, arqc [8]byte, arc [2]byte) (valid bool, arpc [8]byte, err error)
}

// Publisher publishes events (events.Bus).
type Publisher interface {
	Publish(ctx context.Context, subject string, v any) error
}

// Service is the TSP's binding and lifecycle logic, independent of HTTP.
type Service struct {
	vault   *Vault
	keys    Keys
	issuers IssuerAPI
	ref     *config.Reference
	bus     Publisher
	log     *slog.Logger
	now     func() time.Time
	notices *notifier // nil: notices are sent in the request
}

// ServiceConfig is what a Service needs.
type ServiceConfig struct {
	Vault   *Vault
	Keys    Keys
	Issuers IssuerAPI
	Ref     *config.Reference
	Bus     Publisher // nil: no events (tests)
	Log     *slog.Logger
	Now     func() time.Time // nil: time.Now
	// NoticeWorkers > 0 sends token notices to issuers in the background
	// (DefaultNoticeWorkers in the party); 0 sends them in the request.
	NoticeWorkers int
}

// NewService returns a Service.
func NewService(cfg ServiceConfig) (*Service, error) {
	if cfg.Vault == nil || cfg.Keys == nil || cfg.Issuers == nil || cfg.Ref == nil {
		return nil, errors.New("tsp: service needs a vault, keys, an issuer API and reference data")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Service{vault: cfg.Vault, keys: cfg.Keys, issuers: cfg.Issuers, ref: cfg.Ref, bus: cfg.Bus, log: cfg.Log, now: cfg.Now}
	if cfg.NoticeWorkers > 0 {
		s.notices = newNotifier(cfg.Issuers, cfg.Log, cfg.NoticeWorkers, DefaultNoticeQueue)
	}
	return s, nil
}

// Close sends the queued token notices, bounded by ctx.
func (s *Service) Close(ctx context.Context) error {
	if s.notices == nil {
		return nil
	}
	return s.notices.close(ctx)
}

// Device is the handset a token is bound to.
type Device struct {
	DeviceID    string `json:"deviceId"`
	SEID        string `json:"seId"`
	SEPublicKey string `json:"sePublicKey"` // base64 uncompressed P-256 point
	Model       string `json:"model"`
}

// Risk is the token requestor's risk data.
type Risk struct {
	AccountAgeDays int `json:"accountAgeDays"`
	DeviceScore    int `json:"deviceScore"` // 1 (high risk) … 5 (low); 0 unknown
}

// TokenizeRequest is POST /v1/tokenize.
type TokenizeRequest struct {
	TokenRequestorID  string `json:"tokenRequestorId"`
	AccountID         string `json:"accountId"`
	EncryptedCardData string `json:"encryptedCardData"` // base64 cryptobox blob
	Device            Device `json:"device"`
	Risk              Risk   `json:"risk"`
}

// TokenizeResponse is the answer to a tokenization.
type TokenizeResponse struct {
	Decision              Decision     `json:"decision"`
	TokenRef              string       `json:"tokenUniqueReference,omitempty"`
	PANRef                string       `json:"panUniqueReference,omitempty"`
	TokenLast4            string       `json:"tokenLast4,omitempty"`
	PANLast4              string       `json:"panLast4,omitempty"`
	IssuerID              string       `json:"issuerId,omitempty"`
	Bank                  string       `json:"bank,omitempty"`
	Product               string       `json:"product,omitempty"`
	Art                   string       `json:"art,omitempty"`
	CardType              string       `json:"cardType,omitempty"`
	State                 State        `json:"state,omitempty"`
	AuthenticationMethods []AuthMethod `json:"authenticationMethods,omitempty"`
	Reason                string       `json:"reason,omitempty"`
	Message               string       `json:"message,omitempty"`
}

// TokenView is a token as the wallet may see it: references, last 4 digits,
// display data, state. Never the PAN.
type TokenView struct {
	TokenRef         string        `json:"tokenUniqueReference"`
	PANRef           string        `json:"panUniqueReference"`
	PAR              string        `json:"paymentAccountReference"`
	TokenLast4       string        `json:"tokenLast4"`
	PANLast4         string        `json:"panLast4"`
	TokenExpiry      string        `json:"tokenExpiry"`
	IssuerID         string        `json:"issuerId"`
	Bank             string        `json:"bank"`
	Product          string        `json:"product"`
	Art              string        `json:"art"`
	CardType         string        `json:"cardType"`
	State            State         `json:"state"`
	TokenRequestorID string        `json:"tokenRequestorId"`
	DeviceID         string        `json:"deviceId"`
	Provisioned      bool          `json:"provisioned"`
	History          []StateChange `json:"history,omitempty"`
}

// Reasons of declines the TSP decides itself (the issuer's pass through).
const (
	ReasonCardNotSupported = "CARD_NOT_SUPPORTED"
	msgCardNotSupported    = "This card is not supported."
)

func (s *Service) validateTokenize(req *TokenizeRequest) (sePub []byte, err error) {
	if !s.requestorKnown(req.TokenRequestorID) {
		return nil, mipay.Errorf(mipay.EFORBIDDEN, "tokenRequestorId is not a known token requestor")
	}
	if len(req.AccountID) > maxIDBytes {
		return nil, mipay.Errorf(mipay.ETOOLARGE, "accountId must be at most %d bytes", maxIDBytes)
	}
	if err := checkID("device.deviceId", req.Device.DeviceID); err != nil {
		return nil, err
	}
	if err := checkID("device.seId", req.Device.SEID); err != nil {
		return nil, err
	}
	if len(req.Device.Model) > maxModelBytes {
		return nil, mipay.Errorf(mipay.ETOOLARGE, "device.model must be at most %d bytes", maxModelBytes)
	}
	if req.Device.SEPublicKey == "" || base64.StdEncoding.DecodedLen(len(req.Device.SEPublicKey)) > maxSEPubKeyBytes+2 {
		return nil, mipay.Errorf(mipay.EINVALID, "device.sePublicKey must be a base64 uncompressed P-256 public key")
	}
	sePub, err = base64.StdEncoding.DecodeString(req.Device.SEPublicKey)
	if err != nil || len(sePub) != maxSEPubKeyBytes {
		return nil, mipay.Errorf(mipay.EINVALID, "device.sePublicKey must be a base64 uncompressed P-256 public key")
	}
	if _, err := ecdh.P256().NewPublicKey(sePub); err != nil {
		return nil, mipay.Errorf(mipay.EINVALID, "device.sePublicKey is not a point on P-256")
	}
	if req.Risk.AccountAgeDays < 0 || req.Risk.AccountAgeDays > 100000 {
		return nil, mipay.Errorf(mipay.EINVALID, "risk.accountAgeDays must be 0 to 100000")
	}
	if req.Risk.DeviceScore < 0 || req.Risk.DeviceScore > 5 {
		return nil, mipay.Errorf(mipay.EINVALID, "risk.deviceScore must be 0 to 5")
	}
	if req.EncryptedCardData == "" {
		return nil, mipay.Errorf(mipay.EINVALID, "encryptedCardData is required")
	}
	if base64.StdEncoding.DecodedLen(len(req.EncryptedCardData)) > maxCardDataBytes {
		return nil, mipay.Errorf(mipay.ETOOLARGE, "encryptedCardData must be at most %d bytes", maxCardDataBytes)
	}
	return sePub, nil
}

func checkID(field, v string) error {
	if v == "" {
		return mipay.Errorf(mipay.EINVALID, "%s is required", field)
	}
	if len(v) > maxIDBytes {
		return mipay.Errorf(mipay.ETOOLARGE, "%s must be at most %d bytes", field, maxIDBytes)
	}
	return nil
}

func (s *Service) requestorKnown(id string) bool {
	for _, r := range s.ref.TokenRequestors {
		if r.ID == id {
			return true
		}
	}
	return false
}

// Tokenize runs a binding: decrypt, validate, route by BIN, ask the issuer,
// and on APPROVED or REQUIRE_ADDITIONAL_AUTHENTICATION create the token.
func (s *Service) Tokenize(ctx context.Context, req TokenizeRequest) (TokenizeResponse, error) {
	sePub, err := s.validateTokenize(&req)
	if err != nil {
		return TokenizeResponse{}, err
	}
	blob, err := base64.StdEncoding.DecodeString(req.EncryptedCardData)
	if err != nil {
		return TokenizeResponse{}, mipay.Errorf(mipay.EINVALID, "encryptedCardData must be base64")
	}
	plain, err := s.keys.OpenCardData(ctx, blob, CardDataAAD(req.TokenRequestorID))
	if err != nil {
		return TokenizeResponse{}, mipay.WrapError(mipay.EINVALID, err, "encryptedCardData could not be decrypted: seal it to the key of GET /v1/keys/encryption")
	}
	card, err := ParseCardData(plain)
	clear(plain)
	if err != nil {
		return TokenizeResponse{}, err
	}
	issuer, ok := s.ref.IssuerByPAN(card.PAN)
	if !ok {
		return TokenizeResponse{Decision: DecisionDeclined, Reason: ReasonCardNotSupported, Message: msgCardNotSupported, PANLast4: last4(card.PAN)}, nil
	}
	dec, err := s.issuers.Decide(ctx, issuer.ID, DecisionRequest{
		PAN: card.PAN, Expiry: card.Expiry, CVN2: card.CVN2, Phone: card.Phone, Name: card.Name,
		DeviceID: req.Device.DeviceID, SEID: req.Device.SEID, TokenRequestorID: req.TokenRequestorID,
		AccountAgeDays: req.Risk.AccountAgeDays, DeviceScore: req.Risk.DeviceScore,
	})
	card.CVN2 = "" // used for the decision only
	if err != nil {
		return TokenizeResponse{}, err
	}
	out := TokenizeResponse{
		Decision: dec.Decision, Reason: dec.Reason, Message: dec.Message, PANLast4: last4(card.PAN),
		IssuerID: issuer.ID, Bank: issuer.Bank, CardType: issuer.CardType,
	}
	if dec.Decision == DecisionDeclined {
		s.log.InfoContext(ctx, "tokenization declined", "issuer", issuer.ID, "reason", dec.Reason, "pan", MaskPAN(card.PAN))
		return out, nil
	}
	state, assurance := StateActive, AssuranceIssuerApproved
	if dec.Decision == DecisionRequireAdditional {
		state, assurance = StateInactive, ""
		if len(dec.Methods) == 0 {
			return TokenizeResponse{}, mipay.WrapError(mipay.EUNAVAILABLE, fmt.Errorf("issuer %s: additional authentication without methods", issuer.ID), "the bank gave an answer we do not understand; please try again later")
		}
	}
	t, err := s.createToken(ctx, card, issuer, dec, &req, sePub, state, assurance)
	if err != nil {
		return TokenizeResponse{}, err
	}
	product := productOf(issuer, t.Product)
	out.TokenRef, out.PANRef, out.TokenLast4, out.State = t.Ref, t.PANRef, t.DPANLast4(), t.State
	out.Product, out.Art, out.CardType = product.Name, product.Art, t.CardType
	if state == StateInactive {
		out.AuthenticationMethods = dec.Methods
	}
	return out, nil
}

func productOf(is *config.Issuer, code string) config.Product {
	for _, p := range is.Products {
		if p.Code == code {
			return p
		}
	}
	if len(is.Products) > 0 {
		return is.Products[0]
	}
	return config.Product{Code: code, Name: is.Bank}
}

// createToken allocates a DPAN and stores the token, then tells the bus and
// the issuer.
func (s *Service) createToken(ctx context.Context, card CardData, issuer *config.Issuer, dec DecisionResponse, req *TokenizeRequest, sePub []byte, state State, assurance string) (*Token, error) {
	panMAC, err := s.keys.MAC(ctx, append([]byte(hmacLabelLookup), card.PAN...))
	if err != nil {
		return nil, fmt.Errorf("tsp: PAN HMAC: %w", err)
	}
	parMAC, err := s.keys.MAC(ctx, append([]byte(hmacLabelPAR), card.PAN...))
	if err != nil {
		return nil, fmt.Errorf("tsp: PAR HMAC: %w", err)
	}
	refMAC, err := s.keys.MAC(ctx, append([]byte(hmacLabelPANRef), card.PAN...))
	if err != nil {
		return nil, fmt.Errorf("tsp: PAN ref HMAC: %w", err)
	}
	if len(issuer.TokenBINs) == 0 {
		return nil, mipay.Errorf(mipay.EUNAVAILABLE, "this bank has no token range configured")
	}
	now := s.now().UTC()
	cardType := issuer.CardType
	if dec.CardType != "" {
		cardType = dec.CardType
	}
	product := dec.Product
	if product == "" {
		product = productOf(issuer, "").Code
	}
	// The account reference is hashed before the write (no HSM call inside
	// a batch). A token without one still pays; its card's promotions then
	// count per card only.
	acctRef, err := s.accountRef(ctx, req.AccountID)
	if err != nil {
		s.log.ErrorContext(ctx, "token without account reference: per-account promotion limits count it per card", "err", err)
		acctRef = ""
	}
	row := &tokenRow{Token: Token{
		PANRef: panRefFromMAC(refMAC), PAR: parFromMAC(parMAC), PANHMAC: panMAC, PANLast4: last4(card.PAN),
		PANExpiry: card.Expiry, Expiry: card.Expiry, PSN: 0, IssuerID: issuer.ID, CardType: cardType,
		Product: product, State: state, DeviceID: req.Device.DeviceID, SEID: req.Device.SEID,
		SEPublicKey: sePub, DeviceModel: req.Device.Model, RequestorID: req.TokenRequestorID,
		EntryModes: DefaultEntryModes, KeyIndex: DefaultKeyIdx, Assurance: assurance, LastATC: -1,
		CreatedAt: now, UpdatedAt: now,
	}, DecisionID: dec.DecisionID}
	for attempt := 0; ; attempt++ {
		if attempt >= maxDPANAttempts {
			return nil, mipay.Errorf(mipay.EUNAVAILABLE, "no token number could be allocated; please try again later")
		}
		bin := issuer.TokenBINs[attempt%len(issuer.TokenBINs)]
		dpan, err := newDPAN(bin)
		if err != nil {
			return nil, err
		}
		if _, isPAN := s.ref.IssuerByPAN(dpan); isPAN {
			return nil, fmt.Errorf("tsp: token BIN %s of %s lies in a PAN range", bin, issuer.ID)
		}
		dpanMAC, err := s.keys.MAC(ctx, append([]byte(hmacLabelDPAN), dpan...))
		if err != nil {
			return nil, fmt.Errorf("tsp: DPAN HMAC: %w", err)
		}
		ref, err := newTokenRef()
		if err != nil {
			return nil, err
		}
		sealed, err := s.keys.SealPAN(ctx, card.PAN, panAAD(ref))
		if err != nil {
			return nil, fmt.Errorf("tsp: seal PAN: %w", err)
		}
		row.Ref, row.DPAN, row.PANSealed = ref, dpan, sealed
		first := s.change(&row.Token, "", state, CausedByTSP, "TOKEN_CREATED", now)
		err = s.vault.Insert(ctx, row, dpanMAC, first, acctRef)
		if errors.Is(err, errDPANTaken) || errors.Is(err, errDPANIsPAN) {
			continue // taken, or some card's PAN: never hand that number out
		}
		if err != nil {
			return nil, err
		}
		s.announce(ctx, first, NoticeTokenCreated, row.DecisionID)
		s.log.InfoContext(ctx, "token created", "token", row.Ref, "issuer", issuer.ID, "state", state, "pan", MaskPAN(card.PAN))
		return &row.Token, nil
	}
}

// panAAD binds a sealed PAN to its token row: a ciphertext copied to another
// row does not open.
func panAAD(tokenRef string) []byte { return []byte("mipay tsp pan v1\x00" + tokenRef) }

func (s *Service) change(t *Token, from, to State, by CausedBy, reason string, at time.Time) StateChange {
	return StateChange{
		TokenRef: t.Ref, PANRef: t.PANRef, TokenLast4: t.DPANLast4(), PANLast4: t.PANLast4,
		IssuerID: t.IssuerID, DeviceID: t.DeviceID, RequestorID: t.RequestorID,
		From: from, State: to, CausedBy: by, Reason: reason, Time: at,
	}
}

// Bounds of announcing a change.
const (
	DefaultPublishAttempts = 3
	DefaultPublishTimeout  = 5 * time.Second // the whole announcement
	publishBackoff         = 50 * time.Millisecond
)

// announce publishes a state change (token.state_changed) and sends the
// issuer a token notice. The change is already durable; a failure here is
// logged, and switch caches fall back on their TTL.
func (s *Service) announce(ctx context.Context, c StateChange, event, decisionID string) {
	// The change is committed: announce it even if the client went away.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultPublishTimeout)
	defer cancel()
	if s.bus != nil {
		var err error
		for i := 0; i < DefaultPublishAttempts; i++ {
			if i > 0 {
				time.Sleep(publishBackoff << (i - 1))
			}
			if err = s.bus.Publish(ctx, SubjectStateChanged, c); err == nil {
				break
			}
		}
		if err != nil {
			s.log.ErrorContext(ctx, "publish token state change failed", "token", c.TokenRef, "state", c.State, "err", err)
		}
	}
	n := issuerNotice(c, event, decisionID)
	if s.notices != nil {
		s.notices.send(c.IssuerID, n)
		return
	}
	if err := s.issuers.Notice(ctx, c.IssuerID, n); err != nil {
		s.log.WarnContext(ctx, "token notice to issuer failed", "token", c.TokenRef, "issuer", c.IssuerID, "event", event, "err", err)
	}
}

func (s *Service) token(ctx context.Context, ref string) (*tokenRow, error) {
	if !validTokenRef(ref) {
		return nil, errNoToken
	}
	return s.vault.Get(ctx, ref)
}

// View returns what the wallet may see of a token, with its history.
func (s *Service) View(ctx context.Context, ref string) (TokenView, error) {
	t, err := s.token(ctx, ref)
	if err != nil {
		return TokenView{}, err
	}
	h, err := s.vault.History(ctx, ref)
	if err != nil {
		return TokenView{}, err
	}
	v := s.view(&t.Token)
	v.History = h
	return v, nil
}

func (s *Service) view(t *Token) TokenView {
	v := TokenView{
		TokenRef: t.Ref, PANRef: t.PANRef, PAR: t.PAR, TokenLast4: t.DPANLast4(), PANLast4: t.PANLast4,
		TokenExpiry: t.Expiry, IssuerID: t.IssuerID, CardType: t.CardType, State: t.State,
		TokenRequestorID: t.RequestorID, DeviceID: t.DeviceID, Provisioned: t.Provisioned,
	}
	if is, ok := s.ref.Issuer(t.IssuerID); ok {
		p := productOf(is, t.Product)
		v.Bank, v.Product, v.Art = is.Bank, p.Name, p.Art
	}
	return v
}

// OTPRequested is the answer to an authentication request.
type OTPRequested struct {
	TokenRef    string    `json:"tokenUniqueReference"`
	MethodID    string    `json:"methodId"`
	Destination string    `json:"destination"`
	ExpiresAt   time.Time `json:"expiresAt"`
	ResendsLeft int       `json:"resendsLeft"`
}

// RequestAuthentication has the issuer send (or resend) the OTP of an
// INACTIVE token's binding.
func (s *Service) RequestAuthentication(ctx context.Context, ref, methodID string) (OTPRequested, error) {
	if methodID == "" || len(methodID) > maxMethodIDBytes {
		return OTPRequested{}, mipay.Errorf(mipay.EINVALID, "methodId is required (at most %d bytes)", maxMethodIDBytes)
	}
	t, err := s.token(ctx, ref)
	if err != nil {
		return OTPRequested{}, err
	}
	if t.State != StateInactive {
		return OTPRequested{}, &mipay.Error{Code: mipay.ECONFLICT, Reason: "NOT_PENDING", Message: "this card does not need a verification code"}
	}
	sent, err := s.issuers.SendOTP(ctx, t.IssuerID, t.DecisionID, methodID)
	if err != nil {
		return OTPRequested{}, err
	}
	return OTPRequested{TokenRef: ref, MethodID: sent.MethodID, Destination: sent.Destination, ExpiresAt: sent.ExpiresAt, ResendsLeft: sent.ResendsLeft}, nil
}

// VerifyAuthentication submits the cardholder's OTP to the issuer; on
// VERIFIED the token becomes ACTIVE. The issuer's other verdicts become
// errors a user understands: a wrong code (attempts left), an expired code,
// a locked binding (the pending token is then deleted).
func (s *Service) VerifyAuthentication(ctx context.Context, ref, code string) (TokenView, error) {
	if code == "" || len(code) > maxOTPCodeBytes || !allDigits(code) {
		return TokenView{}, mipay.Errorf(mipay.EINVALID, "code must be the digits of the SMS code")
	}
	t, err := s.token(ctx, ref)
	if err != nil {
		return TokenView{}, err
	}
	if t.State == StateActive && t.Assurance == AssuranceOTP {
		return s.view(&t.Token), nil // a retried verify after success
	}
	if t.State != StateInactive {
		return TokenView{}, &mipay.Error{Code: mipay.ECONFLICT, Reason: "NOT_PENDING", Message: "this card does not need a verification code"}
	}
	v, err := s.issuers.VerifyOTP(ctx, t.IssuerID, t.DecisionID, code)
	if err != nil {
		return TokenView{}, err
	}
	switch v.Result {
	case OTPVerified:
		return s.apply(ctx, t, ActionActivate, CausedByCardholder, "OTP_VERIFIED", AssuranceOTP)
	case OTPWrong:
		return TokenView{}, &mipay.Error{Code: mipay.EINVALID, Reason: "OTP_WRONG", Message: fmt.Sprintf("The code is wrong, %d attempts left", v.AttemptsLeft)}
	case OTPExpired:
		return TokenView{}, &mipay.Error{Code: mipay.ECONFLICT, Reason: "OTP_EXPIRED", Message: "The code has expired, request a new one"}
	case OTPLocked:
		if _, err := s.apply(ctx, t, ActionDelete, CausedByIssuer, "OTP_LOCKED", ""); err != nil {
			s.log.WarnContext(ctx, "delete locked pending token", "token", ref, "err", err)
		}
		return TokenView{}, &mipay.Error{Code: mipay.ELOCKED, Reason: "OTP_LOCKED", Message: "Too many wrong codes; please add the card again"}
	}
	return TokenView{}, mipay.WrapError(mipay.EUNAVAILABLE, fmt.Errorf("issuer %s: OTP result %q", t.IssuerID, v.Result), "the bank gave an answer we do not understand; please try again later")
}

// Lifecycle suspends, resumes or deletes a token.
func (s *Service) Lifecycle(ctx context.Context, ref string, action Action, by CausedBy, reason string) (TokenView, error) {
	if !by.Valid() {
		return TokenView{}, mipay.Errorf(mipay.EINVALID, "causedBy must be CARDHOLDER, ISSUER or TOKEN_REQUESTOR")
	}
	if len(reason) > maxReasonBytes {
		return TokenView{}, mipay.Errorf(mipay.ETOOLARGE, "reason must be at most %d bytes", maxReasonBytes)
	}
	switch action {
	case ActionSuspend, ActionResume, ActionDelete:
	default:
		return TokenView{}, mipay.Errorf(mipay.EINVALID, "unknown action %q", action)
	}
	t, err := s.token(ctx, ref)
	if err != nil {
		return TokenView{}, err
	}
	return s.apply(ctx, t, action, by, reason, "")
}

// apply runs one transition: state machine, durable change with history,
// then event and issuer notice.
func (s *Service) apply(ctx context.Context, t *tokenRow, action Action, by CausedBy, reason, assurance string) (TokenView, error) {
	to, err := Transition(t.State, action, by, t.SuspendedBy)
	if err != nil {
		return TokenView{}, err
	}
	suspendedBy := CausedBy("")
	if to == StateSuspended {
		suspendedBy = by
	}
	c := s.change(&t.Token, t.State, to, by, reason, s.now().UTC())
	if err := s.vault.ChangeState(ctx, c, suspendedBy, assurance); err != nil {
		return TokenView{}, err
	}
	t.State, t.SuspendedBy, t.UpdatedAt = to, suspendedBy, c.Time
	if assurance != "" {
		t.Assurance = assurance
	}
	s.announce(ctx, c, NoticeStateChanged, t.DecisionID)
	s.log.InfoContext(ctx, "token state changed", "token", t.Ref, "from", c.From, "to", to, "causedBy", by, "reason", reason)
	return s.view(&t.Token), nil
}

// Provisioning returns the SE card profile of an ACTIVE token: the card key
// derived in the HSM and sealed to the token's SE, and the profile in clear.
func (s *Service) Provisioning(ctx context.Context, ref string) (Profile, error) {
	if !validTokenRef(ref) {
		return Profile{}, errNoToken
	}
	t, err := s.vault.GetNoATC(ctx, ref) // a profile carries no ATC
	if err != nil {
		return Profile{}, err
	}
	if t.State != StateActive {
		return Profile{}, &mipay.Error{Code: mipay.ECONFLICT, Reason: "NOT_ACTIVE", Message: "this card is not active yet"}
	}
	sealed, err := s.keys.SealICCKey(ctx, t.IssuerID, t.DPAN, t.PSN, t.SEPublicKey, ProfileKeyAAD(t.SEID, t.Ref))
	if err != nil {
		return Profile{}, fmt.Errorf("tsp: seal card key: %w", err)
	}
	return buildProfile(&t.Token, sealed)
}

// ConfirmProvisioning records that the SE installed the token's profile.
func (s *Service) ConfirmProvisioning(ctx context.Context, ref string) (TokenView, error) {
	if !validTokenRef(ref) {
		return TokenView{}, errNoToken
	}
	t, err := s.vault.MarkProvisioned(ctx, ref, s.now().UTC())
	if err != nil {
		return TokenView{}, err
	}
	if t.State != StateActive {
		return TokenView{}, &mipay.Error{Code: mipay.ECONFLICT, Reason: "NOT_ACTIVE", Message: "this card is not active"}
	}
	return s.view(&t.Token), nil
}

// EncryptionKey is GET /v1/keys/encryption.
type EncryptionKey struct {
	KID string `json:"kid"`
	Key string `json:"key"` // base64 uncompressed P-256 point
	Alg string `json:"alg"`
}

// EncryptionKey returns the key the phone seals card data to.
func (s *Service) EncryptionKey(ctx context.Context) (EncryptionKey, error) {
	pub, err := s.keys.BoxPublicKey(ctx)
	if err != nil {
		return EncryptionKey{}, fmt.Errorf("tsp: box public key: %w", err)
	}
	return EncryptionKey{KID: KeyBox, Key: base64.StdEncoding.EncodeToString(pub), Alg: "ECDH-ES+P256+HKDF-SHA256+A256GCM (mipay cryptobox v1)"}, nil
}
