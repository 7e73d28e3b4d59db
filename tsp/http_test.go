package tsp

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/config"
)

const (
	testRequestorSecret = "wallet-secret-for-tests"
	testIssuerSecret    = "issuer-secret-for-tests"
)

type apiFixture struct {
	*fixture
	url string
}

func newAPIFixture(t *testing.T) *apiFixture {
	t.Helper()
	f := newFixture(t)
	srv := httptest.NewServer(NewAPI(f.svc, Credentials{RequestorToken: testRequestorSecret, IssuerToken: testIssuerSecret}).Handler())
	t.Cleanup(srv.Close)
	return &apiFixture{fixture: f, url: srv.URL}
}

// call sends a request and decodes the JSON answer into out (when not nil).
func (f *apiFixture) call(t *testing.T, method, path, secret string, body any, out any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, _ := json.Marshal(b)
		rd = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, f.url+path, rd)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
	return resp.StatusCode, data
}

func errCode(t *testing.T, data []byte) string {
	t.Helper()
	var e struct {
		Error struct{ Code, Message, Reason string }
	}
	if err := json.Unmarshal(data, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("not a JSON error: %s", data)
	}
	return e.Error.Code
}

func TestHTTPBindingFlow(t *testing.T) {
	f := newAPIFixture(t)
	var key EncryptionKey
	if st, data := f.call(t, "GET", "/v1/keys/encryption", "", nil, &key); st != 200 || key.KID != KeyBox || key.Key == "" {
		t.Fatalf("key: %d %s", st, data)
	}
	_, ch := demoCard(t, f.ref, config.Debit)
	f.issuer.decision[ch.PAN] = DecisionResponse{Decision: DecisionRequireAdditional}
	var tr TokenizeResponse
	st, data := f.call(t, "POST", "/v1/tokenize", testRequestorSecret, f.tokenizeReq(t, cardOf(ch), "dev-1"), &tr)
	if st != 201 || tr.State != StateInactive || len(tr.AuthenticationMethods) != 1 {
		t.Fatalf("tokenize: %d %s", st, data)
	}
	if strings.Contains(string(data), ch.PAN) {
		t.Fatal("answer holds the PAN")
	}
	base := "/v1/tokens/" + tr.TokenRef
	if st, data := f.call(t, "GET", base+"/provisioning", testRequestorSecret, nil, nil); st != 409 {
		t.Fatalf("profile of an inactive token: %d %s", st, data)
	}
	var otp OTPRequested
	if st, data := f.call(t, "POST", base+"/authentication/request", testRequestorSecret, map[string]string{"methodId": "sms-1"}, &otp); st != 200 || otp.Destination == "" {
		t.Fatalf("request: %d %s", st, data)
	}
	st, data = f.call(t, "POST", base+"/authentication/verify", testRequestorSecret, map[string]string{"code": "111111"}, nil)
	if st != 400 || errCode(t, data) != mipay.EINVALID || !strings.Contains(string(data), "attempts left") {
		t.Fatalf("wrong code: %d %s", st, data)
	}
	var vr VerifyResponse
	if st, data := f.call(t, "POST", base+"/authentication/verify", testRequestorSecret, map[string]string{"code": "123456"}, &vr); st != 200 || vr.Result != OTPVerified || vr.State != StateActive {
		t.Fatalf("verify: %d %s", st, data)
	}
	var p Profile
	if st, data := f.call(t, "GET", base+"/provisioning", testRequestorSecret, nil, &p); st != 200 || p.TokenRef != tr.TokenRef || len(p.SealedKey) == 0 {
		t.Fatalf("profile: %d %s", st, data)
	}
	var v TokenView
	if st, data := f.call(t, "POST", base+"/confirm-provisioning", testRequestorSecret, struct{}{}, &v); st != 200 || !v.Provisioned {
		t.Fatalf("confirm: %d %s", st, data)
	}
	if st, data := f.call(t, "POST", base+"/confirm-provisioning", testRequestorSecret, nil, &v); st != 200 {
		t.Fatalf("confirm without body: %d %s", st, data)
	}
	if st, data := f.call(t, "POST", base+"/suspend", testRequestorSecret, map[string]string{"causedBy": "CARDHOLDER", "reason": "DEVICE_LOST"}, &v); st != 200 || v.State != StateSuspended {
		t.Fatalf("suspend: %d %s", st, data)
	}
	if st, data := f.call(t, "POST", base+"/resume", testRequestorSecret, map[string]string{"causedBy": "CARDHOLDER", "reason": "FOUND"}, &v); st != 200 || v.State != StateActive {
		t.Fatalf("resume: %d %s", st, data)
	}
	t.Run("issuer suspends, cardholder cannot resume", func(t *testing.T) {
		if st, data := f.call(t, "POST", base+"/suspend", testIssuerSecret, map[string]string{"causedBy": "ISSUER", "reason": "FRAUD"}, &v); st != 200 || v.State != StateSuspended {
			t.Fatalf("issuer suspend: %d %s", st, data)
		}
		if st, data := f.call(t, "POST", base+"/resume", testRequestorSecret, map[string]string{"causedBy": "CARDHOLDER"}, nil); st != 403 {
			t.Fatalf("cardholder resume: %d %s", st, data)
		}
		if st, data := f.call(t, "POST", base+"/resume", testIssuerSecret, map[string]string{"causedBy": "ISSUER"}, &v); st != 200 || v.State != StateActive {
			t.Fatalf("issuer resume: %d %s", st, data)
		}
	})
	if st, data := f.call(t, "GET", base, testRequestorSecret, nil, &v); st != 200 || len(v.History) != 6 || v.PANLast4 != ch.PAN[12:] {
		t.Fatalf("get: %d %s", st, data)
	}
	if st, data := f.call(t, "POST", base+"/delete", testRequestorSecret, map[string]string{"causedBy": "CARDHOLDER", "reason": "REMOVED"}, &v); st != 200 || v.State != StateDeactivated {
		t.Fatalf("delete: %d %s", st, data)
	}
}

