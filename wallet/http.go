package wallet

import (
	_ "embed"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/httpx"
)

// OpenAPI is the wallet API's OpenAPI 3 document, served at GET
// /openapi.json. A test checks that it lists exactly the routes below.
//
//go:embed openapi.json
var OpenAPI []byte

// route is one endpoint of the API. Handlers of routes with auth get the
// signed-in account's id; the others get "".
type route struct {
	method, path string
	auth         bool
	h            func(w http.ResponseWriter, r *http.Request, accountID string) error
}

// API is the wallet's HTTP transport over a Service.
type API struct {
	s *Service
}

// NewAPI returns the HTTP transport of s.
func NewAPI(s *Service) *API { return &API{s: s} }

func (a *API) routes() []route {
	return append([]route{
		{"GET", "/openapi.json", false, a.openAPI},
		{"POST", "/v1/accounts", false, a.register},
		{"POST", "/v1/sessions", false, a.signIn},
		{"DELETE", "/v1/sessions/current", true, a.signOut},
		{"GET", "/v1/tsp-key", false, a.tspKey},
		{"POST", "/v1/devices", true, a.registerDevice},
		{"GET", "/v1/devices", true, a.listDevices},
		{"GET", "/v1/devices/{id}", true, a.getDevice},
		{"PUT", "/v1/devices/{id}/fingerprint", true, a.setFingerprint},
		{"POST", "/v1/devices/{id}/cards", true, a.startBinding},
		{"GET", "/v1/devices/{id}/cards", true, a.listCards},
		{"PUT", "/v1/devices/{id}/default-card", true, a.setDefaultCard},
		{"GET", "/v1/devices/{id}/notifications", true, a.notifications},
		{"GET", "/v1/devices/{id}/notifications/stream", true, a.notificationStream},
		{"POST", "/v1/devices/{id}/locations", true, a.reportLocation},
		{"GET", "/v1/devices/{id}/locations", true, a.locations},
		{"POST", "/v1/devices/{id}/commands", true, a.queueCommand},
		{"GET", "/v1/devices/{id}/commands", true, a.listCommands},
		{"POST", "/v1/devices/{id}/sync", true, a.sync},
		{"POST", "/v1/devices/{id}/commands/{commandId}/result", true, a.commandResult},
		{"GET", "/v1/cards/{id}", true, a.getCard},
		{"DELETE", "/v1/cards/{id}", true, a.removeCard},
		{"POST", "/v1/cards/{id}/otp", true, a.requestOTP},
		{"POST", "/v1/cards/{id}/otp/verify", true, a.verifyOTP},
		{"GET", "/v1/cards/{id}/provisioning", true, a.provisioning},
		{"POST", "/v1/cards/{id}/provisioned", true, a.provisioned},
		{"GET", "/v1/cards/{id}/transactions", true, a.transactions},
		{"POST", "/v1/cards/{id}/suspend", true, a.suspendCard},
		{"POST", "/v1/cards/{id}/resume", true, a.resumeCard},
		{"POST", "/v1/devices/{id}/switch-off", true, a.switchOff},
		{"POST", "/v1/devices/{id}/found", true, a.found},
		{"DELETE", "/v1/devices/{id}/cards", true, a.removeDeviceCards},
	}, append(a.lostRoutes(), a.rewardRoutes()...)...)
}

// Handler returns the API's routes (without httpx's /healthz and /metrics,
// which httpx.NewServer adds).
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	allow := map[string][]string{}
	var paths []string
	for _, rt := range a.routes() {
		mux.Handle(rt.method+" "+rt.path, a.wrap(rt))
		if allow[rt.path] == nil {
			paths = append(paths, rt.path)
		}
		allow[rt.path] = append(allow[rt.path], rt.method)
	}
	// Other methods on a known path: a JSON 405 naming the allowed ones
	// (the mux's own 405 is plain text).
	for _, p := range paths {
		methods := strings.Join(allow[p], ", ")
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", methods)
			httpx.WriteJSON(w, http.StatusMethodNotAllowed, httpx.ErrorBody{Error: httpx.ErrorDetail{
				Code: mipay.EINVALID, Message: "method " + r.Method + " is not allowed here: use " + methods}})
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteError(w, r, mipay.Errorf(mipay.ENOTFOUND, "no such endpoint: see /openapi.json"))
	})
	return mux
}

func (a *API) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var accountID string
		if rt.auth {
			id, err := a.s.SessionAccount(r.Context(), bearer(r))
			if err != nil {
				w.Header().Set("WWW-Authenticate", `Bearer realm="mipay wallet"`)
				httpx.WriteError(w, r, err)
				return
			}
			accountID = id
		}
		if err := rt.h(w, r, accountID); err != nil {
			httpx.WriteError(w, r, err)
		}
	})
}

