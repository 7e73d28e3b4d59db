package emv

import (
	"fmt"
	"io"
	"strings"
)

// Format is the EMV data format of a tag's value (EMV Book 3 section 4.3).
type Format uint8

// EMV data formats.
const (
	FormatB   Format = iota // binary
	FormatN                 // numeric BCD, right-justified, padded left with 0
	FormatCN                // compressed numeric, left-justified, padded right with F
	FormatAN                // alphanumeric
	FormatANS               // alphanumeric special
)

func (f Format) String() string {
	switch f {
	case FormatN:
		return "n"
	case FormatCN:
		return "cn"
	case FormatAN:
		return "an"
	case FormatANS:
		return "ans"
	}
	return "b"
}

// Source says which party produces a tag's value.
type Source uint8

// Tag sources.
const (
	SourceCard Source = iota
	SourceTerminal
	SourceIssuer
)

func (s Source) String() string {
	switch s {
	case SourceTerminal:
		return "terminal"
	case SourceIssuer:
		return "issuer"
	}
	return "card"
}

// TagInfo describes a tag of the dictionary.
type TagInfo struct {
	Tag    uint32
	Name   string
	Format Format
	Source Source
}

// LookupTag returns the dictionary entry of tag.
func LookupTag(tag uint32) (TagInfo, bool) {
	info, ok := tagDictionary[tag]
	if ok {
		info.Tag = tag
	}
	return info, ok
}

// TagFormat is the format of tag, FormatB when the tag is unknown.
func TagFormat(tag uint32) Format {
	return tagDictionary[tag].Format
}

