package portal

import (
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeWallet answers the wallet routes the portal calls, for one account
// (token "tok-a", device "dev_a") and knows nothing of others' devices.
type fakeWallet struct {
	srv       *httptest.Server
	switchOff atomic.Int32
	found     atomic.Int32
}

func newFakeWallet(tb testing.TB) *fakeWallet {
	f := &fakeWallet{}
	mux := http.NewServeMux()
	writeJSON := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	authed := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer tok-a" {
				writeJSON(w, 401, map[string]any{"error": map[string]string{"code": "unauthorized", "message": "sign in"}})
				return
			}
			if id := r.PathValue("id"); id != "" && id != "dev_a" {
				writeJSON(w, 404, map[string]any{"error": map[string]string{"code": "not_found", "message": "device not found"}})
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("POST /v1/portal/challenges", func(w http.ResponseWriter, r *http.Request) {
		var in map[string]string
		_ = json.NewDecoder(r.Body).Decode(&in)
		if in["password"] != "right" {
			writeJSON(w, 401, map[string]any{"error": map[string]string{"code": "unauthorized", "message": "wrong login or password"}})
			return
		}
		writeJSON(w, 201, map[string]any{"challengeId": "chl_1", "email": "a***@example.com"})
	})
	mux.HandleFunc("POST /v1/portal/challenges/{id}/verify", func(w http.ResponseWriter, r *http.Request) {
		var in map[string]string
		_ = json.NewDecoder(r.Body).Decode(&in)
		if in["emailCode"] != "123456" {
			writeJSON(w, 401, map[string]any{"error": map[string]string{"code": "unauthorized", "message": "wrong code"}})
			return
		}
		writeJSON(w, 201, map[string]any{"token": "tok-a", "accountId": "acc_a"})
	})
	mux.HandleFunc("DELETE /v1/sessions/current", authed(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	mux.HandleFunc("GET /v1/devices", authed(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"devices": []map[string]any{{"id": "dev_a", "model": "Mi <b>5</b>"}}})
	}))
	mux.HandleFunc("GET /v1/devices/{id}", authed(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"id": "dev_a", "model": "Mi <b>5</b>"})
	}))
	mux.HandleFunc("GET /v1/devices/{id}/cards", authed(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"cards": []map[string]any{{"id": "card_1", "bank": "ICBC", "panLast4": "1234", "state": "ACTIVE"}}})
	}))
	mux.HandleFunc("GET /v1/devices/{id}/locations", authed(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"locations": []map[string]any{{"latitude": 39.9, "longitude": 116.4, "accuracyMeters": 30, "time": "2026-11-26T01:00:00Z"}}})
	}))
	mux.HandleFunc("GET /v1/devices/{id}/commands", authed(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"commands": []any{}})
	}))
	mux.HandleFunc("POST /v1/devices/{id}/switch-off", authed(func(w http.ResponseWriter, r *http.Request) {
		f.switchOff.Add(1)
		writeJSON(w, 200, map[string]any{"cards": []map[string]any{{"cardId": "card_1", "state": "SUSPENDED", "changed": true}},
			"command": map[string]any{"id": "cmd_1", "kind": "WIPE", "state": "PENDING"}})
	}))
	mux.HandleFunc("POST /v1/devices/{id}/found", authed(func(w http.ResponseWriter, r *http.Request) {
		f.found.Add(1)
		writeJSON(w, 200, map[string]any{"cards": []map[string]any{{"cardId": "card_1", "state": "ACTIVE", "changed": true}}})
	}))
	f.srv = httptest.NewServer(mux)
	tb.Cleanup(f.srv.Close)
	return f
}

