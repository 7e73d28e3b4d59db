package tsp

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/httpx"
)

// The TSP's HTTP API (see API.md). The wallet (token requestor) and the
// issuers authenticate with a bearer secret each; GET /v1/keys/encryption is
// public (it is a public key).

// Callers of the API.
type caller int

const (
	callerNone caller = iota
	callerRequestor
	callerIssuer
)

// maxRequestBytes bounds every request body: the largest is a tokenize with
// its card data blob.
const maxRequestBytes = 16 << 10

// Credentials are the bearer secrets of the API's callers. An empty secret
// admits nobody in that role.
type Credentials struct {
	RequestorToken string // the wallet (Mi Pay)
	IssuerToken    string // the issuers' token lifecycle calls
}

// API is the HTTP transport of a Service.
type API struct {
	s     *Service
	reqTk [32]byte
	issTk [32]byte
	hasRq bool
	hasIs bool
}

// NewAPI returns the HTTP API of s.
func NewAPI(s *Service, cred Credentials) *API {
	a := &API{s: s}
	if cred.RequestorToken != "" {
		a.reqTk, a.hasRq = sha256.Sum256([]byte(cred.RequestorToken)), true
	}
	if cred.IssuerToken != "" {
		a.issTk, a.hasIs = sha256.Sum256([]byte(cred.IssuerToken)), true
	}
	return a
}

// Handler returns the routes.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/keys/encryption", a.encryptionKey)
	mux.HandleFunc("POST /v1/tokenize", a.auth(a.tokenize, callerRequestor))
	mux.HandleFunc("GET /v1/tokens/{ref}", a.auth(a.get, callerRequestor, callerIssuer))
	mux.HandleFunc("POST /v1/tokens/{ref}/authentication/request", a.auth(a.authRequest, callerRequestor))
	mux.HandleFunc("POST /v1/tokens/{ref}/authentication/verify", a.auth(a.authVerify, callerRequestor))
	mux.HandleFunc("GET /v1/tokens/{ref}/provisioning", a.auth(a.provisioning, callerRequestor))
	mux.HandleFunc("POST /v1/tokens/{ref}/confirm-provisioning", a.auth(a.confirm, callerRequestor))
	for _, act := range []Action{ActionSuspend, ActionResume, ActionDelete} {
		mux.HandleFunc("POST /v1/tokens/{ref}/"+string(act), a.auth(a.lifecycle(act), callerRequestor, callerIssuer))
	}
	mux.HandleFunc("POST /v1/tokens/lifecycle", a.auth(a.lifecycleBatch, callerRequestor, callerIssuer))
	// The issuer's card endpoints take the PAN in the body (a POST, so it
	// is never in a URL or an access log).
	mux.HandleFunc("POST /v1/issuer/cards/lifecycle", a.auth(jsonCall(a.s.CardLifecycle), callerIssuer))
	mux.HandleFunc("POST /v1/issuer/cards/replace", a.auth(jsonCall(a.s.ReplaceCard), callerIssuer))
	mux.HandleFunc("POST /v1/issuer/cards/tokens", a.auth(jsonCall(a.s.CardTokens), callerIssuer))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteError(w, r, mipay.Errorf(mipay.ENOTFOUND, "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
}

type callerKey struct{}

// auth admits requests whose bearer secret belongs to one of the roles.
func (a *API) auth(h func(http.ResponseWriter, *http.Request, caller), roles ...caller) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c := a.callerOf(r)
		for _, role := range roles {
			if c == role {
				h(w, r, c)
				return
			}
		}
		if c == callerNone {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mipay tsp"`)
			httpx.WriteError(w, r, mipay.Errorf(mipay.EUNAUTHORIZED, "send Authorization: Bearer <token requestor or issuer secret>"))
			return
		}
		httpx.WriteError(w, r, mipay.Errorf(mipay.EFORBIDDEN, "this endpoint is not for this caller"))
	}
}

func (a *API) callerOf(r *http.Request) caller {
	h := r.Header.Get("Authorization")
	if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") || len(h) > 512 {
		return callerNone
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(h[7:])))
	// Compare hashes in constant time: the secret's length leaks nothing.
	switch {
	case a.hasRq && subtle.ConstantTimeCompare(sum[:], a.reqTk[:]) == 1:
		return callerRequestor
	case a.hasIs && subtle.ConstantTimeCompare(sum[:], a.issTk[:]) == 1:
		return callerIssuer
	}
	return callerNone
}