// tagDictionary is read-only after package initialisation. It covers every tag
// DESIGN.md names (GPO answer, DE55, records, PPSE/FCI) plus the common
// EMV, qPBOC/qVSDC and PBOC e-purse tags.
var tagDictionary = map[uint32]TagInfo{
	0x42:   {Name: "Issuer Identification Number (IIN)", Format: FormatN, Source: SourceCard},
	0x4F:   {Name: "Application Identifier (AID) - card", Format: FormatB, Source: SourceCard},
	0x50:   {Name: "Application Label", Format: FormatANS, Source: SourceCard},
	0x57:   {Name: "Track 2 Equivalent Data", Format: FormatB, Source: SourceCard},
	0x5A:   {Name: "Application Primary Account Number (PAN)", Format: FormatCN, Source: SourceCard},
	0x61:   {Name: "Application Template", Format: FormatB, Source: SourceCard},
	0x6F:   {Name: "File Control Information (FCI) Template", Format: FormatB, Source: SourceCard},
	0x70:   {Name: "READ RECORD Response Message Template", Format: FormatB, Source: SourceCard},
	0x71:   {Name: "Issuer Script Template 1", Format: FormatB, Source: SourceIssuer},
	0x72:   {Name: "Issuer Script Template 2", Format: FormatB, Source: SourceIssuer},
	0x73:   {Name: "Directory Discretionary Template", Format: FormatB, Source: SourceCard},
	0x77:   {Name: "Response Message Template Format 2", Format: FormatB, Source: SourceCard},
	0x80:   {Name: "Response Message Template Format 1", Format: FormatB, Source: SourceCard},
	0x82:   {Name: "Application Interchange Profile (AIP)", Format: FormatB, Source: SourceCard},
	0x83:   {Name: "Command Template", Format: FormatB, Source: SourceTerminal},
	0x84:   {Name: "Dedicated File (DF) Name", Format: FormatB, Source: SourceCard},
	0x86:   {Name: "Issuer Script Command", Format: FormatB, Source: SourceIssuer},
	0x87:   {Name: "Application Priority Indicator", Format: FormatB, Source: SourceCard},
	0x88:   {Name: "Short File Identifier (SFI)", Format: FormatB, Source: SourceCard},
	0x89:   {Name: "Authorisation Code", Format: FormatAN, Source: SourceIssuer},
	0x8A:   {Name: "Authorisation Response Code", Format: FormatAN, Source: SourceIssuer},
	0x8C:   {Name: "Card Risk Management Data Object List 1 (CDOL1)", Format: FormatB, Source: SourceCard},
	0x8D:   {Name: "Card Risk Management Data Object List 2 (CDOL2)", Format: FormatB, Source: SourceCard},
	0x8E:   {Name: "Cardholder Verification Method (CVM) List", Format: FormatB, Source: SourceCard},
	0x8F:   {Name: "Certification Authority Public Key Index", Format: FormatB, Source: SourceCard},
	0x90:   {Name: "Issuer Public Key Certificate", Format: FormatB, Source: SourceCard},
	0x91:   {Name: "Issuer Authentication Data", Format: FormatB, Source: SourceIssuer},
	0x92:   {Name: "Issuer Public Key Remainder", Format: FormatB, Source: SourceCard},
	0x93:   {Name: "Signed Static Application Data", Format: FormatB, Source: SourceCard},
	0x94:   {Name: "Application File Locator (AFL)", Format: FormatB, Source: SourceCard},
	0x95:   {Name: "Terminal Verification Results (TVR)", Format: FormatB, Source: SourceTerminal},
	0x97:   {Name: "Transaction Certificate Data Object List (TDOL)", Format: FormatB, Source: SourceCard},
	0x9A:   {Name: "Transaction Date", Format: FormatN, Source: SourceTerminal},
	0x9B:   {Name: "Transaction Status Information (TSI)", Format: FormatB, Source: SourceTerminal},
	0x9C:   {Name: "Transaction Type", Format: FormatN, Source: SourceTerminal},
	0x9D:   {Name: "Directory Definition File (DDF) Name", Format: FormatB, Source: SourceCard},
	0xA5:   {Name: "File Control Information (FCI) Proprietary Template", Format: FormatB, Source: SourceCard},
	0x5F20: {Name: "Cardholder Name", Format: FormatANS, Source: SourceCard},
	0x5F24: {Name: "Application Expiration Date", Format: FormatN, Source: SourceCard},
	0x5F25: {Name: "Application Effective Date", Format: FormatN, Source: SourceCard},
	0x5F28: {Name: "Issuer Country Code", Format: FormatN, Source: SourceCard},
	0x5F2A: {Name: "Transaction Currency Code", Format: FormatN, Source: SourceTerminal},
	0x5F2D: {Name: "Language Preference", Format: FormatAN, Source: SourceCard},
	0x5F30: {Name: "Service Code", Format: FormatN, Source: SourceCard},
	0x5F34: {Name: "Application PAN Sequence Number (PSN)", Format: FormatN, Source: SourceCard},
	0x5F36: {Name: "Transaction Currency Exponent", Format: FormatN, Source: SourceTerminal},
	0x5F50: {Name: "Issuer URL", Format: FormatANS, Source: SourceCard},
	0x9F01: {Name: "Acquirer Identifier", Format: FormatN, Source: SourceTerminal},
	0x9F02: {Name: "Amount, Authorised (Numeric)", Format: FormatN, Source: SourceTerminal},
	0x9F03: {Name: "Amount, Other (Numeric)", Format: FormatN, Source: SourceTerminal},
	0x9F06: {Name: "Application Identifier (AID) - terminal", Format: FormatB, Source: SourceTerminal},
	0x9F07: {Name: "Application Usage Control", Format: FormatB, Source: SourceCard},
	0x9F08: {Name: "Application Version Number - card", Format: FormatB, Source: SourceCard},
	0x9F09: {Name: "Application Version Number - terminal", Format: FormatB, Source: SourceTerminal},
	0x9F0D: {Name: "Issuer Action Code - Default", Format: FormatB, Source: SourceCard},
	0x9F0E: {Name: "Issuer Action Code - Denial", Format: FormatB, Source: SourceCard},
	0x9F0F: {Name: "Issuer Action Code - Online", Format: FormatB, Source: SourceCard},
	0x9F10: {Name: "Issuer Application Data (IAD)", Format: FormatB, Source: SourceCard},
	0x9F11: {Name: "Issuer Code Table Index", Format: FormatN, Source: SourceCard},
	0x9F12: {Name: "Application Preferred Name", Format: FormatANS, Source: SourceCard},
	0x9F13: {Name: "Last Online ATC Register", Format: FormatB, Source: SourceCard},
	0x9F14: {Name: "Lower Consecutive Offline Limit", Format: FormatB, Source: SourceCard},
	0x9F15: {Name: "Merchant Category Code", Format: FormatN, Source: SourceTerminal},
	0x9F16: {Name: "Merchant Identifier", Format: FormatANS, Source: SourceTerminal},
	0x9F17: {Name: "PIN Try Counter", Format: FormatB, Source: SourceCard},
	0x9F1A: {Name: "Terminal Country Code", Format: FormatN, Source: SourceTerminal},
	0x9F1B: {Name: "Terminal Floor Limit", Format: FormatB, Source: SourceTerminal},
	0x9F1C: {Name: "Terminal Identification", Format: FormatAN, Source: SourceTerminal},
	0x9F1E: {Name: "Interface Device (IFD) Serial Number", Format: FormatAN, Source: SourceTerminal},
	0x9F1F: {Name: "Track 1 Discretionary Data", Format: FormatANS, Source: SourceCard},
	0x9F21: {Name: "Transaction Time", Format: FormatN, Source: SourceTerminal},
	0x9F26: {Name: "Application Cryptogram", Format: FormatB, Source: SourceCard},
	0x9F27: {Name: "Cryptogram Information Data (CID)", Format: FormatB, Source: SourceCard},
	0x9F32: {Name: "Issuer Public Key Exponent", Format: FormatB, Source: SourceCard},
	0x9F33: {Name: "Terminal Capabilities", Format: FormatB, Source: SourceTerminal},
	0x9F34: {Name: "Cardholder Verification Method (CVM) Results", Format: FormatB, Source: SourceTerminal},
	0x9F35: {Name: "Terminal Type", Format: FormatN, Source: SourceTerminal},
	0x9F36: {Name: "Application Transaction Counter (ATC)", Format: FormatB, Source: SourceCard},
	0x9F37: {Name: "Unpredictable Number", Format: FormatB, Source: SourceTerminal},
	0x9F38: {Name: "Processing Options Data Object List (PDOL)", Format: FormatB, Source: SourceCard},
	0x9F39: {Name: "Point-of-Service (POS) Entry Mode", Format: FormatN, Source: SourceTerminal},
	0x9F40: {Name: "Additional Terminal Capabilities", Format: FormatB, Source: SourceTerminal},
	0x9F41: {Name: "Transaction Sequence Counter", Format: FormatN, Source: SourceTerminal},
	0x9F42: {Name: "Application Currency Code", Format: FormatN, Source: SourceCard},
	0x9F44: {Name: "Application Currency Exponent", Format: FormatN, Source: SourceCard},
	0x9F45: {Name: "Data Authentication Code", Format: FormatB, Source: SourceCard},
	0x9F46: {Name: "ICC Public Key Certificate", Format: FormatB, Source: SourceCard},
	0x9F47: {Name: "ICC Public Key Exponent", Format: FormatB, Source: SourceCard},
	0x9F48: {Name: "ICC Public Key Remainder", Format: FormatB, Source: SourceCard},
	0x9F49: {Name: "Dynamic Data Authentication Data Object List (DDOL)", Format: FormatB, Source: SourceCard},
	0x9F4A: {Name: "Static Data Authentication Tag List", Format: FormatB, Source: SourceCard},
	0x9F4B: {Name: "Signed Dynamic Application Data", Format: FormatB, Source: SourceCard},
	0x9F4C: {Name: "ICC Dynamic Number", Format: FormatB, Source: SourceCard},
	0x9F4D: {Name: "Log Entry", Format: FormatB, Source: SourceCard},
	0x9F4E: {Name: "Merchant Name and Location", Format: FormatANS, Source: SourceTerminal},
	0x9F4F: {Name: "Log Format", Format: FormatB, Source: SourceCard},
	0x9F51: {Name: "Application Currency Code (PBOC)", Format: FormatN, Source: SourceCard},
	0x9F53: {Name: "Transaction Category Code", Format: FormatAN, Source: SourceTerminal},
	0x9F5D: {Name: "Available Offline Spending Amount", Format: FormatN, Source: SourceCard},
	0x9F63: {Name: "Card Product Identification Information", Format: FormatB, Source: SourceCard},
	0x9F66: {Name: "Terminal Transaction Qualifiers (TTQ)", Format: FormatB, Source: SourceTerminal},
	0x9F6C: {Name: "Card Transaction Qualifiers (CTQ)", Format: FormatB, Source: SourceCard},
	0x9F6D: {Name: "Mag-stripe Application Version Number", Format: FormatB, Source: SourceCard},
	0x9F6E: {Name: "Form Factor Indicator / Third Party Data", Format: FormatB, Source: SourceCard},
	0x9F74: {Name: "Electronic Cash Issuer Authorisation Code", Format: FormatAN, Source: SourceCard},
	0x9F77: {Name: "Electronic Cash Balance Limit", Format: FormatN, Source: SourceCard},
	0x9F78: {Name: "Electronic Cash Single Transaction Limit", Format: FormatN, Source: SourceCard},
	0x9F79: {Name: "Electronic Cash Balance", Format: FormatN, Source: SourceCard},
	0x9F7C: {Name: "Customer Exclusive Data", Format: FormatB, Source: SourceCard},
	0xBF0C: {Name: "File Control Information (FCI) Issuer Discretionary Data", Format: FormatB, Source: SourceCard},
	0xDF60: {Name: "CAPP Transaction Indicator", Format: FormatB, Source: SourceTerminal},
	0xDF61: {Name: "Partial Selection Indicator / Card Product Info", Format: FormatB, Source: SourceCard},
	0xDF69: {Name: "SM Algorithm Supported Indicator", Format: FormatB, Source: SourceCard},
}

