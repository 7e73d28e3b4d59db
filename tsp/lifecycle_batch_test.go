package tsp

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/config"
)

// TestLifecycleBatch: one call suspends, resumes or deletes many tokens,
// each through the state machine, with its history entry, its change in a
// token.states_changed event and its issuer notice; tokens the action does
// not apply to are reported, not changed.
func TestLifecycleBatch(t *testing.T) {
	f := newAuthFixture(t)
	ctx := context.Background()
	a, _ := f.mustActiveToken(t, config.Debit, "dev-1")
	b, _ := f.mustActiveToken(t, config.Credit, "dev-1")
	c, _ := f.mustActiveToken(t, config.Debit, "dev-1")
	ca := f.cardFor(t, a.TokenRef)
	if out, _ := f.a.Authorize(ctx, ca.tap(100, true)); !out.Approved {
		t.Fatalf("before: %+v", out)
	}
	events, notices := len(f.bus.all()), len(f.issuer.notices)
	batch := func(act Action, by CausedBy, refs ...string) BatchLifecycleResponse {
		t.Helper()
		res, err := f.svc.LifecycleBatch(ctx, BatchLifecycleRequest{TokenRefs: refs, Action: act, CausedBy: by, Reason: "DEVICE_LOST"})
		if err != nil {
			t.Fatalf("%s: %v", act, err)
		}
		if len(res.Results) != len(refs) {
			t.Fatalf("%s: %d results for %d tokens", act, len(res.Results), len(refs))
		}
		for i, r := range res.Results {
			if r.TokenRef != refs[i] {
				t.Fatalf("%s: result %d is for %s, not %s", act, i, r.TokenRef, refs[i])
			}
		}
		return res
	}
	res := batch(ActionSuspend, CausedByCardholder, a.TokenRef, b.TokenRef, "DTSP"+strings.Repeat("0", 32))
	if res.Changed != 2 || res.Results[0].State != StateSuspended || !res.Results[1].Changed || res.Results[2].Code != mipay.ENOTFOUND {
		t.Fatalf("suspend: %+v", res)
	}
	evs := f.bus.all()[events:]
	if len(evs) != 2 || evs[0].State != StateSuspended || evs[0].Reason != "DEVICE_LOST" || evs[0].From != StateActive {
		t.Fatalf("events %+v", evs)
	}
	if len(f.issuer.notices)-notices != 2 {
		t.Fatalf("%d notices", len(f.issuer.notices)-notices)
	}
	f.a.Invalidate(a.TokenRef) // what the event subscription does
	if out, _ := f.a.Authorize(ctx, ca.tap(100, true)); out.Decline != DeclineTokenSuspended {
		t.Fatalf("after the batch: %+v", out)
	}
	v, err := f.svc.View(ctx, a.TokenRef)
	if err != nil || v.State != StateSuspended || v.History[len(v.History)-1].State != StateSuspended || v.History[len(v.History)-1].Reason != "DEVICE_LOST" {
		t.Fatalf("history %+v %v", v, err)
	}
	if v2, _ := f.svc.View(ctx, c.TokenRef); v2.State != StateActive {
		t.Fatalf("a token not named changed: %s", v2.State)
	}

	t.Run("again: reported, not changed", func(t *testing.T) {
		res := batch(ActionSuspend, CausedByCardholder, a.TokenRef)
		if res.Changed != 0 || res.Results[0].Reason != "ALREADY_SUSPENDED" || res.Results[0].Message == "" {
			t.Fatalf("%+v", res)
		}
	})
	t.Run("the cardholder cannot resume the bank's suspension", func(t *testing.T) {
		if _, err := f.svc.Lifecycle(ctx, c.TokenRef, ActionSuspend, CausedByIssuer, "FRAUD"); err != nil {
			t.Fatal(err)
		}
		res := batch(ActionResume, CausedByCardholder, a.TokenRef, b.TokenRef, c.TokenRef)
		if res.Changed != 2 || res.Results[0].State != StateActive || res.Results[2].Reason != "ISSUER_SUSPENDED" || res.Results[2].State != StateSuspended {
			t.Fatalf("%+v", res)
		}
	})
	t.Run("delete, then nothing comes back", func(t *testing.T) {
		if res := batch(ActionDelete, CausedByCardholder, a.TokenRef, c.TokenRef); res.Changed != 2 {
			t.Fatalf("%+v", res)
		}
		if res := batch(ActionResume, CausedByCardholder, a.TokenRef); res.Results[0].Reason != "TOKEN_DELETED" {
			t.Fatalf("%+v", res)
		}
	})
	t.Run("bad requests change nothing", func(t *testing.T) {
		many := make([]string, MaxBatchTokens+1)
		for i := range many {
			many[i] = fmt.Sprintf("DTSP%032x", i)
		}
		before := len(f.bus.all())
		for name, tc := range map[string]struct {
			req  BatchLifecycleRequest
			code string
		}{
			"none":       {BatchLifecycleRequest{Action: ActionSuspend, CausedBy: CausedByCardholder}, mipay.EINVALID},
			"too many":   {BatchLifecycleRequest{TokenRefs: many, Action: ActionSuspend, CausedBy: CausedByCardholder}, mipay.ETOOLARGE},
			"twice":      {BatchLifecycleRequest{TokenRefs: []string{b.TokenRef, b.TokenRef}, Action: ActionSuspend, CausedBy: CausedByCardholder}, mipay.EINVALID},
			"bad action": {BatchLifecycleRequest{TokenRefs: []string{b.TokenRef}, Action: ActionActivate, CausedBy: CausedByCardholder}, mipay.EINVALID},
			"bad caller": {BatchLifecycleRequest{TokenRefs: []string{b.TokenRef}, Action: ActionSuspend, CausedBy: "THIEF"}, mipay.EINVALID},
			"long reason": {BatchLifecycleRequest{TokenRefs: []string{b.TokenRef}, Action: ActionSuspend, CausedBy: CausedByCardholder,
				Reason: strings.Repeat("r", maxReasonBytes+1)}, mipay.ETOOLARGE},
		} {
			if _, err := f.svc.LifecycleBatch(ctx, tc.req); mipay.ErrorCode(err) != tc.code {
				t.Errorf("%s: %v, want %s", name, err, tc.code)
			}
		}
		if len(f.bus.all()) != before {
			t.Fatal("a refused batch published events")
		}
		if v, _ := f.svc.View(ctx, b.TokenRef); v.State != StateActive {
			t.Fatalf("a refused batch changed a token: %s", v.State)
		}
	})
}

