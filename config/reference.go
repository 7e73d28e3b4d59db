package config

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

//go:generate go run ./internal/gen -o default.json

//go:embed default.json
var defaultJSON []byte

// MaxFileBytes bounds a reference data file; the default is about 60 KiB.
const MaxFileBytes = 16 << 20

// Default returns a fresh copy of the embedded reference data (callers may
// change it without affecting each other).
func Default() (*Reference, error) {
	ref, err := Parse(defaultJSON)
	if err != nil {
		return nil, fmt.Errorf("embedded default config: %w", err)
	}
	return ref, nil
}

// Load reads reference data from a JSON file; the file replaces the default
// as a whole. Every error names the file and, for a malformed file, the line
// and column.
func Load(path string) (*Reference, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, errors.Unwrap(err))
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, fmt.Errorf("config file %s: is a directory, not a JSON file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("config file %s: larger than %d MiB", path, MaxFileBytes>>20)
	}
	ref, err := Parse(data)
	if err != nil {
		var se *SyntaxError
		if errors.As(err, &se) {
			se.File = path
			return nil, se
		}
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	return ref, nil
}

// SyntaxError is a malformed reference data file: where and what.
type SyntaxError struct {
	File         string // "" when parsing bytes
	Line, Column int    // 1-based; 0 when the position is unknown
	Msg          string
}

func (e *SyntaxError) Error() string {
	var b strings.Builder
	if e.File != "" {
		fmt.Fprintf(&b, "config file %s: ", e.File)
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d, column %d: ", e.Line, e.Column)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Parse decodes and validates reference data. Unknown fields are refused so
// that a misspelt key is not silently ignored.
func Parse(data []byte) (*Reference, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &SyntaxError{Msg: "the file is empty; it must hold one JSON object"}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var ref Reference
	if err := dec.Decode(&ref); err != nil {
		return nil, syntaxError(data, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		line, col := position(data, dec.InputOffset())
		return nil, &SyntaxError{Line: line, Column: col, Msg: "unexpected data after the JSON object"}
	}
	if err := ref.Validate(); err != nil {
		return nil, fmt.Errorf("invalid reference data: %w", err)
	}
	return &ref, nil
}

// syntaxError turns a decoding error into a SyntaxError with a position.
func syntaxError(data []byte, err error) *SyntaxError {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
		dur *durationError
	)
	offset := int64(-1)
	msg := strings.TrimPrefix(err.Error(), "json: ")
	switch {
	case errors.As(err, &syn):
		offset = syn.Offset - 1 // Offset counts the offending byte
		if strings.Contains(syn.Error(), "unexpected end of JSON input") {
			msg = "unexpected end of file (unclosed object, array or string)"
		}
	case errors.Is(err, io.ErrUnexpectedEOF):
		offset = int64(len(data))
		msg = "unexpected end of file (unclosed object, array or string)"
	case errors.As(err, &typ):
		offset = typ.Offset
		msg = fmt.Sprintf("field %s: want %s, found a JSON %s", typ.Field, typ.Type, typ.Value)
	case errors.As(err, &dur):
		offset = quotedOffset(data, dur.s, false)
		msg = dur.Error()
	case strings.HasPrefix(msg, "unknown field "):
		name := strings.Trim(strings.TrimPrefix(msg, "unknown field "), `"`)
		offset = quotedOffset(data, name, true)
		msg = fmt.Sprintf("unknown field %q (misspelt, or not a field of this object)", name)
	}
	e := &SyntaxError{Msg: msg}
	if offset >= 0 {
		e.Line, e.Column = position(data, offset)
	}
	return e
}

// quotedOffset finds the first occurrence of s as a JSON string (as an object
// key when key is set) and returns its offset, or -1.
func quotedOffset(data []byte, s string, key bool) int64 {
	q, _ := json.Marshal(s)
	for from := 0; from < len(data); {
		i := bytes.Index(data[from:], q)
		if i < 0 {
			return -1
		}
		at := from + i
		rest := bytes.TrimLeft(data[at+len(q):], " \t\r\n")
		if !key || (len(rest) > 0 && rest[0] == ':') {
			return int64(at)
		}
		from = at + len(q)
	}
	return -1
}

// position converts a byte offset into a 1-based line and column.
func position(data []byte, offset int64) (line, col int) {
	if offset > int64(len(data)) {
		offset = int64(len(data))
	}
	if offset < 0 {
		offset = 0
	}
	before := data[:offset]
	line = 1 + bytes.Count(before, []byte{'\n'})
	col = 1 + int(offset) - (bytes.LastIndexByte(before, '\n') + 1)
	return line, col
}

// IssuerByPAN returns the issuer whose PAN BIN is the longest prefix of pan.
func (r *Reference) IssuerByPAN(pan string) (*Issuer, bool) {
	return r.longestPrefix(pan, func(is *Issuer) []string { return is.BINs })
}

// IssuerByToken returns the issuer whose token BIN is the longest prefix of
// token.
func (r *Reference) IssuerByToken(token string) (*Issuer, bool) {
	return r.longestPrefix(token, func(is *Issuer) []string { return is.TokenBINs })
}

// Issuer returns the issuer with this id.
func (r *Reference) Issuer(id string) (*Issuer, bool) {
	for i := range r.Issuers {
		if r.Issuers[i].ID == id {
			return &r.Issuers[i], true
		}
	}
	return nil, false
}

// longestPrefix scans every range (about 100 in the default data, no
// allocation; see BenchmarkIssuerByPAN). A scan stays correct however a
// caller changes Issuers, which an index built at load time would not.
func (r *Reference) longestPrefix(number string, ranges func(*Issuer) []string) (*Issuer, bool) {
	var best *Issuer
	bestLen := 0
	for i := range r.Issuers {
		for _, bin := range ranges(&r.Issuers[i]) {
			if len(bin) > bestLen && strings.HasPrefix(number, bin) {
				best, bestLen = &r.Issuers[i], len(bin)
			}
		}
	}
	return best, best != nil
}

// Cardholder returns the demo cardholder with this PAN and its issuer.
func (r *Reference) Cardholder(pan string) (*Issuer, *Cardholder, bool) {
	is, ok := r.IssuerByPAN(pan)
	if !ok {
		return nil, nil, false
	}
	for i := range is.Cardholders {
		if is.Cardholders[i].PAN == pan {
			return is, &is.Cardholders[i], true
		}
	}
	return nil, nil, false
}

// LuhnValid reports whether number is all digits and passes the Luhn check.
func LuhnValid(number string) bool {
	if len(number) < 2 || !allDigits(number) {
		return false
	}
	return LuhnDigit(number[:len(number)-1]) == number[len(number)-1:]
}

// LuhnDigit returns the check digit to append to the digits of body.
func LuhnDigit(body string) string {
	sum := 0
	double := true // the rightmost body digit is doubled
	for i := len(body) - 1; i >= 0; i-- {
		d := int(body[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return string(rune('0' + (10-sum%10)%10))
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// MaskPAN keeps the first 6 and last 4 digits, as logs and errors must.
func MaskPAN(pan string) string {
	if len(pan) < 11 {
		return strings.Repeat("*", len(pan))
	}
	return pan[:6] + strings.Repeat("*", len(pan)-10) + pan[len(pan)-4:]
}
