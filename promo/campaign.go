// Package promo is the bank promotions engine the switch consults during an
// authorization (issue 8): banks define campaigns (who is eligible, what the
// benefit is, how much may be spent); for each payment the engine picks at
// most one campaign and reserves its budget and counters atomically in its
// own store, so a budget is never overspent, on one switch node or several
// sharing PostgreSQL. A reservation is released exactly once (decline,
// reversal, timeout) or confirmed (approval).
//
// Amounts are CNY fen (the billing currency's minor unit): campaigns apply to
// what the cardholder is billed.
package promo

import (
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/mipay-oss/mipay"
)

// Bounds.
const (
	MaxCampaignIDBytes  = 32 // DE124 tag 03
	MaxBINDigits        = 8
	MaxNameBytes        = 80
	MaxListEntries      = 256 // BIN ranges, MCCs, merchants, places per campaign
	MaxAmountMinor      = 999_999_999_999
	MaxPointsMultiplier = 100
	// DefaultMaxActiveCampaigns bounds the campaigns the engine evaluates.
	DefaultMaxActiveCampaigns = 10_000
)

// Currency is the one currency campaigns are defined in: CNY, the billing
// currency, by ISO 4217 alpha code.
const Currency = "CNY"

// Status of a campaign.
type Status string

// Statuses. Ended is final.
const (
	StatusActive Status = "active"
	StatusPaused Status = "paused"
	StatusEnded  Status = "ended"
)

// Channel restricts how the card is presented.
type Channel string

// Channels.
const (
	ChannelAny   Channel = ""      // any card: Mi Pay token or plain card
	ChannelMiPay Channel = "mipay" // Mi Pay tokens only
)

// BenefitKind is what the cardholder gets.
type BenefitKind string

// Benefit kinds.
const (
	BenefitFixed   BenefitKind = "fixed"   // AmountMinor off
	BenefitPercent BenefitKind = "percent" // PercentBP/100 % off, at most CapMinor
	BenefitRandom  BenefitKind = "random"  // uniformly MinMinor..MaxMinor off
	BenefitPoints  BenefitKind = "points"  // no discount; points × Multiplier
)

// Benefit is a campaign's benefit.
type Benefit struct {
	Kind        BenefitKind `json:"kind"`
	AmountMinor int64       `json:"amountMinor,omitempty"` // fixed
	PercentBP   int64       `json:"percentBp,omitempty"`   // percent, in basis points (1000 = 10 %)
	CapMinor    int64       `json:"capMinor,omitempty"`    // percent: the most off
	MinMinor    int64       `json:"minMinor,omitempty"`    // random
	MaxMinor    int64       `json:"maxMinor,omitempty"`    // random
	Multiplier  int64       `json:"multiplier,omitempty"`  // points: × the issuer's points per CNY
}

// BINRange is a PAN prefix range, inclusive, compared on the first
// len(Low) digits (6–MaxBINDigits: the engine never sees more of a PAN).
type BINRange struct {
	Low  string `json:"low"`
	High string `json:"high"`
}

// Window is when a campaign applies, in its time zone.
type Window struct {
	Start    time.Time      `json:"start"`              // inclusive
	End      time.Time      `json:"end"`                // exclusive
	Weekdays []time.Weekday `json:"weekdays,omitempty"` // none: every day
	FromHour int            `json:"fromHour,omitempty"` // local hour, inclusive
	ToHour   int            `json:"toHour,omitempty"`   // local hour, exclusive; 0 with FromHour 0: all day
	TimeZone string         `json:"timeZone,omitempty"` // IANA name; "" is Asia/Shanghai
}

// Eligibility says which payments qualify. Empty lists mean "any".
type Eligibility struct {
	IssuerIDs        []string   `json:"issuerIds,omitempty"`
	CardType         string     `json:"cardType,omitempty"` // "Debit", "Credit" or ""
	BINRanges        []BINRange `json:"binRanges,omitempty"`
	Products         []string   `json:"products,omitempty"`
	Channel          Channel    `json:"channel,omitempty"`
	MCCs             []string   `json:"mccs,omitempty"`
	MerchantIDs      []string   `json:"merchantIds,omitempty"`
	Countries        []string   `json:"countries,omitempty"` // ISO 3166 numeric (DE19)
	Cities           []string   `json:"cities,omitempty"`    // DE43 city, compared case-insensitively
	MinAmountMinor   int64      `json:"minAmountMinor,omitempty"`
	FirstPaymentOnly bool       `json:"firstPaymentOnly,omitempty"` // newly bound cards only
}