// TestLifecycleBatchHTTP: POST /v1/tokens/lifecycle for the wallet's
// secret, refused without it.
func TestLifecycleBatchHTTP(t *testing.T) {
	f := newAPIFixture(t)
	a, _ := f.mustActiveToken(t, config.Debit, "dev-1")
	body := map[string]any{"tokenRefs": []string{a.TokenRef}, "action": "suspend", "causedBy": "CARDHOLDER", "reason": "DEVICE_LOST"}
	if code, _ := f.call(t, http.MethodPost, "/v1/tokens/lifecycle", "", body, nil); code != http.StatusUnauthorized {
		t.Fatalf("no secret: %d", code)
	}
	var out BatchLifecycleResponse
	if code, raw := f.call(t, http.MethodPost, "/v1/tokens/lifecycle", testRequestorSecret, body, &out); code != http.StatusOK ||
		out.Changed != 1 || out.Results[0].State != StateSuspended {
		t.Fatalf("%d %s", code, raw)
	}
	if code, _ := f.call(t, http.MethodPost, "/v1/tokens/lifecycle", testRequestorSecret, `{"tokenRefs":[],"action":"suspend","causedBy":"CARDHOLDER"}`, nil); code != http.StatusBadRequest {
		t.Fatalf("empty batch: %d", code)
	}
}
