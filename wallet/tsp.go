package wallet

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/httpx"
)

// TSP is what the wallet asks of the token service provider. HTTPTSP is the
// implementation over the TSP's HTTP API.
type TSP interface {
	// EncryptionKey returns the TSP's key document (the phone seals card data
	// to it), relayed as is.
	EncryptionKey(ctx context.Context) (json.RawMessage, error)
	Tokenize(ctx context.Context, req *TokenizeRequest) (*TokenizeResponse, error)
	RequestAuthentication(ctx context.Context, tokenRef, methodID string) (*OTPRequest, error)
	// VerifyAuthentication submits an OTP and returns the token's state after
	// it; a wrong, expired or locked code is an error with the TSP's message.
	VerifyAuthentication(ctx context.Context, tokenRef, code string) (string, error)
	// Provisioning returns the SE profile for the token's device, relayed as is.
	Provisioning(ctx context.Context, tokenRef string) (json.RawMessage, error)
	ConfirmProvisioning(ctx context.Context, tokenRef string) error
	// TokenState returns the token's current state at the TSP.
	TokenState(ctx context.Context, tokenRef string) (string, error)
	// Lifecycle runs "suspend", "resume" or "delete" and returns the new state.
	Lifecycle(ctx context.Context, tokenRef, action, causedBy, reason string) (string, error)
}

// TokenizeRequest is the wallet's tokenize call: the card data blob the wallet
// cannot read, the device it is for, and the wallet's risk view.
type TokenizeRequest struct {
	TokenRequestorID  string     `json:"tokenRequestorId"`
	AccountID         string     `json:"accountId"`
	EncryptedCardData string     `json:"encryptedCardData"` // base64 cryptobox, relayed unread
	Device            DeviceInfo `json:"device"`
	Risk              RiskInfo   `json:"risk"`
}

// DeviceInfo identifies the device and SE a token is bound to.
type DeviceInfo struct {
	DeviceID    string `json:"deviceId"`
	SEID        string `json:"seId"`
	SEPublicKey string `json:"sePublicKey"` // base64 uncompressed P-256
	Model       string `json:"model"`
}

// RiskInfo is the wallet's risk data: the account's age and a device score
// from 1 (high risk) to 5 (low risk).
type RiskInfo struct {
	AccountAgeDays int `json:"accountAgeDays"`
	DeviceScore    int `json:"deviceScore"`
}

// TokenizeResponse is the TSP's answer: a decision and, unless declined, the
// token's references and display data (never a PAN).
type TokenizeResponse struct {
	Decision    string       `json:"decision"`
	TokenRef    string       `json:"tokenUniqueReference,omitempty"`
	PANRef      string       `json:"panUniqueReference,omitempty"`
	PAR         string       `json:"paymentAccountReference,omitempty"`
	State       string       `json:"state,omitempty"`
	PANLast4    string       `json:"panLast4,omitempty"`
	TokenLast4  string       `json:"tokenLast4,omitempty"`
	TokenExpiry string       `json:"tokenExpiry,omitempty"`
	IssuerID    string       `json:"issuerId,omitempty"`
	Bank        string       `json:"bank,omitempty"`
	Product     string       `json:"product,omitempty"`
	Art         string       `json:"art,omitempty"`
	CardType    string       `json:"cardType,omitempty"`
	Methods     []AuthMethod `json:"authenticationMethods,omitempty"`
	Reason      string       `json:"reason,omitempty"`
	Message     string       `json:"message,omitempty"`
}

// tokenView is the part of the TSP's token view the wallet reads.
type tokenView struct {
	State string `json:"state"`
}

// maxTSPResponseBytes bounds what the wallet reads from the TSP.
const maxTSPResponseBytes = MaxProfileBytes + 4<<10

// HTTPTSP calls the TSP's HTTP API (base URL e.g. http://127.0.0.1:8430).
// The TSP's errors come back as *mipay.Error with its code and user-safe
// message; transport failures as EUNAVAILABLE.
type HTTPTSP struct {
	c httpx.Client
	// tokenFile, when the token was not given, is read (once it exists) for
	// the requestor secret: the TSP creates it on its first start.
	tokenFile string
	mu        sync.Mutex
}

