package wallet

import (
	"context"
	"net/http"

	"github.com/mipay-oss/mipay/httpx"
)

// reasonRequest is the optional body of lifecycle actions.
type reasonRequest struct {
	Reason string `json:"reason"`
}

func (a *API) suspendCard(w http.ResponseWriter, r *http.Request, accountID string) error {
	return a.cardLifecycle(w, r, accountID, a.s.SuspendCard)
}

func (a *API) resumeCard(w http.ResponseWriter, r *http.Request, accountID string) error {
	return a.cardLifecycle(w, r, accountID, a.s.ResumeCard)
}

func (a *API) cardLifecycle(w http.ResponseWriter, r *http.Request, accountID string,
	fn func(ctx context.Context, accountID, cardID, reason string) (*Card, error)) error {
	var in reasonRequest
	if err := decodeOptional(w, r, &in); err != nil {
		return err
	}
	c, err := fn(r.Context(), accountID, r.PathValue("id"), in.Reason)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, c)
	return nil
}

func (a *API) switchOff(w http.ResponseWriter, r *http.Request, accountID string) error {
	return a.deviceLifecycle(w, r, accountID, func(ctx context.Context, accountID, deviceID, reason string) (*DeviceChange, error) {
		return a.s.SwitchOffDevice(ctx, accountID, deviceID, reason, bearer(r))
	})
}

func (a *API) found(w http.ResponseWriter, r *http.Request, accountID string) error {
	// A stolen phone signed in to the account must not undo its own
	// switch-off: resuming needs a recent second-factor sign-in.
	if err := a.s.RequireRecentSecondFactor(r.Context(), bearer(r)); err != nil {
		return err
	}
	return a.deviceLifecycle(w, r, accountID, func(ctx context.Context, accountID, deviceID, reason string) (*DeviceChange, error) {
		return a.s.DeviceFound(ctx, accountID, deviceID, reason, bearer(r))
	})
}

func (a *API) removeDeviceCards(w http.ResponseWriter, r *http.Request, accountID string) error {
	return a.deviceLifecycle(w, r, accountID, a.s.RemoveDeviceCards)
}

func (a *API) deviceLifecycle(w http.ResponseWriter, r *http.Request, accountID string,
	fn func(ctx context.Context, accountID, deviceID, reason string) (*DeviceChange, error)) error {
	var in reasonRequest
	if err := decodeOptional(w, r, &in); err != nil {
		return err
	}
	out, err := fn(r.Context(), accountID, r.PathValue("id"), in.Reason)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}
