package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Bounds of the reference data that Validate enforces.
const (
	MinBINDigits    = 4
	MaxBINDigits    = 9
	MinPANLength    = 13
	MaxPANLength    = 19
	MaxIssuers      = 1000
	MaxCardholders  = 10000 // per issuer
	MinOTPDigits    = 4
	MaxOTPDigits    = 8
	tokenRequestorN = 11
)

var (
	artPattern   = regexp.MustCompile(`^#[0-9A-Fa-f]{6}/#[0-9A-Fa-f]{6}$`)
	phonePattern = regexp.MustCompile(`^1[0-9]{10}$`)
	idPattern    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
)

// Validate checks the reference data as a whole and returns the first problem
// found, naming the issuer (and card, masked) it concerns: unique ids, no
// overlapping BIN ranges, token BINs apart from every PAN BIN, Luhn-valid
// demo PANs under their issuer's BINs, positive limits.
func (r *Reference) Validate() error {
	if r.NoCVMLimitMinor <= 0 {
		return fmt.Errorf("noCvmLimitMinor must be positive (CNY fen, e.g. 100000 for 1000 CNY)")
	}
	if r.MaxCardsPerDevice < 0 || r.MaxCardsPerDevice > MaxCardsPerDeviceLimit {
		return fmt.Errorf("maxCardsPerDevice must be 0 (the default, %d) to %d", DefaultMaxCardsPerDevice, MaxCardsPerDeviceLimit)
	}
	if len(r.TokenRequestors) == 0 {
		return fmt.Errorf("tokenRequestors: at least one is needed (Mi Pay)")
	}
	seenTR := map[string]bool{}
	for _, tr := range r.TokenRequestors {
		if len(tr.ID) != tokenRequestorN || !allDigits(tr.ID) {
			return fmt.Errorf("token requestor %q: id must be %d digits", tr.ID, tokenRequestorN)
		}
		if seenTR[tr.ID] {
			return fmt.Errorf("token requestor %q: duplicate id", tr.ID)
		}
		seenTR[tr.ID] = true
		if strings.TrimSpace(tr.Name) == "" {
			return fmt.Errorf("token requestor %q: name is empty", tr.ID)
		}
	}
	if len(r.Issuers) == 0 {
		return fmt.Errorf("issuers: at least one is needed")
	}
	if len(r.Issuers) > MaxIssuers {
		return fmt.Errorf("issuers: %d is more than the maximum %d", len(r.Issuers), MaxIssuers)
	}
	ids := map[string]bool{}
	for i := range r.Issuers {
		is := &r.Issuers[i]
		if !idPattern.MatchString(is.ID) {
			return fmt.Errorf("issuer #%d: id %q must be lower-case letters, digits and dashes", i+1, is.ID)
		}
		if ids[is.ID] {
			return fmt.Errorf("issuer %q: duplicate id", is.ID)
		}
		ids[is.ID] = true
		if err := is.validate(); err != nil {
			return fmt.Errorf("issuer %q: %w", is.ID, err)
		}
	}
	if err := r.validateRanges(); err != nil {
		return err
	}
	pans := map[string]string{}
	for i := range r.Issuers {
		for _, c := range r.Issuers[i].Cardholders {
			if other, dup := pans[c.PAN]; dup {
				return fmt.Errorf("issuer %q: card %s is also a card of issuer %q", r.Issuers[i].ID, MaskPAN(c.PAN), other)
			}
			pans[c.PAN] = r.Issuers[i].ID
		}
	}
	cities := map[string]bool{}
	for _, c := range r.Cities {
		if !idPattern.MatchString(c.ID) {
			return fmt.Errorf("city %q: id must be lower-case letters, digits and dashes", c.ID)
		}
		if cities[c.ID] {
			return fmt.Errorf("city %q: duplicate id", c.ID)
		}
		cities[c.ID] = true
		if err := c.validate(); err != nil {
			return fmt.Errorf("city %q: %w", c.ID, err)
		}
	}
	return nil
}

