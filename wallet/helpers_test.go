package wallet

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/httpx"
	"github.com/mipay-oss/mipay/store"
	"github.com/mipay-oss/mipay/store/storetest"
)

// testArgon2 keeps password hashing cheap in tests.
var testArgon2 = Argon2Params{TimeCost: 1, MemoryKiB: 64, Threads: 1}

// clock is a settable test clock.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// vendor is a test SE vendor: a root CA that issues SE certificates.
type vendor struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
	der  []byte
}

func mustVendor(tb testing.TB) *vendor {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test SE vendor root"},
		NotBefore:             time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &vendor{key: key, cert: cert, der: der}
}

// writeRoot writes the vendor's root as PEM and returns the path.
func (v *vendor) writeRoot(tb testing.TB, dir string) string {
	tb.Helper()
	p := filepath.Join(dir, "root.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: v.der}), 0o644); err != nil {
		tb.Fatal(err)
	}
	return p
}

// se is a test secure element: its key and certificate from a vendor.
type se struct {
	id    string
	pub   []byte // uncompressed P-256
	chain [][]byte
}

func (v *vendor) issue(tb testing.TB, seID string) *se {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: seID},
		NotBefore:    time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, v.cert, &key.PublicKey, v.key)
	if err != nil {
		tb.Fatal(err)
	}
	ek, _ := key.PublicKey.ECDH()
	return &se{id: seID, pub: ek.Bytes(), chain: [][]byte{der, v.der}}
}

func (s *se) body(model string, fingerprint bool) map[string]any {
	chain := make([]string, len(s.chain))
	for i, c := range s.chain {
		chain[i] = base64.StdEncoding.EncodeToString(c)
	}
	return map[string]any{
		"model": model, "seId": s.id, "sePublicKey": base64.StdEncoding.EncodeToString(s.pub),
		"certificateChain": chain, "fingerprintEnrolled": fingerprint,
	}
}

// fakeTSP implements the TSP's wallet-facing HTTP API in memory. The "card
// data" blob is base64 of a scenario word, so tests choose the decision:
// green, yellow, red, error.
type fakeTSP struct {
	srv *httptest.Server

	mu        sync.Mutex
	tokens    map[string]*fakeToken
	tokenizes int
	lastReq   TokenizeRequest
	seq       int
	// batches counts POST /v1/tokens/lifecycle calls; noBatch answers them
	// 404 as a TSP without the endpoint would.
	batches int
	noBatch bool
}

type fakeToken struct {
	state       string
	otpSent     bool
	wrong       int
	provisioned bool
}

const (
	fakeOTP      = "123456"
	fakeTSPToken = "wallet-secret"
)

func newFakeTSP(tb testing.TB) *fakeTSP {
	f := &fakeTSP{tokens: map[string]*fakeToken{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/keys/encryption", func(w http.ResponseWriter, r *http.Request) {
		k, _ := ecdh.P256().GenerateKey(rand.Reader)
		httpx.WriteJSON(w, 200, map[string]string{"kid": "tsp/box", "key": base64.StdEncoding.EncodeToString(k.PublicKey().Bytes()), "alg": "test"})
	})
	mux.HandleFunc("POST /v1/tokenize", f.authed(f.tokenize))
	mux.HandleFunc("POST /v1/tokens/lifecycle", f.authed(f.batch))
	mux.HandleFunc("POST /v1/tokens/{ref}/{action...}", f.authed(f.action))
	mux.HandleFunc("GET /v1/tokens/{ref}", f.authed(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		t, ok := f.tokens[r.PathValue("ref")]
		if !ok {
			httpx.WriteJSON(w, 404, httpx.ErrorBody{Error: httpx.ErrorDetail{Code: "not_found", Message: "no such token"}})
			return
		}
		httpx.WriteJSON(w, 200, map[string]any{"tokenUniqueReference": r.PathValue("ref"), "state": t.state})
	}))
	mux.HandleFunc("GET /v1/tokens/{ref}/provisioning", f.authed(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		t, ok := f.tokens[r.PathValue("ref")]
		if !ok {
			httpx.WriteJSON(w, 404, httpx.ErrorBody{Error: httpx.ErrorDetail{Code: "not_found", Message: "no such token"}})
			return
		}
		if t.state != StateActive {
			httpx.WriteJSON(w, 409, httpx.ErrorBody{Error: httpx.ErrorDetail{Code: "conflict", Message: "this card is not active yet"}})
			return
		}
		httpx.WriteJSON(w, 200, map[string]any{"tokenRef": r.PathValue("ref"), "sealedKey": "AAAA"})
	}))
	f.srv = httptest.NewServer(mux)
	tb.Cleanup(f.srv.Close)
	return f
}

