package tsp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/httpx"
)

// IssuerAPI is the issuer's binding API as the TSP uses it (issuer/API.md).
// A business "no" is a result, not an error; errors are *mipay.Error whose
// message is safe to show the user.
type IssuerAPI interface {
	Decide(ctx context.Context, issuerID string, req DecisionRequest) (DecisionResponse, error)
	SendOTP(ctx context.Context, issuerID, decisionID, methodID string) (OTPSent, error)
	VerifyOTP(ctx context.Context, issuerID, decisionID, code string) (OTPVerdict, error)
	Notice(ctx context.Context, issuerID string, n TokenNotice) error
}

// DecisionRequest asks an issuer whether a card may be tokenized.
type DecisionRequest struct {
	PAN              string `json:"pan"`
	Expiry           string `json:"expiry"`
	CVN2             string `json:"cvn2,omitempty"`
	Phone            string `json:"phone"`
	Name             string `json:"name,omitempty"`
	DeviceID         string `json:"deviceId"`
	SEID             string `json:"seId"`
	TokenRequestorID string `json:"tokenRequestorId"`
	AccountAgeDays   int    `json:"accountAgeDays"`
	DeviceScore      int    `json:"deviceScore"`
}

// String never shows the PAN or CVN2.
func (r DecisionRequest) String() string { return "DecisionRequest{pan:" + MaskPAN(r.PAN) + "}" }

// GoString keeps %#v as safe as %v.
func (r DecisionRequest) GoString() string { return r.String() }

// AuthMethod is a way to authenticate the cardholder (an SMS to ***8000).
type AuthMethod struct {
	ID    string `json:"id"`
	Type  string `json:"type"`
	Value string `json:"value"`
}

// DecisionResponse is the issuer's tokenization decision.
type DecisionResponse struct {
	DecisionID string       `json:"decisionId"`
	Decision   Decision     `json:"decision"`
	Reason     string       `json:"reason"`
	Message    string       `json:"message"`
	Methods    []AuthMethod `json:"methods"`
	CardType   string       `json:"cardType"`
	Product    string       `json:"product"`
	PANLast4   string       `json:"panLast4"`
	ExpiresAt  time.Time    `json:"expiresAt"`
}

// OTPSent is the issuer's answer to an OTP (re)send.
type OTPSent struct {
	DecisionID  string    `json:"decisionId"`
	MethodID    string    `json:"methodId"`
	Destination string    `json:"destination"`
	ExpiresAt   time.Time `json:"expiresAt"`
	ResendsLeft int       `json:"resendsLeft"`
}

// OTP verdicts.
const (
	OTPVerified = "VERIFIED"
	OTPWrong    = "WRONG"
	OTPExpired  = "EXPIRED"
	OTPLocked   = "LOCKED"
)

// OTPVerdict is the issuer's answer to an OTP verification.
type OTPVerdict struct {
	Result       string `json:"result"`
	AttemptsLeft int    `json:"attemptsLeft"`
	Message      string `json:"message"`
}

// Token notice events.
const (
	NoticeTokenCreated = "TOKEN_CREATED"
	NoticeStateChanged = "STATE_CHANGED"
)

// TokenNotice tells the issuer about a token of one of its cards.
type TokenNotice struct {
	TokenRef   string   `json:"tokenRef"`
	DecisionID string   `json:"decisionId,omitempty"`
	PANLast4   string   `json:"panLast4"`
	Event      string   `json:"event"`
	State      State    `json:"state"`
	CausedBy   CausedBy `json:"causedBy,omitempty"`
	Reason     string   `json:"reason,omitempty"`
}

// Bounds of the issuer client.
const (
	DefaultIssuerTimeout     = 5 * time.Second
	maxIssuerAnswerBytes     = 64 << 10
	maxIssuerErrorMessageLen = 200
)

// HTTPIssuer calls the issuer party's HTTP API.
type HTTPIssuer struct {
	base   string
	client *http.Client
}

// NewHTTPIssuer returns a client for the issuer API at base (e.g.
// http://127.0.0.1:8420). A nil client gets one with DefaultIssuerTimeout
// over a pooled transport: every binding calls the issuer, and
// http.DefaultTransport's 2 idle connections per host would make concurrent
// bindings open (and leave in TIME_WAIT) a connection each.
func NewHTTPIssuer(base string, client *http.Client) *HTTPIssuer {
	if client == nil {
		client = &http.Client{Timeout: DefaultIssuerTimeout, Transport: httpx.NewTransport(DefaultIssuerTimeout)}
	}
	return &HTTPIssuer{base: base, client: client}
}