// bearer returns the token of "Authorization: Bearer <token>".
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") {
		return ""
	}
	return strings.TrimSpace(h[7:])
}

// clientAddr names the client for rate limits: its IP address.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func decode(w http.ResponseWriter, r *http.Request, v any) error {
	return httpx.DecodeJSONLimit(w, r, v, MaxRequestBytes)
}

// decodeOptional decodes a body when there is one (endpoints whose body is
// optional take nothing or {}).
func decodeOptional(w http.ResponseWriter, r *http.Request, v any) error {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil
	}
	return decode(w, r, v)
}

// required reports a missing field.
func required(field string) error {
	return mipay.Errorf(mipay.EINVALID, "%s is required", field)
}

func (a *API) openAPI(w http.ResponseWriter, r *http.Request, _ string) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(OpenAPI)
	return nil
}

// --- accounts and sessions ---

type registerRequest struct {
	Phone    string `json:"phone"`
	Email    string `json:"email"`
	Password string `json:"password"`
}

type registerResponse struct {
	Account       *Account `json:"account"`
	RecoveryCodes []string `json:"recoveryCodes"`
}

func (a *API) register(w http.ResponseWriter, r *http.Request, _ string) error {
	var in registerRequest
	if err := decode(w, r, &in); err != nil {
		return err
	}
	switch {
	case in.Phone == "":
		return required("phone")
	case in.Email == "":
		return required("email")
	case in.Password == "":
		return required("password")
	}
	acct, codes, err := a.s.Register(r.Context(), in.Phone, in.Email, in.Password)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusCreated, registerResponse{Account: acct, RecoveryCodes: codes})
	return nil
}

type signInRequest struct {
	Login    string `json:"login"`
	Password string `json:"password"`
}

// decodeSignIn reads a login and password (sign-in and the portal's
// challenge), both required.
func decodeSignIn(w http.ResponseWriter, r *http.Request) (signInRequest, error) {
	var in signInRequest
	if err := decode(w, r, &in); err != nil {
		return in, err
	}
	switch {
	case in.Login == "":
		return in, required("login")
	case in.Password == "":
		return in, required("password")
	}
	return in, nil
}

func (a *API) signIn(w http.ResponseWriter, r *http.Request, _ string) error {
	in, err := decodeSignIn(w, r)
	if err != nil {
		return err
	}
	sess, err := a.s.SignIn(r.Context(), clientAddr(r), in.Login, in.Password)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusCreated, sess)
	return nil
}

func (a *API) signOut(w http.ResponseWriter, r *http.Request, _ string) error {
	if err := a.s.SignOut(r.Context(), bearer(r)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// --- devices ---

type registerDeviceRequest struct {
	Model               string   `json:"model"`
	SEID                string   `json:"seId"`
	SEPublicKey         []byte   `json:"sePublicKey"`
	CertificateChain    [][]byte `json:"certificateChain"`
	FingerprintEnrolled *bool    `json:"fingerprintEnrolled"`
}

func (a *API) registerDevice(w http.ResponseWriter, r *http.Request, accountID string) error {
	var in registerDeviceRequest
	if err := decode(w, r, &in); err != nil {
		return err
	}
	switch {
	case in.Model == "":
		return required("model")
	case in.SEID == "":
		return required("seId")
	case len(in.SEPublicKey) == 0:
		return required("sePublicKey")
	case len(in.CertificateChain) == 0:
		return required("certificateChain")
	case in.FingerprintEnrolled == nil:
		return required("fingerprintEnrolled")
	}
	d, err := a.s.RegisterDevice(r.Context(), accountID, DeviceRegistration{
		Model: in.Model, SEID: in.SEID, SEPublicKey: in.SEPublicKey,
		CertificateChain: in.CertificateChain, FingerprintEnrolled: *in.FingerprintEnrolled,
	})
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusCreated, d)
	return nil
}

func (a *API) listDevices(w http.ResponseWriter, r *http.Request, accountID string) error {
	ds, err := a.s.Devices(r.Context(), accountID)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"devices": ds})
	return nil
}

func (a *API) getDevice(w http.ResponseWriter, r *http.Request, accountID string) error {
	d, err := a.s.Device(r.Context(), accountID, r.PathValue("id"))
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, d)
	return nil
}

type fingerprintRequest struct {
	Enrolled *bool `json:"enrolled"`
}

func (a *API) setFingerprint(w http.ResponseWriter, r *http.Request, accountID string) error {
	var in fingerprintRequest
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if in.Enrolled == nil {
		return required("enrolled")
	}
	d, err := a.s.SetFingerprint(r.Context(), accountID, r.PathValue("id"), *in.Enrolled)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, d)
	return nil
}