func (a *API) encryptionKey(w http.ResponseWriter, r *http.Request) {
	k, err := a.s.EncryptionKey(r.Context())
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, k)
}

func (a *API) tokenize(w http.ResponseWriter, r *http.Request, _ caller) {
	var req TokenizeRequest
	if err := httpx.DecodeJSONLimit(w, r, &req, maxRequestBytes); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	res, err := a.s.Tokenize(r.Context(), req)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	status := http.StatusCreated
	if res.Decision == DecisionDeclined {
		status = http.StatusOK // a business "no", not an error
	}
	httpx.WriteJSON(w, status, res)
}

func (a *API) get(w http.ResponseWriter, r *http.Request, _ caller) {
	v, err := a.s.View(r.Context(), r.PathValue("ref"))
	reply(w, r, v, err)
}

func (a *API) authRequest(w http.ResponseWriter, r *http.Request, _ caller) {
	var in struct {
		MethodID string `json:"methodId"`
	}
	if err := httpx.DecodeJSONLimit(w, r, &in, maxRequestBytes); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	v, err := a.s.RequestAuthentication(r.Context(), r.PathValue("ref"), in.MethodID)
	reply(w, r, v, err)
}

// VerifyResponse is the answer to a verified code: the token, now ACTIVE.
// Wrong, expired and locked codes are errors (reasons OTP_WRONG,
// OTP_EXPIRED, OTP_LOCKED) with a message for the user.
type VerifyResponse struct {
	Result  string `json:"result"` // VERIFIED
	Message string `json:"message"`
	TokenView
}

func (a *API) authVerify(w http.ResponseWriter, r *http.Request, _ caller) {
	var in struct {
		Code string `json:"code"`
	}
	if err := httpx.DecodeJSONLimit(w, r, &in, maxRequestBytes); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	v, err := a.s.VerifyAuthentication(r.Context(), r.PathValue("ref"), in.Code)
	reply(w, r, VerifyResponse{Result: OTPVerified, Message: "Verified", TokenView: v}, err)
}

func (a *API) provisioning(w http.ResponseWriter, r *http.Request, _ caller) {
	p, err := a.s.Provisioning(r.Context(), r.PathValue("ref"))
	reply(w, r, p, err)
}

func (a *API) confirm(w http.ResponseWriter, r *http.Request, _ caller) {
	if r.ContentLength != 0 {
		var in struct{}
		if err := httpx.DecodeJSONLimit(w, r, &in, maxRequestBytes); err != nil {
			httpx.WriteError(w, r, err)
			return
		}
	}
	v, err := a.s.ConfirmProvisioning(r.Context(), r.PathValue("ref"))
	reply(w, r, v, err)
}

func (a *API) lifecycle(act Action) func(http.ResponseWriter, *http.Request, caller) {
	return func(w http.ResponseWriter, r *http.Request, c caller) {
		var in struct {
			CausedBy CausedBy `json:"causedBy"`
			Reason   string   `json:"reason"`
		}
		if err := httpx.DecodeJSONLimit(w, r, &in, maxRequestBytes); err != nil {
			httpx.WriteError(w, r, err)
			return
		}
		// Only the issuer secret may speak for the issuer, and it only for
		// the issuer (one issuer process hosts every bank, with one secret).
		if (in.CausedBy == CausedByIssuer) != (c == callerIssuer) && in.CausedBy.Valid() {
			httpx.WriteError(w, r, mipay.Errorf(mipay.EFORBIDDEN, "causedBy %s is not allowed for this caller", in.CausedBy))
			return
		}
		v, err := a.s.Lifecycle(r.Context(), r.PathValue("ref"), act, in.CausedBy, in.Reason)
		reply(w, r, v, err)
	}
}

// jsonCall is the handler of an endpoint whose JSON body is call's input
// and whose answer is call's result.
func jsonCall[In, Out any](call func(context.Context, In) (Out, error)) func(http.ResponseWriter, *http.Request, caller) {
	return func(w http.ResponseWriter, r *http.Request, _ caller) {
		var in In
		if err := httpx.DecodeJSONLimit(w, r, &in, maxRequestBytes); err != nil {
			httpx.WriteError(w, r, err)
			return
		}
		v, err := call(r.Context(), in)
		reply(w, r, v, err)
	}
}

func reply(w http.ResponseWriter, r *http.Request, v any, err error) {
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, v)
}
