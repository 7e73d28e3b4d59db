package issuer

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/httpx"
)

// A bank manages its own campaigns (issue 8) through its issuer host: the
// bank's staff call the host with their operator key (operator_auth.go), and
// the host calls the network's campaign API (GET/POST /v1/promo/campaigns…
// on the switch's HTTP listener) as that bank only: header X-Mipay-Issuer
// and the bank's member key. The switch answers another bank's campaign as
// one that does not exist, and refuses a campaign funded by, or offered on
// the cards of, another bank; the engine validates every definition and
// stores nothing when one field is wrong. API.md section 9.

// Campaign API client settings.
const (
	// EnvPromoMemberKeys holds the banks' member keys at the network's
	// campaign API: comma-separated issuerId=key. Without it the keys are
	// derived from the network's admin secret (MIPAY_NETWORK_ADMIN_TOKEN or
	// <data>/network/admin.token), as one `mipay up` shares it.
	EnvPromoMemberKeys  = "MIPAY_ISSUER_PROMO_KEYS"
	envNetworkAdmin     = "MIPAY_NETWORK_ADMIN_TOKEN"
	networkAdminFile    = "admin.token"
	headerPromoIssuer   = "X-Mipay-Issuer"
	DefaultPromoTimeout = 5 * time.Second
	maxCampaignBytes    = 64 << 10
	maxAdminSecretBytes = 256
)

// PromoCampaigns is the network's campaign API as one bank uses it.
type PromoCampaigns interface {
	// Do calls the campaign API for issuerID: method, path under
	// /v1/promo/campaigns, JSON body in (nil for none), JSON answer into out.
	Do(ctx context.Context, issuerID, method, path string, in, out any) error
}

// HTTPPromo is PromoCampaigns over HTTP; the switch's address and the
// secret are read at each call (the switch starts after the issuer host).
type HTTPPromo struct {
	base    func() string
	dataDir string
	http    *http.Client
}

// NewHTTPPromo returns a client of the campaign API found by base().
func NewHTTPPromo(base func() string, dataDir string) *HTTPPromo {
	return &HTTPPromo{base: base, dataDir: dataDir, http: &http.Client{Timeout: DefaultPromoTimeout}}
}

// PromoMemberKey is the bank's key to the campaign API derived from the
// network's admin secret (the switch's network.PromoMemberKey).
func PromoMemberKey(secret, issuerID string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("mipay promo member v1|" + issuerID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (c *HTTPPromo) key(issuerID string) (string, error) {
	if v := strings.TrimSpace(os.Getenv(EnvPromoMemberKeys)); v != "" {
		for _, pair := range strings.Split(v, ",") {
			if id, k, ok := strings.Cut(strings.TrimSpace(pair), "="); ok && id == issuerID && k != "" {
				return k, nil
			}
		}
		return "", mipay.Errorf(mipay.EUNAVAILABLE, "no campaign API key for %s in %s", issuerID, EnvPromoMemberKeys)
	}
	secret := strings.TrimSpace(os.Getenv(envNetworkAdmin))
	if secret == "" && c.dataDir != "" {
		b, err := os.ReadFile(filepath.Join(c.dataDir, "network", networkAdminFile))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", mipay.WrapError(mipay.EUNAVAILABLE, err, "the campaign API credentials cannot be read")
		}
		if len(b) <= maxAdminSecretBytes {
			secret = strings.TrimSpace(string(b))
		}
	}
	if secret == "" {
		return "", mipay.Errorf(mipay.EUNAVAILABLE, "no campaign API credentials (%s)", EnvPromoMemberKeys)
	}
	return PromoMemberKey(secret, issuerID), nil
}

// Do implements PromoCampaigns.
func (c *HTTPPromo) Do(ctx context.Context, issuerID, method, path string, in, out any) error {
	base := c.base()
	if base == "" {
		return mipay.Errorf(mipay.EUNAVAILABLE, "the network's campaign API is not reachable now")
	}
	key, err := c.key(issuerID)
	if err != nil {
		return err
	}
	cl := httpx.Client{Base: base, HTTP: c.http, Token: key, Header: http.Header{headerPromoIssuer: {issuerID}}}
	return cl.Do(ctx, method, "/v1/promo/campaigns"+path, in, out)
}

var campaignIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$`)

// campaignRoutes mounts the bank's campaign API (staff only, own bank).
func (h *Host) campaignRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/issuers/{id}/campaigns", h.staff(func(w http.ResponseWriter, r *http.Request) {
		var out json.RawMessage
		h.promoCall(w, r, http.MethodGet, "", nil, &out, http.StatusOK)
	}))
	mux.HandleFunc("POST /v1/issuers/{id}/campaigns", h.staff(func(w http.ResponseWriter, r *http.Request) {
		var def map[string]any
		if err := httpx.DecodeJSONLimit(w, r, &def, maxCampaignBytes); err != nil {
			httpx.WriteError(w, r, err)
			return
		}
		if def == nil {
			httpx.WriteError(w, r, mipay.Errorf(mipay.EINVALID, "a campaign definition (a JSON object) is required"))
			return
		}
		// The bank funds its own offers: issuerId is the bank's, given or not.
		bank := r.PathValue("id")
		if v, ok := def["issuerId"]; ok && v != bank {
			httpx.WriteError(w, r, mipay.Errorf(mipay.EFORBIDDEN, "issuerId must be your bank's (%s)", bank))
			return
		}
		def["issuerId"] = bank
		if _, ok := def["bankName"]; !ok {
			def["bankName"] = h.banks[bank].BankCode
		}
		var out json.RawMessage
		h.promoCall(w, r, http.MethodPost, "", def, &out, http.StatusCreated)
	}))
	for _, action := range []string{"pause", "resume", "end"} {
		mux.HandleFunc("POST /v1/issuers/{id}/campaigns/{cid}/"+action, h.staff(func(w http.ResponseWriter, r *http.Request) {
			var out json.RawMessage
			h.promoCall(w, r, http.MethodPost, "/"+url.PathEscape(r.PathValue("cid"))+"/"+action, struct{}{}, &out, http.StatusOK)
		}))
	}
	mux.HandleFunc("GET /v1/issuers/{id}/campaigns/{cid}/stats", h.staff(func(w http.ResponseWriter, r *http.Request) {
		var out json.RawMessage
		h.promoCall(w, r, http.MethodGet, "/"+url.PathEscape(r.PathValue("cid"))+"/stats", nil, &out, http.StatusOK)
	}))
}

// promoCall forwards one call to the campaign API for the bank of the path
// and answers what it answered (its errors keep their code: a bad
// definition is a 400 naming the field, another bank's campaign a 404).
func (h *Host) promoCall(w http.ResponseWriter, r *http.Request, method, path string, in any, out *json.RawMessage, status int) {
	if cid := r.PathValue("cid"); cid != "" && !campaignIDRE.MatchString(cid) {
		httpx.WriteError(w, r, mipay.Errorf(mipay.ENOTFOUND, "no such campaign"))
		return
	}
	if h.promo == nil {
		httpx.WriteError(w, r, mipay.Errorf(mipay.EUNAVAILABLE, "no campaign API is configured on this host"))
		return
	}
	if err := h.promo.Do(r.Context(), r.PathValue("id"), method, path, in, out); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(*out)
}
