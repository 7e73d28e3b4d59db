package tsp

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/mipay-oss/mipay"
)

// CardData is what the phone encrypts to the TSP's box key: the JSON object
// {pan, expiry, cvn2, name, phone}. It only lives in memory during a
// tokenization; CVN2 goes to the issuer and nowhere else.
type CardData struct {
	PAN    string `json:"pan"`
	Expiry string `json:"expiry"` // YYMM
	CVN2   string `json:"cvn2,omitempty"`
	Name   string `json:"name,omitempty"`
	Phone  string `json:"phone,omitempty"` // the bank-reserved mobile number
}

// String never shows the PAN or CVN2 (a CardData printed by mistake is safe).
func (c CardData) String() string {
	return "CardData{pan:" + MaskPAN(c.PAN) + "}"
}

// GoString keeps %#v as safe as %v.
func (c CardData) GoString() string { return c.String() }

const (
	minPANDigits  = 13
	maxPANDigits  = 19
	maxPhoneBytes = 20
)

// ParseCardData decodes and validates decrypted card data. Errors are
// *mipay.Error EINVALID naming the field, never echoing its value.
func ParseCardData(b []byte) (CardData, error) {
	var c CardData
	if len(b) > maxCardDataBytes {
		return c, mipay.Errorf(mipay.ETOOLARGE, "card data is too large")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return CardData{}, mipay.Errorf(mipay.EINVALID, "card data is not a valid JSON object {pan, expiry, cvn2, name, phone}")
	}
	if dec.More() {
		return CardData{}, mipay.Errorf(mipay.EINVALID, "card data has trailing data")
	}
	c.PAN = strings.TrimSpace(c.PAN)
	c.Expiry = strings.TrimSpace(c.Expiry)
	c.CVN2 = strings.TrimSpace(c.CVN2)
	c.Phone = strings.TrimSpace(c.Phone)
	c.Name = strings.TrimSpace(c.Name)
	if err := c.Validate(); err != nil {
		return CardData{}, err
	}
	return c, nil
}

// Validate checks the fields' formats (the issuer checks their values).
func (c CardData) Validate() error {
	if c.PAN == "" {
		return mipay.Errorf(mipay.EINVALID, "card number is required")
	}
	if !allDigits(c.PAN) || len(c.PAN) < minPANDigits || len(c.PAN) > maxPANDigits {
		return mipay.Errorf(mipay.EINVALID, "card number must be %d to %d digits", minPANDigits, maxPANDigits)
	}
	if !LuhnValid(c.PAN) {
		return &mipay.Error{Code: mipay.EINVALID, Reason: "LUHN", Message: "card number is not valid: please check the digits"}
	}
	if !validExpiry(c.Expiry) {
		return mipay.Errorf(mipay.EINVALID, "expiry must be YYMM (e.g. 2912)")
	}
	if c.CVN2 != "" && (len(c.CVN2) != 3 || !allDigits(c.CVN2)) {
		return mipay.Errorf(mipay.EINVALID, "CVN2 must be 3 digits")
	}
	if len(c.Name) > maxNameBytes {
		return mipay.Errorf(mipay.ETOOLARGE, "name must be at most %d bytes", maxNameBytes)
	}
	p := strings.TrimPrefix(c.Phone, "+")
	if p != "" && (len(p) < 5 || len(p) > maxPhoneBytes || !allDigits(p)) {
		return mipay.Errorf(mipay.EINVALID, "phone must be 5 to %d digits", maxPhoneBytes)
	}
	return nil
}

func validExpiry(s string) bool {
	if len(s) != 4 || !allDigits(s) {
		return false
	}
	m := int(s[2]-'0')*10 + int(s[3]-'0')
	return m >= 1 && m <= 12
}

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

// LuhnValid reports whether a digit string passes the Luhn (mod 10) check.
func LuhnValid(s string) bool {
	if len(s) < 2 || !allDigits(s) {
		return false
	}
	return luhnSum(s, false)%10 == 0
}

// LuhnDigit returns the check digit to append to the digit string s.
func LuhnDigit(s string) byte {
	sum := luhnSum(s, true)
	return byte('0' + (10-sum%10)%10)
}

// luhnSum sums s from the right, doubling every second digit; withCheck says
// s lacks its check digit (so the rightmost digit is doubled).
func luhnSum(s string, withCheck bool) int {
	sum := 0
	double := withCheck
	for i := len(s) - 1; i >= 0; i-- {
		d := int(s[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum
}

// MaskPAN shows at most the first 6 and last 4 digits.
func MaskPAN(pan string) string {
	if len(pan) < 11 {
		return strings.Repeat("*", len(pan))
	}
	return pan[:6] + strings.Repeat("*", len(pan)-10) + pan[len(pan)-4:]
}

func last4(s string) string {
	if len(s) < 4 {
		return s
	}
	return s[len(s)-4:]
}