// DefaultPrettyMaxValueBytes bounds how many value bytes Pretty prints per
// object; longer values are cut with "…".
const DefaultPrettyMaxValueBytes = 256

// Pretty writes tlvs as an indented tree, one object a line: the tag, its
// name from the dictionary, and for a primitive object its value in hex
// (plus the text for an/ans values). PAN-bearing tags (5A, 57) are printed
// masked to first 6 / last 4 digits.
func Pretty(w io.Writer, tlvs []TLV) error {
	var sb strings.Builder
	prettyAppend(&sb, tlvs, 0)
	_, err := io.WriteString(w, sb.String())
	return err
}

func prettyAppend(sb *strings.Builder, tlvs []TLV, depth int) {
	for _, t := range tlvs {
		sb.WriteString(strings.Repeat("  ", depth))
		fmt.Fprintf(sb, "%X", t.Tag)
		info, known := LookupTag(t.Tag)
		if known {
			sb.WriteString(" ")
			sb.WriteString(info.Name)
		}
		if len(t.Children) > 0 {
			sb.WriteString("\n")
			prettyAppend(sb, t.Children, depth+1)
			continue
		}
		sb.WriteString(": ")
		sb.WriteString(prettyValue(t.Tag, t.Value, info.Format))
		sb.WriteString("\n")
	}
}

