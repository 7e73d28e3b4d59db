package httpx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/logmask"
)

// maxFieldNameBytes bounds a client-supplied field name echoed in an error.
const maxFieldNameBytes = 64

// DecodeJSON decodes r's body into v with the default 1 MiB limit; see
// DecodeJSONLimit.
func DecodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	return DecodeJSONLimit(w, r, v, DefaultMaxBodyBytes)
}

// DecodeJSONLimit decodes r's body, at most limit bytes, into v: exactly one
// JSON value, unknown fields refused. Errors are *mipay.Error with a message
// naming the problem (`body: field "expiry" must be a string`): EINVALID, or
// ETOOLARGE over the limit.
func DecodeJSONLimit(w http.ResponseWriter, r *http.Request, v any, limit int64) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return mipay.Errorf(mipay.EINVALID, "body: content type must be application/json")
		}
	}
	if r.Body == nil || r.Body == http.NoBody {
		return mipay.Errorf(mipay.EINVALID, "body: must not be empty")
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err, limit)
	}
	// Exactly one value: anything but whitespace after it is refused.
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return tooLarge(limit, err)
		}
		return mipay.Errorf(mipay.EINVALID, "body: must hold a single JSON value")
	}
	return nil
}

func tooLarge(limit int64, cause error) error {
	return mipay.WrapError(mipay.ETOOLARGE, cause, "body: larger than %d bytes", limit)
}

// decodeError turns a decoding error into a client-facing message. Nothing of
// the body's values is echoed; field names are bounded and masked.
func decodeError(err error, limit int64) error {
	var (
		syn *json.SyntaxError
		ute *json.UnmarshalTypeError
		mbe *http.MaxBytesError
		iue *json.InvalidUnmarshalError
	)
	switch {
	case errors.As(err, &mbe):
		return tooLarge(limit, err)
	case errors.Is(err, io.EOF):
		return mipay.Errorf(mipay.EINVALID, "body: must not be empty")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return mipay.WrapError(mipay.EINVALID, err, "body: truncated JSON")
	case errors.As(err, &syn):
		return mipay.WrapError(mipay.EINVALID, err, "body: malformed JSON at byte %d", syn.Offset)
	case errors.As(err, &ute):
		if ute.Field == "" {
			return mipay.WrapError(mipay.EINVALID, err, "body: must be %s", jsonKind(ute.Type))
		}
		return mipay.WrapError(mipay.EINVALID, err, "body: field %q must be %s", safeField(ute.Field), jsonKind(ute.Type))
	case errors.As(err, &iue):
		return mipay.WrapError(mipay.EINTERNAL, err, "internal error")
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return mipay.Errorf(mipay.EINVALID, "body: unknown field %q", safeField(name))
	}
	// Errors from UnmarshalJSON/UnmarshalText methods of the target: their
	// text is ours (a domain type explaining what it wants), but it is masked.
	return mipay.WrapError(mipay.EINVALID, err, "body: %s", safeText(err.Error()))
}

func safeField(name string) string {
	name = strings.Trim(name, `"`)
	if len(name) > maxFieldNameBytes {
		name = name[:maxFieldNameBytes] + "…"
	}
	return logmask.Mask(name)
}

// maxErrTextBytes bounds the text of a custom unmarshal error shown to a client.
const maxErrTextBytes = 200

func safeText(s string) string {
	s = strings.TrimPrefix(s, "json: ")
	if len(s) > maxErrTextBytes {
		s = s[:maxErrTextBytes] + "…"
	}
	return logmask.Mask(s)
}

// jsonKind names the JSON type a Go type decodes from.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "of another type"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return "a base64 string"
		}
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	default:
		return "of another type"
	}
}

// WriteJSON answers status with v as JSON. v is encoded before anything is
// written, so an encoding failure becomes a clean 500.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		buf.Reset()
		status = http.StatusInternalServerError
		buf.WriteString(`{"error":{"code":"internal","message":"internal error"}}` + "\n")
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// ErrorBody is the JSON shape of every error answer.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the inside of ErrorBody.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Reason  string `json:"reason,omitempty"`
}

// WriteError answers err as {"error":{"code":…,"message":…}} with the status
// of its code. Internal errors (any error that is not a *mipay.Error, or
// code "internal") are logged — masked — with the request and answered with
// a generic message; unavailable/timeout are logged as warnings.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	if err == nil {
		err = errors.New("httpx: WriteError called with nil error")
	}
	code, msg := classify(err)
	status := StatusOf(code)
	ctx := context.Background()
	if r != nil {
		ctx = r.Context()
	}
	if status >= 500 {
		log := Logger(ctx)
		attrs := []any{"code", code, "err", err}
		if r != nil {
			attrs = append(attrs, "method", r.Method, "path", r.URL.Path)
		}
		if code == mipay.EINTERNAL {
			log.ErrorContext(ctx, "request failed", attrs...)
		} else {
			log.WarnContext(ctx, "request failed", attrs...)
		}
	}
	WriteJSON(w, status, ErrorBody{Error: ErrorDetail{
		Code:    code,
		Message: logmask.Mask(msg),
		Reason:  logmask.Mask(mipay.ErrorReason(err)),
	}})
}

// classify gives the code and user-safe message of err.
func classify(err error) (code, msg string) {
	var me *mipay.Error
	if errors.As(err, &me) {
		if me.Code == mipay.EINTERNAL || StatusOf(me.Code) == http.StatusInternalServerError {
			return mipay.EINTERNAL, "internal error"
		}
		return me.Code, me.Message
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return mipay.ETOOLARGE, fmt.Sprintf("body: larger than %d bytes", mbe.Limit)
	case errors.Is(err, context.DeadlineExceeded):
		return mipay.ETIMEOUT, "the request took too long"
	}
	return mipay.EINTERNAL, "internal error"
}
