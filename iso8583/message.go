package iso8583

import (
	"encoding/binary"
	"encoding/hex"
	"math/bits"
	"strconv"
)

// span locates one field value inside Message.buf.
// 16-bit offsets keep a Message small (about 0.5 KiB); maxBufBytes bounds
// the buffer accordingly.
type span struct {
	off uint16
	n   uint16
}

const (
	maxBufBytes = 0xFFFF
	// MaxUnpackBytes bounds the input of Unpack: far above any legal message
	// of the spec (under 4 KiB), and small enough that values plus decoded
	// hex fit the 16-bit spans.
	MaxUnpackBytes = 32 << 10
)

// Message is one ISO 8583 message of the network spec in a flat form: the
// MTI and each present field's value as bytes, all held in one buffer. It is
// the fast codec: Pack and Unpack walk the table compiled from Spec and
// produce exactly the bytes moov-io/iso8583 produces with Spec (proved by the
// equivalence tests), at a fraction of the cost and with no allocation once
// the buffer has grown.
//
// Values are the field's value as moov-io sees it: the text of ASCII fields
// (no padding is added or removed), the raw bytes of binary fields (DE52 is 8
// bytes, sent as 16 hex characters; DE55 is BER-TLV bytes).
//
// A Message is not safe for concurrent use. Slices returned by Field alias
// the message's buffer: they stay valid until the next Reset or Unpack.
type Message struct {
	present [3]uint64 // bit n: field n present (bit 0: MTI)
	spans   [MaxFieldNumber + 1]span
	buf     []byte
	err     *FieldError // first misuse of Set (field outside the spec), reported by Pack
}

// NewMessage returns an empty message with the given MTI.
func NewMessage(mti string) *Message {
	m := &Message{buf: make([]byte, 0, 256)}
	m.SetString(FieldMTI, mti)
	return m
}

// Reset empties the message and keeps its buffer.
func (m *Message) Reset() {
	m.present = [3]uint64{}
	m.buf = m.buf[:0]
	m.err = nil
}

// Has reports whether field n (0 = MTI) is present.
func (m *Message) Has(n int) bool {
	if n < 0 || n > MaxFieldNumber {
		return false
	}
	return m.present[n>>6]&(1<<(uint(n)&63)) != 0
}

// Field returns the value of field n, or nil if absent. The slice aliases
// the message's buffer.
func (m *Message) Field(n int) []byte {
	if !m.Has(n) {
		return nil
	}
	s := m.spans[n]
	end := int(s.off) + int(s.n)
	return m.buf[s.off:end:end]
}

// String returns the value of field n as a string ("" if absent).
func (m *Message) String(n int) string { return string(m.Field(n)) }

// MTI returns the message type indicator.
func (m *Message) MTI() string { return m.String(FieldMTI) }

// SetMTI sets the message type indicator.
func (m *Message) SetMTI(mti string) { m.SetString(FieldMTI, mti) }

// Set sets field n (0 = MTI) to a copy of v. A field outside the spec is
// reported by the next Pack.
func (m *Message) Set(n int, v []byte) {
	if !m.settable(n) || !m.room(n, len(v)) {
		return
	}
	off := len(m.buf)
	m.buf = append(m.buf, v...)
	m.spans[n] = span{off: uint16(off), n: uint16(len(v))}
	m.present[n>>6] |= 1 << (uint(n) & 63)
}

// SetString sets field n (0 = MTI) to s.
func (m *Message) SetString(n int, s string) {
	if !m.settable(n) || !m.room(n, len(s)) {
		return
	}
	off := len(m.buf)
	m.buf = append(m.buf, s...)
	m.spans[n] = span{off: uint16(off), n: uint16(len(s))}
	m.present[n>>6] |= 1 << (uint(n) & 63)
}

// room checks that l more bytes fit the buffer. Every Set appends (an
// overwritten value's bytes stay until Reset), so a message reused without
// Reset or Marshal would otherwise grow without bound.
func (m *Message) room(n, l int) bool {
	if len(m.buf)+l > maxBufBytes {
		if m.err == nil {
			m.err = fieldErr(n, "message buffer over "+strconv.Itoa(maxBufBytes)+" bytes")
		}
		return false
	}
	return true
}

func (m *Message) settable(n int) bool {
	if n < 0 || n > MaxFieldNumber || n == FieldBitmap || !compiled.defs[n].defined {
		if m.err == nil {
			m.err = &FieldError{Field: "field " + strconv.Itoa(n), Reason: "not in the spec"}
		}
		return false
	}
	return true
}

// Unset removes field n.
func (m *Message) Unset(n int) {
	if n < 0 || n > MaxFieldNumber {
		return
	}
	m.present[n>>6] &^= 1 << (uint(n) & 63)
}

// FieldNumbers appends the numbers of the present data elements (2..128, in
// order, without MTI and bitmap) to dst.
func (m *Message) FieldNumbers(dst []int) []int {
	for w := range m.present {
		word := m.present[w]
		if w == 0 {
			word &^= 3 // MTI, bitmap
		}
		for word != 0 {
			b := bits.TrailingZeros64(word)
			dst = append(dst, w*64+b)
			word &= word - 1
		}
	}
	return dst
}

