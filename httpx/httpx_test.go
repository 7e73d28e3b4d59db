package httpx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/prometheus/client_golang/prometheus"
)

type card struct {
	PAN    string `json:"pan"`
	Expiry string `json:"expiry"`
	Amount int64  `json:"amount"`
	Nested struct {
		Flag bool `json:"flag"`
	} `json:"nested"`
}

func decode(t *testing.T, body string, ct string, limit int64) (card, error) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	if ct != "" {
		r.Header.Set("Content-Type", ct)
	}
	var c card
	err := DecodeJSONLimit(httptest.NewRecorder(), r, &c, limit)
	return c, err
}

func TestDecodeJSON(t *testing.T) {
	tests := []struct {
		name, body, ct string
		limit          int64
		code, msg      string
	}{
		{name: "ok", body: `{"pan":"x","expiry":"2612","amount":5}`, ct: "application/json"},
		{name: "ok trailing space", body: `{"expiry":"2612"}` + "\n\t "},
		{name: "ok charset", body: `{}`, ct: "application/json; charset=utf-8"},
		{name: "wrong type", body: `{"expiry":2612}`, code: mipay.EINVALID, msg: `body: field "expiry" must be a string`},
		{name: "wrong nested type", body: `{"nested":{"flag":"yes"}}`, code: mipay.EINVALID, msg: `body: field "nested.flag" must be a boolean`},
		{name: "integer", body: `{"amount":"5"}`, code: mipay.EINVALID, msg: `body: field "amount" must be an integer`},
		{name: "not object", body: `[1]`, code: mipay.EINVALID, msg: `body: must be an object`},
		{name: "unknown field", body: `{"cvv":"123"}`, code: mipay.EINVALID, msg: `body: unknown field "cvv"`},
		{name: "unknown field pan masked", body: `{"6225881234567898":1}`, code: mipay.EINVALID, msg: `body: unknown field "622588******7898"`},
		{name: "two values", body: `{} {}`, code: mipay.EINVALID, msg: "body: must hold a single JSON value"},
		{name: "garbage after", body: `{}x`, code: mipay.EINVALID, msg: "body: must hold a single JSON value"},
		{name: "empty", body: ``, code: mipay.EINVALID, msg: "body: must not be empty"},
		{name: "truncated", body: `{"pan":`, code: mipay.EINVALID, msg: "body: truncated JSON"},
		{name: "syntax", body: `{"pan" 1}`, code: mipay.EINVALID, msg: "body: malformed JSON at byte 8"},
		{name: "content type", body: `{}`, ct: "text/plain", code: mipay.EINVALID, msg: "body: content type must be application/json"},
		{name: "too large", body: `{"pan":"` + strings.Repeat("1", 100) + `"}`, limit: 64, code: mipay.ETOOLARGE, msg: "body: larger than 64 bytes"},
		{name: "too large after value", body: `{}` + strings.Repeat(" ", 100), limit: 64, code: mipay.ETOOLARGE, msg: "body: larger than 64 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			limit := tc.limit
			if limit == 0 {
				limit = DefaultMaxBodyBytes
			}
			_, err := decode(t, tc.body, tc.ct, limit)
			if tc.code == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if got := mipay.ErrorCode(err); got != tc.code {
				t.Fatalf("code = %q, want %q (err %v)", got, tc.code, err)
			}
			if got := mipay.ErrorMessage(err); got != tc.msg {
				t.Errorf("message = %q, want %q", got, tc.msg)
			}
		})
	}
}

func TestStatusOf(t *testing.T) {
	codes := map[string]int{
		mipay.EINVALID: 400, mipay.EUNAUTHORIZED: 401, mipay.EDECLINED: 402, mipay.EFORBIDDEN: 403,
		mipay.ENOTFOUND: 404, mipay.ECONFLICT: 409, mipay.ETOOLARGE: 413, mipay.ELOCKED: 423,
		mipay.ELIMIT: 429, mipay.EINTERNAL: 500, mipay.EUNAVAILABLE: 503, mipay.ETIMEOUT: 504, "bogus": 500,
	}
	for code, want := range codes {
		if got := StatusOf(code); got != want {
			t.Errorf("StatusOf(%q) = %d, want %d", code, got, want)
		}
		if code != "bogus" {
			if back := CodeOfStatus(want); back != code {
				t.Errorf("CodeOfStatus(%d) = %q, want %q", want, back, code)
			}
		}
	}
}

