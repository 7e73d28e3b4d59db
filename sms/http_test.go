package sms

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/mipay-oss/mipay/httpx"
)

// MustServe serves the gateway's API over a fresh store on a loopback port.
func MustServe(tb testing.TB) *httptest.Server {
	tb.Helper()
	srv := httptest.NewServer(httpx.Handler("sms", Handler(MustOpenService(tb)), slog.New(slog.DiscardHandler), nil))
	tb.Cleanup(srv.Close)
	return srv
}

func do(t *testing.T, method, url, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(b) > 0 {
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("answer is not JSON: %q", b)
		}
	}
	return resp.StatusCode, m
}

func TestHTTPSendAndRead(t *testing.T) {
	srv := MustServe(t)
	st, m := do(t, "POST", srv.URL+"/v1/messages", `{"to":"+8613800138000","text":"code 123456","sender":"ICBC"}`)
	if st != http.StatusCreated || m["to"] != "***8000" {
		t.Fatalf("send: %d %v", st, m)
	}
	id := m["id"].(float64)
	st, m = do(t, "GET", srv.URL+"/v1/outbox/13800138000", "")
	if st != 200 {
		t.Fatalf("outbox: %d %v", st, m)
	}
	msgs := m["messages"].([]any)
	if len(msgs) != 1 || msgs[0].(map[string]any)["text"] != "code 123456" || m["last"].(float64) != id {
		t.Fatalf("outbox = %v", m)
	}
	st, m = do(t, "GET", srv.URL+"/v1/outbox/13800138000?after="+strconv.FormatInt(int64(id), 10), "")
	if st != 200 || len(m["messages"].([]any)) != 0 || m["last"].(float64) != id {
		t.Fatalf("outbox after last: %d %v", st, m)
	}
}

func TestHTTPNeverLogsText(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := httptest.NewServer(httpx.Handler("sms", Handler(MustOpenService(t)), log, nil))
	defer srv.Close()
	st, _ := do(t, "POST", srv.URL+"/v1/messages", `{"to":"13800138000","text":"secret code 918273","sender":"ICBC"}`)
	if st != http.StatusCreated {
		t.Fatalf("send: %d", st)
	}
	do(t, "GET", srv.URL+"/v1/outbox/13800138000", "")
	if strings.Contains(logs.String(), "918273") {
		t.Fatalf("message text in logs: %s", logs.String())
	}
	if !strings.Contains(logs.String(), "***8000") {
		t.Fatalf("send not logged with masked number: %s", logs.String())
	}
}

func TestHTTPBadInput(t *testing.T) {
	srv := MustServe(t)
	cases := []struct {
		name, method, path, body string
		status                   int
	}{
		{"malformed json", "POST", "/v1/messages", `{"to":`, 400},
		{"unknown field", "POST", "/v1/messages", `{"to":"13800138000","text":"x","sender":"B","x":1}`, 400},
		{"wrong type", "POST", "/v1/messages", `{"to":13800138000,"text":"x","sender":"B"}`, 400},
		{"missing text", "POST", "/v1/messages", `{"to":"13800138000","sender":"B"}`, 400},
		{"bad phone", "POST", "/v1/messages", `{"to":"42","text":"x","sender":"B"}`, 400},
		{"huge body", "POST", "/v1/messages", `{"to":"13800138000","sender":"B","text":"` + strings.Repeat("x", maxSendBodyBytes) + `"}`, 413},
		{"text too long", "POST", "/v1/messages", `{"to":"13800138000","sender":"B","text":"` + strings.Repeat("x", MaxTextRunes+1) + `"}`, 413},
		{"outbox bad phone", "GET", "/v1/outbox/abc", "", 400},
		{"outbox bad after", "GET", "/v1/outbox/13800138000?after=-1", "", 400},
		{"outbox after not a number", "GET", "/v1/outbox/13800138000?after=x", "", 400},
		{"outbox limit too big", "GET", "/v1/outbox/13800138000?limit=100000", "", 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, m := do(t, c.method, srv.URL+c.path, c.body)
			if st != c.status {
				t.Fatalf("status %d (%v); want %d", st, m, c.status)
			}
			if e, ok := m["error"].(map[string]any); !ok || e["message"] == "" {
				t.Fatalf("no error message: %v", m)
			}
		})
	}
	st, m := do(t, "GET", srv.URL+"/v1/outbox/13800138000", "")
	if st != 200 || len(m["messages"].([]any)) != 0 {
		t.Fatalf("bad input stored something: %v", m)
	}
}
