// Package tsp is the token service provider and its token vault: it turns a
// cardholder's PAN into a device-bound token (DPAN) after the issuer's decision,
// provisions the token's card profile to the secure element, runs the token
// lifecycle (suspend, resume, delete), and — through its Go API, called by the
// network switch in-process — de-tokenizes authorizations after checking the
// token's state, domain, cryptogram and ATC.
//
// Files: tsp.go (domain types), card.go (card data, Luhn), alloc.go (DPAN, PAR,
// references), state.go (token state machine), profile.go (the SE card profile),
// issuerclient.go (the issuer's binding API), service.go (binding and lifecycle),
// vault.go + migrations/ (store), http.go (wallet-facing transport), party.go
// (Start), authorize.go + cache.go (the switch's Go API).
package tsp

import (
	"time"
)

// Key handles in the HSM.
const (
	// KeyBox is the P-256 key the phone seals card data to (cryptobox).
	KeyBox = "tsp/box"
	// KeyVault is the AES-256 key that seals every PAN in the vault.
	KeyVault = "tsp/vault-kek"
	// KeyPANHMAC is the HMAC-SHA256 key the vault looks PANs up by.
	KeyPANHMAC = "tsp/pan-hmac"
	// keyIMKPrefix + issuer id is the issuer master key (TDES, 2 keys) the
	// tokens' card keys are derived from (the TSP acts for the issuer).
	keyIMKPrefix = "tsp/imk/"
)

// IMKHandle is the HSM handle of an issuer's master key for its tokens.
func IMKHandle(issuerID string) string { return keyIMKPrefix + issuerID }

// State is a token's lifecycle state.
type State string

const (
	StateInactive    State = "INACTIVE"    // created, waiting for additional authentication (yellow path)
	StateActive      State = "ACTIVE"      // usable for payments
	StateSuspended   State = "SUSPENDED"   // temporarily unusable (lost phone, issuer hold)
	StateDeactivated State = "DEACTIVATED" // deleted for good
)

// CausedBy says who caused a token state change.
type CausedBy string

const (
	CausedByCardholder     CausedBy = "CARDHOLDER"
	CausedByIssuer         CausedBy = "ISSUER"
	CausedByTokenRequestor CausedBy = "TOKEN_REQUESTOR"
	// CausedByTSP marks changes the TSP makes itself (creation, activation
	// after a verified OTP).
	CausedByTSP CausedBy = "TSP"
)

// Valid reports whether c is one of the values a client may send.
func (c CausedBy) Valid() bool {
	switch c {
	case CausedByCardholder, CausedByIssuer, CausedByTokenRequestor:
		return true
	}
	return false
}

// Decision is the outcome of a tokenization request.
type Decision string

const (
	DecisionApproved          Decision = "APPROVED"
	DecisionRequireAdditional Decision = "REQUIRE_ADDITIONAL_AUTHENTICATION"
	DecisionDeclined          Decision = "DECLINED"
)

// Token is one token in the vault, as the service sees it. It never holds the
// plaintext PAN: PANSealed is the HSM-sealed PAN, PANHMAC its lookup key.
type Token struct {
	Ref           string // token unique reference
	PANRef        string // PAN unique reference (per PAN)
	DPAN          string
	PAR           string // payment account reference (per PAN, 29 chars)
	PANSealed     []byte
	PANHMAC       []byte
	PANLast4      string
	PANExpiry     string // YYMM of the card
	Expiry        string // YYMM of the token
	PSN           int
	IssuerID      string
	CardType      string // config.Debit or config.Credit
	Product       string // product code
	State         State
	SuspendedBy   CausedBy // who suspended it (only the issuer resumes an issuer suspension)
	DeviceID      string
	SEID          string
	SEPublicKey   []byte // uncompressed P-256
	DeviceModel   string
	RequestorID   string
	EntryModes    string // domain restriction: allowed DE22 PAN entry modes, comma separated
	KeyIndex      byte   // IAD key index
	Assurance     string // how the binding was authenticated
	LastATC       int    // highest ATC accepted; -1 before the first payment
	CreatedAt     time.Time
	UpdatedAt     time.Time
	Provisioned   bool // the device confirmed the profile was installed
	ProvisionedAt time.Time
}

// DPANLast4 returns the token's last four digits.
func (t *Token) DPANLast4() string { return last4(t.DPAN) }

// Assurance values.
const (
	AssuranceIssuerApproved = "ISSUER_APPROVED" // green path
	AssuranceOTP            = "OTP_VERIFIED"    // yellow path, then a verified SMS code
)

// StateChange is one entry of a token's state history, and the payload of the
// token.state_changed event (no PAN: references and last 4 digits only).
type StateChange struct {
	TokenRef   string `json:"tokenUniqueReference"`
	PANRef     string `json:"panUniqueReference"`
	TokenLast4 string `json:"tokenLast4"`
	PANLast4   string `json:"panLast4"`
	// PANExpiry is the card's expiry (YYMM), set only when the change moved
	// the token to a new card (CARD_REPLACED): the wallet shows it.
	PANExpiry   string    `json:"panExpiry,omitempty"`
	IssuerID    string    `json:"issuerId"`
	DeviceID    string    `json:"deviceId"`
	RequestorID string    `json:"tokenRequestorId"`
	From        State     `json:"previousState,omitempty"`
	State       State     `json:"state"`
	CausedBy    CausedBy  `json:"causedBy"`
	Reason      string    `json:"reason,omitempty"`
	Time        time.Time `json:"time"`
}

// SubjectStateChanged is the event subject of every token state change.
const SubjectStateChanged = "token.state_changed"

// Bounds on client input.
const (
	maxReasonBytes   = 200
	maxIDBytes       = 128
	maxModelBytes    = 128
	maxNameBytes     = 100
	maxCardDataBytes = 4 << 10 // the encrypted card data blob, base64-decoded
	maxOTPCodeBytes  = 12
	maxMethodIDBytes = 64
	maxSEPubKeyBytes = 65
	maxDPANAttempts  = 32 // collisions before giving up allocating a DPAN
)