func (c *HTTPIssuer) Decide(ctx context.Context, issuerID string, req DecisionRequest) (DecisionResponse, error) {
	var out DecisionResponse
	err := c.post(ctx, issuerID, "tokenization-decisions", req, &out)
	if err != nil {
		return out, err
	}
	switch out.Decision {
	case DecisionApproved, DecisionDeclined, DecisionRequireAdditional:
	default:
		return out, mipay.WrapError(mipay.EUNAVAILABLE, fmt.Errorf("issuer %s: unknown decision %q", issuerID, out.Decision), "the bank gave an answer we do not understand; please try again later")
	}
	if out.Decision != DecisionDeclined && (out.DecisionID == "" || len(out.DecisionID) > maxIDBytes) {
		return out, mipay.WrapError(mipay.EUNAVAILABLE, fmt.Errorf("issuer %s: bad decision id", issuerID), "the bank gave an answer we do not understand; please try again later")
	}
	return out, nil
}

func (c *HTTPIssuer) SendOTP(ctx context.Context, issuerID, decisionID, methodID string) (OTPSent, error) {
	var out OTPSent
	err := c.post(ctx, issuerID, "otp", map[string]string{"decisionId": decisionID, "methodId": methodID}, &out)
	return out, err
}

func (c *HTTPIssuer) VerifyOTP(ctx context.Context, issuerID, decisionID, code string) (OTPVerdict, error) {
	var out OTPVerdict
	err := c.post(ctx, issuerID, "otp/verify", map[string]string{"decisionId": decisionID, "code": code}, &out)
	return out, err
}

func (c *HTTPIssuer) Notice(ctx context.Context, issuerID string, n TokenNotice) error {
	var out struct {
		Recorded bool `json:"recorded"`
	}
	return c.post(ctx, issuerID, "token-notices", n, &out)
}

// post sends one JSON request and decodes the answer or the issuer's error.
// Transport failures and 5xx become EUNAVAILABLE; the issuer's 4xx errors
// keep their code and (user-safe, per the issuer API) message.
func (c *HTTPIssuer) post(ctx context.Context, issuerID, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("tsp: encode issuer request: %w", err)
	}
	u := c.base + "/v1/issuers/" + url.PathEscape(issuerID) + "/" + path
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("tsp: issuer request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return mipay.WrapError(mipay.ETIMEOUT, fmt.Errorf("issuer %s %s: %w", issuerID, path, err), "the bank did not answer in time; please try again")
		}
		return mipay.WrapError(mipay.EUNAVAILABLE, fmt.Errorf("issuer %s %s: %w", issuerID, path, err), "the bank cannot be reached; please try again later")
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxIssuerAnswerBytes+1))
	if err != nil {
		return mipay.WrapError(mipay.EUNAVAILABLE, fmt.Errorf("issuer %s %s: read: %w", issuerID, path, err), "the bank cannot be reached; please try again later")
	}
	if len(data) > maxIssuerAnswerBytes {
		return mipay.WrapError(mipay.EUNAVAILABLE, fmt.Errorf("issuer %s %s: answer over %d bytes", issuerID, path, maxIssuerAnswerBytes), "the bank gave an answer we do not understand; please try again later")
	}
	if resp.StatusCode >= 300 {
		return issuerError(issuerID, path, resp.StatusCode, data)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return mipay.WrapError(mipay.EUNAVAILABLE, fmt.Errorf("issuer %s %s: decode: %w", issuerID, path, err), "the bank gave an answer we do not understand; please try again later")
	}
	return nil
}

func issuerError(issuerID, path string, status int, data []byte) error {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.Unmarshal(data, &e)
	cause := fmt.Errorf("issuer %s %s: HTTP %d %s", issuerID, path, status, e.Error.Code)
	if status >= 500 || e.Error.Code == "" {
		if e.Error.Code == mipay.EUNAVAILABLE && e.Error.Message != "" && len(e.Error.Message) <= maxIssuerErrorMessageLen {
			return mipay.WrapError(mipay.EUNAVAILABLE, cause, "%s", e.Error.Message)
		}
		return mipay.WrapError(mipay.EUNAVAILABLE, cause, "the bank cannot process this now; please try again later")
	}
	msg := e.Error.Message
	if msg == "" || len(msg) > maxIssuerErrorMessageLen {
		msg = "the bank refused this request"
	}
	return mipay.WrapError(e.Error.Code, cause, "%s", msg)
}
