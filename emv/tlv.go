package emv

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// BER-TLV bounds (EMV Book 3 Annex B). Every length is checked against the
// bytes that remain before anything is allocated, so a hostile input cannot
// make the decoder allocate more than a small multiple of its own length.
const (
	// MaxTLVDepth is the deepest nesting of constructed objects DecodeTLV
	// accepts. EMV data nests 4–5 levels (6F.A5.BF0C.61.4F); 16 leaves room
	// and keeps the recursion (and its stack) small on hostile input.
	MaxTLVDepth = 16
	// MaxTagBytes is the longest tag accepted, in bytes (a tag is a uint32).
	MaxTagBytes = 4
	// MaxLengthBytes is the longest long-form length accepted, in bytes after
	// the 0x8N byte (0x83 → lengths up to 16 MiB). Indefinite length (0x80)
	// is refused: EMV never uses it.
	MaxLengthBytes = 3
)

// ErrMalformedTLV is wrapped by every BER-TLV decoding error.
var ErrMalformedTLV = errors.New("emv: malformed BER-TLV")

// TLV is one BER-TLV data object. Tag holds the tag bytes big-endian in a
// uint32 (9F26 → 0x9F26, BF0C → 0xBF0C). Value is the raw value (for a
// constructed object, the encoding of its children); Children holds the
// decoded children of a constructed object. Decoded values alias the input.
type TLV struct {
	Tag      uint32
	Value    []byte
	Children []TLV
}

// Constructed reports whether tag is a constructed (template) tag: bit 6 of
// its first byte.
func Constructed(tag uint32) bool {
	return firstTagByte(tag)&0x20 != 0
}

func firstTagByte(tag uint32) byte {
	switch {
	case tag > 0xFFFFFF:
		return byte(tag >> 24)
	case tag > 0xFFFF:
		return byte(tag >> 16)
	case tag > 0xFF:
		return byte(tag >> 8)
	}
	return byte(tag)
}

// TagLen is the number of bytes tag occupies when encoded (1–4).
func TagLen(tag uint32) int {
	switch {
	case tag > 0xFFFFFF:
		return 4
	case tag > 0xFFFF:
		return 3
	case tag > 0xFF:
		return 2
	}
	return 1
}

// AppendTag appends the encoding of tag.
func AppendTag(dst []byte, tag uint32) []byte {
	for i := TagLen(tag) - 1; i >= 0; i-- {
		dst = append(dst, byte(tag>>(8*i)))
	}
	return dst
}

