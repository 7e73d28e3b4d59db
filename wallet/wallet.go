// Package wallet is the Mi Pay wallet server: Mi accounts and their sessions,
// devices registered with their secure element's attestation, the payment cards
// bound to each device (as token references only: the wallet never sees a PAN,
// CVN2 or card key), the transactions and notifications of each card, and the
// Mi Cloud side of a device (reported locations, queued commands).
//
// The phone talks only to the wallet; the wallet relays card data encrypted to
// the TSP's key (which it cannot read) and the TSP's SE profile encrypted to the
// device's SE key (which it cannot read either).
//
// Layout: this file holds the domain types and limits; the business rules
// are in service.go (devices, binding, cards), account.go (accounts,
// sessions, lockout), lifecycle.go (suspend/resume/switch-off), notify.go
// (events, transactions, notifications), cloud.go (locations, commands);
// store.go holds the SQL (migrations/ embedded); http*.go the HTTP transport
// with its OpenAPI document (openapi.json, mapped in API.md); tsp.go and
// transit.go the clients of those parties; attest.go the SE certificate
// chain check; limiter.go and metrics.go the per-client limit and counters;
// party.go Start.
package wallet

import (
	"time"
)

// Limits and defaults. Every bound of the wallet is one of these, named with
// its unit; Config can override most of them.
const (
	// DefaultMaxCardsPerDevice is how many payment cards (not DEACTIVATED) a
	// device may hold: the SE has room for 8 payment applet instances.
	DefaultMaxCardsPerDevice = 8
	// DefaultSessionTTL is how long a sign-in session lives.
	DefaultSessionTTL = 24 * time.Hour
	// DefaultMaxSignInFailures failed sign-ins for one login lock it for
	// DefaultSignInLockout.
	DefaultMaxSignInFailures = 5
	DefaultSignInLockout     = 15 * time.Minute
	// DefaultSignInFailureWindow: failures older than this are forgotten.
	DefaultSignInFailureWindow = 15 * time.Minute
	// MaxSessionsPerAccount bounds an account's live sessions: signing in
	// once more signs the oldest out.
	MaxSessionsPerAccount = 20
	// DefaultRecoveryCodes is how many one-time recovery codes an account gets.
	DefaultRecoveryCodes = 8
	// DefaultMaxConcurrentHashes bounds argon2id runs in flight (each takes
	// Argon2.MemoryKiB of memory).
	DefaultMaxConcurrentHashes = 4
	// DefaultPendingBindingTTL: a binding slot reserved while the TSP is asked
	// stops counting against the 8-card limit after this (a crashed request).
	DefaultPendingBindingTTL = 2 * time.Minute
	// DefaultTSPTimeout bounds one call to the TSP.
	DefaultTSPTimeout = 10 * time.Second
	// DefaultTSPKeyCacheTTL is how long the TSP's encryption key is cached.
	DefaultTSPKeyCacheTTL = 5 * time.Minute
	// DefaultLongPollWait and MaxLongPollWait bound GET …/notifications.
	DefaultLongPollWait = 25 * time.Second
	MaxLongPollWait     = 60 * time.Second
	// DefaultNotificationPoll is how often a waiting long poll or stream looks
	// at the store for notifications written by another wallet node.
	DefaultNotificationPoll = time.Second
	// DefaultStreamHeartbeat is the SSE comment interval that keeps proxies
	// from closing an idle stream.
	DefaultStreamHeartbeat = 15 * time.Second
	// DefaultMaxStreamDuration: a stream is closed after this and the client
	// reconnects with Last-Event-ID (bounds a connection's life).
	DefaultMaxStreamDuration = 30 * time.Minute
	// MaxNotificationsPerPage and MaxTransactionsPerPage bound list answers.
	MaxNotificationsPerPage = 100
	MaxTransactionsPerPage  = 200
	// DefaultNotificationsKept / DefaultLocationsKept per device: older rows
	// are pruned.
	DefaultNotificationsKept = 500
	DefaultLocationsKept     = 100
	// MaxPendingCommandsPerDevice bounds the Mi Cloud command queue.
	MaxPendingCommandsPerDevice = 16
	// MaxDevicesPerAccount bounds registered devices.
	MaxDevicesPerAccount = 20
	// MaxRequestBytes bounds every JSON body the wallet accepts; the card data
	// blob (a cryptobox of a few hundred bytes) is the largest field.
	MaxRequestBytes = 64 << 10
	// MaxEncryptedCardDataBytes bounds the base64 card data blob.
	MaxEncryptedCardDataBytes = 16 << 10
	// MaxCertificateBytes bounds each DER certificate of an attestation chain,
	// MaxChainCertificates their number.
	MaxCertificateBytes  = 4 << 10
	MaxChainCertificates = 4
	// MaxProfileBytes bounds the SE profile relayed from the TSP.
	MaxProfileBytes = 256 << 10
)