// Limits bound a campaign's use. Zero means unlimited, except BudgetMinor
// which is required for money benefits.
type Limits struct {
	PerCardPerDay  int64 `json:"perCardPerDay,omitempty"`
	PerCard        int64 `json:"perCard,omitempty"` // over the whole campaign
	PerAccount     int64 `json:"perAccount,omitempty"`
	MaxRedemptions int64 `json:"maxRedemptions,omitempty"`
	BudgetMinor    int64 `json:"budgetMinor,omitempty"`
}

// Campaign is one bank offer.
type Campaign struct {
	ID          string      `json:"id"`
	BankName    string      `json:"bankName"` // shown: "Saved 10.00 CNY with <bank> offer"
	IssuerID    string      `json:"issuerId"` // the bank that funds it
	Name        string      `json:"name"`
	Currency    string      `json:"currency"`
	Priority    int         `json:"priority,omitempty"`
	Eligibility Eligibility `json:"eligibility"`
	Benefit     Benefit     `json:"benefit"`
	Limits      Limits      `json:"limits"`
	Window      Window      `json:"window"`
	Status      Status      `json:"status,omitempty"`
}

var (
	idRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	digitRE = regexp.MustCompile(`^[0-9]+$`)
)

func invalid(format string, args ...any) error {
	return mipay.Errorf(mipay.EINVALID, "promo: "+format, args...)
}

// Validate checks a campaign definition; the error says which field.
func (c *Campaign) Validate() error {
	if len(c.ID) == 0 || len(c.ID) > MaxCampaignIDBytes || !idRE.MatchString(c.ID) {
		return invalid("id must be 1–%d of A-Z, a-z, 0-9, _ . -", MaxCampaignIDBytes)
	}
	if c.IssuerID == "" || len(c.IssuerID) > 64 {
		return invalid("issuerId is required")
	}
	if len(c.Name) > MaxNameBytes || len(c.BankName) > MaxNameBytes {
		return invalid("name and bankName are at most %d bytes", MaxNameBytes)
	}
	if c.Currency != Currency {
		return invalid("currency %q is not supported: campaigns are in %s", c.Currency, Currency)
	}
	switch c.Status {
	case "":
		c.Status = StatusActive
	case StatusActive, StatusPaused, StatusEnded:
	default:
		return invalid("status %q is unknown", c.Status)
	}
	if err := c.Benefit.validate(); err != nil {
		return err
	}
	if err := c.Eligibility.validate(); err != nil {
		return err
	}
	if err := c.Window.validate(); err != nil {
		return err
	}
	l := c.Limits
	for name, v := range map[string]int64{"perCardPerDay": l.PerCardPerDay, "perCard": l.PerCard, "perAccount": l.PerAccount,
		"maxRedemptions": l.MaxRedemptions, "budgetMinor": l.BudgetMinor} {
		if v < 0 || v > MaxAmountMinor {
			return invalid("limits.%s must be between 0 and %d", name, int64(MaxAmountMinor))
		}
	}
	if c.Benefit.Kind != BenefitPoints && l.BudgetMinor <= 0 {
		return invalid("limits.budgetMinor is required for a money benefit")
	}
	return nil
}

func (b Benefit) validate() error {
	for name, v := range map[string]int64{"amountMinor": b.AmountMinor, "percentBp": b.PercentBP, "capMinor": b.CapMinor,
		"minMinor": b.MinMinor, "maxMinor": b.MaxMinor, "multiplier": b.Multiplier} {
		if v < 0 || v > MaxAmountMinor {
			return invalid("benefit.%s must be between 0 and %d", name, int64(MaxAmountMinor))
		}
	}
	switch b.Kind {
	case BenefitFixed:
		if b.AmountMinor <= 0 {
			return invalid("benefit.amountMinor must be positive")
		}
	case BenefitPercent:
		if b.PercentBP <= 0 || b.PercentBP > 10000 {
			return invalid("benefit.percentBp must be 1–10000")
		}
		if b.CapMinor <= 0 {
			return invalid("benefit.capMinor must be positive")
		}
	case BenefitRandom:
		if b.MinMinor <= 0 || b.MaxMinor < b.MinMinor {
			return invalid("benefit: need 0 < minMinor <= maxMinor")
		}
	case BenefitPoints:
		if b.Multiplier < 2 || b.Multiplier > MaxPointsMultiplier {
			return invalid("benefit.multiplier must be 2–%d", MaxPointsMultiplier)
		}
	default:
		return invalid("benefit.kind %q is unknown", b.Kind)
	}
	return nil
}

