package promo

import (
	"net/http"
	"slices"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/httpx"
)

// MaxCampaignBodyBytes bounds a campaign definition sent over HTTP.
const MaxCampaignBodyBytes = 64 << 10

// BankAuth says which issuer ids (a bank's debit and credit hosts) the
// caller of the campaign API manages; ok false refuses the request.
type BankAuth func(r *http.Request) (issuerIDs []string, ok bool)

// Handler is the banks' campaign API:
//
//	GET  /v1/promo/campaigns                  the bank's campaigns
//	POST /v1/promo/campaigns                  create (a Campaign; issuerId must be the bank's)
//	POST /v1/promo/campaigns/{id}/pause       pause, resume, end
//	POST /v1/promo/campaigns/{id}/resume
//	POST /v1/promo/campaigns/{id}/end
//	GET  /v1/promo/campaigns/{id}/stats       redemptions, budget used
//
// A campaign of another bank is answered 404, as one that does not exist.
func (e *Engine) Handler(auth BankAuth) http.Handler {
	mux := http.NewServeMux()
	guard := func(h func(w http.ResponseWriter, r *http.Request, banks []string)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			banks, ok := auth(r)
			if !ok || len(banks) == 0 {
				httpx.WriteError(w, r, mipay.Errorf(mipay.EUNAUTHORIZED, "bank credentials required"))
				return
			}
			h(w, r, banks)
		}
	}
	mux.HandleFunc("GET /v1/promo/campaigns", guard(func(w http.ResponseWriter, r *http.Request, banks []string) {
		out := []Campaign{}
		for _, b := range banks {
			cs, err := e.List(r.Context(), b)
			if err != nil {
				httpx.WriteError(w, r, err)
				return
			}
			out = append(out, cs...)
		}
		httpx.WriteJSON(w, http.StatusOK, map[string]any{"campaigns": out})
	}))
	mux.HandleFunc("POST /v1/promo/campaigns", guard(func(w http.ResponseWriter, r *http.Request, banks []string) {
		var c Campaign
		if err := httpx.DecodeJSONLimit(w, r, &c, MaxCampaignBodyBytes); err != nil {
			httpx.WriteError(w, r, err)
			return
		}
		if !slices.Contains(banks, c.IssuerID) {
			httpx.WriteError(w, r, mipay.Errorf(mipay.EFORBIDDEN, "issuerId is not one of your bank's"))
			return
		}
		for _, iss := range c.Eligibility.IssuerIDs {
			if !slices.Contains(banks, iss) {
				httpx.WriteError(w, r, mipay.Errorf(mipay.EFORBIDDEN, "eligibility.issuerIds: a bank funds offers on its own cards only"))
				return
			}
		}
		out, err := e.Create(r.Context(), c)
		if err != nil {
			httpx.WriteError(w, r, err)
			return
		}
		httpx.WriteJSON(w, http.StatusCreated, out)
	}))
	for action, to := range map[string]Status{"pause": StatusPaused, "resume": StatusActive, "end": StatusEnded} {
		mux.HandleFunc("POST /v1/promo/campaigns/{id}/"+action, guard(func(w http.ResponseWriter, r *http.Request, banks []string) {
			c, err := e.ownCampaign(r, banks)
			if err != nil {
				httpx.WriteError(w, r, err)
				return
			}
			out, err := e.SetStatus(r.Context(), c.IssuerID, c.ID, to)
			if err != nil {
				httpx.WriteError(w, r, err)
				return
			}
			httpx.WriteJSON(w, http.StatusOK, out)
		}))
	}
	mux.HandleFunc("GET /v1/promo/campaigns/{id}/stats", guard(func(w http.ResponseWriter, r *http.Request, banks []string) {
		c, err := e.ownCampaign(r, banks)
		if err != nil {
			httpx.WriteError(w, r, err)
			return
		}
		st, err := e.Stats(r.Context(), c.IssuerID, c.ID)
		if err != nil {
			httpx.WriteError(w, r, err)
			return
		}
		httpx.WriteJSON(w, http.StatusOK, st)
	}))
	return mux
}

func (e *Engine) ownCampaign(r *http.Request, banks []string) (Campaign, error) {
	id := r.PathValue("id")
	if len(id) > MaxCampaignIDBytes {
		return Campaign{}, ErrNotFound
	}
	c, err := loadCampaign(r.Context(), e.db.DB, id, "")
	if err != nil {
		return Campaign{}, err
	}
	if !slices.Contains(banks, c.IssuerID) {
		return Campaign{}, ErrNotFound
	}
	return c, nil
}
