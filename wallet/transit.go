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
// transit card of a lost device, on the cardholder's behalf (the agencies
// check device ownership with the wallet through the same session).
type Transit interface {
	HotlistDevice(ctx context.Context, bearer, deviceID, reason string) ([]string, error)
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
	c := httpx.Client{Base: base, Token: bearer, HTTP: &http.Client{Timeout: timeout}}
	var out struct {
		Hotlisted []string `json:"hotlisted"`
	}
	err := c.Do(ctx, http.MethodPost, "/v1/devices/"+url.PathEscape(deviceID)+"/hotlist",
		map[string]string{"reason": reason}, &out)
	return out.Hotlisted, err
}
