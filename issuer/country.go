package issuer

import (
	"slices"

	"github.com/mipay-oss/mipay/config"
)

// Country rules: a bank may keep some card products for use in China only,
// block its cards in some countries, and charge a cross-border fee. The
// country is the terminal's (DE19); a message without DE19 is domestic.

// abroad reports whether a transaction in country is cross-border.
func abroad(country string) bool {
	return country != "" && country != config.DomesticCountry
}

// countryRule decides whether the card may pay in country: 57 for a
// domestic-only product abroad or a country the bank blocks.
func countryRule(bank *config.Issuer, card *Card, country string) ResponseCode {
	if !abroad(country) {
		return RCApproved
	}
	cb := &bank.CrossBorder
	if slices.Contains(cb.DomesticOnlyProducts, card.Product) || slices.Contains(cb.BlockedCountries, country) {
		return RCNotPermitted
	}
	return RCApproved
}

// crossBorderFee is the bank's fee on a billing amount spent abroad, in
// fen, rounded half up: billing × bp / 10000.
func crossBorderFee(bank *config.Issuer, billingMinor int64, country string) int64 {
	bp := bank.CrossBorder.FeeBasisPoints
	if !abroad(country) || bp <= 0 || billingMinor <= 0 {
		return 0
	}
	// billing ≤ 10^12 and bp ≤ 1000: the product stays under 2^63.
	return (billingMinor*bp + 5000) / 10000
}