// binRange is one BIN of one issuer, for the overlap check.
type binRange struct {
	prefix, issuer string
	token          bool
}

func (b binRange) String() string {
	kind := "BIN"
	if b.token {
		kind = "token BIN"
	}
	return fmt.Sprintf("%s %s of issuer %q", kind, b.prefix, b.issuer)
}

// validateRanges refuses any two ranges (PAN or token BINs, of any issuers)
// where one is a prefix of the other: a number would belong to both.
func (r *Reference) validateRanges() error {
	var all []binRange
	for _, is := range r.Issuers {
		for _, b := range is.BINs {
			all = append(all, binRange{b, is.ID, false})
		}
		for _, b := range is.TokenBINs {
			all = append(all, binRange{b, is.ID, true})
		}
	}
	for i := range all {
		for j := i + 1; j < len(all); j++ {
			a, b := all[i], all[j]
			if strings.HasPrefix(a.prefix, b.prefix) || strings.HasPrefix(b.prefix, a.prefix) {
				return fmt.Errorf("%s overlaps %s: BIN ranges must not share numbers", a, b)
			}
		}
	}
	return nil
}

func (is *Issuer) validate() error {
	if strings.TrimSpace(is.Bank) == "" || strings.TrimSpace(is.BankCode) == "" {
		return fmt.Errorf("bank and bankCode must be set")
	}
	if is.CardType != Debit && is.CardType != Credit {
		return fmt.Errorf("cardType %q must be %q or %q", is.CardType, Debit, Credit)
	}
	if is.PANLength < MinPANLength || is.PANLength > MaxPANLength {
		return fmt.Errorf("panLength %d must be %d–%d", is.PANLength, MinPANLength, MaxPANLength)
	}
	if len(is.BINs) == 0 || len(is.TokenBINs) == 0 {
		return fmt.Errorf("bins and tokenBins must each hold at least one BIN")
	}
	for _, b := range append(append([]string{}, is.BINs...), is.TokenBINs...) {
		if !allDigits(b) || len(b) < MinBINDigits || len(b) > MaxBINDigits || len(b) >= is.PANLength {
			return fmt.Errorf("BIN %q must be %d–%d digits and shorter than the PAN", b, MinBINDigits, MaxBINDigits)
		}
	}
	if len(is.Products) == 0 {
		return fmt.Errorf("products: at least one is needed")
	}
	codes := map[string]bool{}
	for _, p := range is.Products {
		if p.Code == "" || codes[p.Code] {
			return fmt.Errorf("product %q: code must be set and unique", p.Code)
		}
		codes[p.Code] = true
		if strings.TrimSpace(p.Name) == "" {
			return fmt.Errorf("product %q: name is empty", p.Code)
		}
		if !artPattern.MatchString(p.Art) {
			return fmt.Errorf("product %q: art %q must be two colours, \"#RRGGBB/#RRGGBB\"", p.Code, p.Art)
		}
	}
	if err := is.OTP.validate(); err != nil {
		return fmt.Errorf("otp: %w", err)
	}
	if err := is.Limits.validate(); err != nil {
		return fmt.Errorf("limits: %w", err)
	}
	if is.StandIn.MaxMinor < 0 || (is.StandIn.Enabled && is.StandIn.MaxMinor == 0) {
		return fmt.Errorf("standIn: maxMinor must be positive when stand-in is enabled")
	}
	if is.Timeout <= 0 {
		return fmt.Errorf("timeout must be positive (e.g. \"2s\")")
	}
	if err := is.CrossBorder.validate(codes); err != nil {
		return fmt.Errorf("crossBorder: %w", err)
	}
	if len(is.Cardholders) > MaxCardholders {
		return fmt.Errorf("cardholders: %d is more than the maximum %d", len(is.Cardholders), MaxCardholders)
	}
	for i := range is.Cardholders {
		if err := is.validateCardholder(&is.Cardholders[i], codes); err != nil {
			return fmt.Errorf("cardholder #%d (%s): %w", i+1, MaskPAN(is.Cardholders[i].PAN), err)
		}
	}
	return nil
}