func (e *Eligibility) validate() error {
	if len(e.IssuerIDs) > MaxListEntries || len(e.BINRanges) > MaxListEntries || len(e.Products) > MaxListEntries ||
		len(e.MCCs) > MaxListEntries || len(e.MerchantIDs) > MaxListEntries || len(e.Countries) > MaxListEntries ||
		len(e.Cities) > MaxListEntries {
		return invalid("eligibility lists hold at most %d entries", MaxListEntries)
	}
	switch e.CardType {
	case "", "Debit", "Credit":
	default:
		return invalid("eligibility.cardType %q is not Debit or Credit", e.CardType)
	}
	switch e.Channel {
	case ChannelAny, ChannelMiPay:
	default:
		return invalid("eligibility.channel %q is unknown", e.Channel)
	}
	for _, r := range e.BINRanges {
		if len(r.Low) < 6 || len(r.Low) > MaxBINDigits || len(r.High) != len(r.Low) || !digitRE.MatchString(r.Low) ||
			!digitRE.MatchString(r.High) || r.High < r.Low {
			return invalid("eligibility.binRanges: %q–%q is not a range of 6–%d digit prefixes", r.Low, r.High, MaxBINDigits)
		}
	}
	for _, m := range e.MCCs {
		if len(m) != 4 || !digitRE.MatchString(m) {
			return invalid("eligibility.mccs: %q is not 4 digits", m)
		}
	}
	for _, c := range e.Countries {
		if len(c) != 3 || !digitRE.MatchString(c) {
			return invalid("eligibility.countries: %q is not an ISO 3166 numeric code", c)
		}
	}
	if e.MinAmountMinor < 0 || e.MinAmountMinor > MaxAmountMinor {
		return invalid("eligibility.minAmountMinor must be between 0 and %d", int64(MaxAmountMinor))
	}
	return nil
}

func (w *Window) validate() error {
	if w.Start.IsZero() || w.End.IsZero() {
		return invalid("window.start and window.end are required")
	}
	if !w.End.After(w.Start) {
		return invalid("window.end must be after window.start")
	}
	if _, err := w.location(); err != nil {
		return invalid("window.timeZone %q is unknown", w.TimeZone)
	}
	if w.FromHour < 0 || w.FromHour > 23 || w.ToHour < 0 || w.ToHour > 24 {
		return invalid("window hours must be 0–23 (from) and 0–24 (to)")
	}
	if w.ToHour != 0 && w.ToHour <= w.FromHour {
		return invalid("window.toHour must be after window.fromHour")
	}
	if len(w.Weekdays) > 7 {
		return invalid("window.weekdays has more than 7 days")
	}
	for _, d := range w.Weekdays {
		if d < time.Sunday || d > time.Saturday {
			return invalid("window.weekdays: %d is not a weekday (0 = Sunday)", d)
		}
	}
	return nil
}

// DefaultTimeZone is the zone of campaigns that name none.
const DefaultTimeZone = "Asia/Shanghai"

func (w *Window) location() (*time.Location, error) {
	tz := w.TimeZone
	if tz == "" {
		tz = DefaultTimeZone
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, fmt.Errorf("promo: time zone %q: %w", tz, err)
	}
	return loc, nil
}

// open reports whether t is inside the window.
func (w *Window) open(t time.Time, loc *time.Location) bool {
	if t.Before(w.Start) || !t.Before(w.End) {
		return false
	}
	lt := t.In(loc)
	if len(w.Weekdays) > 0 && !slices.Contains(w.Weekdays, lt.Weekday()) {
		return false
	}
	if w.FromHour == 0 && w.ToHour == 0 {
		return true
	}
	to := w.ToHour
	if to == 0 {
		to = 24
	}
	return lt.Hour() >= w.FromHour && lt.Hour() < to
}

// SavingText is what the wallet shows for a payment with a discount:
// "Saved 10.00 CNY with ICBC offer" ("" without a discount).
func SavingText(bank string, discountMinor int64) string {
	if discountMinor <= 0 {
		return ""
	}
	if bank == "" {
		bank = "bank"
	}
	return fmt.Sprintf("Saved %d.%02d %s with %s offer", discountMinor/100, discountMinor%100, Currency, bank)
}
