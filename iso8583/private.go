package iso8583

import (
	"strconv"
	"strings"
)

// Private fields DE123 (token data) and DE124 (promotion) are LLLVAR text
// made of sub-elements, each a 2-digit tag, a 3-digit length and the value:
//
//	01016622155000000012340211400000000010301…
//	└tag└len└value──────────┘
//
// Sub-elements appear in tag order; unknown tags are skipped on decode (so a
// newer sender may add some), a repeated tag is refused.

// SubElement describes one sub-element of a private field.
type SubElement struct {
	Tag       string // 2 digits
	Name      string
	MaxBytes  int
	Sensitive bool // masked by Describe
}

// TokenDataElements is the layout of DE123, carried between network and
// issuer after de-tokenization (the issuer sees the PAN in DE2 and the token
// here).
var TokenDataElements = []SubElement{
	{Tag: "01", Name: "Token", MaxBytes: 19, Sensitive: true},
	{Tag: "02", Name: "Token Requestor ID", MaxBytes: 11},
	{Tag: "03", Name: "Token Assurance Level", MaxBytes: 2},
	{Tag: "04", Name: "Cryptogram Validation Result", MaxBytes: 1},
	{Tag: "05", Name: "Token Expiry", MaxBytes: 4},
}

// PromotionElements is the layout of DE124 (filled by the promotions engine,
// issue 8): the amount before the discount, the discount, and the campaign.
var PromotionElements = []SubElement{
	{Tag: "01", Name: "Original Amount", MaxBytes: 12},
	{Tag: "02", Name: "Discount Amount", MaxBytes: 12},
	{Tag: "03", Name: "Campaign ID", MaxBytes: 32},
	{Tag: "04", Name: "Points", MaxBytes: 12},
	// In the issuer's 0210 only: what the approval earned and the card's
	// points balance after it (the network tells the wallet, not the POS).
	{Tag: "05", Name: "Points Earned", MaxBytes: 12},
	{Tag: "06", Name: "Points Balance", MaxBytes: 12},
}

// Cryptogram validation results (DE123 tag 04), set by the network after the
// TSP checked the ARQC.
const (
	CryptogramValid      = "V" // ARQC verified, ATC fresh
	CryptogramInvalid    = "I" // ARQC did not verify
	CryptogramReplay     = "R" // ATC not above the highest accepted one
	CryptogramNotPresent = "N" // no ARQC in the message
)

// TokenData is DE123.
type TokenData struct {
	Token            string
	RequestorID      string
	AssuranceLevel   string
	CryptogramResult string
	TokenExpiry      string // YYMM
}

// Encode returns the DE123 text.
func (t TokenData) Encode() (string, error) {
	return encodeSubElements(FieldTokenData, TokenDataElements, []string{t.Token, t.RequestorID, t.AssuranceLevel, t.CryptogramResult, t.TokenExpiry})
}

// ParseTokenData decodes DE123.
func ParseTokenData(s string) (TokenData, error) {
	v, err := decodeSubElements(FieldTokenData, TokenDataElements, s)
	if err != nil {
		return TokenData{}, err
	}
	return TokenData{Token: v[0], RequestorID: v[1], AssuranceLevel: v[2], CryptogramResult: v[3], TokenExpiry: v[4]}, nil
}

// Promotion is DE124. Amounts are 12-digit minor units like DE4.
type Promotion struct {
	OriginalAmount string
	DiscountAmount string
	CampaignID     string
	Points         string // multiplier
	PointsEarned   string // issuer's answer only
	PointsBalance  string // issuer's answer only
}

// Encode returns the DE124 text.
func (p Promotion) Encode() (string, error) {
	return encodeSubElements(FieldPromotion, PromotionElements, []string{p.OriginalAmount, p.DiscountAmount, p.CampaignID, p.Points, p.PointsEarned, p.PointsBalance})
}

// ParsePromotion decodes DE124.
func ParsePromotion(s string) (Promotion, error) {
	v, err := decodeSubElements(FieldPromotion, PromotionElements, s)
	if err != nil {
		return Promotion{}, err
	}
	return Promotion{OriginalAmount: v[0], DiscountAmount: v[1], CampaignID: v[2], Points: v[3], PointsEarned: v[4], PointsBalance: v[5]}, nil
}

func encodeSubElements(field int, elems []SubElement, values []string) (string, error) {
	var b strings.Builder
	for i, e := range elems {
		v := values[i]
		if v == "" {
			continue
		}
		path := fieldName(field) + "." + e.Tag
		if len(v) > e.MaxBytes {
			return "", &FieldError{Field: path, Reason: "length " + strconv.Itoa(len(v)) + " exceeds max " + strconv.Itoa(e.MaxBytes)}
		}
		for j := 0; j < len(v); j++ {
			if v[j] < 0x20 || v[j] > 0x7E {
				return "", &FieldError{Field: path, Reason: "not printable ASCII"}
			}
		}
		b.WriteString(e.Tag)
		b.Write(appendDigits(nil, len(v), 3))
		b.WriteString(v)
	}
	if b.Len() > MaxLLLBytes {
		return "", fieldErr(field, "length "+strconv.Itoa(b.Len())+" exceeds max "+strconv.Itoa(MaxLLLBytes))
	}
	return b.String(), nil
}

