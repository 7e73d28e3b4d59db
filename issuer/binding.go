package issuer

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/config"
)

// Tokenization decisions.
const (
	DecisionApproved  = "APPROVED"
	DecisionRequireAA = "REQUIRE_ADDITIONAL_AUTHENTICATION"
	DecisionDeclined  = "DECLINED"
)

// Decline reasons (API.md) and the message a user sees for each. The card
// detail mismatch message is the same whether the number, expiry or CVN2 was
// wrong, so it does not help guess a CVN2.
const (
	ReasonDetailsMismatch = "CARD_DETAILS_MISMATCH"
	ReasonNotSupported    = "CARD_NOT_SUPPORTED"
	ReasonExpired         = "CARD_EXPIRED"
	ReasonInactive        = "CARD_INACTIVE"
	ReasonPhoneMismatch   = "PHONE_MISMATCH"
	ReasonTooManyAttempts = "TOO_MANY_ATTEMPTS"
	ReasonRisk            = "RISK"
)

var reasonMessage = map[string]string{
	ReasonDetailsMismatch: "The card details do not match the bank's records.",
	ReasonNotSupported:    "This card is not supported.",
	ReasonExpired:         "This card has expired.",
	ReasonInactive:        "This card cannot be added. Please contact your bank.",
	ReasonPhoneMismatch:   "The phone number does not match the one registered at the bank.",
	ReasonTooManyAttempts: "Too many attempts today, try again tomorrow.",
	ReasonRisk:            "This card cannot be added on this device.",
}

// Bounds of the binding API's input.
const (
	maxDeviceIDBytes       = 128
	maxNameRunes           = 64
	maxPhoneBytes          = 32
	maxAccountAge          = 100 * 366
	tokenRequestorIDDigits = 11
	smsMethodID            = "sms-1"
)

// OTP states of a decision.
const (
	otpNone     = "NONE"
	otpSent     = "SENT"
	otpVerified = "VERIFIED"
	otpLocked   = "LOCKED"
)

// SMSSender sends a text message (the sms party's API).
type SMSSender interface {
	Send(ctx context.Context, to, text, sender string) error
}

// DecisionRequest asks whether a card may be tokenized (API.md §1).
type DecisionRequest struct {
	PAN              string `json:"pan"`
	Expiry           string `json:"expiry"`
	CVN2             string `json:"cvn2,omitempty"`
	Phone            string `json:"phone"`
	Name             string `json:"name,omitempty"`
	DeviceID         string `json:"deviceId"`
	SEID             string `json:"seId"`
	TokenRequestorID string `json:"tokenRequestorId"`
	AccountAgeDays   int    `json:"accountAgeDays"`
	DeviceScore      int    `json:"deviceScore"`
}

// String never shows the PAN or CVN2.
func (r DecisionRequest) String() string { return "DecisionRequest{pan:" + maskPAN(r.PAN) + "}" }

// GoString keeps %#v as safe as %v.
func (r DecisionRequest) GoString() string { return r.String() }

// Method is a way to authenticate the cardholder.
type Method struct {
	ID    string `json:"id"`
	Type  string `json:"type"`
	Value string `json:"value"`
}

// Decision is the answer to a DecisionRequest.
type Decision struct {
	DecisionID string    `json:"decisionId"`
	Decision   string    `json:"decision"`
	Reason     string    `json:"reason"`
	Message    string    `json:"message"`
	Methods    []Method  `json:"methods"`
	CardType   string    `json:"cardType,omitempty"`
	Product    string    `json:"product,omitempty"`
	PANLast4   string    `json:"panLast4,omitempty"`
	ExpiresAt  time.Time `json:"expiresAt"`
}

