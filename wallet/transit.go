package wallet

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/httpx"
)

// Transit is what the wallet asks of the transit agencies: hotlisting every
// transit card of a lost device, and lifting that hotlist when the device is
// found, on the cardholder's behalf (the agencies check device ownership
// with the wallet through the same session).
type Transit interface {
	HotlistDevice(ctx context.Context, bearer, deviceID, reason string) ([]string, error)
	RestoreDevice(ctx context.Context, bearer, deviceID string) ([]string, error)
}

// DefaultTransitTimeout bounds one call to the transit agencies.
const DefaultTransitTimeout = 5 * time.Second

// HTTPTransit calls the transit party's HTTP API. Base is read at each call
// (the transit party may start after the wallet); "" means there is none.
type HTTPTransit struct {
	Base    func() string
	Timeout time.Duration
}

// errNoTransit says no transit party is configured (nothing to hotlist).
var errNoTransit = mipay.Errorf(mipay.EUNAVAILABLE, "no transit agency is configured")

func (t *HTTPTransit) HotlistDevice(ctx context.Context, bearer, deviceID, reason string) ([]string, error) {
	c, err := t.client(bearer)
	if err != nil {
		return nil, err
	}
	var out struct {
		Hotlisted []string `json:"hotlisted"`
	}
	err = c.Do(ctx, http.MethodPost, "/v1/devices/"+url.PathEscape(deviceID)+"/hotlist",
		map[string]string{"reason": reason}, &out)
	return out.Hotlisted, err
}

// RestoreDevice takes off the hotlist the cards the device's switch-off put
// there (not those hotlisted for another reason).
func (t *HTTPTransit) RestoreDevice(ctx context.Context, bearer, deviceID string) ([]string, error) {
	c, err := t.client(bearer)
	if err != nil {
		return nil, err
	}
	var out struct {
		Restored []string `json:"restored"`
	}
	err = c.Do(ctx, http.MethodPost, "/v1/devices/"+url.PathEscape(deviceID)+"/found", nil, &out)
	return out.Restored, err
}

func (t *HTTPTransit) client(bearer string) (*httpx.Client, error) {
	base := ""
	if t.Base != nil {
		base = t.Base()
	}
	if base == "" {
		return nil, errNoTransit
	}
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = DefaultTransitTimeout
	}
	return &httpx.Client{Base: base, Token: bearer, HTTP: &http.Client{Timeout: timeout}}, nil
}