// maxTokenFileBytes bounds the requestor secret file.
const maxTokenFileBytes = 256

// NewHTTPTSP returns a TSP client with a bounded timeout per call; token is
// the wallet's token requestor secret at the TSP (sent as a bearer token).
func NewHTTPTSP(baseURL, token string, timeout time.Duration) *HTTPTSP {
	if timeout <= 0 {
		timeout = DefaultTSPTimeout
	}
	return &HTTPTSP{c: httpx.Client{
		Base:             baseURL,
		Token:            token,
		HTTP:             &http.Client{Timeout: timeout},
		MaxResponseBytes: maxTSPResponseBytes,
	}}
}

// NewHTTPTSPTokenFile is NewHTTPTSP with the secret read from a file (the
// TSP's <data>/tsp/requestor.token), when it exists.
func NewHTTPTSPTokenFile(baseURL, tokenFile string, timeout time.Duration) *HTTPTSP {
	t := NewHTTPTSP(baseURL, "", timeout)
	t.tokenFile = tokenFile
	return t
}

func (t *HTTPTSP) client() httpx.Client {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.c.Token == "" && t.tokenFile != "" {
		if b, err := readBounded(t.tokenFile, maxTokenFileBytes); err == nil {
			t.c.Token = strings.TrimSpace(string(b))
		}
	}
	return t.c
}

func (t *HTTPTSP) do(ctx context.Context, method, path string, in, out any) error {
	c := t.client()
	if c.Base == "" {
		return mipay.Errorf(mipay.EUNAVAILABLE, "the token service is not configured")
	}
	return c.Do(ctx, method, path, in, out)
}

func (t *HTTPTSP) EncryptionKey(ctx context.Context) (json.RawMessage, error) {
	var out json.RawMessage
	err := t.do(ctx, http.MethodGet, "/v1/keys/encryption", nil, &out)
	return out, err
}

func (t *HTTPTSP) Tokenize(ctx context.Context, req *TokenizeRequest) (*TokenizeResponse, error) {
	var out TokenizeResponse
	if err := t.do(ctx, http.MethodPost, "/v1/tokenize", req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (t *HTTPTSP) RequestAuthentication(ctx context.Context, tokenRef, methodID string) (*OTPRequest, error) {
	var out OTPRequest
	err := t.do(ctx, http.MethodPost, tokenPath(tokenRef, "authentication/request"),
		map[string]string{"methodId": methodID}, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

func (t *HTTPTSP) VerifyAuthentication(ctx context.Context, tokenRef, code string) (string, error) {
	var out tokenView
	err := t.do(ctx, http.MethodPost, tokenPath(tokenRef, "authentication/verify"),
		map[string]string{"code": code}, &out)
	return out.State, err
}

func (t *HTTPTSP) Provisioning(ctx context.Context, tokenRef string) (json.RawMessage, error) {
	var out json.RawMessage
	err := t.do(ctx, http.MethodGet, tokenPath(tokenRef, "provisioning"), nil, &out)
	return out, err
}

func (t *HTTPTSP) ConfirmProvisioning(ctx context.Context, tokenRef string) error {
	return t.do(ctx, http.MethodPost, tokenPath(tokenRef, "confirm-provisioning"), struct{}{}, nil)
}

func (t *HTTPTSP) TokenState(ctx context.Context, tokenRef string) (string, error) {
	var out tokenView
	err := t.do(ctx, http.MethodGet, "/v1/tokens/"+url.PathEscape(tokenRef), nil, &out)
	return out.State, err
}

func (t *HTTPTSP) Lifecycle(ctx context.Context, tokenRef, action, causedBy, reason string) (string, error) {
	switch action {
	case "suspend", "resume", "delete":
	default:
		return "", fmt.Errorf("wallet: unknown token action %q", action)
	}
	var out tokenView
	err := t.do(ctx, http.MethodPost, tokenPath(tokenRef, action),
		map[string]string{"causedBy": causedBy, "reason": reason}, &out)
	return out.State, err
}

func tokenPath(ref, action string) string {
	return "/v1/tokens/" + url.PathEscape(ref) + "/" + action
}