// validate checks the request's form (not its truth).
func (r *DecisionRequest) validate() error {
	switch {
	case !allDigits(r.PAN) || len(r.PAN) < minPANDigits || len(r.PAN) > maxPANDigits:
		return mipay.Errorf(mipay.EINVALID, "pan must be %d–%d digits", minPANDigits, maxPANDigits)
	case !config.LuhnValid(r.PAN):
		return mipay.Errorf(mipay.EINVALID, "pan is not a valid card number (check digit)")
	case !validExpiry(r.Expiry):
		return mipay.Errorf(mipay.EINVALID, "expiry must be YYMM")
	case r.CVN2 != "" && (len(r.CVN2) != 3 || !allDigits(r.CVN2)):
		return mipay.Errorf(mipay.EINVALID, "cvn2 must be 3 digits")
	case r.Phone == "" || len(r.Phone) > maxPhoneBytes:
		return mipay.Errorf(mipay.EINVALID, "phone is required (at most %d characters)", maxPhoneBytes)
	case !utf8.ValidString(r.Name) || utf8.RuneCountInString(r.Name) > maxNameRunes:
		return mipay.Errorf(mipay.EINVALID, "name must be at most %d characters", maxNameRunes)
	case r.DeviceID == "" || len(r.DeviceID) > maxDeviceIDBytes:
		return mipay.Errorf(mipay.EINVALID, "deviceId is required (at most %d characters)", maxDeviceIDBytes)
	case r.SEID == "" || len(r.SEID) > maxDeviceIDBytes:
		return mipay.Errorf(mipay.EINVALID, "seId is required (at most %d characters)", maxDeviceIDBytes)
	case len(r.TokenRequestorID) != tokenRequestorIDDigits || !allDigits(r.TokenRequestorID):
		return mipay.Errorf(mipay.EINVALID, "tokenRequestorId must be %d digits", tokenRequestorIDDigits)
	case r.AccountAgeDays < 0 || r.AccountAgeDays > maxAccountAge:
		return mipay.Errorf(mipay.EINVALID, "accountAgeDays must be between 0 and %d", maxAccountAge)
	case r.DeviceScore < 0 || r.DeviceScore > 5:
		return mipay.Errorf(mipay.EINVALID, "deviceScore must be 1–5 (or 0 when unknown)")
	}
	return nil
}

// normalizePhone reduces a phone number to its digits, without a +86 / 0086
// country prefix, so "+86 138-0013-8000" matches "13800138000".
func normalizePhone(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			b.WriteByte(s[i])
		}
	}
	d := b.String()
	if len(d) == 13 && strings.HasPrefix(d, "86") {
		d = d[2:]
	} else if len(d) == 15 && strings.HasPrefix(d, "0086") {
		d = d[4:]
	}
	return d
}

// maskPhone shows the last 4 digits only.
func maskPhone(p string) string {
	if len(p) <= 4 {
		return "***"
	}
	return "***" + p[len(p)-4:]
}

// batchCtx is the ctx of the statements a write runs in a writer batch: the
// caller's values without its cancellation. The batch has its own deadline,
// and on SQLite a cancellable ctx costs a watcher goroutine per statement.
func batchCtx(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }

