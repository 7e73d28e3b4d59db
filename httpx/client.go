package httpx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/logmask"
)

// Connection pool of clients without their own HTTP client.
// http.DefaultTransport keeps 2 idle connections per host, so concurrent
// party-to-party calls would open and close connections all the time
// (TIME_WAIT piles up); parties call few hosts, many times.
const (
	DefaultMaxIdleConnsPerHost = 64
	defaultMaxIdleConns        = 256
	defaultIdleConnTimeout     = 90 * time.Second
)

// defaultHTTPClient is shared, like http.DefaultClient, so that Client
// values (often built per call) share one connection pool. It is never
// modified after package initialisation.
var defaultHTTPClient = newDefaultHTTPClient()

func newDefaultHTTPClient() *http.Client {
	return &http.Client{Timeout: DefaultClientTimeout, Transport: NewTransport(DefaultClientTimeout)}
}

// NewTransport returns a transport pooled for party-to-party calls (up to
// DefaultMaxIdleConnsPerHost kept-alive connections per host), for parties
// that build their own http.Client; responseHeader bounds the wait for an
// answer's headers (0: none).
func NewTransport(responseHeader time.Duration) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = defaultMaxIdleConns
	t.MaxIdleConnsPerHost = DefaultMaxIdleConnsPerHost
	t.IdleConnTimeout = defaultIdleConnTimeout
	t.ResponseHeaderTimeout = responseHeader
	return t
}

// Client calls another party's JSON API. The zero value of the optional
// fields is usable: HTTP nil uses a client with DefaultClientTimeout,
// MaxResponseBytes 0 means DefaultMaxResponseBytes.
type Client struct {
	Base             string       // e.g. "http://127.0.0.1:8420"
	HTTP             *http.Client // nil: a shared pooled client bounded by DefaultClientTimeout
	Token            string       // sent as "Authorization: Bearer <Token>" when set
	MaxResponseBytes int64
	// Header holds extra headers sent with every request (e.g. whom a
	// caller acts for); nil for none.
	Header http.Header
}

// Do sends in (JSON, when not nil) to Base+path and decodes a 2xx answer into
// out (when not nil). An error answer in the {"error":{…}} shape comes back
// as a *mipay.Error with the same code, message and reason; other non-2xx
// answers as the code of their status. Transport failures and unreadable
// answers are EUNAVAILABLE wrapping the cause (errors.Is works on
// context.DeadlineExceeded).
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	req, err := c.newRequest(ctx, method, path, in)
	if err != nil {
		return err
	}
	hc := c.HTTP
	if hc == nil {
		hc = defaultHTTPClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return mipay.WrapError(mipay.EUNAVAILABLE, err, "%s is unavailable", c.peer())
	}
	defer resp.Body.Close()
	limit := c.MaxResponseBytes
	if limit <= 0 {
		limit = DefaultMaxResponseBytes
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return mipay.WrapError(mipay.EUNAVAILABLE, err, "%s answer could not be read", c.peer())
	}
	if int64(len(body)) > limit {
		return mipay.Errorf(mipay.EUNAVAILABLE, "%s answer is larger than %d bytes", c.peer(), limit)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return errorFromAnswer(resp.StatusCode, body, c.peer())
	}
	if out == nil || len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return mipay.WrapError(mipay.EUNAVAILABLE, err, "%s answered malformed JSON", c.peer())
	}
	return nil
}

func (c *Client) newRequest(ctx context.Context, method, path string, in any) (*http.Request, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, mipay.WrapError(mipay.EINTERNAL, err, "encoding request")
		}
		body = bytes.NewReader(b)
	}
	u := strings.TrimRight(c.Base, "/") + "/" + strings.TrimLeft(path, "/")
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, mipay.WrapError(mipay.EINTERNAL, err, "building request to %s", c.peer())
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	for k, vs := range c.Header {
		req.Header[http.CanonicalHeaderKey(k)] = append([]string(nil), vs...)
	}
	if id := RequestID(ctx); id != "" {
		req.Header.Set(RequestIDHeader, id)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	return req, nil
}

// peer names the called party in messages by host only (paths may carry ids).
func (c *Client) peer() string {
	if u, err := url.Parse(c.Base); err == nil && u.Host != "" {
		return u.Host
	}
	return "peer"
}

// errorFromAnswer maps an error answer back to a *mipay.Error.
func errorFromAnswer(status int, body []byte, peer string) error {
	var eb ErrorBody
	if err := json.Unmarshal(body, &eb); err == nil && eb.Error.Code != "" {
		return &mipay.Error{
			Code:    eb.Error.Code,
			Message: logmask.Mask(eb.Error.Message),
			Reason:  logmask.Mask(eb.Error.Reason),
			Err:     fmt.Errorf("%s answered HTTP %d", peer, status),
		}
	}
	code := CodeOfStatus(status)
	return &mipay.Error{
		Code:    code,
		Message: fmt.Sprintf("%s answered HTTP %d", peer, status),
		Err:     errors.New(http.StatusText(status)),
	}
}
