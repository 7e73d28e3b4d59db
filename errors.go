// Package mipay holds the domain vocabulary shared by every party: the one error
// type and its codes. Transports map codes to their own status in one place
// (httpx for HTTP status, network for ISO 8583 DE39).
package mipay

import (
	"errors"
	"fmt"
)

// Error codes. They are stable strings: they appear in JSON errors
// ({"error":{"code":…,"message":…}}) and clients may switch on them.
const (
	ECONFLICT     = "conflict"     // state does not allow the action (already exists, wrong state)
	EINTERNAL     = "internal"     // a bug or an unexpected failure; details only in logs
	EINVALID      = "invalid"      // bad input: the message says which field and why
	ENOTFOUND     = "not_found"    // no such thing, or not this account's
	EUNAUTHORIZED = "unauthorized" // no or bad credentials
	EFORBIDDEN    = "forbidden"    // authenticated but not allowed
	ELIMIT        = "limit"        // a bound was reached (8 cards, attempts, rate)
	ELOCKED       = "locked"       // too many failures; locked for a while
	EUNAVAILABLE  = "unavailable"  // a dependency is down; retry later
	EDECLINED     = "declined"     // a business decision said no (bank, risk)
	ETOOLARGE     = "too_large"    // body or field over its bound
	ETIMEOUT      = "timeout"      // a deadline passed
)

// Error is the one error type of mipay. Message is safe to show to a user: it
// never carries a PAN, CVN2, OTP or key. Reason optionally carries a
// machine-readable sub-code (e.g. a decline reason or an ISO 8583 DE39).
type Error struct {
	Code    string
	Message string
	Reason  string
	Err     error // wrapped cause; never shown to clients
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// WrapError returns an *Error with code and message that wraps cause.
func WrapError(code string, cause error, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Err: cause}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL for
// any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the user-safe message of the first *Error in err's
// chain, or a generic text for other errors (their text may hold internals).
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// ErrorReason returns the Reason of the first *Error in err's chain.
func ErrorReason(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}
