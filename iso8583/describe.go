package iso8583

import (
	"fmt"
	"strconv"
	"strings"
)

// Describe renders a message for people: one line per field with its number
// and name, in field order. DE2 and DE35 (and the token in DE123) are masked
// to first 6 / last 4, DE52 is hidden, DE55 is listed tag by tag, DE123 and
// DE124 sub-element by sub-element. raw may be framed (2-byte length header
// matching the rest) or not. Errors carry field paths only.
func Describe(raw []byte) (string, error) {
	var m Message
	if err := m.Unpack(Unframe(raw)); err != nil {
		// A message whose MTI bytes happen to read as a matching header
		// (only possible with non-digit MTIs): try it whole.
		if len(Unframe(raw)) == len(raw) || m.Unpack(raw) != nil {
			return "", err
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "MTI   %s\n", printable(m.Field(FieldMTI)))
	var nums [MaxFieldNumber]int
	for _, n := range m.FieldNumbers(nums[:0]) {
		d := &compiled.defs[n]
		v := m.Field(n)
		fmt.Fprintf(&b, "DE%03d %s: ", n, d.name)
		switch n {
		case FieldPAN:
			b.WriteString(MaskPAN(string(v)))
		case FieldTrack2:
			b.WriteString(MaskTrack2(string(v)))
		case FieldPINBlock:
			b.WriteString(strings.Repeat("*", 2*len(v)))
		case FieldICC:
			describeICC(&b, v)
			continue
		case FieldTokenData:
			describeSub(&b, FieldTokenData, TokenDataElements, string(v))
			continue
		case FieldPromotion:
			describeSub(&b, FieldPromotion, PromotionElements, string(v))
			continue
		default:
			if d.binary {
				fmt.Fprintf(&b, "%X", v)
			} else {
				b.WriteString(printable(v))
			}
		}
		b.WriteByte('\n')
	}
	return b.String(), nil
}

// printable returns v as is, or Go-quoted when it holds control characters.
func printable(v []byte) string {
	for _, c := range v {
		if c < 0x20 || c > 0x7E {
			return strconv.Quote(string(v))
		}
	}
	return string(v)
}

func describeICC(b *strings.Builder, v []byte) {
	tlvs, err := ParseTLV(v)
	if err != nil {
		fmt.Fprintf(b, "%d bytes, not valid BER-TLV (%v): %X\n", len(v), err, v)
		return
	}
	fmt.Fprintf(b, "%d bytes\n", len(v))
	for _, t := range tlvs {
		name := TagName(t.Tag)
		if name == "" {
			name = "unknown tag"
		}
		fmt.Fprintf(b, "      %-4s %s: %X\n", TagHex(t.Tag), name, t.Value)
	}
}

func describeSub(b *strings.Builder, field int, elems []SubElement, s string) {
	if _, err := decodeSubElements(field, elems, s); err != nil {
		fmt.Fprintf(b, "%d bytes, not valid sub-elements (%v)\n", len(s), err)
		return
	}
	fmt.Fprintf(b, "%d bytes\n", len(s))
	for pos := 0; pos+5 <= len(s); {
		tag := s[pos : pos+2]
		l, _ := strconv.Atoi(s[pos+2 : pos+5])
		v := s[pos+5 : pos+5+l]
		pos += 5 + l
		name, sensitive := "unknown sub-element", false
		for _, e := range elems {
			if e.Tag == tag {
				name, sensitive = e.Name, e.Sensitive
			}
		}
		if sensitive {
			v = MaskPAN(v)
		}
		fmt.Fprintf(b, "      %s %s: %s\n", tag, name, printable([]byte(v)))
	}
}
