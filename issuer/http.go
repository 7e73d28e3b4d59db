package issuer

import (
	"context"
	"net/http"
	"sort"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/httpx"
)

// maxBodyBytes bounds every request of the issuer API.
const maxBodyBytes = 64 << 10

// Handler returns the issuer HTTP API (API.md).
func (h *Host) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/issuers", h.handleList)
	mux.HandleFunc("POST /v1/issuers/{id}/tokenization-decisions", h.handleDecide)
	mux.HandleFunc("POST /v1/issuers/{id}/otp", h.handleSendOTP)
	mux.HandleFunc("POST /v1/issuers/{id}/otp/verify", h.handleVerifyOTP)
	mux.HandleFunc("POST /v1/issuers/{id}/token-notices", h.handleNotice)
	mux.HandleFunc("GET /v1/admin/ledger/check", h.handleLedgerCheck)
	// The bank's staff: each bank's operator key, for its own issuer id only.
	mux.HandleFunc("GET /v1/issuers/{id}/accounts/{last4}", h.staff(h.handleAccounts))
	mux.HandleFunc("POST /v1/issuers/{id}/cards/token-actions", h.staff(h.handleTokenAction))
	mux.HandleFunc("POST /v1/issuers/{id}/cards/report-stolen", h.staff(h.handleReportStolen))
	mux.HandleFunc("POST /v1/issuers/{id}/cards/replace", h.staff(h.handleReplaceCard))
	mux.HandleFunc("POST /v1/issuers/{id}/cards/tokens", h.staff(h.handleCardTokens))
	h.campaignRoutes(mux)    // promo_api.go
	h.operatorKeyRoutes(mux) // operator_auth_keys.go: the bank's own key rotation and revocation
	return mux
}

type issuerInfo struct {
	ID       string   `json:"id"`
	Bank     string   `json:"bank"`
	BankCode string   `json:"bankCode"`
	CardType string   `json:"cardType"`
	BINs     []string `json:"bins"`
}

func (h *Host) handleList(w http.ResponseWriter, r *http.Request) {
	out := make([]issuerInfo, 0, len(h.ref.Issuers))
	for i := range h.ref.Issuers {
		is := &h.ref.Issuers[i]
		out = append(out, issuerInfo{ID: is.ID, Bank: is.Bank, BankCode: is.BankCode, CardType: is.CardType, BINs: is.BINs})
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"issuers": out})
}

// bankCall answers a bank-scoped JSON call: decode the body (bounded),
// run fn for the issuer named in the path, answer its result or its error.
func bankCall[Req, Out any](w http.ResponseWriter, r *http.Request, fn func(ctx context.Context, issuerID string, req Req) (Out, error)) {
	var req Req
	if err := httpx.DecodeJSONLimit(w, r, &req, maxBodyBytes); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	out, err := fn(r.Context(), r.PathValue("id"), req)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, out)
}

func (h *Host) handleDecide(w http.ResponseWriter, r *http.Request) {
	bankCall(w, r, h.Decide)
}

type sendOTPRequest struct {
	DecisionID string `json:"decisionId"`
	MethodID   string `json:"methodId"`
}

func (h *Host) handleSendOTP(w http.ResponseWriter, r *http.Request) {
	bankCall(w, r, func(ctx context.Context, id string, req sendOTPRequest) (OTPSent, error) {
		return h.SendOTP(ctx, id, req.DecisionID, req.MethodID)
	})
}

type verifyOTPRequest struct {
	DecisionID string `json:"decisionId"`
	Code       string `json:"code"`
}

func (h *Host) handleVerifyOTP(w http.ResponseWriter, r *http.Request) {
	bankCall(w, r, func(ctx context.Context, id string, req verifyOTPRequest) (OTPVerdict, error) {
		return h.VerifyOTP(ctx, id, req.DecisionID, req.Code)
	})
}

func (h *Host) handleNotice(w http.ResponseWriter, r *http.Request) {
	var n TokenNotice
	if err := httpx.DecodeJSONLimit(w, r, &n, maxBodyBytes); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if err := h.RecordNotice(r.Context(), r.PathValue("id"), n); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusAccepted, map[string]bool{"recorded": true})
}

// AccountView is a card's account as the accounts endpoint shows it.
type AccountView struct {
	CardID           string `json:"cardId"`
	PAN              string `json:"pan"` // masked first6/last4
	CardType         string `json:"cardType"`
	Status           string `json:"status"`
	Currency         string `json:"currency"`
	BalanceMinor     int64  `json:"balanceMinor"`     // debit: available + held (the ledger balance)
	CreditLimitMinor int64  `json:"creditLimitMinor"` // credit only
	AvailableMinor   int64  `json:"availableMinor"`
	HeldMinor        int64  `json:"heldMinor"`
	DaySpentMinor    int64  `json:"daySpentMinor"`
}

// Accounts returns the accounts of bank issuerID whose PAN ends in last4.
func (h *Host) Accounts(issuerID, last4 string) ([]AccountView, error) {
	if _, ok := h.banks[issuerID]; !ok {
		return nil, mipay.Errorf(mipay.ENOTFOUND, "no issuer %q here", issuerID)
	}
	if len(last4) != 4 || !allDigits(last4) {
		return nil, mipay.Errorf(mipay.EINVALID, "panLast4 must be 4 digits")
	}
	var out []AccountView
	today := dayOf(h.now())
	for _, a := range h.cards {
		if a.bank.ID != issuerID || a.card.Last4 != last4 {
			continue
		}
		a.mu.Lock()
		v := AccountView{CardID: a.card.ID, PAN: a.card.Masked(), CardType: a.card.CardType, Status: a.status,
			Currency: currencyCNY, AvailableMinor: a.available, HeldMinor: a.held}
		if a.day == today {
			v.DaySpentMinor = a.daySpent
		}
		a.mu.Unlock()
		if a.card.CardType == config.Credit {
			v.CreditLimitMinor = a.card.CreditLimit
		} else {
			v.BalanceMinor = v.AvailableMinor + v.HeldMinor
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, mipay.Errorf(mipay.ENOTFOUND, "no card ending in %s at this bank", last4)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CardID < out[j].CardID })
	return out, nil
}

func (h *Host) handleAccounts(w http.ResponseWriter, r *http.Request) {
	out, err := h.Accounts(r.PathValue("id"), r.PathValue("last4"))
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"accounts": out})
}

// ledgerCheckTimeout bounds the admin ledger check.
const ledgerCheckTimeout = 30 * time.Second

func (h *Host) handleLedgerCheck(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), ledgerCheckTimeout)
	defer cancel()
	rep, err := h.CheckLedger(ctx)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	status := http.StatusOK
	if !rep.OK {
		status = http.StatusInternalServerError
	}
	httpx.WriteJSON(w, status, rep)
}
