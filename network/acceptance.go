package network

import (
	"errors"
	"fmt"
	"time"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/iso8583"
)

// billing is the cross-border part of one authorization: where the
// terminal is, and the cardholder billing amount the switch computed.
type billing struct {
	Country     string // DE19 (the domestic country when absent)
	AmountMinor int64  // DE6, CNY fen
	Rate        Rate   // DE10
	Version     int64  // rate table version
}

// decline is a decision of the switch before any party is asked: its DE39
// and the reason logged (never shown with a PAN).
type decline struct {
	rc     string
	reason string
}

// crossBorder checks that the terminal's country accepts UnionPay and, for
// a transaction currency other than CNY, converts DE4 to the billing
// amount at the rate in effect at the switch's time.
//
// Declines: a country without acceptance 58; an unknown currency 12; no
// rate in effect, or only a stale one, 91 (the network cannot price the
// payment; the acquirer may retry once rates are published); an amount
// whose billing amount exceeds 12 digits 13.
func (s *Switch) crossBorder(req *iso8583.Message, at time.Time) (*billing, *decline) {
	b := &billing{Country: req.String(iso8583.FieldAcquirerCountry)}
	if b.Country == "" {
		b.Country = config.DomesticCountry
	}
	if _, ok := config.AcceptanceCountry(b.Country); !ok {
		return nil, &decline{RCNotPermittedTerminal, "no UnionPay acceptance in country " + b.Country}
	}
	currency := req.String(iso8583.FieldCurrency)
	if currency == config.BillingCurrency {
		return b, nil
	}
	cur, ok := config.CurrencyByNumeric(currency)
	if !ok {
		return nil, &decline{RCInvalidTxn, "unknown currency " + currency + " (not in the network's ISO 4217 table)"}
	}
	rate, version, err := s.rates.Lookup(currency, at)
	if err != nil {
		return nil, &decline{RCIssuerUnavailable, fmt.Sprintf("no usable exchange rate for %s: %v", cur.Code, err)}
	}
	amount, err := iso8583.ParseAmount(req.String(iso8583.FieldAmount))
	if err != nil {
		return nil, &decline{RCFormatError, "amount: " + err.Error()}
	}
	billed, err := Convert(amount, cur.MinorUnits, rate)
	if errors.Is(err, ErrAmountRange) || (err == nil && billed == 0 && amount > 0) {
		return nil, &decline{RCInvalidAmount, fmt.Sprintf("%d %s does not convert to a billing amount", amount, cur.Code)}
	}
	if err != nil {
		return nil, &decline{RCSystemError, err.Error()}
	}
	b.AmountMinor, b.Rate, b.Version = billed, rate, version
	return b, nil
}

// converted reports whether a conversion happened.
func (b *billing) converted() bool { return b != nil && b.Rate.Mantissa != 0 }

// setBilling puts DE6, DE10 and DE51 on a message.
func setBilling(m *iso8583.Message, b *billing) error {
	amt, err := iso8583.FormatAmount(b.AmountMinor)
	if err != nil {
		return err
	}
	m.SetString(iso8583.FieldBillingAmount, amt)
	m.SetString(iso8583.FieldBillingRate, b.Rate.DE10())
	m.SetString(iso8583.FieldBillingCurrency, config.BillingCurrency)
	return nil
}
