package issuer

import (
	"context"
	"net/http"
	"time"

	"github.com/mipay-oss/mipay/httpx"
)

// DefaultSMSTimeout bounds one call to the SMS gateway.
const DefaultSMSTimeout = 5 * time.Second

// HTTPSMS sends messages through the sms party's HTTP API.
type HTTPSMS struct {
	client httpx.Client
}

// NewHTTPSMS returns a sender for the gateway at base (http://127.0.0.1:8410).
func NewHTTPSMS(base string) *HTTPSMS {
	return &HTTPSMS{client: httpx.Client{Base: base, HTTP: &http.Client{Timeout: DefaultSMSTimeout}}}
}

// Send implements SMSSender.
func (s *HTTPSMS) Send(ctx context.Context, to, text, sender string) error {
	return s.client.Do(ctx, http.MethodPost, "/v1/messages", map[string]string{"to": to, "text": text, "sender": sender}, nil)
}
