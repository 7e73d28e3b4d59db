package issuer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
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

// Ledger of cross-border fees: the fee is part of the card's hold (so the
// cardholder's available balance shows it) and is booked, per approval, to
// the bank's fee account against its fee income. A reversal books the
// opposite entry. Both entries sum to zero.
const (
	kindFee       = "FEE"
	kindFeeRev    = "FEE_REV"
	feeEntryPfx   = "fee/"
	feeRevPfx     = "rev-fee/"
	feeAccountFmt = "bank/%s/cross-border-fees"
	feeIncomeFmt  = "bank/%s/fee-income"
)

func feeAccount(issuerID string) string { return fmt.Sprintf(feeAccountFmt, issuerID) }
func feeIncome(issuerID string) string  { return fmt.Sprintf(feeIncomeFmt, issuerID) }

// writeFees books the fee of each approved job that has one.
func writeFees(ctx context.Context, tx *sql.Tx, jobs []*authJob) error {
	for _, j := range jobs {
		rec := j.rec
		if rec.fee <= 0 {
			continue
		}
		if err := postPair(ctx, tx, feeEntryPfx+rec.id, rec.issuerID, kindFee, rec.id,
			feeAccount(rec.issuerID), feeIncome(rec.issuerID), rec.fee, j.ms); err != nil {
			return fmt.Errorf("book cross-border fee: %w", err)
		}
	}
	return nil
}

// reverseFee books the opposite of an authorization's fee entry, if it had
// one (read from the store: a record loaded after a restart has no fee in
// memory).
func reverseFee(ctx context.Context, tx *sql.Tx, authID string, ms int64) error {
	var issuerID string
	var fee int64
	err := tx.QueryRowContext(ctx, `SELECT issuer_id, amount_minor FROM postings WHERE entry_id = $1 AND leg = 1`,
		feeEntryPfx+authID).Scan(&issuerID, &fee)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	return postPair(ctx, tx, feeRevPfx+authID, issuerID, kindFeeRev, authID, feeIncome(issuerID), feeAccount(issuerID), fee, ms)
}