func prettyValue(tag uint32, v []byte, f Format) string {
	switch tag {
	case 0x5A, 0x57:
		return maskDigits(fmt.Sprintf("%X", v))
	}
	cut := ""
	if len(v) > DefaultPrettyMaxValueBytes {
		v, cut = v[:DefaultPrettyMaxValueBytes], "…"
	}
	s := fmt.Sprintf("%X%s", v, cut)
	// DF names (84) are binary but usually ASCII, like 2PAY.SYS.DDF01.
	if (f == FormatAN || f == FormatANS || tag == 0x84) && printable(v) {
		s += fmt.Sprintf(" %q", v)
	}
	return s
}

func printable(v []byte) bool {
	for _, c := range v {
		if c < 0x20 || c > 0x7E {
			return false
		}
	}
	return len(v) > 0
}

// maskDigits keeps the first 6 and last 4 digits of the leading run of
// decimal digits (a PAN, or the PAN part of track 2) and masks the rest.
func maskDigits(s string) string {
	end := 0
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end++
	}
	if end <= 10 {
		return strings.Repeat("*", end) + s[end:]
	}
	return s[:6] + strings.Repeat("*", end-10) + s[end-4:end] + maskTrack2Rest(s[end:])
}

// maskTrack2Rest hides the discretionary data after the track 2 separator
// (expiry and service code stay).
func maskTrack2Rest(s string) string {
	if len(s) <= 8 { // separator + YYMM + service code
		return s
	}
	return s[:8] + strings.Repeat("*", len(s)-8)
}
