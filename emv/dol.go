package emv

import (
	"errors"
	"fmt"
)

// ErrMalformedDOL is wrapped by every DOL parsing error.
var ErrMalformedDOL = errors.New("emv: malformed DOL")

// DOLEntry is one entry of a Data Object List (PDOL 9F38, CDOL1 8C, …): a
// tag and the number of value bytes the card expects for it.
type DOLEntry struct {
	Tag    uint32
	Length int
}

// ParseDOL parses a DOL: a sequence of tag‖one-byte length (EMV Book 3
// 5.4). It never allocates more than len(b)/2 entries.
func ParseDOL(b []byte) ([]DOLEntry, error) {
	var out []DOLEntry
	off := 0
	for off < len(b) {
		tag, n, err := readTag(b[off:])
		if err != nil {
			return nil, fmt.Errorf("%w: %w at offset %d", ErrMalformedDOL, err, off)
		}
		off += n
		if off >= len(b) {
			return nil, fmt.Errorf("%w: tag %X has no length", ErrMalformedDOL, tag)
		}
		if out == nil {
			out = make([]DOLEntry, 0, len(b)/2)
		}
		out = append(out, DOLEntry{Tag: tag, Length: int(b[off])})
		off++
	}
	return out, nil
}

// DOLLength is the length of the value string a DOL asks for.
func DOLLength(entries []DOLEntry) int {
	n := 0
	for _, e := range entries {
		n += e.Length
	}
	return n
}

// BuildDOL builds the value string a card expects for entries from the
// terminal's values, with the EMV padding rules (Book 3 5.4): a value of
// format n is left-padded with 00 or loses its leftmost bytes; cn is
// right-padded with FF; other formats are right-padded with 00 or lose their
// rightmost bytes. A missing tag or a constructed one gives zeros.
func BuildDOL(entries []DOLEntry, values map[uint32][]byte) []byte {
	return AppendDOL(make([]byte, 0, DOLLength(entries)), entries, values)
}

// AppendDOL is BuildDOL appending to dst.
func AppendDOL(dst []byte, entries []DOLEntry, values map[uint32][]byte) []byte {
	for _, e := range entries {
		v, ok := values[e.Tag]
		if !ok || Constructed(e.Tag) {
			v = nil
		}
		dst = appendPadded(dst, v, e.Length, TagFormat(e.Tag))
	}
	return dst
}

func appendPadded(dst, v []byte, n int, f Format) []byte {
	switch {
	case len(v) == n:
		return append(dst, v...)
	case f == FormatN && len(v) > n:
		return append(dst, v[len(v)-n:]...)
	case len(v) > n:
		return append(dst, v[:n]...)
	case f == FormatN:
		for range n - len(v) {
			dst = append(dst, 0x00)
		}
		return append(dst, v...)
	}
	dst = append(dst, v...)
	pad := byte(0x00)
	if f == FormatCN && len(v) > 0 {
		pad = 0xFF
	}
	for range n - len(v) {
		dst = append(dst, pad)
	}
	return dst
}

// SplitDOL is the card's side of BuildDOL: it cuts data into the values of
// entries. data must be exactly DOLLength(entries) bytes. Values alias data.
func SplitDOL(entries []DOLEntry, data []byte) (map[uint32][]byte, error) {
	if n := DOLLength(entries); n != len(data) {
		return nil, fmt.Errorf("%w: DOL asks for %d bytes, got %d", ErrMalformedDOL, n, len(data))
	}
	out := make(map[uint32][]byte, len(entries))
	off := 0
	for _, e := range entries {
		out[e.Tag] = data[off : off+e.Length : off+e.Length]
		off += e.Length
	}
	return out, nil
}