// authed refuses calls without the wallet's requestor secret, as the TSP does.
func (f *fakeTSP) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+fakeTSPToken {
			httpx.WriteJSON(w, 401, httpx.ErrorBody{Error: httpx.ErrorDetail{Code: "unauthorized", Message: "send Authorization: Bearer <secret>"}})
			return
		}
		h(w, r)
	}
}

func (f *fakeTSP) tokenize(w http.ResponseWriter, r *http.Request) {
	var req TokenizeRequest
	if err := httpx.DecodeJSON(w, r, &req); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	scenario, _ := base64.StdEncoding.DecodeString(req.EncryptedCardData)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokenizes++
	f.lastReq = req
	resp := TokenizeResponse{PANLast4: "7894", IssuerID: "icbc-credit", Bank: "Industrial and Commercial Bank of China", CardType: "credit"}
	switch string(scenario) {
	case "green", "yellow":
		f.seq++
		ref := fmt.Sprintf("DNITHE%08d", f.seq)
		state := StateActive
		resp.Decision = DecisionApproved
		if string(scenario) == "yellow" {
			state, resp.Decision = StateInactive, DecisionRequireAuth
			resp.Methods = []AuthMethod{{ID: "sms-1", Type: "SMS", Value: "***8000"}}
		}
		f.tokens[ref] = &fakeToken{state: state}
		resp.TokenRef, resp.TokenLast4, resp.State, resp.Product, resp.Art = ref, fmt.Sprintf("%04d", f.seq), state, "ICBC Platinum", "#c00000/#ffffff"
	case "red":
		resp.Decision, resp.Reason, resp.Message = DecisionDeclined, "PHONE_MISMATCH", "The phone number does not match the one registered at the bank."
	default:
		httpx.WriteJSON(w, 400, httpx.ErrorBody{Error: httpx.ErrorDetail{Code: "invalid", Message: "encryptedCardData could not be decrypted"}})
		return
	}
	httpx.WriteJSON(w, 200, resp)
}

