// Package httpx holds the HTTP conventions every mipay party follows: JSON
// bodies with bounded size and strict decoding, JSON errors
// {"error":{"code":…,"message":…}}, the one mapping of mipay error codes to
// HTTP status, server timeouts, /healthz and /metrics, panic recovery, request
// metrics, graceful shutdown, and a JSON client for party-to-party calls.
package httpx

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/logmask"
)

// Bounds of the server and client. Every party uses them unless it has a
// reason to differ.
const (
	DefaultMaxBodyBytes      = 1 << 20 // request body limit of DecodeJSON (1 MiB)
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 15 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10 // 64 KiB of request headers
	DefaultShutdownTimeout   = 10 * time.Second
	DefaultClientTimeout     = 15 * time.Second // whole party-to-party call, when ctx has no deadline
	DefaultMaxResponseBytes  = 4 << 20          // response body limit of Client.Do (4 MiB)
)

// StatusOf is the one place mapping mipay error codes to HTTP status. Unknown
// codes are 500.
func StatusOf(code string) int {
	switch code {
	case mipay.EINVALID:
		return http.StatusBadRequest
	case mipay.EUNAUTHORIZED:
		return http.StatusUnauthorized
	case mipay.EDECLINED:
		return http.StatusPaymentRequired
	case mipay.EFORBIDDEN:
		return http.StatusForbidden
	case mipay.ENOTFOUND:
		return http.StatusNotFound
	case mipay.ECONFLICT:
		return http.StatusConflict
	case mipay.ETOOLARGE:
		return http.StatusRequestEntityTooLarge
	case mipay.ELOCKED:
		return http.StatusLocked
	case mipay.ELIMIT:
		return http.StatusTooManyRequests
	case mipay.EUNAVAILABLE:
		return http.StatusServiceUnavailable
	case mipay.ETIMEOUT:
		return http.StatusGatewayTimeout
	default:
		return http.StatusInternalServerError
	}
}

// CodeOfStatus maps an HTTP status back to a mipay code, for answers that
// carry no JSON error (a proxy's 502, a bare 404).
func CodeOfStatus(status int) string {
	switch status {
	case http.StatusBadRequest, http.StatusUnprocessableEntity, http.StatusMethodNotAllowed,
		http.StatusUnsupportedMediaType:
		return mipay.EINVALID
	case http.StatusUnauthorized:
		return mipay.EUNAUTHORIZED
	case http.StatusPaymentRequired:
		return mipay.EDECLINED
	case http.StatusForbidden:
		return mipay.EFORBIDDEN
	case http.StatusNotFound:
		return mipay.ENOTFOUND
	case http.StatusConflict:
		return mipay.ECONFLICT
	case http.StatusRequestEntityTooLarge:
		return mipay.ETOOLARGE
	case http.StatusLocked:
		return mipay.ELOCKED
	case http.StatusTooManyRequests:
		return mipay.ELIMIT
	case http.StatusBadGateway, http.StatusServiceUnavailable:
		return mipay.EUNAVAILABLE
	case http.StatusGatewayTimeout, http.StatusRequestTimeout:
		return mipay.ETIMEOUT
	default:
		return mipay.EINTERNAL
	}
}

// RequestIDHeader carries a request's id between parties and back to the
// caller; WriteError's log lines and the client's calls carry it on.
const RequestIDHeader = "X-Request-Id"

// MaxRequestIDBytes bounds an incoming request id; longer or unprintable
// ones are replaced.
const MaxRequestIDBytes = 64

type reqKey struct{}

// reqInfo is what the server wrapper puts in a request's context.
type reqInfo struct {
	log *slog.Logger
	id  string
}

// WithLogger returns ctx carrying log; the server wrapper puts the party's
// logger in every request's context, where WriteError finds it.
func WithLogger(ctx context.Context, log *slog.Logger) context.Context {
	return context.WithValue(ctx, reqKey{}, reqInfo{log: log, id: RequestID(ctx)})
}

// WithRequestID returns ctx carrying a request id, which Client.Do sends
// on (background jobs may set one to tie their calls together).
func WithRequestID(ctx context.Context, id string) context.Context {
	info, _ := ctx.Value(reqKey{}).(reqInfo)
	info.id = id
	return context.WithValue(ctx, reqKey{}, info)
}

// RequestID is the id of the request ctx belongs to, or "".
func RequestID(ctx context.Context) string {
	info, _ := ctx.Value(reqKey{}).(reqInfo)
	return info.id
}

// Logger returns the logger in ctx (with the request id, when there is
// one), or a masking logger over slog.Default(). It always masks card
// numbers.
func Logger(ctx context.Context) *slog.Logger {
	info, _ := ctx.Value(reqKey{}).(reqInfo)
	l := info.log
	if l == nil {
		l = slog.New(logmask.NewHandler(slog.Default().Handler()))
	}
	if info.id != "" {
		l = l.With("request_id", info.id)
	}
	return l
}

// validRequestID accepts 1–MaxRequestIDBytes of letters, digits, '-', '_', '.'.
func validRequestID(id string) bool {
	if id == "" || len(id) > MaxRequestIDBytes {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// newRequestID is 16 random hex digits; ids trace requests, they guard
// nothing, so math/rand is enough.
func newRequestID() string {
	var b [16]byte
	const hexd = "0123456789abcdef"
	v := rand.Uint64()
	for i := range b {
		b[i] = hexd[v&0xf]
		v >>= 4
	}
	return string(b[:])
}

// maskedLogger makes sure log masks card numbers (wrapping is idempotent).
func maskedLogger(log *slog.Logger) *slog.Logger {
	if log == nil {
		log = slog.Default()
	}
	h := log.Handler()
	if _, ok := h.(*logmask.Handler); ok {
		return log
	}
	return slog.New(logmask.NewHandler(h))
}