type testClient struct {
	tb     testing.TB
	h      http.Handler
	cookie *http.Cookie
	body   string
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (c *testClient) do(method, path string, form url.Values) *http.Response {
	c.tb.Helper()
	var req *http.Request
	if form != nil {
		req = httptest.NewRequest(method, path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req = httptest.NewRequest(method, path, nil)
	}
	if c.cookie != nil {
		req.AddCookie(c.cookie)
	}
	rec := httptest.NewRecorder()
	c.h.ServeHTTP(rec, req)
	resp := rec.Result()
	for _, ck := range resp.Cookies() {
		if ck.Name == cookiePlain {
			if ck.MaxAge < 0 {
				c.cookie = nil
			} else {
				c.cookie = ck
			}
		}
	}
	c.body = rec.Body.String()
	return resp
}

func (c *testClient) csrf() string {
	c.tb.Helper()
	m := csrfRE.FindStringSubmatch(c.body)
	if m == nil {
		c.tb.Fatalf("no csrf in %s", c.body)
	}
	return m[1]
}

func mustPortal(tb testing.TB, now ...func() time.Time) (*Server, *fakeWallet) {
	f := newFakeWallet(tb)
	cfg := Config{WalletURL: func() string { return f.srv.URL }}
	if len(now) > 0 {
		cfg.Now = now[0]
	}
	s, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return s, f
}

func TestPortalFlow(t *testing.T) {
	s, f := mustPortal(t)
	c := &testClient{tb: t, h: s.Handler()}
	if r := c.do("GET", "/portal/", nil); r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/portal/signin" {
		t.Fatalf("signed out: %d %s", r.StatusCode, r.Header.Get("Location"))
	}
	c.do("GET", "/portal/signin", nil)
	anon := c.cookie.Value
	if !c.cookie.HttpOnly || c.cookie.SameSite != http.SameSiteStrictMode {
		t.Fatalf("cookie %+v", c.cookie)
	}
	t.Run("wrong password", func(t *testing.T) {
		if r := c.do("POST", "/portal/signin", url.Values{"csrf": {c.csrf()}, "login": {"a@example.com"}, "password": {"wrong"}}); r.StatusCode != 401 {
			t.Fatalf("%d", r.StatusCode)
		}
	})
	c.do("GET", "/portal/signin", nil)
	if r := c.do("POST", "/portal/signin", url.Values{"csrf": {c.csrf()}, "login": {"a@example.com"}, "password": {"right"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("password: %d", r.StatusCode)
	}
	c.do("GET", "/portal/verify", nil)
	if !strings.Contains(c.body, "a***@example.com") {
		t.Fatal(c.body)
	}
	if r := c.do("POST", "/portal/verify", url.Values{"csrf": {c.csrf()}, "emailCode": {"123456"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("verify: %d %s", r.StatusCode, c.body)
	}
	if c.cookie == nil || c.cookie.Value == anon {
		t.Fatal("the session id was not rotated at sign-in")
	}
	t.Run("old cookie is worthless", func(t *testing.T) {
		old := &testClient{tb: t, h: c.h, cookie: &http.Cookie{Name: cookiePlain, Value: anon}}
		if r := old.do("GET", "/portal/", nil); r.StatusCode != http.StatusSeeOther {
			t.Fatalf("%d", r.StatusCode)
		}
	})
	t.Run("device page escapes and plots", func(t *testing.T) {
		r := c.do("GET", "/portal/devices/dev_a", nil)
		if r.StatusCode != 200 || !strings.Contains(c.body, "Mi &lt;b&gt;5&lt;/b&gt;") || !strings.Contains(c.body, "<svg") {
			t.Fatalf("%d %s", r.StatusCode, c.body)
		}
		for k, v := range securityHeaders {
			if r.Header.Get(k) != v {
				t.Errorf("header %s = %q", k, r.Header.Get(k))
			}
		}
	})
	t.Run("other device is not found", func(t *testing.T) {
		if r := c.do("GET", "/portal/devices/dev_b", nil); r.StatusCode != 404 {
			t.Fatalf("%d", r.StatusCode)
		}
	})
	t.Run("CSRF", func(t *testing.T) {
		for _, tok := range []string{"", "x", strings.Repeat("A", 43)} {
			if r := c.do("POST", "/portal/devices/dev_a/switch-off", url.Values{"csrf": {tok}}); r.StatusCode != 403 {
				t.Fatalf("csrf %q: %d", tok, r.StatusCode)
			}
		}
		if f.switchOff.Load() != 0 {
			t.Fatal("switched off without a CSRF token")
		}
	})
	t.Run("switch off", func(t *testing.T) {
		c.do("GET", "/portal/devices/dev_a/switch-off", nil)
		if r := c.do("POST", "/portal/devices/dev_a/switch-off", url.Values{"csrf": {c.csrf()}}); r.StatusCode != 200 || !strings.Contains(c.body, "1 card was suspended") {
			t.Fatalf("%d %s", r.StatusCode, c.body)
		}
		if f.switchOff.Load() != 1 {
			t.Fatal("wallet not called")
		}
	})
	t.Run("unknown action", func(t *testing.T) {
		if r := c.do("GET", "/portal/devices/dev_a/explode", nil); r.StatusCode != 404 {
			t.Fatalf("%d", r.StatusCode)
		}
	})
}

func TestSessionsBounded(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	cfg := Config{MaxSessions: 3, Now: func() time.Time { return now }}
	cfg.defaults()
	s := newSessions(&cfg)
	var first string
	for i := range 5 {
		c, _ := s.create()
		if i == 0 {
			first = c
		}
		now = now.Add(time.Second)
	}
	if len(s.m) != 3 {
		t.Fatalf("%d sessions kept", len(s.m))
	}
	if _, ok := s.get(first); ok {
		t.Fatal("the least recently used session survived")
	}
	c, _ := s.create()
	now = now.Add(DefaultSessionIdle + time.Second)
	if _, ok := s.get(c); ok {
		t.Fatal("an idle session lived on")
	}
}

func TestLimiter(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	l := newLimiter(3, time.Minute)
	for range 3 {
		if ok, _ := l.check("a", now); !ok {
			t.Fatal("refused before the limit")
		}
		l.fail("a", now)
	}
	if ok, _ := l.check("a", now); ok {
		t.Fatal("allowed past the limit")
	}
	if ok, _ := l.check("b", now); !ok {
		t.Fatal("another client refused")
	}
	if ok, _ := l.check("a", now.Add(time.Minute)); !ok {
		t.Fatal("refused after the window")
	}
}

func TestPlot(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	t.Run("empty", func(t *testing.T) {
		if newPlot(nil) != nil {
			t.Fatal("a plot of nothing")
		}
	})
	t.Run("points inside the box, newest last", func(t *testing.T) {
		p := newPlot([]location{
			{Latitude: 39.91, Longitude: 116.40, AccuracyMeters: 20, Time: t0.Add(2 * time.Minute)},
			{Latitude: 39.90, Longitude: 116.39, AccuracyMeters: 50, Time: t0},
		})
		if len(p.Points) != 2 || p.Last != p.Points[1] || !strings.Contains(p.Caption, "39.91000") {
			t.Fatalf("%+v", p)
		}
		for _, pt := range p.Points {
			if pt.X < 0 || pt.X > p.W || pt.Y < 0 || pt.Y > p.H {
				t.Fatalf("point %+v outside", pt)
			}
		}
		// North is up: the newer point is north, so higher (smaller y).
		if p.Points[1].Y >= p.Points[0].Y {
			t.Fatalf("%+v", p.Points)
		}
	})
	t.Run("antimeridian", func(t *testing.T) {
		p := newPlot([]location{{Latitude: 0, Longitude: 179.9999, Time: t0}, {Latitude: 0, Longitude: -179.9999, Time: t0}})
		for _, pt := range p.Points {
			if pt.X < 0 || pt.X > p.W {
				t.Fatalf("point %+v outside", pt)
			}
		}
	})
}

func FuzzPlot(f *testing.F) {
	f.Add(39.9, 116.4, 20.0, 39.91, 116.41, 5.0)
	f.Add(89.9999, 0.0, 100000.0, -89.9, 179.99, 0.0)
	f.Fuzz(func(t *testing.T, lat1, lon1, acc1, lat2, lon2, acc2 float64) {
		// The wallet accepts only these ranges; the plot must hold for all of them.
		in := func(v, lo, hi float64) bool { return !math.IsNaN(v) && v >= lo && v <= hi }
		if !in(lat1, -90, 90) || !in(lat2, -90, 90) || !in(lon1, -180, 180) || !in(lon2, -180, 180) ||
			!in(acc1, 0, 100000) || !in(acc2, 0, 100000) {
			return
		}
		p := newPlot([]location{{Latitude: lat1, Longitude: lon1, AccuracyMeters: acc1}, {Latitude: lat2, Longitude: lon2, AccuracyMeters: acc2}})
		for _, v := range append([]float64{p.RadiusPx, p.Last.X, p.Last.Y}, append(p.GridX, p.GridY...)...) {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("non-finite coordinate in %+v", p)
			}
		}
		if len(p.GridX) > 100 || len(p.GridY) > 100 {
			t.Fatalf("%d×%d grid lines", len(p.GridX), len(p.GridY))
		}
	})
}

// signIn runs the password and e-mail code steps.
func (c *testClient) signIn() *http.Response {
	c.tb.Helper()
	c.do("GET", "/portal/signin", nil)
	c.do("POST", "/portal/signin", url.Values{"csrf": {c.csrf()}, "login": {"a@example.com"}, "password": {"right"}})
	c.do("GET", "/portal/verify", nil)
	return c.do("POST", "/portal/verify", url.Values{"csrf": {c.csrf()}, "emailCode": {"123456"}})
}

func TestFoundNeedsFreshSignIn(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s, f := mustPortal(t, func() time.Time { return now })
	c := &testClient{tb: t, h: s.Handler()}
	c.signIn()
	found := func() {
		c.do("GET", "/portal/devices/dev_a/found", nil)
		if r := c.do("POST", "/portal/devices/dev_a/found", url.Values{"csrf": {c.csrf()}}); r.Header.Get("Location") != "/portal/signin" {
			t.Fatalf("found without a fresh sign-in: %d %s", r.StatusCode, c.body)
		}
	}
	t.Run("runs after signing in again", func(t *testing.T) {
		found()
		if f.found.Load() != 0 {
			t.Fatal("found ran before signing in again")
		}
		if r := c.signIn(); r.StatusCode != 200 || !strings.Contains(c.body, "1 card was turned back on") || f.found.Load() != 1 {
			t.Fatalf("%d %s", r.StatusCode, c.body)
		}
	})
	t.Run("a stale request is dropped", func(t *testing.T) {
		found()
		now = now.Add(pendingTTL + time.Minute)
		if r := c.signIn(); r.StatusCode != http.StatusSeeOther || f.found.Load() != 1 {
			t.Fatalf("%d, found called %d times", r.StatusCode, f.found.Load())
		}
	})
}

func TestSecureCookie(t *testing.T) {
	f := newFakeWallet(t)
	s, err := New(Config{WalletURL: func() string { return f.srv.URL }, Secure: true})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/portal/signin", nil))
	cs := rec.Result().Cookies()
	if len(cs) != 1 || cs[0].Name != cookieSecure || !cs[0].Secure || !cs[0].HttpOnly || cs[0].Path != "/" ||
		cs[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("cookies %+v", cs)
	}
	// A plain cookie carrying a live session id is not read under TLS.
	req := httptest.NewRequest("GET", "/portal/signin", nil)
	req.AddCookie(&http.Cookie{Name: cookiePlain, Value: cs[0].Value})
	rec = httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	if len(rec.Result().Cookies()) != 1 {
		t.Fatal("the plain cookie was taken for the session")
	}
}