// decodeSubElements walks s; every length is checked against what is left
// before slicing.
func decodeSubElements(field int, elems []SubElement, s string) ([]string, error) {
	out := make([]string, len(elems))
	seen := make([]bool, len(elems))
	for pos := 0; pos < len(s); {
		if len(s)-pos < 5 {
			return nil, fieldErr(field, "truncated sub-element at offset "+strconv.Itoa(pos))
		}
		tag := s[pos : pos+2]
		l, ok := atoiSmall([]byte(s[pos+2 : pos+5]))
		if !ok || l < 0 || s[pos+2] == '+' || s[pos+2] == '-' {
			return nil, &FieldError{Field: fieldName(field) + "." + safeTag(tag), Reason: "length is not 3 digits"}
		}
		pos += 5
		if l > len(s)-pos {
			return nil, &FieldError{Field: fieldName(field) + "." + safeTag(tag), Reason: "length " + strconv.Itoa(l) + " exceeds the " + strconv.Itoa(len(s)-pos) + " bytes left"}
		}
		v := s[pos : pos+l]
		pos += l
		for i, e := range elems {
			if e.Tag != tag {
				continue
			}
			if seen[i] {
				return nil, &FieldError{Field: fieldName(field) + "." + tag, Reason: "appears twice"}
			}
			if l > e.MaxBytes {
				return nil, &FieldError{Field: fieldName(field) + "." + tag, Reason: "length " + strconv.Itoa(l) + " exceeds max " + strconv.Itoa(e.MaxBytes)}
			}
			seen[i] = true
			out[i] = v
		}
	}
	return out, nil
}

// safeTag keeps a garbage tag out of an error message unless it is digits.
func safeTag(tag string) string {
	for i := 0; i < len(tag); i++ {
		if tag[i] < '0' || tag[i] > '9' {
			return "??"
		}
	}
	return tag
}

// FormatAmount formats minor units as the 12-digit text of DE4/DE6/DE95.
func FormatAmount(minor int64) (string, error) {
	if minor < 0 || minor > 999_999_999_999 {
		return "", &FieldError{Field: "amount", Reason: "outside 0..999999999999"}
	}
	return string(appendDigits(make([]byte, 0, 12), int(minor), 12)), nil
}

// ParseAmount parses a 12-digit amount field.
func ParseAmount(s string) (int64, error) {
	if len(s) != 12 {
		return 0, &FieldError{Field: "amount", Reason: "not 12 digits"}
	}
	var v int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, &FieldError{Field: "amount", Reason: "not 12 digits"}
		}
		v = v*10 + int64(s[i]-'0')
	}
	return v, nil
}

// FormatSTAN formats a trace number (mod 1,000,000) as DE11.
func FormatSTAN(n uint32) string {
	return string(appendDigits(make([]byte, 0, 6), int(n%1_000_000), 6))
}

// OriginalData is DE90 of a reversal: the original message's MTI, STAN,
// transmission date and time (DE7), acquirer (DE32) and forwarding
// institution, the last two right-justified with zeros to 11 digits.
type OriginalData struct {
	MTI              string
	STAN             string
	TransmissionTime string
	AcquirerID       string
	ForwardingID     string
}

// Format returns the 42-character DE90.
func (o OriginalData) Format() (string, error) {
	parts := []struct {
		name string
		v    string
		n    int
		pad  bool
	}{{"MTI", o.MTI, 4, false}, {"STAN", o.STAN, 6, false}, {"transmission time", o.TransmissionTime, 10, false}, {"acquirer", o.AcquirerID, 11, true}, {"forwarding institution", o.ForwardingID, 11, true}}
	b := make([]byte, 0, 42)
	for _, p := range parts {
		if len(p.v) > p.n || (!p.pad && len(p.v) != p.n) {
			return "", &FieldError{Field: "field 90", Reason: p.name + " must be " + strconv.Itoa(p.n) + " digits"}
		}
		for range p.n - len(p.v) {
			b = append(b, '0')
		}
		b = append(b, p.v...)
	}
	return string(b), nil
}

// ParseOriginalData splits DE90.
func ParseOriginalData(s string) (OriginalData, error) {
	if len(s) != 42 {
		return OriginalData{}, fieldErr(FieldOriginalData, "not 42 characters")
	}
	return OriginalData{MTI: s[0:4], STAN: s[4:10], TransmissionTime: s[10:20], AcquirerID: s[20:31], ForwardingID: s[31:42]}, nil
}

// MaskPAN keeps the first 6 and last 4 digits of a PAN or token; shorter
// values are masked entirely.
func MaskPAN(pan string) string {
	if len(pan) < 13 {
		return strings.Repeat("*", len(pan))
	}
	return pan[:6] + strings.Repeat("*", len(pan)-10) + pan[len(pan)-4:]
}

// MaskTrack2 masks track 2 equivalent data: the PAN as MaskPAN, everything
// after the separator ('=' or 'D') replaced by '*'.
func MaskTrack2(t2 string) string {
	i := strings.IndexAny(t2, "=D")
	if i < 0 {
		return MaskPAN(t2)
	}
	return MaskPAN(t2[:i]) + t2[i:i+1] + strings.Repeat("*", len(t2)-i-1)
}
