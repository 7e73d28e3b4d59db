package issuer

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mipay-oss/mipay"
)

// fakeTSP records the card calls and answers one token per card.
type fakeTSP struct {
	mu       sync.Mutex
	calls    []any
	err      error
	lastPANs []string
}

func (f *fakeTSP) CardLifecycle(_ context.Context, req TSPCardLifecycle) (TSPCardResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, req)
	if f.err != nil {
		return TSPCardResult{}, f.err
	}
	return TSPCardResult{Changed: 1, Tokens: []TSPCardToken{{TokenRef: "DTSP1", State: "SUSPENDED", Changed: true}}}, nil
}

func (f *fakeTSP) ReplaceCard(_ context.Context, req TSPCardReplace) (TSPCardResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, req)
	if f.err != nil {
		return TSPCardResult{}, f.err
	}
	return TSPCardResult{Replaced: 1, Tokens: []TSPCardToken{{TokenRef: "DTSP1", State: "ACTIVE", Changed: true}}}, nil
}

func (f *fakeTSP) CardTokens(_ context.Context, req TSPCardTokens) (TSPCardResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, req)
	if f.err != nil {
		return TSPCardResult{}, f.err
	}
	return TSPCardResult{Tokens: []TSPCardToken{{TokenRef: "DTSP1", State: "ACTIVE", DeviceID: "dev-1"}}}, nil
}

func (f *fakeTSP) last() any {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return nil
	}
	return f.calls[len(f.calls)-1]
}

func TestReportStolen(t *testing.T) {
	th := MustOpenHost(t)
	ctx := context.Background()
	f := &fakeTSP{}
	th.Host.tsp = f
	c := th.cards["rich"]
	if r := th.Authorize(ctx, th.auth("rich", 100)); r.Code != RCApproved {
		t.Fatalf("before: %s", r.Code)
	}
	out, err := th.ReportStolen(ctx, c.issuer, CardActionRequest{PAN: c.PAN})
	if err != nil || out.CardStatus != StatusLost || out.Changed != 1 || strings.Contains(out.PAN, c.PAN) {
		t.Fatalf("%+v %v", out, err)
	}
	if got, ok := f.last().(TSPCardLifecycle); !ok || got.PAN != c.PAN || got.Action != TokenSuspend || got.Reason != reasonStolen {
		t.Fatalf("TSP call %v", f.last())
	}
	if r := th.Authorize(ctx, th.auth("rich", 100)); r.Code != RCDoNotHonor {
		t.Fatalf("stolen card answered %s", r.Code)
	}
	t.Run("survives a restart", func(t *testing.T) {
		th.reopen(t)
		if r := th.Authorize(ctx, th.auth("rich", 100)); r.Code != RCDoNotHonor {
			t.Fatalf("after restart %s", r.Code)
		}
	})
	t.Run("card without tokens is still blocked", func(t *testing.T) {
		th.Host.tsp = &fakeTSP{err: mipay.Errorf(mipay.ENOTFOUND, "no tokens")}
		out, err := th.ReportStolen(ctx, th.cards["dup"].issuer, CardActionRequest{PAN: th.cards["dup"].PAN})
		if err != nil || out.CardStatus != StatusLost || len(out.Tokens) != 0 {
			t.Fatalf("%+v %v", out, err)
		}
	})
	t.Run("TSP down", func(t *testing.T) {
		th.Host.tsp = &fakeTSP{err: mipay.Errorf(mipay.EUNAVAILABLE, "down")}
		if _, err := th.ReportStolen(ctx, th.cards["velocity"].issuer, CardActionRequest{PAN: th.cards["velocity"].PAN}); mipay.ErrorCode(err) != mipay.EUNAVAILABLE {
			t.Fatalf("%v", err)
		}
	})
}