func TestWriteError(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	tests := []struct {
		name       string
		err        error
		status     int
		code, msg  string
		reason     string
		wantLogged bool
	}{
		{name: "invalid", err: mipay.Errorf(mipay.EINVALID, "pan: must be 13-19 digits"), status: 400, code: "invalid", msg: "pan: must be 13-19 digits"},
		{name: "declined with reason", err: &mipay.Error{Code: mipay.EDECLINED, Message: "declined by bank", Reason: "51"}, status: 402, code: "declined", msg: "declined by bank", reason: "51"},
		{name: "wrapped", err: fmt.Errorf("tsp: %w", mipay.Errorf(mipay.ENOTFOUND, "no such token")), status: 404, code: "not_found", msg: "no such token"},
		{name: "plain error", err: errors.New("db: card 6225881234567898 constraint"), status: 500, code: "internal", msg: "internal error", wantLogged: true},
		{name: "internal with message", err: mipay.Errorf(mipay.EINTERNAL, "secret detail"), status: 500, code: "internal", msg: "internal error", wantLogged: true},
		{name: "deadline", err: fmt.Errorf("q: %w", context.DeadlineExceeded), status: 504, code: "timeout", msg: "the request took too long", wantLogged: true},
		{name: "message pan masked", err: mipay.Errorf(mipay.ECONFLICT, "card 6225881234567898 already bound"), status: 409, code: "conflict", msg: "card 622588******7898 already bound"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			logs.Reset()
			r := httptest.NewRequest(http.MethodGet, "/x", nil)
			r = r.WithContext(WithLogger(r.Context(), maskedLogger(log)))
			w := httptest.NewRecorder()
			WriteError(w, r, tc.err)
			if w.Code != tc.status {
				t.Errorf("status = %d, want %d", w.Code, tc.status)
			}
			if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("content type %q", ct)
			}
			var eb ErrorBody
			if err := json.Unmarshal(w.Body.Bytes(), &eb); err != nil {
				t.Fatalf("body %q: %v", w.Body, err)
			}
			if eb.Error.Code != tc.code || eb.Error.Message != tc.msg || eb.Error.Reason != tc.reason {
				t.Errorf("body = %+v, want code %q message %q reason %q", eb.Error, tc.code, tc.msg, tc.reason)
			}
			if logged := logs.Len() > 0; logged != tc.wantLogged {
				t.Errorf("logged = %v, want %v: %s", logged, tc.wantLogged, logs.String())
			}
			if strings.Contains(logs.String(), "6225881234567898") {
				t.Errorf("log holds a PAN: %s", logs.String())
			}
		})
	}
}

func MustServe(tb testing.TB, party string, h http.Handler, reg prometheus.Registerer) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := NewServer(party, h, slog.New(slog.NewTextHandler(io.Discard, nil)), reg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, srv, ln) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

type echoReq struct {
	Name string `json:"name"`
}

type echoResp struct {
	Hello string `json:"hello"`
	Auth  string `json:"auth"`
}

func testMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/echo", func(w http.ResponseWriter, r *http.Request) {
		var in echoReq
		if err := DecodeJSON(w, r, &in); err != nil {
			WriteError(w, r, err)
			return
		}
		WriteJSON(w, http.StatusOK, echoResp{Hello: in.Name, Auth: r.Header.Get("Authorization")})
	})
	mux.HandleFunc("GET /v1/fail/{code}", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, r, &mipay.Error{Code: r.PathValue("code"), Message: "failed on purpose", Reason: "R1"})
	})
	mux.HandleFunc("GET /v1/panic", func(http.ResponseWriter, *http.Request) { panic("boom") })
	mux.HandleFunc("GET /v1/big", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, strings.Repeat("x", 2000))
	})
	mux.HandleFunc("GET /v1/text", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad gateway", http.StatusBadGateway)
	})
	return mux
}

