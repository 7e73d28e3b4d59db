package promo

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func mustCampaignAPI(t *testing.T) (*Engine, http.Handler) {
	t.Helper()
	e, _ := MustOpenEngine(t, newClock(testNow).Now)
	banks := map[string][]string{"icbc-secret": {"icbc-debit", "icbc-credit"}, "boc-secret": {"boc-debit"}}
	return e, e.Handler(func(r *http.Request) ([]string, bool) {
		b, ok := banks[r.Header.Get("X-Test-Bank")]
		return b, ok
	})
}

func call(t *testing.T, h http.Handler, bank, method, path string, body any) *httptest.ResponseRecorder {
	t.Helper()
	var buf bytes.Buffer
	if body != nil {
		if s, ok := body.(string); ok {
			buf.WriteString(s)
		} else if err := json.NewEncoder(&buf).Encode(body); err != nil {
			t.Fatal(err)
		}
	}
	req := httptest.NewRequest(method, path, &buf)
	req.Header.Set("Content-Type", "application/json")
	if bank != "" {
		req.Header.Set("X-Test-Bank", bank)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func TestCampaignAPI(t *testing.T) {
	e, h := mustCampaignAPI(t)
	c := fixedCampaign("api-1", 1000, 50_000)
	if w := call(t, h, "icbc-secret", "POST", "/v1/promo/campaigns", c); w.Code != http.StatusCreated {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	cases := []struct {
		name, bank, method, path string
		body                     any
		want                     int
	}{
		{"no credentials", "", "GET", "/v1/promo/campaigns", nil, http.StatusUnauthorized},
		{"another bank's issuer", "boc-secret", "POST", "/v1/promo/campaigns", fixedCampaign("api-2", 1000, 50_000), http.StatusForbidden},
		{"bad definition", "icbc-secret", "POST", "/v1/promo/campaigns", func() Campaign {
			c := fixedCampaign("api-3", -1, 50_000)
			return c
		}(), http.StatusBadRequest},
		{"end before start", "icbc-secret", "POST", "/v1/promo/campaigns", func() Campaign {
			c := fixedCampaign("api-4", 100, 50_000)
			c.Window.End = c.Window.Start.Add(-time.Hour)
			return c
		}(), http.StatusBadRequest},
		{"unknown field", "icbc-secret", "POST", "/v1/promo/campaigns", `{"id":"x","bogus":1}`, http.StatusBadRequest},
		{"another bank pauses", "boc-secret", "POST", "/v1/promo/campaigns/api-1/pause", nil, http.StatusNotFound},
		{"another bank's stats", "boc-secret", "GET", "/v1/promo/campaigns/api-1/stats", nil, http.StatusNotFound},
		{"pause", "icbc-secret", "POST", "/v1/promo/campaigns/api-1/pause", nil, http.StatusOK},
		{"resume", "icbc-secret", "POST", "/v1/promo/campaigns/api-1/resume", nil, http.StatusOK},
		{"stats", "icbc-secret", "GET", "/v1/promo/campaigns/api-1/stats", nil, http.StatusOK},
		{"end", "icbc-secret", "POST", "/v1/promo/campaigns/api-1/end", nil, http.StatusOK},
		{"resume after end", "icbc-secret", "POST", "/v1/promo/campaigns/api-1/resume", nil, http.StatusConflict},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if w := call(t, h, tc.bank, tc.method, tc.path, tc.body); w.Code != tc.want {
				t.Fatalf("%s %s: %d %s, want %d", tc.method, tc.path, w.Code, w.Body, tc.want)
			}
		})
	}
	w := call(t, h, "icbc-secret", "GET", "/v1/promo/campaigns", nil)
	var out struct{ Campaigns []Campaign }
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || len(out.Campaigns) != 1 || out.Campaigns[0].Status != StatusEnded {
		t.Fatalf("list: %s (%v)", w.Body, err)
	}
	if w := call(t, h, "boc-secret", "GET", "/v1/promo/campaigns", nil); bytes.Contains(w.Body.Bytes(), []byte("api-1")) {
		t.Fatalf("another bank sees ICBC's campaign: %s", w.Body)
	}
	if cs, _ := e.List(t.Context(), ""); len(cs) != 1 {
		t.Fatalf("%d campaigns stored, want 1 (bad ones store nothing)", len(cs))
	}
}

// FuzzCampaignDefinition: any JSON a bank sends is decoded and validated
// without panicking, and what validates round-trips.
func FuzzCampaignDefinition(f *testing.F) {
	b, _ := json.Marshal(fixedCampaign("seed", 1000, 50_000))
	f.Add(b)
	f.Add(defaultCampaigns)
	f.Add([]byte(`{"id":"x","currency":"CNY","benefit":{"kind":"random","minMinor":5,"maxMinor":1}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > MaxCampaignBodyBytes {
			return
		}
		var c Campaign
		if json.Unmarshal(data, &c) != nil {
			return
		}
		if c.Validate() != nil {
			return
		}
		if c.Benefit.Kind != BenefitPoints {
			for _, amount := range []int64{1, 2, 999, 1_000_000} {
				if d := c.Benefit.draw(amount); d < 0 || d >= amount && amount > 0 && d != 0 {
					t.Fatalf("discount %d of %d", d, amount)
				}
			}
		}
	})
}
