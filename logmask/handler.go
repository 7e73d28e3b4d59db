package logmask

import (
	"context"
	"encoding"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"strconv"
)

// Handler is an slog.Handler that masks card numbers before passing records to
// the handler it wraps.
type Handler struct {
	inner slog.Handler
}

var _ slog.Handler = (*Handler)(nil)

// NewHandler wraps inner so that every Luhn-valid 13–19 digit number in the
// message and in attribute values (strings, numbers, errors, fmt.Stringer,
// text and JSON forms of any value, inside groups) is masked. Wrapping a
// *Handler again returns it unchanged.
func NewHandler(inner slog.Handler) slog.Handler {
	if h, ok := inner.(*Handler); ok {
		return h
	}
	return &Handler{inner: inner}
}

// Enabled reports whether the wrapped handler handles level.
func (h *Handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.inner.Enabled(ctx, level)
}

// Handle masks r's message and attributes and passes it on. A record with
// nothing to mask is passed on as is, without copying.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	msg := Mask(r.Message)
	changed := msg != r.Message
	if !changed {
		r.Attrs(func(a slog.Attr) bool {
			if _, c := maskAttr(a); c {
				changed = true
				return false
			}
			return true
		})
	}
	if !changed {
		return h.inner.Handle(ctx, r)
	}
	out := slog.NewRecord(r.Time, r.Level, msg, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		m, _ := maskAttr(a)
		out.AddAttrs(m)
		return true
	})
	return h.inner.Handle(ctx, out)
}

// WithAttrs masks attrs once, when they are attached.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	masked := make([]slog.Attr, len(attrs))
	for k, a := range attrs {
		masked[k], _ = maskAttr(a)
	}
	return &Handler{inner: h.inner.WithAttrs(masked)}
}

// WithGroup opens a group; its name is masked like any text.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{inner: h.inner.WithGroup(Mask(name))}
}

// maskAttr returns a with key and value masked and whether anything changed.
func maskAttr(a slog.Attr) (slog.Attr, bool) {
	key := Mask(a.Key)
	v, changed := maskValue(a.Value)
	if key != a.Key {
		changed = true
	}
	if !changed {
		return a, false
	}
	return slog.Attr{Key: key, Value: v}, true
}

// Integers with 13–19 digits may be PANs (an int64 holds up to 19 digits, a
// uint64 up to 20).
const (
	minPANValue = 1_000_000_000_000         // 13 digits
	maxPANValue = 9_999_999_999_999_999_999 // 19 digits
)

// maskValue masks one value; a value that held a card number comes back as a
// string.
func maskValue(v slog.Value) (slog.Value, bool) {
	switch v.Kind() {
	case slog.KindString:
		s := v.String()
		if m := Mask(s); m != s {
			return slog.StringValue(m), true
		}
	case slog.KindInt64:
		if n := v.Int64(); n >= minPANValue || n <= -minPANValue {
			return maskNumberText(v, strconv.FormatInt(n, 10))
		}
	case slog.KindUint64:
		if n := v.Uint64(); n >= minPANValue && n <= maxPANValue {
			return maskNumberText(v, strconv.FormatUint(n, 10))
		}
	case slog.KindFloat64:
		// JSON handlers print integral floats below 1e21 in full.
		if f := v.Float64(); math.Abs(f) >= minPANValue && math.Abs(f) < 1e21 && f == math.Trunc(f) {
			return maskNumberText(v, strconv.FormatFloat(f, 'f', -1, 64))
		}
	case slog.KindGroup:
		return maskGroup(v)
	case slog.KindLogValuer:
		return maskValue(v.Resolve())
	case slog.KindAny:
		return maskAny(v)
	}
	return v, false
}

func maskNumberText(v slog.Value, text string) (slog.Value, bool) {
	if m := Mask(text); m != text {
		return slog.StringValue(m), true
	}
	return v, false
}

func maskGroup(v slog.Value) (slog.Value, bool) {
	attrs := v.Group()
	var out []slog.Attr
	for k, a := range attrs {
		m, changed := maskAttr(a)
		if changed && out == nil {
			out = make([]slog.Attr, len(attrs))
			copy(out, attrs[:k])
		}
		if out != nil {
			out[k] = m
		}
	}
	if out == nil {
		return v, false
	}
	return slog.GroupValue(out...), true
}

// maskAny checks every text form a handler may print for an arbitrary value:
// its error text, its MarshalText, its %+v form (text handlers) and its JSON
// (JSON handlers). When any holds a card number, the value is replaced by the
// masked text of the first form that held one.
func maskAny(v slog.Value) (slog.Value, bool) {
	a := v.Any()
	if err, ok := a.(error); ok {
		s := err.Error()
		if m := Mask(s); m != s {
			return slog.StringValue(m), true
		}
		return v, false
	}
	if b, ok := a.([]byte); ok { // text handlers print byte slices as strings
		if m, changed := maskText(string(b)); changed {
			return slog.StringValue(m), true
		}
	}
	if tm, ok := a.(encoding.TextMarshaler); ok {
		if b, err := tm.MarshalText(); err == nil {
			if m, changed := maskText(string(b)); changed {
				return slog.StringValue(m), true
			}
		}
	}
	if m, changed := maskText(fmt.Sprintf("%+v", a)); changed {
		return slog.StringValue(m), true
	}
	if b, err := json.Marshal(a); err == nil {
		if m, changed := maskText(string(b)); changed {
			return slog.StringValue(m), true
		}
	}
	return v, false
}

func maskText(s string) (string, bool) {
	m := Mask(s)
	return m, m != s
}