func (f *fakeTSP) action(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ref := r.PathValue("ref")
	t, ok := f.tokens[ref]
	if !ok {
		httpx.WriteJSON(w, 404, httpx.ErrorBody{Error: httpx.ErrorDetail{Code: "not_found", Message: "no such token"}})
		return
	}
	var in map[string]string
	_ = json.NewDecoder(r.Body).Decode(&in)
	switch r.PathValue("action") {
	case "authentication/request":
		t.otpSent = true
		httpx.WriteJSON(w, 200, map[string]any{"tokenUniqueReference": ref, "methodId": in["methodId"], "destination": "***8000",
			"expiresAt": time.Now().Add(5 * time.Minute), "resendsLeft": 2})
		return
	case "authentication/verify":
		if in["code"] != fakeOTP {
			t.wrong++
			if t.wrong >= 5 {
				t.state = StateDeactivated
				httpx.WriteJSON(w, 423, httpx.ErrorBody{Error: httpx.ErrorDetail{Code: "locked", Reason: "OTP_LOCKED", Message: "Too many wrong codes; please add the card again"}})
				return
			}
			httpx.WriteJSON(w, 400, httpx.ErrorBody{Error: httpx.ErrorDetail{Code: "invalid", Reason: "OTP_WRONG", Message: fmt.Sprintf("The code is wrong, %d attempts left", 5-t.wrong)}})
			return
		}
		t.state = StateActive
	case "confirm-provisioning":
		t.provisioned = true
	case "suspend":
		t.state = StateSuspended
	case "resume":
		t.state = StateActive
	case "delete":
		if t.state == StateDeactivated {
			httpx.WriteJSON(w, 409, httpx.ErrorBody{Error: httpx.ErrorDetail{Code: "conflict", Message: "the token is deleted"}})
			return
		}
		if in["causedBy"] == "" {
			httpx.WriteJSON(w, 400, httpx.ErrorBody{Error: httpx.ErrorDetail{Code: "invalid", Message: "causedBy is required"}})
			return
		}
		t.state = StateDeactivated
	default:
		httpx.WriteJSON(w, 404, httpx.ErrorBody{Error: httpx.ErrorDetail{Code: "not_found", Message: "no such action"}})
		return
	}
	httpx.WriteJSON(w, 200, map[string]any{"tokenUniqueReference": ref, "state": t.state, "provisioned": t.provisioned})
}