func TestHTTPDeclinesAre200(t *testing.T) {
	f := newAPIFixture(t)
	var tr TokenizeResponse
	st, data := f.call(t, "POST", "/v1/tokenize", testRequestorSecret, f.tokenizeReq(t, CardData{PAN: "4111111111111111", Expiry: "3012"}, "dev-1"), &tr)
	if st != 200 || tr.Decision != DecisionDeclined || tr.Message != msgCardNotSupported || tr.TokenRef != "" {
		t.Fatalf("%d %s", st, data)
	}
}

func TestHTTPAuthAndBadInput(t *testing.T) {
	f := newAPIFixture(t)
	res, ch := f.mustActiveToken(t, config.Debit, "dev-1")
	base := "/v1/tokens/" + res.TokenRef
	good := f.tokenizeReq(t, cardOf(ch), "dev-2")
	for _, c := range []struct {
		name, method, path, secret string
		body                       any
		status                     int
		code                       string
	}{
		{"no bearer", "POST", "/v1/tokenize", "", good, 401, mipay.EUNAUTHORIZED},
		{"wrong bearer", "GET", base, "nope", nil, 401, mipay.EUNAUTHORIZED},
		{"issuer cannot tokenize", "POST", "/v1/tokenize", testIssuerSecret, good, 403, mipay.EFORBIDDEN},
		{"issuer cannot fetch profiles", "GET", base + "/provisioning", testIssuerSecret, nil, 403, mipay.EFORBIDDEN},
		{"wallet cannot speak for the issuer", "POST", base + "/suspend", testRequestorSecret, map[string]string{"causedBy": "ISSUER"}, 403, mipay.EFORBIDDEN},
		{"issuer cannot speak for the cardholder", "POST", base + "/suspend", testIssuerSecret, map[string]string{"causedBy": "CARDHOLDER"}, 403, mipay.EFORBIDDEN},
		{"malformed JSON", "POST", "/v1/tokenize", testRequestorSecret, "{", 400, mipay.EINVALID},
		{"wrong type", "POST", "/v1/tokenize", testRequestorSecret, `{"tokenRequestorId": 5}`, 400, mipay.EINVALID},
		{"unknown field", "POST", "/v1/tokenize", testRequestorSecret, `{"pan":"6210102803651527"}`, 400, mipay.EINVALID},
		{"missing fields", "POST", "/v1/tokenize", testRequestorSecret, `{}`, 403, mipay.EFORBIDDEN},
		{"huge body", "POST", "/v1/tokenize", testRequestorSecret, `{"encryptedCardData":"` + strings.Repeat("A", 1<<20) + `"}`, 413, mipay.ETOOLARGE},
		{"empty body", "POST", base + "/suspend", testRequestorSecret, "", 400, mipay.EINVALID},
		{"bad causedBy", "POST", base + "/suspend", testRequestorSecret, map[string]string{"causedBy": "MALLORY"}, 400, mipay.EINVALID},
		{"long reason", "POST", base + "/suspend", testRequestorSecret, map[string]string{"causedBy": "CARDHOLDER", "reason": strings.Repeat("r", 300)}, 413, mipay.ETOOLARGE},
		{"unknown token", "GET", "/v1/tokens/DTSP" + strings.Repeat("0", 32), testRequestorSecret, nil, 404, mipay.ENOTFOUND},
		{"malformed ref", "GET", "/v1/tokens/..%2F..%2Fetc", testRequestorSecret, nil, 404, mipay.ENOTFOUND},
		{"no method id", "POST", base + "/authentication/request", testRequestorSecret, `{}`, 400, mipay.EINVALID},
		{"code not digits", "POST", base + "/authentication/verify", testRequestorSecret, `{"code":"abc"}`, 400, mipay.EINVALID},
		{"verify an active token", "POST", base + "/authentication/verify", testRequestorSecret, `{"code":"123456"}`, 409, mipay.ECONFLICT},
		{"no such endpoint", "GET", "/v1/nothing", testRequestorSecret, nil, 404, mipay.ENOTFOUND},
		{"wrong method", "DELETE", base, testRequestorSecret, nil, 404, mipay.ENOTFOUND},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, data := f.call(t, c.method, c.path, c.secret, c.body, nil)
			if st != c.status {
				t.Fatalf("status %d, want %d: %s", st, c.status, data)
			}
			if c.code != "" && errCode(t, data) != c.code {
				t.Fatalf("code %s, want %s", data, c.code)
			}
		})
	}
	var n int
	f.vault.db.DB.QueryRow(`SELECT COUNT(*) FROM tokens`).Scan(&n)
	if n != 1 {
		t.Fatalf("bad input stored tokens: %d", n)
	}
	if v, _ := f.svc.View(context.Background(), res.TokenRef); v.State != StateActive || len(v.History) != 1 {
		t.Fatalf("bad input changed the token: %+v", v)
	}
}