// Card states. INACTIVE, ACTIVE, SUSPENDED and DEACTIVATED are the token's
// states at the TSP; PENDING is the wallet's own while the TSP is being asked.
const (
	StatePending     = "PENDING"
	StateInactive    = "INACTIVE"
	StateActive      = "ACTIVE"
	StateSuspended   = "SUSPENDED"
	StateDeactivated = "DEACTIVATED"
)

// Tokenization decisions (as the TSP answers them).
const (
	DecisionApproved    = "APPROVED"
	DecisionRequireAuth = "REQUIRE_ADDITIONAL_AUTHENTICATION"
	DecisionDeclined    = "DECLINED"
)

// Who caused a token state change.
const (
	CausedByCardholder     = "CARDHOLDER"
	CausedByIssuer         = "ISSUER"
	CausedByTokenRequestor = "TOKEN_REQUESTOR"
)

// Mi Cloud command kinds and states.
const (
	CommandLocate = "LOCATE"
	CommandRing   = "RING"
	CommandWipe   = "WIPE"

	CommandPending   = "PENDING"
	CommandDelivered = "DELIVERED"
	CommandDone      = "DONE"
	CommandFailed    = "FAILED"
)

// Notification kinds.
const (
	NotifyTransaction = "transaction"
	NotifyCardState   = "card_state"
	NotifyCommand     = "command"
)

// Account is a Mi account.
type Account struct {
	ID      string    `json:"id"`
	Phone   string    `json:"phone"`
	Email   string    `json:"email"`
	Created time.Time `json:"createdAt"`
}