// Decide answers a tokenization request for bank issuerID. Counters (per
// card and device per day, failed card-detail attempts) are read and the
// decision recorded in one write of the group-commit writer, so concurrent
// requests cannot both slip under a cap.
func (h *Host) Decide(ctx context.Context, issuerID string, req DecisionRequest) (Decision, error) {
	bank, ok := h.banks[issuerID]
	if !ok {
		return Decision{}, mipay.Errorf(mipay.ENOTFOUND, "no issuer %q here", issuerID)
	}
	if err := req.validate(); err != nil {
		return Decision{}, err
	}
	// Checked on the programme, before any lookup, so the answer does not
	// tell whether the card exists.
	if bank.CardType == config.Credit && req.CVN2 == "" {
		return Decision{}, mipay.Errorf(mipay.EINVALID, "cvn2 is required for credit cards")
	}
	now := h.now()
	d := Decision{DecisionID: newID("dcs_"), ExpiresAt: now.Add(DefaultDecisionTTL).UTC().Truncate(time.Second), Methods: []Method{}}

	var acct *account
	if is, ok := h.ref.IssuerByPAN(req.PAN); ok && is.ID == bank.ID {
		acct = h.cardByPAN(ctx, req.PAN)
	} else {
		// Not this bank's BIN: nothing to look up or count for a card.
		d.Decision, d.Reason = DecisionDeclined, ReasonNotSupported
	}
	// The CVN2 is hashed before the write (the HSM call must not run inside
	// the batch) and dropped afterwards.
	var cvn2Hash []byte
	if acct != nil && req.CVN2 != "" && bank.CardType == config.Credit {
		var err error
		if cvn2Hash, err = h.hasher.HMAC(ctx, cvn2HashInput(acct.card.ID, req.CVN2)); err != nil {
			return Decision{}, mipay.WrapError(mipay.EUNAVAILABLE, err, "the bank cannot decide now; please try again later")
		}
	}

	day := dayOf(now)
	err := h.w.Write(ctx, func(tx *sql.Tx) error {
		ctx := batchCtx(ctx)
		out := d // the function may be the only place d is decided; start clean
		failure, err := h.decide(ctx, tx, bank, acct, &req, cvn2Hash, day, now, &out)
		if err != nil {
			return err
		}
		var cardID any
		if acct != nil {
			cardID = acct.card.ID
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO decisions (id, issuer_id, card_id, device_id, se_id, token_requestor, day,
			decision, reason, detail_failure, created_ms, expires_ms, otp_state, otp_hash, otp_expires_ms, otp_sends, otp_attempts)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULL, 0, 0, 0)`,
			out.DecisionID, bank.ID, cardID, req.DeviceID, req.SEID, req.TokenRequestorID, day,
			out.Decision, out.Reason, failure, now.UnixMilli(), out.ExpiresAt.UnixMilli(), otpNone)
		if err != nil {
			return fmt.Errorf("insert decision: %w", err)
		}
		d = out
		return nil
	})
	if err != nil {
		h.log.Error("tokenization decision not stored", "issuer", bank.ID, "pan", maskPAN(req.PAN), "err", err)
		return Decision{}, mipay.WrapError(mipay.EUNAVAILABLE, err, "the bank cannot decide now; please try again later")
	}
	d.Message = reasonMessage[d.Reason]
	switch d.Decision {
	case DecisionApproved:
		d.Message = "The card can be added."
	case DecisionRequireAA:
		d.Message = "The bank will send a verification code by SMS."
	}
	if acct != nil && d.Reason != ReasonDetailsMismatch && d.Reason != ReasonTooManyAttempts {
		d.CardType, d.Product, d.PANLast4 = acct.card.CardType, acct.card.Product, acct.card.Last4
	}
	h.log.Info("tokenization decision", "issuer", bank.ID, "pan", maskPAN(req.PAN), "decision", d.Decision,
		"reason", d.Reason, "decisionId", d.DecisionID)
	return d, nil
}

// decide applies the binding rules in the order API.md gives, inside the
// writer's transaction. It returns 1 when the request counts as a failed
// card-detail (expiry/CVN2) attempt.
func (h *Host) decide(ctx context.Context, tx *sql.Tx, bank *config.Issuer, acct *account, req *DecisionRequest,
	cvn2Hash []byte, day int64, now time.Time, d *Decision) (failure int, err error) {
	decline := func(reason string) (int, error) {
		d.Decision, d.Reason = DecisionDeclined, reason
		return failure, nil
	}
	if d.Decision == DecisionDeclined {
		return 0, nil // decided before the write (BIN not of this bank)
	}
	var deviceCount int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM decisions WHERE issuer_id = $1 AND device_id = $2 AND day = $3`,
		bank.ID, req.DeviceID, day).Scan(&deviceCount); err != nil {
		return 0, fmt.Errorf("count device decisions: %w", err)
	}
	if l := bank.Limits.BindingsPerDevicePerDay; l > 0 && deviceCount >= l {
		return decline(ReasonTooManyAttempts)
	}
	if acct == nil {
		return decline(ReasonDetailsMismatch)
	}
	var cardCount, failures int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(detail_failure), 0) FROM decisions
		WHERE issuer_id = $1 AND card_id = $2 AND day = $3`, bank.ID, acct.card.ID, day).Scan(&cardCount, &failures); err != nil {
		return 0, fmt.Errorf("count card decisions: %w", err)
	}
	if l := bank.Limits.BindingsPerCardPerDay; l > 0 && cardCount >= l {
		return decline(ReasonTooManyAttempts)
	}
	if l := bank.Limits.CVN2MaxAttempts; l > 0 && failures >= l {
		return decline(ReasonTooManyAttempts)
	}
	c := acct.card
	if req.Expiry != c.Expiry {
		failure = 1
		return decline(ReasonDetailsMismatch)
	}
	if c.CardType == config.Credit && c.CVN2Hash != nil && !hmac.Equal(cvn2Hash, c.CVN2Hash) {
		failure = 1
		return decline(ReasonDetailsMismatch)
	}
	if c.expired(now) {
		return decline(ReasonExpired)
	}
	if acct.currentStatus() != StatusActive {
		return decline(ReasonInactive)
	}
	if normalizePhone(req.Phone) != normalizePhone(c.Phone) {
		return decline(ReasonPhoneMismatch)
	}
	if req.DeviceScore == 1 {
		return decline(ReasonRisk)
	}
	if bank.OTP.AlwaysOTP || req.DeviceScore == 2 {
		d.Decision = DecisionRequireAA
		d.Methods = []Method{{ID: smsMethodID, Type: "SMS", Value: maskPhone(c.Phone)}}
		return 0, nil
	}
	d.Decision = DecisionApproved
	return 0, nil
}

// decisionRow is a stored decision's OTP state.
type decisionRow struct {
	id, issuerID, cardID, decision, otpState string
	expiresMS, otpExpiresMS                  int64
	otpHash                                  []byte
	sends, attempts                          int
}

func loadDecision(ctx context.Context, tx *sql.Tx, issuerID, id string) (*decisionRow, error) {
	r := &decisionRow{}
	var cardID sql.NullString
	err := tx.QueryRowContext(ctx, `SELECT id, issuer_id, card_id, decision, otp_state, expires_ms, otp_expires_ms,
		otp_hash, otp_sends, otp_attempts FROM decisions WHERE id = $1`, id).Scan(&r.id, &r.issuerID, &cardID, &r.decision,
		&r.otpState, &r.expiresMS, &r.otpExpiresMS, &r.otpHash, &r.sends, &r.attempts)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && r.issuerID != issuerID) {
		return nil, mipay.Errorf(mipay.ENOTFOUND, "no such decision")
	}
	if err != nil {
		return nil, fmt.Errorf("load decision: %w", err)
	}
	r.cardID = cardID.String
	return r, nil
}

// OTPSent is the answer to an OTP send (API.md §2).
type OTPSent struct {
	DecisionID  string    `json:"decisionId"`
	MethodID    string    `json:"methodId"`
	Destination string    `json:"destination"`
	ExpiresAt   time.Time `json:"expiresAt"`
	ResendsLeft int       `json:"resendsLeft"`
}

// maxDecisionIDBytes bounds ids taken from requests.
const maxDecisionIDBytes = 64

// SendOTP sends a new code for a yellow decision to the card's bank-reserved
// phone through the SMS gateway. The code is stored only as a keyed hash.
func (h *Host) SendOTP(ctx context.Context, issuerID, decisionID, methodID string) (OTPSent, error) {
	bank, ok := h.banks[issuerID]
	if !ok {
		return OTPSent{}, mipay.Errorf(mipay.ENOTFOUND, "no issuer %q here", issuerID)
	}
	if decisionID == "" || len(decisionID) > maxDecisionIDBytes {
		return OTPSent{}, mipay.Errorf(mipay.EINVALID, "decisionId is required (at most %d characters)", maxDecisionIDBytes)
	}
	if methodID != smsMethodID {
		return OTPSent{}, mipay.Errorf(mipay.ENOTFOUND, "no such authentication method")
	}
	if h.sms == nil {
		return OTPSent{}, mipay.Errorf(mipay.EUNAVAILABLE, "the bank cannot send codes now; please try again later")
	}
	code, err := newOTP(otpDigits(bank))
	if err != nil {
		return OTPSent{}, err
	}
	sum, err := h.hasher.HMAC(ctx, otpHashInput(decisionID, code))
	if err != nil {
		return OTPSent{}, mipay.WrapError(mipay.EUNAVAILABLE, err, "the bank cannot send codes now; please try again later")
	}
	now := h.now()
	ttl := bank.OTP.TTL.D()
	if ttl <= 0 {
		ttl = 5 * time.Minute
	}
	maxSends := 1 + bank.OTP.MaxResends
	var row *decisionRow
	err = h.w.Write(ctx, func(tx *sql.Tx) error {
		ctx := batchCtx(ctx)
		r, err := loadDecision(ctx, tx, bank.ID, decisionID)
		if err != nil {
			return err
		}
		if err := usableForOTP(r, now); err != nil {
			return err
		}
		if r.sends >= maxSends {
			return mipay.Errorf(mipay.ELIMIT, "No more codes can be sent for this request; start again")
		}
		if _, err := tx.ExecContext(ctx, `UPDATE decisions SET otp_state = $2, otp_hash = $3, otp_expires_ms = $4,
			otp_sends = otp_sends + 1 WHERE id = $1`, r.id, otpSent, sum, now.Add(ttl).UnixMilli()); err != nil {
			return fmt.Errorf("store code: %w", err)
		}
		r.sends++
		row = r
		return nil
	})
	if err != nil {
		return OTPSent{}, err
	}
	acct := h.cards[row.cardID]
	if acct == nil {
		return OTPSent{}, mipay.Errorf(mipay.ENOTFOUND, "no such decision")
	}
	text := fmt.Sprintf("[%s] Your verification code is %s. It is valid for %d minutes. Use it only to add your card to Mi Pay; never share it.",
		bank.BankCode, code, int(ttl.Minutes()))
	if err := h.sms.Send(ctx, acct.card.Phone, text, bank.BankCode); err != nil {
		// The user never got this code: give the send back.
		if uerr := h.w.Write(context.WithoutCancel(ctx), func(tx *sql.Tx) error {
			_, err := tx.ExecContext(batchCtx(ctx), `UPDATE decisions SET otp_sends = otp_sends - 1 WHERE id = $1 AND otp_sends > 0`, row.id)
			return err
		}); uerr != nil {
			h.log.Error("otp: give back failed send", "decisionId", row.id, "err", uerr)
		}
		h.log.Warn("otp: sms not sent", "issuer", bank.ID, "decisionId", row.id, "err", err)
		return OTPSent{}, mipay.WrapError(mipay.EUNAVAILABLE, err, "the verification code could not be sent; please try again")
	}
	h.log.Info("otp sent", "issuer", bank.ID, "decisionId", row.id, "to", maskPhone(acct.card.Phone))
	return OTPSent{DecisionID: row.id, MethodID: methodID, Destination: maskPhone(acct.card.Phone),
		ExpiresAt: now.Add(ttl).UTC().Truncate(time.Second), ResendsLeft: maxSends - row.sends}, nil
}

// usableForOTP says whether a decision may take an OTP send.
func usableForOTP(r *decisionRow, now time.Time) error {
	switch {
	case r.decision != DecisionRequireAA:
		return mipay.Errorf(mipay.ECONFLICT, "This request does not need a verification code")
	case r.otpState == otpVerified:
		return mipay.Errorf(mipay.ECONFLICT, "The code was already verified")
	case r.otpState == otpLocked:
		return mipay.Errorf(mipay.ELOCKED, "Too many wrong codes, start again")
	case now.UnixMilli() > r.expiresMS:
		return mipay.Errorf(mipay.ECONFLICT, "This request has expired, start again")
	}
	return nil
}

func otpDigits(b *config.Issuer) int {
	if b.OTP.Digits >= 4 && b.OTP.Digits <= 8 {
		return b.OTP.Digits
	}
	return 6
}

// newOTP returns a uniformly random code of n digits.
func newOTP(n int) (string, error) {
	max := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil)
	v, err := rand.Int(rand.Reader, max)
	if err != nil {
		return "", fmt.Errorf("issuer: otp: %w", err)
	}
	s := v.String()
	return strings.Repeat("0", n-len(s)) + s, nil
}

// OTP verification results.
const (
	OTPVerified = "VERIFIED"
	OTPWrong    = "WRONG"
	OTPExpired  = "EXPIRED"
	OTPLocked   = "LOCKED"
)

// OTPVerdict is the answer to a verification (API.md §3).
type OTPVerdict struct {
	Result       string `json:"result"`
	AttemptsLeft int    `json:"attemptsLeft"`
	Message      string `json:"message"`
}

// maxCodeDigits bounds a code taken from a request.
const maxCodeDigits = 8

// VerifyOTP checks a code against the newest one sent for the decision.
func (h *Host) VerifyOTP(ctx context.Context, issuerID, decisionID, code string) (OTPVerdict, error) {
	bank, ok := h.banks[issuerID]
	if !ok {
		return OTPVerdict{}, mipay.Errorf(mipay.ENOTFOUND, "no issuer %q here", issuerID)
	}
	if decisionID == "" || len(decisionID) > maxDecisionIDBytes {
		return OTPVerdict{}, mipay.Errorf(mipay.EINVALID, "decisionId is required (at most %d characters)", maxDecisionIDBytes)
	}
	if !allDigits(code) || len(code) > maxCodeDigits {
		return OTPVerdict{}, mipay.Errorf(mipay.EINVALID, "code must be 1–%d digits", maxCodeDigits)
	}
	sum, err := h.hasher.HMAC(ctx, otpHashInput(decisionID, code))
	if err != nil {
		return OTPVerdict{}, mipay.WrapError(mipay.EUNAVAILABLE, err, "the bank cannot check codes now; please try again later")
	}
	maxAttempts := bank.OTP.MaxAttempts
	if maxAttempts <= 0 {
		maxAttempts = 5
	}
	now := h.now()
	var v OTPVerdict
	err = h.w.Write(ctx, func(tx *sql.Tx) error {
		ctx := batchCtx(ctx)
		r, err := loadDecision(ctx, tx, bank.ID, decisionID)
		if err != nil {
			return err
		}
		left := maxAttempts - r.attempts
		match := r.otpHash != nil && hmac.Equal(sum, r.otpHash)
		switch {
		case r.decision != DecisionRequireAA:
			return mipay.Errorf(mipay.ECONFLICT, "This request does not need a verification code")
		case r.otpState == otpNone:
			return mipay.Errorf(mipay.ECONFLICT, "No code was sent yet")
		case r.otpState == otpLocked:
			v = OTPVerdict{Result: OTPLocked, Message: "Too many wrong codes, start again"}
			return nil
		case r.otpState == otpVerified && match:
			v = OTPVerdict{Result: OTPVerified, AttemptsLeft: left, Message: "Verified"}
			return nil
		case r.otpState == otpVerified:
			v = OTPVerdict{Result: OTPWrong, AttemptsLeft: left, Message: "The code is wrong"}
			return nil
		case now.UnixMilli() > r.otpExpiresMS || now.UnixMilli() > r.expiresMS:
			v = OTPVerdict{Result: OTPExpired, AttemptsLeft: left, Message: "The code has expired, request a new one"}
			return nil
		case match:
			_, err := tx.ExecContext(ctx, `UPDATE decisions SET otp_state = $2 WHERE id = $1`, r.id, otpVerified)
			v = OTPVerdict{Result: OTPVerified, AttemptsLeft: left, Message: "Verified"}
			return err
		}
		left--
		state := r.otpState
		v = OTPVerdict{Result: OTPWrong, AttemptsLeft: left, Message: "The code is wrong, " + strconv.Itoa(left) + " attempts left"}
		if left <= 0 {
			state, left = otpLocked, 0
			v = OTPVerdict{Result: OTPLocked, Message: "Too many wrong codes, start again"}
		}
		_, err = tx.ExecContext(ctx, `UPDATE decisions SET otp_attempts = otp_attempts + 1, otp_state = $2 WHERE id = $1`, r.id, state)
		return err
	})
	if err != nil {
		return OTPVerdict{}, err
	}
	h.log.Info("otp verification", "issuer", bank.ID, "decisionId", decisionID, "result", v.Result)
	return v, nil
}

// TokenNotice is the TSP telling the bank about a token (API.md §4).
type TokenNotice struct {
	TokenRef   string `json:"tokenRef"`
	DecisionID string `json:"decisionId,omitempty"`
	PANLast4   string `json:"panLast4"`
	Event      string `json:"event"`
	State      string `json:"state"`
	CausedBy   string `json:"causedBy,omitempty"`
	Reason     string `json:"reason,omitempty"`
}

var (
	noticeEvents   = map[string]bool{"TOKEN_CREATED": true, "STATE_CHANGED": true}
	noticeStates   = map[string]bool{"INACTIVE": true, "ACTIVE": true, "SUSPENDED": true, "DEACTIVATED": true}
	noticeCausedBy = map[string]bool{"": true, "ISSUER": true, "TOKEN_REQUESTOR": true, "CARDHOLDER": true}
)

// maxNoticeFieldBytes bounds the free-text fields of a notice.
const maxNoticeFieldBytes = 64

// RecordNotice records a token notice; repeats are accepted and change
// nothing.
func (h *Host) RecordNotice(ctx context.Context, issuerID string, n TokenNotice) error {
	bank, ok := h.banks[issuerID]
	if !ok {
		return mipay.Errorf(mipay.ENOTFOUND, "no issuer %q here", issuerID)
	}
	switch {
	case n.TokenRef == "" || len(n.TokenRef) > maxNoticeFieldBytes:
		return mipay.Errorf(mipay.EINVALID, "tokenRef is required (at most %d characters)", maxNoticeFieldBytes)
	case !noticeEvents[n.Event]:
		return mipay.Errorf(mipay.EINVALID, "event must be TOKEN_CREATED or STATE_CHANGED")
	case !noticeStates[n.State]:
		return mipay.Errorf(mipay.EINVALID, "state must be INACTIVE, ACTIVE, SUSPENDED or DEACTIVATED")
	case !noticeCausedBy[n.CausedBy]:
		return mipay.Errorf(mipay.EINVALID, "causedBy must be ISSUER, TOKEN_REQUESTOR or CARDHOLDER")
	case len(n.PANLast4) != 4 || !allDigits(n.PANLast4):
		return mipay.Errorf(mipay.EINVALID, "panLast4 must be 4 digits")
	case len(n.Reason) > maxNoticeFieldBytes || len(n.DecisionID) > maxDecisionIDBytes:
		return mipay.Errorf(mipay.EINVALID, "reason and decisionId must be at most %d characters", maxNoticeFieldBytes)
	case n.Event == "TOKEN_CREATED" && n.DecisionID == "":
		return mipay.Errorf(mipay.EINVALID, "decisionId is required for TOKEN_CREATED")
	}
	return h.w.Write(ctx, func(tx *sql.Tx) error {
		ctx := batchCtx(ctx)
		if n.DecisionID != "" {
			r, err := loadDecision(ctx, tx, bank.ID, n.DecisionID)
			if err != nil {
				return err
			}
			if r.decision == DecisionDeclined {
				return mipay.Errorf(mipay.ECONFLICT, "the bank declined this card")
			}
			if n.State == "ACTIVE" && r.decision == DecisionRequireAA && r.otpState != otpVerified {
				return mipay.Errorf(mipay.ECONFLICT, "the cardholder has not been verified")
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO token_notices (token_ref, event, state, issuer_id, decision_id, pan_last4,
			caused_by, reason, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING`,
			n.TokenRef, n.Event, n.State, bank.ID, n.DecisionID, n.PANLast4, n.CausedBy, n.Reason, h.now().UnixMilli())
		return err
	})
}