func TestServerAndClient(t *testing.T) {
	reg := prometheus.NewRegistry()
	base := MustServe(t, "wallet", testMux(), reg)
	ctx := context.Background()
	c := &Client{Base: base, Token: "tok"}

	t.Run("round trip with token", func(t *testing.T) {
		var out echoResp
		if err := c.Do(ctx, http.MethodPost, "/v1/echo", echoReq{Name: "mi"}, &out); err != nil {
			t.Fatal(err)
		}
		if out.Hello != "mi" || out.Auth != "Bearer tok" {
			t.Errorf("out = %+v", out)
		}
	})
	t.Run("error mapped back", func(t *testing.T) {
		for _, code := range []string{mipay.ENOTFOUND, mipay.EDECLINED, mipay.ELOCKED, mipay.EINVALID} {
			err := c.Do(ctx, http.MethodGet, "/v1/fail/"+code, nil, nil)
			var me *mipay.Error
			if !errors.As(err, &me) || me.Code != code || me.Message != "failed on purpose" || me.Reason != "R1" {
				t.Errorf("code %s: err = %#v", code, err)
			}
		}
	})
	t.Run("unknown field refused by server", func(t *testing.T) {
		err := c.Do(ctx, http.MethodPost, "/v1/echo", map[string]string{"nom": "x"}, nil)
		if mipay.ErrorCode(err) != mipay.EINVALID || mipay.ErrorMessage(err) != `body: unknown field "nom"` {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("panic is 500 json", func(t *testing.T) {
		err := c.Do(ctx, http.MethodGet, "/v1/panic", nil, nil)
		if mipay.ErrorCode(err) != mipay.EINTERNAL || mipay.ErrorMessage(err) != "internal error" {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("non json error", func(t *testing.T) {
		err := c.Do(ctx, http.MethodGet, "/v1/text", nil, nil)
		if mipay.ErrorCode(err) != mipay.EUNAVAILABLE {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("response too large", func(t *testing.T) {
		small := &Client{Base: base, MaxResponseBytes: 1000}
		var s string
		err := small.Do(ctx, http.MethodGet, "/v1/big", nil, &s)
		if mipay.ErrorCode(err) != mipay.EUNAVAILABLE || !strings.Contains(mipay.ErrorMessage(err), "larger than 1000 bytes") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("unmatched route", func(t *testing.T) {
		err := c.Do(ctx, http.MethodGet, "/nope", nil, nil)
		if mipay.ErrorCode(err) != mipay.ENOTFOUND {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("healthz", func(t *testing.T) {
		var out map[string]string
		if err := c.Do(ctx, http.MethodGet, "/healthz", nil, &out); err != nil || out["status"] != "ok" {
			t.Errorf("healthz = %v, %v", out, err)
		}
		err := c.Do(ctx, http.MethodPost, "/healthz", nil, nil)
		if mipay.ErrorCode(err) != mipay.EINVALID {
			t.Errorf("POST healthz: %v", err)
		}
	})
	t.Run("metrics", func(t *testing.T) {
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		text := string(b)
		for _, want := range []string{
			`mipay_http_requests_total{party="wallet",route="POST /v1/echo",status="200"}`,
			`mipay_http_requests_total{party="wallet",route="GET /v1/panic",status="500"}`,
			`route="unmatched"`,
			`mipay_http_request_duration_seconds_bucket{party="wallet",route="POST /v1/echo"`,
			"go_goroutines",
		} {
			if !strings.Contains(text, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
	})
}

func TestTransportFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := &Client{Base: "http://" + addr}
	err = c.Do(context.Background(), http.MethodGet, "/x", nil, nil)
	if mipay.ErrorCode(err) != mipay.EUNAVAILABLE {
		t.Fatalf("err = %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	err = c.Do(ctx, http.MethodGet, "/x", nil, nil)
	if mipay.ErrorCode(err) != mipay.EUNAVAILABLE || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline err = %v", err)
	}
}

// Several parties in one process, each with its own registry or none given,
// must not panic on duplicate registration.
func TestManyPartiesOneProcess(t *testing.T) {
	for _, p := range []string{"sms", "issuer", "tsp", "network", "wallet"} {
		_ = NewServer(p, http.NewServeMux(), nil, nil)
		_ = NewServer(p, http.NewServeMux(), nil, prometheus.NewRegistry())
	}
	shared := prometheus.NewRegistry()
	_ = NewServer("tsp", http.NewServeMux(), nil, shared)
	_ = NewServer("tsp", http.NewServeMux(), nil, shared) // second listener of the same party
	// A Registerer that is not a Gatherer: /metrics serves a private registry.
	wrapped := prometheus.WrapRegistererWith(prometheus.Labels{"node": "a"}, prometheus.NewRegistry())
	base := MustServe(t, "sms", http.NewServeMux(), wrapped)
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); !strings.Contains(string(b), "go_goroutines") {
		t.Errorf("private registry not served: %s", b)
	}
}

func TestServeGracefulShutdown(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		WriteJSON(w, http.StatusOK, "done")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer("t", mux, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, srv, ln) }()
	got := make(chan error, 1)
	go func() {
		var s string
		got <- (&Client{Base: "http://" + ln.Addr().String()}).Do(context.Background(), http.MethodGet, "/slow", nil, &s)
	}()
	<-started
	cancel()
	select {
	case err := <-done:
		t.Fatalf("Serve returned before the request finished: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-got; err != nil {
		t.Errorf("in-flight request failed: %v", err)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

func TestServerTimeouts(t *testing.T) {
	srv := NewServer("t", http.NewServeMux(), nil, nil)
	if srv.ReadHeaderTimeout == 0 || srv.ReadTimeout == 0 || srv.WriteTimeout == 0 || srv.IdleTimeout == 0 || srv.MaxHeaderBytes == 0 {
		t.Errorf("server bounds unset: %+v", srv)
	}
}

// Streaming handlers (long poll, SSE) reach the connection through the
// wrapper with http.ResponseController.
func TestResponseControllerThroughWrapper(t *testing.T) {
	errs := make(chan error, 2)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stream", func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		errs <- rc.SetWriteDeadline(time.Now().Add(time.Minute))
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: 1\n\n")
		errs <- rc.Flush()
	})
	base := MustServe(t, "wallet", mux, nil)
	resp, err := http.Get(base + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "data: 1\n\n" {
		t.Errorf("body %q", b)
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("ResponseController: %v", err)
		}
	}
}

func TestRequestIDPropagation(t *testing.T) {
	seen := make(chan string, 1)
	muxB := http.NewServeMux()
	muxB.HandleFunc("GET /b", func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get(RequestIDHeader)
		WriteJSON(w, http.StatusOK, RequestID(r.Context()))
	})
	baseB := MustServe(t, "b", muxB, nil)
	muxA := http.NewServeMux()
	muxA.HandleFunc("GET /a", func(w http.ResponseWriter, r *http.Request) {
		var out string
		if err := (&Client{Base: baseB}).Do(r.Context(), http.MethodGet, "/b", nil, &out); err != nil {
			WriteError(w, r, err)
			return
		}
		WriteJSON(w, http.StatusOK, out)
	})
	baseA := MustServe(t, "a", muxA, nil)

	get := func(id string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodGet, baseA+"/a", nil)
		if id != "" {
			req.Header.Set(RequestIDHeader, id)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body string
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		return resp, body
	}
	resp, body := get("trace-123")
	if got := <-seen; got != "trace-123" || body != "trace-123" || resp.Header.Get(RequestIDHeader) != "trace-123" {
		t.Errorf("kept id: downstream %q, body %q, header %q", got, body, resp.Header.Get(RequestIDHeader))
	}
	resp, body = get("bad id with spaces")
	got := <-seen
	if got == "bad id with spaces" || len(got) != 16 || body != got || resp.Header.Get(RequestIDHeader) != got {
		t.Errorf("replaced id: downstream %q, body %q, header %q", got, body, resp.Header.Get(RequestIDHeader))
	}
}

func TestWriteErrorLogsRequestID(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /x", func(w http.ResponseWriter, r *http.Request) { WriteError(w, r, errors.New("boom")) })
	h := Handler("t", mux, log, nil)
	req := httptest.NewRequest(http.MethodGet, "/x", nil)
	req.Header.Set(RequestIDHeader, "rid-7")
	h.ServeHTTP(httptest.NewRecorder(), req)
	if !strings.Contains(logs.String(), `"request_id":"rid-7"`) {
		t.Errorf("log lacks request id: %s", logs.String())
	}
}

func TestAccessLogAtDebug(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/cards/{pan}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	h := Handler("t", mux, log, nil)
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/v1/cards/6225881234567898", nil))
	out := logs.String()
	for _, want := range []string{`"msg":"request"`, `"route":"GET /v1/cards/{pan}"`, `"status":204`, `"path":"/v1/cards/622588******7898"`} {
		if !strings.Contains(out, want) {
			t.Errorf("access log lacks %s: %s", want, out)
		}
	}
}