// Session is a signed-in bearer session. The token itself is only ever in the
// answer to sign-in; the store keeps its SHA-256.
type Session struct {
	Token     string    `json:"token"`
	AccountID string    `json:"accountId"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// Device is a handset registered to an account with its SE's attested key.
type Device struct {
	ID                  string    `json:"id"`
	AccountID           string    `json:"-"`
	Model               string    `json:"model"`
	SEID                string    `json:"seId"`
	SEPublicKey         []byte    `json:"-"` // uncompressed P-256 point
	FingerprintEnrolled bool      `json:"fingerprintEnrolled"`
	DefaultCardID       string    `json:"defaultCardId,omitempty"`
	Created             time.Time `json:"createdAt"`
	LastSeen            time.Time `json:"lastSeenAt,omitzero"`
}

// Card is a payment card bound to a device: the token's references and what
// the user needs to recognise the card, never its number.
type Card struct {
	ID          string    `json:"id"`
	DeviceID    string    `json:"deviceId"`
	AccountID   string    `json:"-"`
	TokenRef    string    `json:"-"` // the TSP's token reference id
	PAR         string    `json:"-"` // payment account reference
	PANLast4    string    `json:"panLast4"`
	TokenLast4  string    `json:"tokenLast4"`
	TokenExpiry string    `json:"tokenExpiry,omitempty"` // YYMM
	IssuerID    string    `json:"issuerId,omitempty"`
	Bank        string    `json:"bank"`
	Product     string    `json:"product"`
	Art         string    `json:"art"`
	CardType    string    `json:"cardType"`
	State       string    `json:"state"`
	Provisioned bool      `json:"provisioned"` // the device confirmed it installed the profile
	Default     bool      `json:"default"`
	Created     time.Time `json:"createdAt"`
	Updated     time.Time `json:"updatedAt"`
}

// AuthMethod is a way to confirm a binding (an SMS code to a masked number).
type AuthMethod struct {
	ID    string `json:"id"`
	Type  string `json:"type"`  // e.g. "SMS"
	Value string `json:"value"` // masked destination, e.g. "***1234"
}

// Binding is the answer to starting a binding.
type Binding struct {
	Decision string       `json:"decision"`
	CardID   string       `json:"cardId,omitempty"`
	Card     *Card        `json:"card,omitempty"`
	Methods  []AuthMethod `json:"methods,omitempty"`
	Reason   string       `json:"reason,omitempty"`
	Message  string       `json:"message,omitempty"`
}

// OTPRequest is the answer to requesting (or resending) a binding code.
type OTPRequest struct {
	MethodID    string    `json:"methodId"`
	Destination string    `json:"destination,omitempty"` // masked
	ExpiresAt   time.Time `json:"expiresAt,omitzero"`
	ResendsLeft *int      `json:"resendsLeft,omitempty"`
}

// Transaction is one authorization of a card, as the switch reported it.
type Transaction struct {
	ID           string    `json:"id"`
	CardID       string    `json:"cardId"`
	DeviceID     string    `json:"deviceId"`
	AmountMinor  int64     `json:"amountMinor"`
	Currency     string    `json:"currency"`
	MerchantName string    `json:"merchantName"`
	Approved     bool      `json:"approved"`
	ResponseCode string    `json:"responseCode"`
	AuthCode     string    `json:"authCode,omitempty"`
	STAN         string    `json:"stan,omitempty"`
	RRN          string    `json:"rrn,omitempty"`
	TokenLast4   string    `json:"tokenLast4,omitempty"`
	Time         time.Time `json:"time"`
	// Paying abroad: the terminal's country (ISO 3166 numeric), and what
	// the cardholder is billed (CNY fen) at which rate (CNY per major unit
	// of Currency, the DE10 rate as a decimal).
	Country            string `json:"country,omitempty"`
	BillingAmountMinor int64  `json:"billingAmountMinor,omitempty"`
	BillingCurrency    string `json:"billingCurrency,omitempty"`
	ConversionRate     string `json:"conversionRate,omitempty"`
	// A bank promotion (issue 8), approvals only: the cardholder paid
	// AmountMinor - DiscountMinor (CNY fen), the offer's bank funded the
	// rest; SavingText is what the phone shows ("Saved 10.00 CNY with
	// ICBC offer"); PointsMultiplier is the campaign's multiplier of the
	// issuer's rewards points (the points themselves are in its ledger).
	DiscountMinor    int64  `json:"discountMinor,omitempty"`
	OfferBank        string `json:"offerBank,omitempty"`
	CampaignID       string `json:"campaignId,omitempty"`
	PointsMultiplier int64  `json:"pointsMultiplier,omitempty"`
	SavingText       string `json:"savingText,omitempty"`
	// PointsEarned is what the issuer said the approval earned (rewards.go);
	// absent when it said nothing.
	PointsEarned *int64 `json:"pointsEarned,omitempty"`
	// Reversed: the acquirer reversed the approval (reversal.go); its
	// pointsEarned is then 0 and PointsReversed what the issuer took back.
	Reversed       bool       `json:"reversed,omitempty"`
	ReversedAt     *time.Time `json:"reversedAt,omitempty"`
	PointsReversed *int64     `json:"pointsReversed,omitempty"`
}

// Notification is one message for a device, numbered per device (Seq grows
// by one) so a client resumes with ?after=Seq or Last-Event-ID.
type Notification struct {
	Seq     int64     `json:"seq"`
	Kind    string    `json:"kind"`
	Time    time.Time `json:"time"`
	Payload any       `json:"payload"`
}

// Location is a position a device reported.
type Location struct {
	Latitude       float64   `json:"latitude"`
	Longitude      float64   `json:"longitude"`
	AccuracyMeters float64   `json:"accuracyMeters"`
	Time           time.Time `json:"time"`
	ReceivedAt     time.Time `json:"receivedAt"`
}

// Command is a Mi Cloud command queued for a device.
type Command struct {
	ID          string    `json:"id"`
	DeviceID    string    `json:"deviceId"`
	Kind        string    `json:"kind"`
	State       string    `json:"state"`
	Result      string    `json:"result,omitempty"`
	Created     time.Time `json:"createdAt"`
	DeliveredAt time.Time `json:"deliveredAt,omitzero"`
	DoneAt      time.Time `json:"doneAt,omitzero"`
}

// ms converts a time to the store's Unix milliseconds; 0 for the zero time.
func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// fromMS converts the store's Unix milliseconds back; 0 is the zero time.
func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}
