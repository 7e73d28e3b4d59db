// Package config holds mipay's reference data: the issuers (banks) with their
// BIN and token BIN ranges, products, OTP policy, limits and demo cardholders;
// the transit cities. A default is embedded; a JSON file can replace it.
package config

import (
	"encoding/json"
	"fmt"
	"time"
)

// Card types.
const (
	Debit  = "debit"
	Credit = "credit"
)

// Reference is the whole reference data set.
type Reference struct {
	Version int `json:"version"`
	// NoCVMLimitMinor is the contactless no-CVM limit in CNY fen (1000 CNY =
	// 100000): above it the CTQ must say CDCVM performed, or online PIN.
	NoCVMLimitMinor int64 `json:"noCvmLimitMinor"`
	// MaxCardsPerDevice is how many payment cards (tokens) one device may
	// hold in the wallet; 0 means DefaultMaxCardsPerDevice (8, Mi Pay's
	// limit). Load generators raise it (mipay bench lifecycle).
	MaxCardsPerDevice int              `json:"maxCardsPerDevice,omitempty"`
	TokenRequestors   []TokenRequestor `json:"tokenRequestors"`
	Issuers           []Issuer         `json:"issuers"`
	Cities            []City           `json:"cities,omitempty"`
}

// Per-device card limits.
const (
	DefaultMaxCardsPerDevice = 8
	// MaxCardsPerDeviceLimit bounds what a reference file may ask for.
	MaxCardsPerDeviceLimit = 10000
)

// DeviceCardLimit is MaxCardsPerDevice, or its default when unset.
func (r *Reference) DeviceCardLimit() int {
	if r == nil || r.MaxCardsPerDevice == 0 {
		return DefaultMaxCardsPerDevice
	}
	return r.MaxCardsPerDevice
}

// TokenRequestor is a wallet allowed to request tokens (Mi Pay).
type TokenRequestor struct {
	ID   string `json:"id"` // 11 digits, as in EMVCo token requestor ids
	Name string `json:"name"`
}

// Issuer is one bank's card programme of one card type (a bank offering both
// debit and credit cards appears twice).
type Issuer struct {
	ID        string    `json:"id"`       // e.g. "icbc-credit"
	Bank      string    `json:"bank"`     // display name, e.g. "Industrial and Commercial Bank of China"
	BankCode  string    `json:"bankCode"` // short code, e.g. "ICBC"
	CardType  string    `json:"cardType"` // Debit or Credit
	BINs      []string  `json:"bins"`     // PAN prefixes (6–8 digits, UnionPay 62…)
	TokenBINs []string  `json:"tokenBins"`
	PANLength int       `json:"panLength"` // 16 or 19
	Products  []Product `json:"products"`
	OTP       OTPPolicy `json:"otp"`
	Limits    Limits    `json:"limits"`
	StandIn   StandIn   `json:"standIn"`
	// Timeout is how long the switch waits for this issuer's answer.
	Timeout     Duration     `json:"timeout"`
	Cardholders []Cardholder `json:"cardholders"`
	// CrossBorder is the bank's rules for cards used abroad (none: every
	// card may pay in every accepting country, without a fee).
	CrossBorder CrossBorder `json:"crossBorder,omitzero"`
}

// Product is a card product with its art.
type Product struct {
	Code string `json:"code"`
	Name string `json:"name"`
	Art  string `json:"art"` // card art reference: a colour pair "#RRGGBB/#RRGGBB"
}

// OTPPolicy is how an issuer's SMS codes behave.
type OTPPolicy struct {
	Digits      int      `json:"digits"`
	TTL         Duration `json:"ttl"`
	MaxAttempts int      `json:"maxAttempts"`
	MaxResends  int      `json:"maxResends"`
	// AlwaysOTP makes every binding take the yellow path (SMS code).
	AlwaysOTP bool `json:"alwaysOtp"`
}