func TestTokenAction(t *testing.T) {
	th := MustOpenHost(t)
	ctx := context.Background()
	f := &fakeTSP{}
	c := th.cards["debit"]
	if _, err := th.TokenAction(ctx, c.issuer, CardActionRequest{PAN: c.PAN, Action: TokenSuspend}); mipay.ErrorCode(err) != mipay.EUNAVAILABLE {
		t.Fatalf("no TSP: %v", err)
	}
	th.Host.tsp = f
	for name, tc := range map[string]struct {
		issuer string
		req    CardActionRequest
		code   string
	}{
		"bad action":   {c.issuer, CardActionRequest{PAN: c.PAN, Action: "activate"}, mipay.EINVALID},
		"bad PAN":      {c.issuer, CardActionRequest{PAN: "1234", Action: TokenSuspend}, mipay.EINVALID},
		"other bank":   {"icbc-credit", CardActionRequest{PAN: c.PAN, Action: TokenSuspend}, mipay.ENOTFOUND},
		"unknown card": {c.issuer, CardActionRequest{PAN: makePAN("621226", len(c.PAN), 123), Action: TokenSuspend}, mipay.ENOTFOUND},
		"long reason":  {c.issuer, CardActionRequest{PAN: c.PAN, Action: TokenSuspend, Reason: strings.Repeat("r", 201)}, mipay.ETOOLARGE},
	} {
		if _, err := th.TokenAction(ctx, tc.issuer, tc.req); mipay.ErrorCode(err) != tc.code {
			t.Errorf("%s: %v, want %s", name, err, tc.code)
		}
	}
	if len(f.calls) != 0 {
		t.Fatalf("refused requests reached the TSP: %d", len(f.calls))
	}
	for _, act := range []string{TokenSuspend, TokenResume, TokenDelete} {
		out, err := th.TokenAction(ctx, c.issuer, CardActionRequest{PAN: c.PAN, Action: act, Reason: "OPS"})
		if err != nil || out.CardStatus != StatusActive || out.Changed != 1 {
			t.Fatalf("%s: %+v %v", act, out, err)
		}
		if got := f.last().(TSPCardLifecycle); got.Action != act || got.PAN != c.PAN || got.Reason != "OPS" {
			t.Fatalf("%s: TSP call %v", act, got)
		}
	}
	if r := th.Authorize(ctx, th.auth("debit", 100)); r.Code != RCApproved {
		t.Fatalf("token actions changed the card: %s", r.Code)
	}
}

func TestReplaceCardIssuer(t *testing.T) {
	th := MustOpenHost(t)
	ctx := context.Background()
	f := &fakeTSP{}
	th.Host.tsp = f
	old, nw := th.cards["velocity"], th.cards["dup"]
	out, err := th.ReplaceCard(ctx, old.issuer, CardReplaceRequest{OldPAN: old.PAN, NewPAN: nw.PAN})
	if err != nil || out.Replaced != 1 || out.OldCardStatus != StatusBlocked || out.NewExpiry != nw.Expiry {
		t.Fatalf("%+v %v", out, err)
	}
	got := f.last().(TSPCardReplace)
	if got.OldPAN != old.PAN || got.NewPAN != nw.PAN || got.NewExpiry != nw.Expiry || got.Reason != reasonReplacedByBank {
		t.Fatalf("TSP call %v", got)
	}
	if r := th.Authorize(ctx, th.auth("velocity", 100)); r.Code != RCRestrictedCard {
		t.Fatalf("old card answered %s", r.Code)
	}
	if r := th.Authorize(ctx, th.auth("dup", 100)); r.Code != RCApproved {
		t.Fatalf("new card answered %s", r.Code)
	}
	if _, err := th.ReplaceCard(ctx, old.issuer, CardReplaceRequest{OldPAN: nw.PAN, NewPAN: th.cards["blocked"].PAN}); mipay.ErrorCode(err) != mipay.ECONFLICT {
		t.Fatalf("to a blocked card: %v", err)
	}
	if _, err := th.ReplaceCard(ctx, old.issuer, CardReplaceRequest{OldPAN: nw.PAN, NewPAN: th.cards["credit"].PAN}); mipay.ErrorCode(err) != mipay.ENOTFOUND {
		t.Fatalf("to another bank's card: %v", err)
	}
}

func TestHTTPTSP(t *testing.T) {
	dir := t.TempDir()
	var gotAuth string
	var gotBody TSPCardLifecycle
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth = r.Header.Get("Authorization")
		if r.URL.Path != "/v1/issuer/cards/lifecycle" {
			http.NotFound(w, r)
			return
		}
		json.NewDecoder(r.Body).Decode(&gotBody)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"changed":1,"tokens":[{"tokenUniqueReference":"DTSP1","state":"SUSPENDED","changed":true}]}`))
	}))
	defer srv.Close()
	base := ""
	t.Setenv(EnvTSPIssuerToken, "")
	c := NewHTTPTSP(func() string { return base }, dir)
	req := TSPCardLifecycle{PAN: "6222020200000000008", Action: TokenSuspend}
	if _, err := c.CardLifecycle(context.Background(), req); mipay.ErrorCode(err) != mipay.EUNAVAILABLE {
		t.Fatalf("TSP not started: %v", err)
	}
	base = srv.URL
	if _, err := c.CardLifecycle(context.Background(), req); mipay.ErrorCode(err) != mipay.EUNAVAILABLE {
		t.Fatalf("no secret yet: %v", err)
	}
	os.MkdirAll(filepath.Join(dir, "tsp"), 0o700)
	os.WriteFile(filepath.Join(dir, "tsp", "issuer.token"), []byte("s3cret\n"), 0o600)
	out, err := c.CardLifecycle(context.Background(), req)
	if err != nil || out.Changed != 1 || out.Tokens[0].TokenRef != "DTSP1" {
		t.Fatalf("%+v %v", out, err)
	}
	if gotAuth != "Bearer s3cret" || gotBody.PAN != req.PAN {
		t.Fatalf("sent %q %+v", gotAuth, gotBody)
	}
	if s := req.String(); strings.Contains(s, req.PAN) {
		t.Fatalf("String shows the PAN: %s", s)
	}
}