// AppendLength appends the BER encoding of a value length n (short form below
// 128, else 81/82/83/84 followed by the length bytes).
func AppendLength(dst []byte, n int) []byte {
	switch {
	case n < 0x80:
		return append(dst, byte(n))
	case n <= 0xFF:
		return append(dst, 0x81, byte(n))
	case n <= 0xFFFF:
		return append(dst, 0x82, byte(n>>8), byte(n))
	case n <= 0xFFFFFF:
		return append(dst, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// AppendTLV appends one primitive data object tag‖length‖value.
func AppendTLV(dst []byte, tag uint32, value []byte) []byte {
	dst = AppendTag(dst, tag)
	dst = AppendLength(dst, len(value))
	return append(dst, value...)
}

// EncodeTLV encodes tlvs. A constructed object with Children is encoded from
// its children; any other object from its Value.
func EncodeTLV(tlvs []TLV) []byte {
	return appendTLVs(nil, tlvs)
}

func appendTLVs(dst []byte, tlvs []TLV) []byte {
	for _, t := range tlvs {
		if len(t.Children) == 0 {
			dst = AppendTLV(dst, t.Tag, t.Value)
			continue
		}
		inner := appendTLVs(nil, t.Children)
		dst = AppendTLV(dst, t.Tag, inner)
	}
	return dst
}

// DecodeTLV decodes a sequence of BER-TLV data objects, recursing into
// constructed ones. 00 bytes between objects are skipped (EMV Book 3 B1).
// Malformed input (truncated tag or length, a length beyond the data, more
// than MaxTagBytes/MaxLengthBytes/MaxTLVDepth) is an error wrapping
// ErrMalformedTLV; the decoder never panics.
//
// Why not github.com/moov-io/bertlv: its Decode recurses without a depth
// bound, accepts long-form lengths of any size (an 0x88 length overflows int
// and a negative length then panics when slicing), and hex-encodes every tag
// into a string (an allocation per object on the switch's hot path).
func DecodeTLV(b []byte) ([]TLV, error) {
	return decodeTLV(b, 0)
}

func decodeTLV(b []byte, depth int) ([]TLV, error) {
	if depth >= MaxTLVDepth {
		return nil, fmt.Errorf("%w: nesting deeper than %d", ErrMalformedTLV, MaxTLVDepth)
	}
	var out []TLV
	off := 0
	for off < len(b) {
		if b[off] == 0x00 {
			off++
			continue
		}
		start := off
		tag, n, err := readTag(b[off:])
		if err != nil {
			return nil, fmt.Errorf("%w at offset %d", err, off)
		}
		off += n
		length, n, err := readLength(b[off:])
		if err != nil {
			return nil, fmt.Errorf("%w (tag %X at offset %d)", err, tag, off)
		}
		off += n
		if length > len(b)-off {
			return nil, fmt.Errorf("%w: tag %X declares %d bytes, %d remain", ErrMalformedTLV, tag, length, len(b)-off)
		}
		t := TLV{Tag: tag, Value: b[off : off+length : off+length]}
		off += length
		if Constructed(tag) && length > 0 {
			t.Children, err = decodeTLV(t.Value, depth+1)
			if err != nil {
				return nil, err
			}
		}
		if out == nil {
			// One allocation per level: count this level's objects first
			// (at most len(b)/2, each takes 2 bytes or more).
			out = make([]TLV, 0, countObjects(b[start:]))
		}
		out = append(out, t)
	}
	return out, nil
}

// countObjects counts the objects of one level of b, stopping at the first
// malformed one (the decoder reports it).
func countObjects(b []byte) int {
	count, off := 0, 0
	for off < len(b) {
		if b[off] == 0x00 {
			off++
			continue
		}
		_, n, err := readTag(b[off:])
		if err != nil {
			break
		}
		off += n
		length, n, err := readLength(b[off:])
		if err != nil || length > len(b)-off-n {
			break
		}
		off += n + length
		count++
	}
	return max(count, 1)
}

// readTag reads one tag: a first byte, and when its low 5 bits are all set,
// subsequent bytes while bit 8 is set.
func readTag(b []byte) (tag uint32, n int, err error) {
	if len(b) == 0 {
		return 0, 0, fmt.Errorf("%w: missing tag", ErrMalformedTLV)
	}
	tag = uint32(b[0])
	n = 1
	if b[0]&0x1F != 0x1F {
		return tag, n, nil
	}
	for {
		if n >= len(b) {
			return 0, 0, fmt.Errorf("%w: truncated tag", ErrMalformedTLV)
		}
		if n >= MaxTagBytes {
			return 0, 0, fmt.Errorf("%w: tag longer than %d bytes", ErrMalformedTLV, MaxTagBytes)
		}
		c := b[n]
		tag = tag<<8 | uint32(c)
		n++
		if c&0x80 == 0 {
			return tag, n, nil
		}
	}
}

// readLength reads a short- or long-form length (at most MaxLengthBytes).
func readLength(b []byte) (length, n int, err error) {
	if len(b) == 0 {
		return 0, 0, fmt.Errorf("%w: missing length", ErrMalformedTLV)
	}
	if b[0] < 0x80 {
		return int(b[0]), 1, nil
	}
	k := int(b[0] & 0x7F)
	if k == 0 {
		return 0, 0, fmt.Errorf("%w: indefinite length", ErrMalformedTLV)
	}
	if k > MaxLengthBytes {
		return 0, 0, fmt.Errorf("%w: length of %d bytes (max %d)", ErrMalformedTLV, k, MaxLengthBytes)
	}
	if len(b) < 1+k {
		return 0, 0, fmt.Errorf("%w: truncated length", ErrMalformedTLV)
	}
	for _, c := range b[1 : 1+k] {
		length = length<<8 | int(c)
	}
	return length, 1 + k, nil
}

// ParseTag parses a tag written in hex ("9F26", "bf0c").
func ParseTag(s string) (uint32, error) {
	if len(s) == 0 || len(s) > 2*MaxTagBytes || len(s)%2 != 0 {
		return 0, fmt.Errorf("emv: bad tag %q", s)
	}
	var raw [MaxTagBytes]byte
	n, err := hex.Decode(raw[:], []byte(s))
	if err != nil {
		return 0, fmt.Errorf("emv: bad tag %q: %w", s, err)
	}
	var tag uint32
	for _, c := range raw[:n] {
		tag = tag<<8 | uint32(c)
	}
	if tag == 0 {
		return 0, fmt.Errorf("emv: bad tag %q", s)
	}
	return tag, nil
}

// Find returns the object at a dot-separated path of hex tags, e.g.
// "6F.A5.BF0C.61.4F": the first match at each level. An unparsable path
// finds nothing.
func Find(tlvs []TLV, path string) (TLV, bool) {
	for {
		head, rest, more := strings.Cut(path, ".")
		tag, err := ParseTag(head)
		if err != nil {
			return TLV{}, false
		}
		t, ok := FindTag(tlvs, tag)
		if !ok {
			return TLV{}, false
		}
		if !more {
			return t, true
		}
		tlvs, path = t.Children, rest
	}
}

// FindTag returns the first object with tag at the top level of tlvs.
func FindTag(tlvs []TLV, tag uint32) (TLV, bool) {
	for _, t := range tlvs {
		if t.Tag == tag {
			return t, true
		}
	}
	return TLV{}, false
}

// Search returns the first object with tag anywhere in tlvs, depth first.
func Search(tlvs []TLV, tag uint32) (TLV, bool) {
	for _, t := range tlvs {
		if t.Tag == tag {
			return t, true
		}
		if found, ok := Search(t.Children, tag); ok {
			return found, true
		}
	}
	return TLV{}, false
}