func (a *API) tspKey(w http.ResponseWriter, r *http.Request, _ string) error {
	k, err := a.s.TSPKey(r.Context())
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, k)
	return nil
}

// --- cards ---

type bindingRequest struct {
	EncryptedCardData string `json:"encryptedCardData"`
}

func (a *API) startBinding(w http.ResponseWriter, r *http.Request, accountID string) error {
	var in bindingRequest
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if in.EncryptedCardData == "" {
		return required("encryptedCardData")
	}
	b, err := a.s.StartBinding(r.Context(), accountID, r.PathValue("id"), in.EncryptedCardData)
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if b.Decision == DecisionDeclined {
		status = http.StatusOK // a business "no": nothing was created
	}
	httpx.WriteJSON(w, status, b)
	return nil
}

type cardList struct {
	Cards         []Card `json:"cards"`
	DefaultCardID string `json:"defaultCardId,omitempty"`
}

func (a *API) listCards(w http.ResponseWriter, r *http.Request, accountID string) error {
	all, err := boolQuery(r, "includeRemoved")
	if err != nil {
		return err
	}
	cs, err := a.s.Cards(r.Context(), accountID, r.PathValue("id"), all)
	if err != nil {
		return err
	}
	out := cardList{Cards: cs}
	for _, c := range cs {
		if c.Default {
			out.DefaultCardID = c.ID
		}
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

type defaultCardRequest struct {
	CardID string `json:"cardId"`
}

func (a *API) setDefaultCard(w http.ResponseWriter, r *http.Request, accountID string) error {
	var in defaultCardRequest
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if in.CardID == "" {
		return required("cardId")
	}
	d, err := a.s.SetDefaultCard(r.Context(), accountID, r.PathValue("id"), in.CardID)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, d)
	return nil
}

func (a *API) getCard(w http.ResponseWriter, r *http.Request, accountID string) error {
	c, err := a.s.Card(r.Context(), accountID, r.PathValue("id"))
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, c)
	return nil
}

func (a *API) removeCard(w http.ResponseWriter, r *http.Request, accountID string) error {
	c, err := a.s.RemoveCard(r.Context(), accountID, r.PathValue("id"))
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, c)
	return nil
}

type otpRequest struct {
	MethodID string `json:"methodId"`
}

func (a *API) requestOTP(w http.ResponseWriter, r *http.Request, accountID string) error {
	var in otpRequest
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if in.MethodID == "" {
		return required("methodId")
	}
	out, err := a.s.RequestOTP(r.Context(), accountID, r.PathValue("id"), in.MethodID)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

type verifyRequest struct {
	Code string `json:"code"`
}

func (a *API) verifyOTP(w http.ResponseWriter, r *http.Request, accountID string) error {
	var in verifyRequest
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if in.Code == "" {
		return required("code")
	}
	out, err := a.s.VerifyOTP(r.Context(), accountID, r.PathValue("id"), in.Code)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) provisioning(w http.ResponseWriter, r *http.Request, accountID string) error {
	p, err := a.s.Provisioning(r.Context(), accountID, r.PathValue("id"))
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, p)
	return nil
}

func (a *API) provisioned(w http.ResponseWriter, r *http.Request, accountID string) error {
	var in struct{}
	if err := decodeOptional(w, r, &in); err != nil {
		return err
	}
	c, err := a.s.ConfirmProvisioned(r.Context(), accountID, r.PathValue("id"))
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, c)
	return nil
}

func (a *API) transactions(w http.ResponseWriter, r *http.Request, accountID string) error {
	limit, err := intQuery(r, "limit", MaxTransactionsPerPage)
	if err != nil {
		return err
	}
	var before time.Time
	if v := r.URL.Query().Get("before"); v != "" {
		if before, err = time.Parse(time.RFC3339Nano, v); err != nil {
			return mipay.Errorf(mipay.EINVALID, "before must be a time such as 2026-11-26T01:00:00Z")
		}
	}
	ts, err := a.s.Transactions(r.Context(), accountID, r.PathValue("id"), before, limit)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"transactions": ts})
	return nil
}

// --- query parameters ---

func boolQuery(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, mipay.Errorf(mipay.EINVALID, "%s must be true or false", name)
	}
	return b, nil
}

// intQuery reads a positive integer parameter of at most max (0 when absent).
func intQuery(r *http.Request, name string, max int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		return 0, mipay.Errorf(mipay.EINVALID, "%s must be a whole number from 1 to %d", name, max)
	}
	return n, nil
}
