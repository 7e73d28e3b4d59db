package iso8583

import (
	"errors"
	"strconv"

	"github.com/mipay-oss/mipay"
)

// FieldError reports what is wrong with one field of a message. It names the
// field path ("field 35", "field 55.9F26", "MTI", "bitmap") and the rule that
// was broken, never the value: PAN, track 2 and ICC data must not leak into
// logs through errors.
type FieldError struct {
	Field  string // "MTI", "bitmap", "field 35", "field 123.01", …
	Reason string // e.g. "length 40 exceeds max 37"
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// ErrFrameTooLarge is returned (wrapped) by ReadFrame and WriteFrame when a
// frame's length exceeds the configured bound.
var ErrFrameTooLarge = errors.New("iso8583: frame too large")

func fieldName(n int) string {
	switch n {
	case FieldMTI:
		return "MTI"
	case FieldBitmap:
		return "bitmap"
	}
	return "field " + strconv.Itoa(n)
}

func fieldErr(n int, reason string) *FieldError {
	return &FieldError{Field: fieldName(n), Reason: reason}
}

// AsMipayError converts an error of this package into a *mipay.Error whose
// message is safe to show (it carries the field path only).
func AsMipayError(err error) error {
	if err == nil {
		return nil
	}
	var me *mipay.Error
	if errors.As(err, &me) {
		return err
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		return mipay.WrapError(mipay.EINVALID, err, "iso8583 %s", fe.Error())
	}
	if errors.Is(err, ErrFrameTooLarge) {
		return mipay.WrapError(mipay.ETOOLARGE, err, "iso8583 message too large")
	}
	return mipay.WrapError(mipay.EINVALID, err, "invalid iso8583 message")
}
