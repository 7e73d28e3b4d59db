package network

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/httpx"
)

// The admin API of the rate table, on the network's HTTP listener:
//
//	GET  /v1/admin/rates   the versions held (newest last) and the one in effect
//	POST /v1/admin/rates   {"version": 2, "effectiveFrom": "…", "rates": {"JPY": "0.04712", …}}
//	GET  /v1/admin/advices?limit=100   stand-in advices the issuer refused or that
//	                                   could not be built (UnsettledAdvices)
//
// All need Authorization: Bearer <admin secret>. The secret comes from
// MIPAY_NETWORK_ADMIN_TOKEN or the file <dataDir>/network/admin.token
// (created with a random secret on first start, mode 0600).
const (
	EnvAdminToken       = "MIPAY_NETWORK_ADMIN_TOKEN"
	adminTokenFile      = "admin.token"
	maxAdminSecretBytes = 256
	maxRatesBodyBytes   = 64 << 10
)

// AdminTokenPath is where the admin secret file lives under a data directory.
func AdminTokenPath(dataDir string) string { return filepath.Join(dataDir, "network", adminTokenFile) }

// LoadAdminToken returns the admin API secret from the environment or the
// data directory, creating the file when missing.
func LoadAdminToken(dataDir string) (string, error) {
	if v := strings.TrimSpace(os.Getenv(EnvAdminToken)); v != "" {
		return v, nil
	}
	if dataDir == "" {
		return "", fmt.Errorf("network: %s is unset and there is no data directory", EnvAdminToken)
	}
	path := AdminTokenPath(dataDir)
	if b, err := os.ReadFile(path); err == nil {
		if v := strings.TrimSpace(string(b)); v != "" && len(v) <= maxAdminSecretBytes {
			return v, nil
		}
		return "", fmt.Errorf("network: %s is empty or over %d bytes", path, maxAdminSecretBytes)
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("network: read %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("network: %w", err)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("network: random secret: %w", err)
	}
	v := base64.RawURLEncoding.EncodeToString(raw[:])
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return LoadAdminToken(dataDir) // another process made it first
	}
	if err != nil {
		return "", fmt.Errorf("network: create %s: %w", path, err)
	}
	_, werr := f.WriteString(v + "\n")
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return "", fmt.Errorf("network: write %s: %w", path, werr)
	}
	return v, nil
}

// RatesView is the GET answer.
type RatesView struct {
	Versions []config.RateSet `json:"versions"`
	// Current is the version in effect now (0: none).
	Current int64 `json:"current"`
}

// AdminHandler serves the rate table's admin API; other paths get 404.
func (s *Switch) AdminHandler(secret string) http.Handler {
	sum := sha256.Sum256([]byte(secret))
	authorized := func(r *http.Request) bool {
		h := r.Header.Get("Authorization")
		if secret == "" || len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") || len(h) > 512 {
			return false
		}
		got := sha256.Sum256([]byte(strings.TrimSpace(h[7:])))
		return subtle.ConstantTimeCompare(got[:], sum[:]) == 1
	}
	mux := http.NewServeMux()
	guard := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if !authorized(r) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="mipay network"`)
				httpx.WriteError(w, r, mipay.Errorf(mipay.EUNAUTHORIZED, "send Authorization: Bearer <network admin secret>"))
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("GET /v1/admin/rates", guard(func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(w, http.StatusOK, s.ratesView(s.now()))
	}))
	mux.HandleFunc("POST /v1/admin/rates", guard(func(w http.ResponseWriter, r *http.Request) {
		var rs config.RateSet
		if err := httpx.DecodeJSONLimit(w, r, &rs, maxRatesBodyBytes); err != nil {
			httpx.WriteError(w, r, err)
			return
		}
		v, err := s.PublishRates(r.Context(), rs)
		if err != nil {
			httpx.WriteError(w, r, err)
			return
		}
		httpx.WriteJSON(w, http.StatusCreated, rateSetOf(v))
	}))
	mux.HandleFunc("GET /v1/admin/advices", guard(s.serveUnsettledAdvices)) // advice.go
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteError(w, r, mipay.Errorf(mipay.ENOTFOUND, "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
}

func (s *Switch) ratesView(now time.Time) RatesView {
	var out RatesView
	for _, v := range s.rates.Versions() {
		out.Versions = append(out.Versions, rateSetOf(v))
		if !v.EffectiveFrom.After(now) {
			out.Current = v.Version
		}
	}
	return out
}