// Clone returns a deep copy of m with a compacted buffer.
func (m *Message) Clone() *Message {
	c := &Message{buf: make([]byte, 0, m.packedSizeHint())}
	c.err = m.err
	if m.Has(FieldMTI) {
		c.Set(FieldMTI, m.Field(FieldMTI))
	}
	var nums [MaxFieldNumber]int
	for _, n := range m.FieldNumbers(nums[:0]) {
		c.Set(n, m.Field(n))
	}
	return c
}

// Response returns a new message answering m: MTI with the response
// function (0200 → 0210, 0420 → 0430) and a copy of the listed fields that
// m has.
func (m *Message) Response(copyFields ...int) *Message {
	r := &Message{buf: make([]byte, 0, 256)}
	r.SetMTI(ResponseMTI(m.MTI()))
	for _, n := range copyFields {
		if m.Has(n) {
			r.Set(n, m.Field(n))
		}
	}
	return r
}

// ResponseMTI returns the response MTI for a request MTI (third digit +1,
// 0200 → 0210). Other input is returned unchanged.
func ResponseMTI(mti string) string {
	if len(mti) != 4 || mti[2] < '0' || mti[2] > '8' || (mti[2]-'0')%2 != 0 {
		return mti
	}
	b := []byte(mti)
	b[2]++
	return string(b)
}

func (m *Message) packedSizeHint() int {
	return len(m.buf) + 64 + 3*20
}

// Pack returns the message's wire bytes (without frame header).
func (m *Message) Pack() ([]byte, error) {
	return m.AppendPack(make([]byte, 0, m.packedSizeHint()))
}

// AppendPack appends the message's wire bytes to dst. On error dst is
// returned unchanged in length.
func (m *Message) AppendPack(dst []byte) ([]byte, error) {
	start := len(dst)
	out, err := m.appendPack(dst)
	if err != nil {
		return dst[:start], err
	}
	return out, nil
}

func (m *Message) appendPack(dst []byte) ([]byte, error) {
	t := compiled
	if m.err != nil {
		return dst, m.err
	}
	if !m.Has(FieldMTI) {
		return dst, fieldErr(FieldMTI, "missing")
	}
	var err error
	if dst, err = appendValue(dst, FieldMTI, &t.defs[FieldMTI], m.Field(FieldMTI)); err != nil {
		return dst, err
	}
	// Bitmap: bits of the present data elements; never bit 1 since no field
	// above 128 exists.
	var bm [32]byte
	bmBytes := bm[:t.bitmapBytes]
	var nums [MaxFieldNumber]int
	fields := m.FieldNumbers(nums[:0])
	for _, n := range fields {
		if n > t.bitmapBytes*8 {
			return dst, fieldErr(n, "beyond the bitmap")
		}
		bmBytes[(n-1)/8] |= 0x80 >> (uint(n-1) % 8)
	}
	dst = appendHexUpper(dst, bmBytes)
	for _, n := range fields {
		if dst, err = appendValue(dst, n, &t.defs[n], m.Field(n)); err != nil {
			return dst, err
		}
	}
	return dst, nil
}

const hexUpper = "0123456789ABCDEF"

func appendHexUpper(dst, src []byte) []byte {
	for _, c := range src {
		dst = append(dst, hexUpper[c>>4], hexUpper[c&0x0f])
	}
	return dst
}

// appendValue appends one field: length prefix and encoded value. The checks
// and their order follow moov-io's packer (encode, then length).
func appendValue(dst []byte, n int, d *fieldDef, v []byte) ([]byte, error) {
	if d.enc == encASCII && !isASCII(v) {
		return dst, fieldErr(n, "non-ASCII character")
	}
	l := len(v)
	if d.digits == 0 {
		if l != d.length {
			return dst, fieldErr(n, "length "+strconv.Itoa(l)+" is not the fixed length "+strconv.Itoa(d.length))
		}
	} else {
		if l > d.length {
			return dst, fieldErr(n, "length "+strconv.Itoa(l)+" exceeds max "+strconv.Itoa(d.length))
		}
		dst = appendDigits(dst, l, d.digits)
	}
	if d.enc == encHex {
		return appendHexUpper(dst, v), nil
	}
	return append(dst, v...), nil
}

func appendDigits(dst []byte, v, digits int) []byte {
	var tmp [20]byte
	for i := digits - 1; i >= 0; i-- {
		tmp[i] = byte('0' + v%10)
		v /= 10
	}
	return append(dst, tmp[:digits]...)
}

// Unpack parses b (one message, no frame header) into m, replacing its
// content. Bytes after the last field are refused. b is copied; m does not
// keep a reference to it.
func (m *Message) Unpack(b []byte) error {
	n, err := m.UnpackPrefix(b)
	if err != nil {
		return err
	}
	if n != len(b) {
		return &FieldError{Field: "message", Reason: strconv.Itoa(len(b)-n) + " bytes after the last field"}
	}
	return nil
}

