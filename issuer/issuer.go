// Package issuer is the issuer host party: one process hosting every bank
// programme of the reference data. It answers the TSP's HTTP issuer API
// (tokenization decisions, SMS one-time codes through the sms party, token
// notices; see API.md) and the switch's ISO 8583 authorizations (0100/0200,
// reversals 0400/0420) against a double-entry ledger.
//
// Storage: one "issuer" store for all banks, every row keyed by issuer_id.
// One store means one group-commit Writer, so the authorizations of all 32
// programmes share batches and fsyncs: that is what lets one process answer
// well over 10,000 durable authorizations per second, where 32 files would
// mean 32 half-empty batches and 32 fsyncs per round. The banks' data stay
// apart by key: no query of one bank's flow reads another's rows (only the
// operator's ledger check looks at all of them).
//
// Card data: the PAN is not stored; cards are found by a keyed hash (HMAC
// with a key in the HSM) and shown as first6/last4. CVN2 and one-time codes
// are stored only as keyed hashes.
package issuer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"time"

	"github.com/mipay-oss/mipay/config"
)

// Bounds and defaults.
const (
	// DefaultDecisionTTL is how long a tokenization decision (and its OTP
	// flow) can be used.
	DefaultDecisionTTL = 30 * time.Minute
	// DefaultDedupEntries bounds the authorizations kept in memory for
	// duplicate detection and reversal matching (about 300 bytes each; at
	// 10,000/s some 13 s of traffic, which covers retransmissions); older
	// ones are found through the store's unique index.
	DefaultDedupEntries = 1 << 17
	// DefaultDuplicateRetries bounds how often a duplicate waits for an
	// original whose write failed before it is processed on its own.
	DefaultDuplicateRetries = 3
	// maxPANDigits / minPANDigits bound a PAN.
	minPANDigits = 13
	maxPANDigits = 19
	// cstOffset is China Standard Time: days (daily caps and limits) turn at
	// midnight in Beijing.
	cstOffset = 8 * time.Hour
)

// Card statuses.
const (
	StatusActive  = "active"
	StatusBlocked = "blocked"
	StatusLost    = "lost"
)

// Hasher computes HMAC-SHA256 with a key that never leaves the HSM.
type Hasher interface {
	HMAC(ctx context.Context, data []byte) ([]byte, error)
}

// Card is a card as the bank holds it (never the full PAN).
type Card struct {
	ID          string
	IssuerID    string
	PANHash     []byte
	First6      string
	Last4       string
	PANLength   int
	Expiry      string // YYMM
	CVN2Hash    []byte // nil when the card has no CVN2 on file (debit)
	Name        string
	Phone       string // bank-reserved mobile number
	CardType    string // config.Debit or config.Credit
	Product     string
	Status      string
	PSN         int
	CreditLimit int64 // minor units; 0 for debit
}

// Masked is the PAN as logs and answers may show it.
func (c *Card) Masked() string {
	n := c.PANLength - 10
	if n < 0 {
		n = 0
	}
	return c.First6 + strings.Repeat("*", n) + c.Last4
}

// expired reports whether the card's expiry month is before now's (CST).
func (c *Card) expired(now time.Time) bool {
	return expiryBefore(c.Expiry, now)
}

// expiryBefore reports whether YYMM is a month before now (cards are valid
// through the end of their expiry month).
func expiryBefore(yymm string, now time.Time) bool {
	if len(yymm) != 4 {
		return true
	}
	t := now.Add(cstOffset).UTC()
	cur := (t.Year()%100)*100 + int(t.Month())
	exp := int(yymm[0]-'0')*1000 + int(yymm[1]-'0')*100 + int(yymm[2]-'0')*10 + int(yymm[3]-'0')
	return exp < cur
}

// dayOf is the CST day number of t.
func dayOf(t time.Time) int64 {
	return (t.UnixMilli() + cstOffset.Milliseconds()) / (24 * time.Hour).Milliseconds()
}

// maskPAN masks a PAN to first6/last4 for logs.
func maskPAN(pan string) string { return config.MaskPAN(pan) }

// newID returns prefix + 128 random bits in hex.
func newID(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics on failure)
	return prefix + hex.EncodeToString(b[:])
}

// cardIDOf derives the card id from its PAN hash, so seeding is idempotent
// and the id reveals nothing of the PAN.
func cardIDOf(panHash []byte) string { return "crd_" + hex.EncodeToString(panHash[:10]) }

// allDigits reports whether s is non-empty and only ASCII digits.
func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// validPAN reports whether pan is 13–19 digits and Luhn-valid.
func validPAN(pan string) bool {
	return len(pan) >= minPANDigits && len(pan) <= maxPANDigits && config.LuhnValid(pan)
}

// validExpiry reports whether s is YYMM with a month 01–12.
func validExpiry(s string) bool {
	if len(s) != 4 || !allDigits(s) {
		return false
	}
	m := int(s[2]-'0')*10 + int(s[3]-'0')
	return m >= 1 && m <= 12
}

// hash domains: one HSM key, one prefix per use, so a hash of one kind can
// never match one of another.
func panHashInput(pan string) []byte { return []byte("pan|" + pan) }
func cvn2HashInput(cardID, cvn2 string) []byte {
	return []byte("cvn2|" + cardID + "|" + cvn2)
}
func otpHashInput(decisionID, code string) []byte {
	return []byte("otp|" + decisionID + "|" + code)
}