// Limits are the issuer's caps for binding and paying.
type Limits struct {
	CVN2MaxAttempts         int   `json:"cvn2MaxAttempts"`         // per card per day
	BindingsPerCardPerDay   int   `json:"bindingsPerCardPerDay"`   // tokenization requests
	BindingsPerDevicePerDay int   `json:"bindingsPerDevicePerDay"` // across cards
	PerTransactionMinor     int64 `json:"perTransactionMinor"`     // CNY fen
	DailyMinor              int64 `json:"dailyMinor"`
	VelocityPerHour         int   `json:"velocityPerHour"` // approvals per card per hour
}

// StandIn is what the switch may approve for this issuer when it does not answer.
type StandIn struct {
	Enabled  bool  `json:"enabled"`
	MaxMinor int64 `json:"maxMinor"`
}

// Cardholder is a demo card seeded into the issuer host on first start.
type Cardholder struct {
	PAN    string `json:"pan"`
	PSN    int    `json:"psn"`
	Expiry string `json:"expiry"` // YYMM
	CVN2   string `json:"cvn2,omitempty"`
	Name   string `json:"name"`
	Phone  string `json:"phone"` // bank-reserved mobile number, e.g. "13800138000"
	// BalanceMinor for debit, CreditLimitMinor for credit (CNY fen).
	BalanceMinor     int64  `json:"balanceMinor,omitempty"`
	CreditLimitMinor int64  `json:"creditLimitMinor,omitempty"`
	Status           string `json:"status,omitempty"` // "" or "active", "blocked", "lost"
	Product          string `json:"product,omitempty"`
	// Note says what this demo card shows; `mipay up` prints the cards that
	// have one, so a newcomer knows which card to bind for which path.
	Note string `json:"note,omitempty"`
}

// City is a transit agency: its e-purse card product, fares and rules
// (see city.go for the fare model and Validate's checks).
type City struct {
	ID   string `json:"id"`   // short code, e.g. "sz"
	Name string `json:"name"` // e.g. "Shenzhen"
	// Product is the card product name and Art its card art ("#RRGGBB/#RRGGBB").
	Product string `json:"product,omitempty"`
	Art     string `json:"art,omitempty"`
	// AID is the e-purse application identifier (hex, 5–16 bytes) the gate selects.
	AID string `json:"aid,omitempty"`
	// CardPrefix starts every card number this agency allocates (digits);
	// numbers are CardPrefix ‖ serial, CardDigits long in all.
	CardPrefix string `json:"cardPrefix,omitempty"`
	CardDigits int    `json:"cardDigits,omitempty"`
	// BusFareMinor is the flat bus fare (CNY fen).
	BusFareMinor int64 `json:"busFareMinor,omitempty"`
	// Metro fares by distance between entry and exit station.
	Stations  []Station  `json:"stations,omitempty"`
	FareBands []FareBand `json:"fareBands,omitempty"`
	// MinEntryBalanceMinor is the balance a card needs to enter the metro.
	MinEntryBalanceMinor int64 `json:"minEntryBalanceMinor,omitempty"`
	// IssueFeeMinor is what issuing a card costs; MaxBalanceMinor caps a load.
	IssueFeeMinor   int64 `json:"issueFeeMinor,omitempty"`
	MaxBalanceMinor int64 `json:"maxBalanceMinor,omitempty"`
	// TransfersPerYear bounds moves of one card between devices in 365 days
	// (0: no limit).
	TransfersPerYear int `json:"transfersPerYear,omitempty"`
}

// Station is a metro station; KM is its marker along the network, and the
// distance between two stations is the difference of their markers.
type Station struct {
	ID   string  `json:"id"`
	Name string  `json:"name"`
	KM   float64 `json:"km"`
}

// FareBand: trips up to UpToKM cost FareMinor (bands in increasing order;
// longer trips pay the last band).
type FareBand struct {
	UpToKM    float64 `json:"upToKm"`
	FareMinor int64   `json:"fareMinor"`
}

// Duration is a time.Duration written as "5m" in JSON.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"5m\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return &durationError{s: s, err: err}
	}
	*d = Duration(v)
	return nil
}

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// durationError is a duration string that does not parse; it keeps the string
// so that Load can point at it in the file.
type durationError struct {
	s   string
	err error
}

func (e *durationError) Error() string {
	return fmt.Sprintf("duration %q is not valid (write e.g. \"2s\" or \"5m\")", e.s)
}

func (e *durationError) Unwrap() error { return e.err }
