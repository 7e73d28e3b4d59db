package iso8583

import (
	"fmt"
	"strconv"
)

// DE55 carries EMV data as BER-TLV. These helpers read and edit it without
// disturbing the order or bytes of the tags they do not touch, so the switch
// can add the ARPC (tag 91) to a terminal's DE55 and forward it.

// TLV is one top-level BER-TLV data object; Value aliases the parsed input.
type TLV struct {
	Tag   uint32 // e.g. 0x9F26
	Value []byte
}

// Bounds of the TLV reader: EMV tags are at most 3 bytes, lengths at most
// 3 bytes after the 0x8n byte; DE55 holds at most MaxLLLBytes.
const (
	maxTagBytes    = 3
	maxTLVsPerICC  = 128
	maxLengthBytes = 3
)

// TagHex formats a tag as uppercase hex ("9F26").
func TagHex(tag uint32) string {
	s := strconv.FormatUint(uint64(tag), 16)
	if len(s)%2 == 1 {
		s = "0" + s
	}
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'f' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// readTLV reads one data object at b[pos:]. Errors name the tag, never the
// value.
func readTLV(b []byte, pos int) (tag uint32, value []byte, next int, err error) {
	start := pos
	if pos >= len(b) {
		return 0, nil, 0, &FieldError{Field: "field 55", Reason: "truncated tag"}
	}
	tag = uint32(b[pos])
	pos++
	if tag&0x1F == 0x1F {
		for {
			if pos >= len(b) {
				return 0, nil, 0, &FieldError{Field: "field 55", Reason: "truncated tag at offset " + strconv.Itoa(start)}
			}
			if pos-start >= maxTagBytes {
				return 0, nil, 0, &FieldError{Field: "field 55", Reason: "tag longer than 3 bytes at offset " + strconv.Itoa(start)}
			}
			c := b[pos]
			pos++
			tag = tag<<8 | uint32(c)
			if c&0x80 == 0 {
				break
			}
		}
	}
	path := "field 55." + TagHex(tag)
	if pos >= len(b) {
		return 0, nil, 0, &FieldError{Field: path, Reason: "truncated length"}
	}
	l := int(b[pos])
	pos++
	if l&0x80 != 0 {
		nb := l & 0x7F
		if nb == 0 || nb > maxLengthBytes {
			return 0, nil, 0, &FieldError{Field: path, Reason: "unsupported length form"}
		}
		if len(b)-pos < nb {
			return 0, nil, 0, &FieldError{Field: path, Reason: "truncated length"}
		}
		l = 0
		for _, c := range b[pos : pos+nb] {
			l = l<<8 | int(c)
		}
		pos += nb
	}
	if l > len(b)-pos {
		return 0, nil, 0, &FieldError{Field: path, Reason: fmt.Sprintf("length %d exceeds the %d bytes left", l, len(b)-pos)}
	}
	return tag, b[pos : pos+l : pos+l], pos + l, nil
}

// ParseTLV splits DE55 into its top-level data objects (constructed values
// such as 71/72 scripts stay whole). Values alias b.
func ParseTLV(b []byte) ([]TLV, error) {
	var out []TLV
	for pos := 0; pos < len(b); {
		if len(out) >= maxTLVsPerICC {
			return nil, &FieldError{Field: "field 55", Reason: "more than " + strconv.Itoa(maxTLVsPerICC) + " tags"}
		}
		tag, v, next, err := readTLV(b, pos)
		if err != nil {
			return nil, err
		}
		out = append(out, TLV{Tag: tag, Value: v})
		pos = next
	}
	return out, nil
}

// FindTLV returns the value of the first top-level tag in b.
func FindTLV(b []byte, tag uint32) ([]byte, bool, error) {
	for pos := 0; pos < len(b); {
		t, v, next, err := readTLV(b, pos)
		if err != nil {
			return nil, false, err
		}
		if t == tag {
			return v, true, nil
		}
		pos = next
	}
	return nil, false, nil
}

// AppendTLV appends tag, BER length and value to dst.
func AppendTLV(dst []byte, tag uint32, value []byte) []byte {
	switch {
	case tag > 0xFFFF:
		dst = append(dst, byte(tag>>16), byte(tag>>8), byte(tag))
	case tag > 0xFF:
		dst = append(dst, byte(tag>>8), byte(tag))
	default:
		dst = append(dst, byte(tag))
	}
	l := len(value)
	switch {
	case l < 0x80:
		dst = append(dst, byte(l))
	case l <= 0xFF:
		dst = append(dst, 0x81, byte(l))
	case l <= 0xFFFF:
		dst = append(dst, 0x82, byte(l>>8), byte(l))
	default:
		dst = append(dst, 0x83, byte(l>>16), byte(l>>8), byte(l))
	}
	return append(dst, value...)
}

// SetTLV returns a new DE55 where tag has value: replaced in place if
// present (other tags keep their order and bytes), appended otherwise.
func SetTLV(b []byte, tag uint32, value []byte) ([]byte, error) {
	out := make([]byte, 0, len(b)+len(value)+8)
	found := false
	for pos := 0; pos < len(b); {
		t, _, next, err := readTLV(b, pos)
		if err != nil {
			return nil, err
		}
		if t == tag && !found {
			out = AppendTLV(out, tag, value)
			found = true
		} else {
			out = append(out, b[pos:next]...)
		}
		pos = next
	}
	if !found {
		out = AppendTLV(out, tag, value)
	}
	return out, nil
}

// EMV tags carried in DE55.
const (
	TagARQC             = 0x9F26
	TagCID              = 0x9F27
	TagIAD              = 0x9F10
	TagUnpredictableNum = 0x9F37
	TagATC              = 0x9F36
	TagTVR              = 0x95
	TagTransactionDate  = 0x9A
	TagTransactionType  = 0x9C
	TagAmountAuthorised = 0x9F02
	TagCurrencyCode     = 0x5F2A
	TagAIP              = 0x82
	TagTerminalCountry  = 0x9F1A
	TagAmountOther      = 0x9F03
	TagTerminalCaps     = 0x9F33
	TagCVMResults       = 0x9F34
	TagTerminalType     = 0x9F35
	TagIFDSerial        = 0x9F1E
	TagDFName           = 0x84
	TagAppVersion       = 0x9F09
	TagTransactionSeq   = 0x9F41
	TagCTQ              = 0x9F6C
	TagIssuerAuthData   = 0x91
	TagAuthResponseCode = 0x8A
	TagIssuerScript1    = 0x71
	TagIssuerScript2    = 0x72
)

// ICC is DE55 as a struct of its tags. Decoding keeps unknown tags in Other;
// Encode writes the known tags in the order below, then Other. Use SetTLV
// instead when the bytes of a received DE55 must be kept as they came.
type ICC struct {
	ARQC             []byte `tlv:"9F26"`
	CID              []byte `tlv:"9F27"`
	IAD              []byte `tlv:"9F10"`
	UnpredictableNum []byte `tlv:"9F37"`
	ATC              []byte `tlv:"9F36"`
	TVR              []byte `tlv:"95"`
	TransactionDate  []byte `tlv:"9A"`
	TransactionType  []byte `tlv:"9C"`
	AmountAuthorised []byte `tlv:"9F02"`
	CurrencyCode     []byte `tlv:"5F2A"`
	AIP              []byte `tlv:"82"`
	TerminalCountry  []byte `tlv:"9F1A"`
	AmountOther      []byte `tlv:"9F03"`
	TerminalCaps     []byte `tlv:"9F33"`
	CVMResults       []byte `tlv:"9F34"`
	TerminalType     []byte `tlv:"9F35"`
	IFDSerial        []byte `tlv:"9F1E"`
	DFName           []byte `tlv:"84"`
	AppVersion       []byte `tlv:"9F09"`
	TransactionSeq   []byte `tlv:"9F41"`
	CTQ              []byte `tlv:"9F6C"`
	IssuerAuthData   []byte `tlv:"91"`
	AuthResponseCode []byte `tlv:"8A"`
	IssuerScript1    []byte `tlv:"71"`
	IssuerScript2    []byte `tlv:"72"`
	Other            []TLV
}

// slots lists the known tags with a pointer to their field, in encode order.
func (c *ICC) slots() [25]struct {
	tag uint32
	v   *[]byte
} {
	return [25]struct {
		tag uint32
		v   *[]byte
	}{
		{TagARQC, &c.ARQC}, {TagCID, &c.CID}, {TagIAD, &c.IAD}, {TagUnpredictableNum, &c.UnpredictableNum},
		{TagATC, &c.ATC}, {TagTVR, &c.TVR}, {TagTransactionDate, &c.TransactionDate},
		{TagTransactionType, &c.TransactionType}, {TagAmountAuthorised, &c.AmountAuthorised},
		{TagCurrencyCode, &c.CurrencyCode}, {TagAIP, &c.AIP}, {TagTerminalCountry, &c.TerminalCountry},
		{TagAmountOther, &c.AmountOther}, {TagTerminalCaps, &c.TerminalCaps}, {TagCVMResults, &c.CVMResults},
		{TagTerminalType, &c.TerminalType}, {TagIFDSerial, &c.IFDSerial}, {TagDFName, &c.DFName},
		{TagAppVersion, &c.AppVersion}, {TagTransactionSeq, &c.TransactionSeq}, {TagCTQ, &c.CTQ},
		{TagIssuerAuthData, &c.IssuerAuthData}, {TagAuthResponseCode, &c.AuthResponseCode},
		{TagIssuerScript1, &c.IssuerScript1}, {TagIssuerScript2, &c.IssuerScript2},
	}
}

// ParseICC decodes DE55. Values are copies. A tag appearing twice is refused.
func ParseICC(b []byte) (*ICC, error) {
	tlvs, err := ParseTLV(b)
	if err != nil {
		return nil, err
	}
	c := &ICC{}
	slots := c.slots()
	seen := make(map[uint32]bool, len(tlvs))
	for _, t := range tlvs {
		if seen[t.Tag] {
			return nil, &FieldError{Field: "field 55." + TagHex(t.Tag), Reason: "tag appears twice"}
		}
		seen[t.Tag] = true
		v := append([]byte{}, t.Value...)
		known := false
		for _, s := range slots {
			if s.tag == t.Tag {
				*s.v = v
				known = true
				break
			}
		}
		if !known {
			c.Other = append(c.Other, TLV{Tag: t.Tag, Value: v})
		}
	}
	return c, nil
}

// Encode returns DE55 bytes: the set tags in struct order, then Other.
// An empty ICC gives nil (DE55 absent).
func (c *ICC) Encode() []byte {
	var out []byte
	for _, s := range c.slots() {
		if *s.v != nil {
			out = AppendTLV(out, s.tag, *s.v)
		}
	}
	for _, t := range c.Other {
		out = AppendTLV(out, t.Tag, t.Value)
	}
	return out
}

// TagName returns the EMV name of a DE55 tag, or "".
func TagName(tag uint32) string { return tagNames[tag] }

var tagNames = map[uint32]string{
	TagARQC:             "Application Cryptogram",
	TagCID:              "Cryptogram Information Data",
	TagIAD:              "Issuer Application Data",
	TagUnpredictableNum: "Unpredictable Number",
	TagATC:              "Application Transaction Counter",
	TagTVR:              "Terminal Verification Results",
	TagTransactionDate:  "Transaction Date",
	TagTransactionType:  "Transaction Type",
	TagAmountAuthorised: "Amount, Authorised",
	TagCurrencyCode:     "Transaction Currency Code",
	TagAIP:              "Application Interchange Profile",
	TagTerminalCountry:  "Terminal Country Code",
	TagAmountOther:      "Amount, Other",
	TagTerminalCaps:     "Terminal Capabilities",
	TagCVMResults:       "CVM Results",
	TagTerminalType:     "Terminal Type",
	TagIFDSerial:        "IFD Serial Number",
	TagDFName:           "Dedicated File Name",
	TagAppVersion:       "Application Version Number",
	TagTransactionSeq:   "Transaction Sequence Counter",
	TagCTQ:              "Card Transaction Qualifiers",
	TagIssuerAuthData:   "Issuer Authentication Data",
	TagAuthResponseCode: "Authorisation Response Code",
	TagIssuerScript1:    "Issuer Script Template 1",
	TagIssuerScript2:    "Issuer Script Template 2",
}
