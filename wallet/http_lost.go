package wallet

import (
	"net/http"
	"strconv"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/httpx"
)

// lostRoutes are the routes of the lost-phone portal's sign-in and of the
// simulated e-mail outbox (see lost.go).
func (a *API) lostRoutes() []route {
	return []route{
		{"POST", "/v1/portal/challenges", false, a.startChallenge},
		{"POST", "/v1/portal/challenges/{id}/verify", false, a.verifyChallenge},
		{"GET", "/v1/email-outbox/{address}", false, a.emailOutbox},
	}
}

func (a *API) startChallenge(w http.ResponseWriter, r *http.Request, _ string) error {
	in, err := decodeSignIn(w, r)
	if err != nil {
		return err
	}
	ch, err := a.s.StartChallenge(r.Context(), clientAddr(r), in.Login, in.Password)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusCreated, ch)
	return nil
}

type verifyChallengeRequest struct {
	EmailCode    string `json:"emailCode"`
	RecoveryCode string `json:"recoveryCode"`
}

func (a *API) verifyChallenge(w http.ResponseWriter, r *http.Request, _ string) error {
	var in verifyChallengeRequest
	if err := decode(w, r, &in); err != nil {
		return err
	}
	sess, err := a.s.VerifyChallenge(r.Context(), clientAddr(r), r.PathValue("id"), in.EmailCode, in.RecoveryCode)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusCreated, sess)
	return nil
}

func (a *API) emailOutbox(w http.ResponseWriter, r *http.Request, _ string) error {
	var after int64
	if v := r.URL.Query().Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return mipay.Errorf(mipay.EINVALID, "after must be a message id (a whole number)")
		}
		after = n
	}
	limit, err := intQuery(r, "limit", MaxEmailsPerPage)
	if err != nil {
		return err
	}
	ms, err := a.s.EmailOutbox(r.Context(), r.PathValue("address"), after, limit)
	if err != nil {
		return err
	}
	last := after
	if len(ms) > 0 {
		last = ms[len(ms)-1].ID
	}
	w.Header().Set("Cache-Control", "no-store")
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"messages": ms, "last": last})
	return nil
}
