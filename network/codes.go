package network

import (
	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/tsp"
)

// Response codes (DE39) the network gives or passes on. This is the one table
// of DE39 in mipay: every decision the switch makes maps here.
const (
	RCApproved             = "00"
	RCDoNotHonor           = "05" // cryptogram failed, ATC replayed
	RCInvalidTxn           = "12"
	RCInvalidAmount        = "13" // the billing amount does not fit DE6
	RCInvalidCard          = "14" // unknown token or no issuer for the BIN
	RCOriginalNotFound     = "25" // reversal of an authorization the switch never saw
	RCFormatError          = "30"
	RCInsufficientFunds    = "51"
	RCExpiredCard          = "54"
	RCIncorrectPIN         = "55"
	RCNotPermitted         = "57" // outside the token's domain; card not for this country (issuer)
	RCNotPermittedTerminal = "58" // no UnionPay acceptance in the terminal's country (DE19)
	RCExceedsAmountLimit   = "61"
	RCRestrictedCard       = "62" // token not active: suspended, deleted, not yet activated
	RCCVMRequired          = "65" // above the no-CVM limit without CDCVM or PIN (soft decline)
	RCIssuerUnavailable    = "91"
	RCDuplicate            = "94"
	RCSystemError          = "96"
)

// ResponseText is each code's meaning, for logs, receipts and `mipay pos`.
var ResponseText = map[string]string{
	RCApproved: "approved", RCDoNotHonor: "do not honour", RCInvalidTxn: "invalid transaction",
	RCInvalidAmount: "invalid amount", RCInvalidCard: "invalid card number", RCOriginalNotFound: "unable to locate original transaction",
	RCFormatError: "format error", RCInsufficientFunds: "insufficient funds", RCExpiredCard: "expired card",
	RCIncorrectPIN: "incorrect PIN", RCNotPermitted: "transaction not permitted to cardholder",
	RCNotPermittedTerminal: "transaction not permitted to terminal",
	RCExceedsAmountLimit:   "exceeds amount limit", RCRestrictedCard: "restricted card",
	RCCVMRequired: "exceeds limit without cardholder verification", RCIssuerUnavailable: "issuer unavailable",
	RCDuplicate: "duplicate transmission", RCSystemError: "system malfunction",
}

// tokenDeclineCode maps a TSP decline reason to DE39.
func tokenDeclineCode(reason string) string {
	switch reason {
	case tsp.DeclineUnknownToken:
		return RCInvalidCard
	case tsp.DeclineTokenInactive, tsp.DeclineTokenSuspended, tsp.DeclineTokenDeactivated:
		return RCRestrictedCard
	case tsp.DeclineTokenExpired, tsp.DeclineExpiryMismatch:
		return RCExpiredCard
	case tsp.DeclineDomain:
		return RCNotPermitted
	case tsp.DeclineCryptogram, tsp.DeclineReplay:
		return RCDoNotHonor
	case tsp.DeclineCVMRequired:
		return RCCVMRequired
	default:
		return RCDoNotHonor
	}
}

// errorCode maps a failure (not a decision) to DE39.
func errorCode(err error) string {
	switch mipay.ErrorCode(err) {
	case mipay.EINVALID, mipay.ETOOLARGE:
		return RCFormatError
	case mipay.EUNAVAILABLE, mipay.ETIMEOUT:
		return RCIssuerUnavailable
	default:
		return RCSystemError
	}
}

// cryptogramResult is DE123's cryptogram validation result for a TSP verdict.
func cryptogramResult(r tsp.AuthResult) string {
	switch {
	case r.CryptogramValid:
		return "V"
	case r.Decline == tsp.DeclineReplay:
		return "R"
	default:
		return "I"
	}
}

// assuranceLevel is DE123's token assurance level (2 digits) for how the
// TSP's binding was authenticated: 01 the issuer approved it on its own risk
// checks (green path), 02 the cardholder also proved possession of the
// bank-registered phone (SMS code), 00 unknown.
func assuranceLevel(a string) string {
	switch a {
	case tsp.AssuranceIssuerApproved:
		return "01"
	case tsp.AssuranceOTP:
		return "02"
	default:
		return "00"
	}
}
