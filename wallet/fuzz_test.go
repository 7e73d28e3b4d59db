package wallet

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/httpx"
)

func FuzzNormalizeLogin(f *testing.F) {
	for _, s := range []string{"13800138000", "+86 138-0013-8000", "A@B.CN", "a@", "@b.c", "x", strings.Repeat("9", 40), "a@b@c.d", "\xff@a.b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := normalizeLogin(s)
		if err != nil {
			return
		}
		if len(l) > maxLoginBytes {
			t.Fatalf("normalized login of %d bytes", len(l))
		}
		again, err := normalizeLogin(l)
		if err != nil || again != l {
			t.Fatalf("normalizing %q twice: %q, %v", l, again, err)
		}
	})
}

func FuzzVerifyAttestation(f *testing.F) {
	v := mustVendor(f)
	s := v.issue(f, "SE-FUZZ")
	f.Add(s.pub, s.chain[0], s.chain[1], "SE-FUZZ")
	f.Add([]byte{4}, []byte{0x30, 0x82}, []byte{}, "")
	pool, err := NewRoots(v.writeRoot(f, f.TempDir())).Pool()
	if err != nil {
		f.Fatal(err)
	}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, pub, leaf, ca []byte, seID string) {
		chain := [][]byte{leaf}
		if len(ca) > 0 {
			chain = append(chain, ca)
		}
		err := VerifyAttestation(Attestation{SEID: seID, SEPublicKey: pub, Chain: chain}, pool, now)
		if err == nil && (string(pub) != string(s.pub) || seID != "SE-FUZZ") {
			t.Fatalf("accepted a key or id the vendor never certified")
		}
	})
}

// FuzzEvents feeds arbitrary payloads to the event handlers: they never
// fail on bad input (it would be redelivered for ever) and never store
// unbounded text.
func FuzzEvents(f *testing.F) {
	f.Add([]byte(`{"transactionId":"t","tokenRef":"DNITHE00000001","amountMinor":1,"merchantName":"m","time":"2026-11-26T01:00:00Z"}`))
	f.Add([]byte(`{"tokenUniqueReference":"DNITHE00000001","state":"SUSPENDED"}`))
	f.Add([]byte(`{"tokenRef":"DNITHE00000001","merchantName":"` + strings.Repeat("x", 1000) + `"}`))
	f.Add([]byte(`[`))
	f.Add([]byte(`{"transactionId":"p","tokenRef":"DNITHE00000001","amountMinor":6000,"approved":true,"discountMinor":1000,"offerBank":"ICBC","campaignId":"c","pointsMultiplier":2}`))
	e := mustWallet(f, func(c *Config) { c.Log = slog.New(slog.NewTextHandler(io.Discard, nil)) })
	u := e.mustUser()
	e.mustCard(u, "green")
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := e.svc.HandleTransaction(ctx, "ev", json.RawMessage(data)); err != nil {
			t.Fatalf("transaction handler: %v", err)
		}
		if err := e.svc.HandleTokenState(ctx, "ev", json.RawMessage(data)); err != nil {
			t.Fatalf("state handler: %v", err)
		}
		var longest int
		if err := e.repo.db.DB.QueryRow(`SELECT COALESCE(MAX(LENGTH(merchant_name)), 0) FROM transactions`).Scan(&longest); err != nil {
			t.Fatal(err)
		}
		if longest > maxEventTextBytes {
			t.Fatalf("stored a merchant name of %d bytes", longest)
		}
		// A saving is stored only on an approval, above zero and not above
		// the amount, with bounded texts.
		var bad int
		if err := e.repo.db.DB.QueryRow(`SELECT COUNT(*) FROM transactions WHERE discount_minor < 0
			OR discount_minor > amount_minor OR (discount_minor > 0 AND approved = 0)
			OR LENGTH(offer_bank) > $1 OR LENGTH(campaign_id) > $1`, maxEventTextBytes).Scan(&bad); err != nil {
			t.Fatal(err)
		}
		if bad > 0 {
			t.Fatalf("%d transactions with an impossible saving", bad)
		}
	})
}

// FuzzRequests sends arbitrary bodies and query strings to every route of
// the API (in process) as a signed-in owner: whatever comes in, the answer
// is never a 5xx (no panic, no internal error from bad input) and an error
// answer is the JSON error shape.
func FuzzRequests(f *testing.F) {
	e := mustWallet(f)
	fx := e.mustFixture()
	api := NewAPI(e.svc)
	routes := api.routes()
	h := httpx.Handler("wallet", api.Handler(), slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	for i, rt := range routes {
		if b, ok := fx.bodies()[rt.method+" "+rt.path]; ok {
			j, _ := json.Marshal(b.valid)
			f.Add(uint8(i), j, "")
		}
		f.Add(uint8(i), []byte(`{"a":`), "limit=1&after=2&before=2026-01-01T00:00:00Z")
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte, query string) {
		rt := routes[int(which)%len(routes)]
		if strings.Contains(rt.path, "/notifications") {
			query = "wait=0s&" + query // a stream or long poll would only wait
			if strings.HasSuffix(rt.path, "/stream") {
				return
			}
		}
		q, _ := url.ParseQuery(query) // what a client can send: a well-formed query
		u := &url.URL{Path: fx.path(rt.path), RawQuery: q.Encode()}
		req := httptest.NewRequest(rt.method, u.String(), bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+fx.u.token)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%s %s %q → %d %s", rt.method, u, body, w.Code, w.Body)
		}
		if w.Code >= 400 {
			var eb httpx.ErrorBody
			if err := json.Unmarshal(w.Body.Bytes(), &eb); err != nil || eb.Error.Code == "" || eb.Error.Message == "" {
				t.Fatalf("%s %s → %d without a JSON error: %s", rt.method, u, w.Code, w.Body)
			}
		}
	})
}