func (p OTPPolicy) validate() error {
	switch {
	case p.Digits < MinOTPDigits || p.Digits > MaxOTPDigits:
		return fmt.Errorf("digits %d must be %d–%d", p.Digits, MinOTPDigits, MaxOTPDigits)
	case p.TTL <= 0:
		return fmt.Errorf("ttl must be positive (e.g. \"5m\")")
	case p.MaxAttempts <= 0:
		return fmt.Errorf("maxAttempts must be positive")
	case p.MaxResends < 0:
		return fmt.Errorf("maxResends must not be negative")
	}
	return nil
}

func (l Limits) validate() error {
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"cvn2MaxAttempts", int64(l.CVN2MaxAttempts)},
		{"bindingsPerCardPerDay", int64(l.BindingsPerCardPerDay)},
		{"bindingsPerDevicePerDay", int64(l.BindingsPerDevicePerDay)},
		{"perTransactionMinor", l.PerTransactionMinor},
		{"dailyMinor", l.DailyMinor},
		{"velocityPerHour", int64(l.VelocityPerHour)},
	} {
		if f.v <= 0 {
			return fmt.Errorf("%s must be positive", f.name)
		}
	}
	if l.PerTransactionMinor > l.DailyMinor {
		return fmt.Errorf("perTransactionMinor must not exceed dailyMinor")
	}
	return nil
}

func (is *Issuer) validateCardholder(c *Cardholder, products map[string]bool) error {
	if len(c.PAN) != is.PANLength || !allDigits(c.PAN) {
		return fmt.Errorf("PAN must be %d digits", is.PANLength)
	}
	if !LuhnValid(c.PAN) {
		return fmt.Errorf("PAN fails the Luhn check")
	}
	under := false
	for _, b := range is.BINs {
		under = under || strings.HasPrefix(c.PAN, b)
	}
	if !under {
		return fmt.Errorf("PAN is not under any of the issuer's BINs %v", is.BINs)
	}
	if c.PSN < 0 || c.PSN > 99 {
		return fmt.Errorf("psn %d must be 0–99", c.PSN)
	}
	if !validExpiry(c.Expiry) {
		return fmt.Errorf("expiry %q must be YYMM", c.Expiry)
	}
	switch {
	case is.CardType == Credit && (len(c.CVN2) != 3 || !allDigits(c.CVN2)):
		return fmt.Errorf("a credit card needs a 3-digit cvn2")
	case c.CVN2 != "" && (len(c.CVN2) != 3 || !allDigits(c.CVN2)):
		return fmt.Errorf("cvn2 must be 3 digits")
	}
	if strings.TrimSpace(c.Name) == "" {
		return fmt.Errorf("name is empty")
	}
	if !phonePattern.MatchString(c.Phone) {
		return fmt.Errorf("phone %q must be an 11-digit mobile number", c.Phone)
	}
	if c.BalanceMinor < 0 || c.CreditLimitMinor < 0 {
		return fmt.Errorf("balanceMinor and creditLimitMinor must not be negative")
	}
	if is.CardType == Credit && c.CreditLimitMinor == 0 {
		return fmt.Errorf("a credit card needs a creditLimitMinor")
	}
	switch c.Status {
	case "", "active", "blocked", "lost":
	default:
		return fmt.Errorf("status %q must be active, blocked or lost", c.Status)
	}
	if c.Product != "" && !products[c.Product] {
		return fmt.Errorf("product %q is not a product of the issuer", c.Product)
	}
	return nil
}

func validExpiry(s string) bool {
	if len(s) != 4 || !allDigits(s) {
		return false
	}
	m, _ := strconv.Atoi(s[2:])
	return m >= 1 && m <= 12
}