// batch is the TSP's POST /v1/tokens/lifecycle over the fake's tokens.
func (f *fakeTSP) batch(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.noBatch {
		http.NotFound(w, r)
		return
	}
	f.batches++
	var in struct {
		TokenRefs []string `json:"tokenRefs"`
		Action    string   `json:"action"`
		CausedBy  string   `json:"causedBy"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.CausedBy == "" {
		httpx.WriteJSON(w, 400, httpx.ErrorBody{Error: httpx.ErrorDetail{Code: "invalid", Message: "bad batch"}})
		return
	}
	to := map[string]string{"suspend": StateSuspended, "resume": StateActive, "delete": StateDeactivated}[in.Action]
	results := []map[string]any{}
	for _, ref := range in.TokenRefs {
		t, ok := f.tokens[ref]
		switch {
		case !ok:
			results = append(results, map[string]any{"tokenUniqueReference": ref, "changed": false, "code": "not_found", "message": "no such token"})
		case t.state == StateDeactivated || t.state == to:
			results = append(results, map[string]any{"tokenUniqueReference": ref, "state": t.state, "changed": false, "code": "conflict", "message": "already so"})
		default:
			t.state = to
			results = append(results, map[string]any{"tokenUniqueReference": ref, "state": to, "changed": true})
		}
	}
	httpx.WriteJSON(w, 200, map[string]any{"results": results})
}

func (f *fakeTSP) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tokenizes
}

func (f *fakeTSP) state(ref string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t, ok := f.tokens[ref]; ok {
		return t.state
	}
	return ""
}

// env is a running wallet API for a test over loopback HTTP.
type env struct {
	t      testing.TB
	svc    *Service
	repo   *repo
	writer *store.Writer
	url    string
	tsp    *fakeTSP
	vendor *vendor
	clock  *clock
}

// mustWallet starts a wallet service and its API on loopback, trusting a
// fresh test vendor.
func mustWallet(tb testing.TB, tweak ...func(*Config)) *env {
	tb.Helper()
	db := storetest.Open(tb, "wallet", Migrations())
	f := newFakeTSP(tb)
	v := mustVendor(tb)
	clk := newClock()
	cfg := Config{
		TSP:              NewHTTPTSP(f.srv.URL, fakeTSPToken, 5*time.Second),
		Roots:            NewRoots(v.writeRoot(tb, tb.TempDir())),
		TokenRequestorID: "50110030273",
		Argon2:           testArgon2,
		Now:              clk.Now,
		NotificationPoll: 50 * time.Millisecond,
		Log:              slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, f := range tweak {
		f(&cfg)
	}
	w := store.NewWriter(db, store.WriterConfig{})
	tb.Cleanup(func() { w.Close() })
	r := newRepo(db, w.Write)
	svc := NewService(cfg, r)
	srv := httptest.NewServer(httpx.Handler("wallet", NewAPI(svc).Handler(), cfg.Log, nil))
	tb.Cleanup(func() { svc.Stop(); srv.Close() })
	return &env{t: tb, svc: svc, repo: r, writer: w, url: srv.URL, tsp: f, vendor: v, clock: clk}
}

// answer is a decoded HTTP answer.
type answer struct {
	status int
	body   map[string]any
	raw    []byte
}

func (a answer) str(path ...string) string {
	var v any = a.body
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		v = m[p]
	}
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return ""
	default:
		return fmt.Sprint(x)
	}
}

func (a answer) errCode() string { return a.str("error", "code") }
func (a answer) errMsg() string  { return a.str("error", "message") }

// call sends body (a value to encode, or []byte/string sent as is).
func (e *env) call(method, path, token string, body any) answer {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, raw: raw}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

// want fails unless a has the status.
func (a answer) want(tb testing.TB, status int) answer {
	tb.Helper()
	if a.status != status {
		tb.Fatalf("status %d, want %d: %s", a.status, status, a.raw)
	}
	return a
}

// user is a registered, signed-in account with a registered device.
type user struct {
	token, accountID, deviceID string
	login                      string
	se                         *se
}

var userSeq atomic.Int64

// mustUser registers an account, signs in and registers a device with a
// fingerprint enrolled.
func (e *env) mustUser() *user {
	e.t.Helper()
	n := userSeq.Add(1)
	phone := fmt.Sprintf("1380013%04d", n)
	reg := e.call("POST", "/v1/accounts", "", map[string]string{
		"phone": phone, "email": fmt.Sprintf("user%d@example.com", n), "password": "correct horse"}).want(e.t, 201)
	sess := e.call("POST", "/v1/sessions", "", map[string]string{"login": phone, "password": "correct horse"}).want(e.t, 201)
	u := &user{token: sess.str("token"), accountID: reg.str("account", "id"), login: phone}
	e.markSecondFactor(u.token)
	u.se = e.vendor.issue(e.t, fmt.Sprintf("SE%08d", n))
	d := e.call("POST", "/v1/devices", u.token, u.se.body("Xiaomi 15", true)).want(e.t, 201)
	u.deviceID = d.str("id")
	return u
}

// signIn opens a new session for u.
func (e *env) signIn(u *user) {
	e.t.Helper()
	u.token = e.call("POST", "/v1/sessions", "", map[string]string{"login": u.login, "password": "correct horse"}).want(e.t, 201).str("token")
	e.markSecondFactor(u.token)
}

// markSecondFactor makes a test session count as signed in with a second
// factor (as the portal's sign-in does), so "found it" is allowed.
func (e *env) markSecondFactor(token string) {
	e.t.Helper()
	if err := e.repo.markSecondFactor(context.Background(), sha256Hex(token), e.svc.now()); err != nil {
		e.t.Fatal(err)
	}
}

// scenario is the fake TSP's card data for a decision.
func scenario(s string) map[string]string {
	return map[string]string{"encryptedCardData": base64.StdEncoding.EncodeToString([]byte(s))}
}

// mustCard binds a card on the user's device (green: ACTIVE).
func (e *env) mustCard(u *user, kind string) string {
	e.t.Helper()
	a := e.call("POST", "/v1/devices/"+u.deviceID+"/cards", u.token, scenario(kind)).want(e.t, 201)
	return a.str("cardId")
}

// rows counts the rows of a table.
func (e *env) rows(table string) int {
	e.t.Helper()
	var n int
	if err := e.repo.db.DB.QueryRow("SELECT COUNT(*) FROM " + table).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

type atomicCounter struct{ n atomic.Int64 }

func (c *atomicCounter) next() int64 { return c.n.Add(1) }
