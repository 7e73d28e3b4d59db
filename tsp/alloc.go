package tsp

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"strings"
)

const (
	// DPANDigits is the length of every token: 16 digits, so the card keys
	// are derived with EMV option A like most UnionPay cards.
	DPANDigits = 16
	// PARBINController is the 4-character BIN controller identifier that
	// starts every PAR this TSP assigns (EMVCo PAR: 4 + 25 characters).
	PARBINController = "U001"
	// PARLength is the EMVCo payment account reference length.
	PARLength = 29

	tokenRefPrefix = "DTSP" // token unique reference: prefix + 32 hex
	panRefPrefix   = "FTSP" // PAN unique reference: prefix + 32 hex

	// Labels that separate the uses of the PAN HMAC key.
	hmacLabelLookup = "mipay tsp pan lookup v1\x00"
	hmacLabelPAR    = "mipay tsp par v1\x00"
	hmacLabelPANRef = "mipay tsp pan ref v1\x00"
	hmacLabelDPAN   = "mipay tsp pan lookup v1\x00" // a DPAN is hashed like a PAN, so "DPAN equals a PAN" is one lookup
)

// newDPAN draws a random Luhn-valid DPANDigits-long number in the token BIN
// range tokenBIN. Uniqueness and "never a PAN" are the caller's checks (the
// vault's unique index and PAN HMAC lookup).
func newDPAN(tokenBIN string) (string, error) {
	if !allDigits(tokenBIN) || len(tokenBIN) < 6 || len(tokenBIN) > DPANDigits-4 {
		return "", fmt.Errorf("tsp: token BIN %q must be 6 to %d digits", tokenBIN, DPANDigits-4)
	}
	n := DPANDigits - len(tokenBIN) - 1
	buf := make([]byte, n)
	if _, err := rand.Read(buf); err != nil {
		return "", fmt.Errorf("tsp: random DPAN: %w", err)
	}
	var sb strings.Builder
	sb.Grow(DPANDigits)
	sb.WriteString(tokenBIN)
	for _, b := range buf {
		// b%10 is slightly biased (256 is not a multiple of 10); a DPAN must
		// be unique, not secret, so the bias does not matter.
		sb.WriteByte('0' + b%10)
	}
	body := sb.String()
	return body + string(LuhnDigit(body)), nil
}

// newTokenRef returns a fresh token unique reference.
func newTokenRef() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("tsp: random token ref: %w", err)
	}
	return tokenRefPrefix + hex.EncodeToString(b[:]), nil
}

// parFromMAC turns HMAC(pan-hmac key, label‖PAN) into a PAR: the BIN
// controller id and 25 base32 characters. Being keyed, a PAR reveals nothing
// about the PAN; being derived, it is the same for every token of a PAN.
func parFromMAC(mac []byte) string {
	enc := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(mac)
	return PARBINController + enc[:PARLength-len(PARBINController)]
}

// panRefFromMAC turns HMAC(pan-hmac key, label‖PAN) into a PAN unique reference.
func panRefFromMAC(mac []byte) string {
	return panRefPrefix + hex.EncodeToString(mac[:16])
}

// validTokenRef reports whether s looks like a token unique reference (so a
// malformed path parameter never reaches the store).
func validTokenRef(s string) bool {
	if len(s) != len(tokenRefPrefix)+32 || !strings.HasPrefix(s, tokenRefPrefix) {
		return false
	}
	for i := len(tokenRefPrefix); i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