// TestHTTPIssuerClient checks the issuer API client against a server that
// speaks issuer/API.md, including its error shapes.
func TestHTTPIssuerClient(t *testing.T) {
	var lastBody map[string]any
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/issuers/{id}/tokenization-decisions", func(w http.ResponseWriter, r *http.Request) {
		json.NewDecoder(r.Body).Decode(&lastBody)
		if r.PathValue("id") == "down" {
			w.WriteHeader(503)
			io.WriteString(w, `{"error":{"code":"unavailable","message":"SMS gateway down"}}`)
			return
		}
		if r.PathValue("id") == "garbage" {
			io.WriteString(w, `{"decision":"MAYBE","decisionId":"x"}`)
			return
		}
		io.WriteString(w, `{"decisionId":"dcs_1","decision":"REQUIRE_ADDITIONAL_AUTHENTICATION","methods":[{"id":"sms-1","type":"SMS","value":"***8000"}],"cardType":"debit","product":"debit","panLast4":"1527","expiresAt":"2026-11-26T02:00:00Z"}`)
	})
	mux.HandleFunc("POST /v1/issuers/{id}/otp", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(429)
		io.WriteString(w, `{"error":{"code":"limit","message":"Too many codes sent, try again later"}}`)
	})
	mux.HandleFunc("POST /v1/issuers/{id}/otp/verify", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"result":"WRONG","attemptsLeft":3,"message":"The code is wrong, 3 attempts left"}`)
	})
	mux.HandleFunc("POST /v1/issuers/{id}/token-notices", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(202)
		io.WriteString(w, `{"recorded":true}`)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := NewHTTPIssuer(srv.URL, nil)
	ctx := context.Background()
	d, err := c.Decide(ctx, "boc-debit", DecisionRequest{PAN: "6210102803651527", Expiry: "2911", CVN2: "123", DeviceID: "d", SEID: "s"})
	if err != nil || d.Decision != DecisionRequireAdditional || d.DecisionID != "dcs_1" || len(d.Methods) != 1 {
		t.Fatalf("%+v %v", d, err)
	}
	if lastBody["pan"] != "6210102803651527" || lastBody["cvn2"] != "123" {
		t.Fatalf("issuer got %v", lastBody)
	}
	if _, err := c.Decide(ctx, "down", DecisionRequest{}); mipay.ErrorCode(err) != mipay.EUNAVAILABLE || mipay.ErrorMessage(err) != "SMS gateway down" {
		t.Fatalf("down: %v", err)
	}
	if _, err := c.Decide(ctx, "garbage", DecisionRequest{}); mipay.ErrorCode(err) != mipay.EUNAVAILABLE {
		t.Fatalf("garbage: %v", err)
	}
	if _, err := c.SendOTP(ctx, "boc-debit", "dcs_1", "sms-1"); mipay.ErrorCode(err) != mipay.ELIMIT || !strings.Contains(mipay.ErrorMessage(err), "Too many") {
		t.Fatalf("send: %v", err)
	}
	if v, err := c.VerifyOTP(ctx, "boc-debit", "dcs_1", "000000"); err != nil || v.Result != OTPWrong || v.AttemptsLeft != 3 {
		t.Fatalf("verify: %+v %v", v, err)
	}
	if err := c.Notice(ctx, "boc-debit", TokenNotice{TokenRef: "DTSP", Event: NoticeTokenCreated}); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	if _, err := c.Decide(ctx, "boc-debit", DecisionRequest{}); mipay.ErrorCode(err) != mipay.EUNAVAILABLE {
		t.Fatalf("closed: %v", err)
	}
	if s := (DecisionRequest{PAN: "6210102803651527", CVN2: "123"}).String(); strings.Contains(s, "2803651527") || strings.Contains(s, "123") {
		t.Fatalf("DecisionRequest prints %s", s)
	}
}