// UnpackPrefix parses one message from the start of b and returns how many
// bytes it used; trailing bytes are left alone, as moov-io's Unpack does.
func (m *Message) UnpackPrefix(b []byte) (int, error) {
	m.Reset()
	if len(b) > MaxUnpackBytes {
		return 0, &FieldError{Field: "message", Reason: "longer than " + strconv.Itoa(MaxUnpackBytes) + " bytes"}
	}
	t := compiled
	// One copy of the input; values are spans into it. Hex-encoded fields
	// decode into the tail of the same buffer.
	m.buf = append(m.buf, b...)
	src := m.buf[:len(b):len(b)]
	pos := 0
	var err error
	if pos, err = m.unpackField(src, pos, FieldMTI, &t.defs[FieldMTI]); err != nil {
		return 0, err
	}
	// Bitmaps: read while the first bit of the one just read is set, as
	// moov-io does. Bits of fields outside the spec are refused.
	var primary [32]byte
	bmBytes := t.bitmapBytes
	hexLen := 2 * bmBytes
	for i := 0; ; i++ {
		if len(src)-pos < hexLen {
			return 0, fieldErr(FieldBitmap, "truncated")
		}
		var cur [32]byte
		if _, err := hex.Decode(cur[:bmBytes], src[pos:pos+hexLen]); err != nil {
			return 0, fieldErr(FieldBitmap, "not hex")
		}
		pos += hexLen
		if i == 0 {
			primary = cur
		} else {
			// A further bitmap: any data bit in it names a field above 128.
			for j := 0; j < bmBytes; j++ {
				c := cur[j]
				if j == 0 {
					c &^= 0x80
				}
				if c != 0 {
					// moov-io refuses it too (no such field in the spec).
					return 0, fieldErr(i*bmBytes*8+j*8+bits.LeadingZeros8(c)+1, "not in the spec")
				}
			}
		}
		if !t.autoExpand || cur[0]&0x80 == 0 {
			break
		}
	}
	for j := 0; j < bmBytes; j++ {
		c := primary[j]
		for c != 0 {
			lz := bits.LeadingZeros8(c)
			c &^= 0x80 >> uint(lz)
			n := j*8 + lz + 1
			if n == 1 && t.autoExpand {
				continue // presence bit
			}
			d := &t.defs[n]
			if !d.defined || n == FieldBitmap {
				return 0, fieldErr(n, "not in the spec")
			}
			if pos, err = m.unpackField(src, pos, n, d); err != nil {
				return 0, err
			}
		}
	}
	return pos, nil
}

// unpackField reads field n at src[pos:] and records its span.
func (m *Message) unpackField(src []byte, pos, n int, d *fieldDef) (int, error) {
	l := d.length
	if d.digits > 0 {
		if len(src)-pos < d.digits {
			return 0, fieldErr(n, "truncated length prefix")
		}
		v, ok := atoiSmall(src[pos : pos+d.digits])
		if !ok {
			return 0, fieldErr(n, "length prefix is not a number")
		}
		if v < 0 {
			return 0, fieldErr(n, "negative length")
		}
		if v > d.length {
			return 0, fieldErr(n, "length "+strconv.Itoa(v)+" exceeds max "+strconv.Itoa(d.length))
		}
		l = v
		pos += d.digits
	}
	switch d.enc {
	case encHex:
		if len(src)-pos < 2*l {
			return 0, fieldErr(n, "truncated")
		}
		off := len(m.buf)
		m.buf = append(m.buf, make([]byte, l)...)
		if _, err := hex.Decode(m.buf[off:], src[pos:pos+2*l]); err != nil {
			return 0, fieldErr(n, "not hex")
		}
		m.spans[n] = span{off: uint16(off), n: uint16(l)}
		pos += 2 * l
	default:
		if len(src)-pos < l {
			return 0, fieldErr(n, "length "+strconv.Itoa(l)+" exceeds the "+strconv.Itoa(len(src)-pos)+" bytes left")
		}
		if d.enc == encASCII && !isASCII(src[pos:pos+l]) {
			return 0, fieldErr(n, "non-ASCII character")
		}
		m.spans[n] = span{off: uint16(pos), n: uint16(l)}
		pos += l
	}
	m.present[n>>6] |= 1 << (uint(n) & 63)
	return pos, nil
}

// atoiSmall parses a length prefix with strconv.Atoi's grammar (optional
// sign, then at least one decimal digit), which is what moov-io accepts.
func atoiSmall(b []byte) (int, bool) {
	neg := false
	if len(b) > 0 && (b[0] == '+' || b[0] == '-') {
		neg = b[0] == '-'
		b = b[1:]
	}
	if len(b) == 0 {
		return 0, false
	}
	v := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	if neg {
		v = -v
	}
	return v, true
}

// isASCII reports whether every byte is ≤ 0x7F, eight bytes at a time.
func isASCII(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b)&0x8080808080808080 != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c > 0x7F {
			return false
		}
	}
	return true
}
