package tsp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/config"
)

// replacementPAN returns a Luhn-valid PAN of the same BIN and length as pan,
// different from it.
func replacementPAN(tb testing.TB, pan string) string {
	tb.Helper()
	body := []byte(pan[:len(pan)-1])
	i := len(body) - 2
	body[i] = '0' + (body[i]-'0'+1)%10
	for d := byte('0'); d <= '9'; d++ {
		if p := string(body) + string(d); LuhnValid(p) {
			return p
		}
	}
	tb.Fatal("no check digit")
	return ""
}

func TestCardLifecycle(t *testing.T) {
	f := newAuthFixture(t)
	ctx := context.Background()
	a, ch := f.mustActiveToken(t, config.Debit, "dev-1")
	b, _ := f.mustActiveToken(t, config.Debit, "dev-2")
	other, _ := f.mustActiveToken(t, config.Credit, "dev-1")
	ca := f.cardFor(t, a.TokenRef)
	if out, _ := f.a.Authorize(ctx, ca.tap(100, true)); !out.Approved {
		t.Fatalf("before: %+v", out)
	}
	tokA, err := f.vault.Get(ctx, a.TokenRef)
	if err != nil {
		t.Fatal(err)
	}
	do := func(act Action, wantChanged int, wantState State) CardLifecycleResponse {
		t.Helper()
		res, err := f.svc.CardLifecycle(ctx, CardLifecycleRequest{PAN: ch.PAN, Action: act, Reason: "CARD_STOLEN"})
		if err != nil {
			t.Fatalf("%s: %v", act, err)
		}
		if res.Changed != wantChanged || len(res.Tokens) != 2 || res.PAN != MaskPAN(ch.PAN) || res.PAR != tokA.PAR {
			t.Fatalf("%s: %+v", act, res)
		}
		for _, tk := range res.Tokens {
			if tk.State != wantState {
				t.Fatalf("%s: token %+v", act, tk)
			}
		}
		f.a.Invalidate(a.TokenRef) // what the token.state_changed subscription does
		return res
	}
	t.Run("suspend every device", func(t *testing.T) {
		do(ActionSuspend, 2, StateSuspended)
		if out, _ := f.a.Authorize(ctx, ca.tap(100, true)); out.Decline != DeclineTokenSuspended {
			t.Fatalf("suspended: %+v", out)
		}
		if v, _ := f.svc.View(ctx, other.TokenRef); v.State != StateActive {
			t.Fatalf("another card changed: %s", v.State)
		}
		last := f.bus.all()[len(f.bus.all())-1]
		if last.CausedBy != CausedByIssuer || last.Reason != "CARD_STOLEN" {
			t.Fatalf("event %+v", last)
		}
	})
	t.Run("again is unchanged", func(t *testing.T) {
		res := do(ActionSuspend, 0, StateSuspended)
		if res.Tokens[0].Reason != "ALREADY_SUSPENDED" {
			t.Fatalf("%+v", res.Tokens[0])
		}
	})
	t.Run("cardholder cannot resume", func(t *testing.T) {
		if _, err := f.svc.Lifecycle(ctx, b.TokenRef, ActionResume, CausedByCardholder, ""); mipay.ErrorCode(err) != mipay.EFORBIDDEN {
			t.Fatalf("resume by cardholder: %v", err)
		}
	})
	t.Run("resume", func(t *testing.T) {
		do(ActionResume, 2, StateActive)
		if out, _ := f.a.Authorize(ctx, ca.tap(100, true)); !out.Approved {
			t.Fatalf("resumed: %+v", out)
		}
	})
	t.Run("bad requests", func(t *testing.T) {
		for name, req := range map[string]CardLifecycleRequest{
			"luhn":        {PAN: ch.PAN[:len(ch.PAN)-1] + string('0'+(ch.PAN[len(ch.PAN)-1]-'0'+1)%10), Action: ActionSuspend},
			"letters":     {PAN: "62abc", Action: ActionSuspend},
			"action":      {PAN: ch.PAN, Action: ActionActivate},
			"long reason": {PAN: ch.PAN, Action: ActionSuspend, Reason: strings.Repeat("x", maxReasonBytes+1)},
		} {
			if _, err := f.svc.CardLifecycle(ctx, req); mipay.ErrorCode(err) != mipay.EINVALID && mipay.ErrorCode(err) != mipay.ETOOLARGE {
				t.Errorf("%s: %v", name, err)
			}
		}
		if _, err := f.svc.CardLifecycle(ctx, CardLifecycleRequest{PAN: replacementPAN(t, ch.PAN), Action: ActionSuspend}); mipay.ErrorCode(err) != mipay.ENOTFOUND {
			t.Fatalf("card without tokens: %v", err)
		}
	})
	t.Run("delete", func(t *testing.T) {
		do(ActionDelete, 2, StateDeactivated)
		if out, _ := f.a.Authorize(ctx, ca.tap(100, true)); out.Decline != DeclineTokenDeactivated {
			t.Fatalf("deleted: %+v", out)
		}
		res := do(ActionResume, 0, StateDeactivated)
		if res.Tokens[0].Reason != "TOKEN_DELETED" {
			t.Fatalf("%+v", res.Tokens[0])
		}
	})
}

func TestReplaceCard(t *testing.T) {
	f := newAuthFixture(t)
	ctx := context.Background()
	a, ch := f.mustActiveToken(t, config.Debit, "dev-1")
	b, _ := f.mustActiveToken(t, config.Debit, "dev-2")
	before, _ := f.vault.Get(ctx, a.TokenRef)
	ca := f.cardFor(t, a.TokenRef)
	if out, _ := f.a.Authorize(ctx, ca.tap(100, true)); !out.Approved || out.PAN != ch.PAN {
		t.Fatalf("before: %+v", out)
	}
	// One device's token was removed by its user: it stays on the old card.
	if _, err := f.svc.Lifecycle(ctx, b.TokenRef, ActionDelete, CausedByCardholder, ""); err != nil {
		t.Fatal(err)
	}
	newPAN, newExp := replacementPAN(t, ch.PAN), "3112"
	events := len(f.bus.all())
	res, err := f.svc.ReplaceCard(ctx, CardReplaceRequest{OldPAN: ch.PAN, NewPAN: newPAN, NewExpiry: newExp})
	if err != nil {
		t.Fatal(err)
	}
	if res.Replaced != 1 || len(res.Tokens) != 2 || res.PAR != before.PAR || res.NewPAN != MaskPAN(newPAN) {
		t.Fatalf("%+v", res)
	}
	after, _ := f.vault.Get(ctx, a.TokenRef)
	if after.State != StateActive || after.PAR != before.PAR || after.PANRef != before.PANRef || after.PANExpiry != newExp ||
		after.PANLast4 != newPAN[len(newPAN)-4:] || bytes.Equal(after.PANHMAC, before.PANHMAC) || after.DPAN != before.DPAN {
		t.Fatalf("after %+v", after.Token)
	}
	ev := f.bus.all()
	if len(ev) != events+1 || ev[len(ev)-1].Reason != ReasonCardReplaced || ev[len(ev)-1].State != StateActive || ev[len(ev)-1].TokenRef != a.TokenRef {
		t.Fatalf("events %+v", ev[events:])
	}
	f.a.Invalidate(a.TokenRef) // what the event does at the switch
	out, _ := f.a.Authorize(ctx, ca.tap(100, true))
	if !out.Approved || out.PAN != newPAN || out.PANExpiry != newExp {
		t.Fatalf("after replace: approved=%v pan=%s exp=%s", out.Approved, MaskPAN(out.PAN), out.PANExpiry)
	}
	if v, _ := f.svc.View(ctx, a.TokenRef); v.History[len(v.History)-1].Reason != ReasonCardReplaced || v.PANLast4 != newPAN[len(newPAN)-4:] {
		t.Fatalf("view %+v", v)
	}
	t.Run("old PAN has no live tokens", func(t *testing.T) {
		if _, err := f.svc.ReplaceCard(ctx, CardReplaceRequest{OldPAN: ch.PAN, NewPAN: newPAN, NewExpiry: newExp}); err != nil {
			t.Fatal(err) // the deleted token is still on the old card: reported, not moved
		}
		r, err := f.svc.CardLifecycle(ctx, CardLifecycleRequest{PAN: newPAN, Action: ActionSuspend})
		if err != nil || r.Changed != 1 || r.Tokens[0].TokenRef != a.TokenRef {
			t.Fatalf("lifecycle by new PAN: %+v %v", r, err)
		}
	})
	t.Run("bad requests", func(t *testing.T) {
		_, credit := demoCard(t, f.ref, config.Credit)
		for name, req := range map[string]CardReplaceRequest{
			"expiry":     {OldPAN: newPAN, NewPAN: ch.PAN, NewExpiry: "3113"},
			"other bank": {OldPAN: newPAN, NewPAN: credit.PAN, NewExpiry: "3112"},
			"no tokens":  {OldPAN: replacementPAN(t, newPAN), NewPAN: ch.PAN, NewExpiry: "3112"},
		} {
			if _, err := f.svc.ReplaceCard(ctx, req); err == nil {
				t.Errorf("%s: accepted", name)
			}
		}
	})
	t.Run("no PAN in store or events", func(t *testing.T) {
		if _, err := f.vault.db.DB.ExecContext(ctx, `PRAGMA wal_checkpoint(FULL)`); err != nil {
			t.Logf("checkpoint: %v", err)
		}
		scanForPANs(t, f.vault.db.String(), []string{ch.PAN, newPAN})
		for _, e := range f.bus.raw {
			if bytes.Contains(e, []byte(newPAN)) || bytes.Contains(e, []byte(ch.PAN)) {
				t.Fatalf("event holds a PAN: %s", e)
			}
		}
	})
}

func TestIssuerCardAPI(t *testing.T) {
	f := newFixture(t)
	a, ch := f.mustActiveToken(t, config.Debit, "dev-1")
	srv := httptest.NewServer(NewAPI(f.svc, Credentials{RequestorToken: "rq", IssuerToken: "is"}).Handler())
	defer srv.Close()
	post := func(path, bearer string, body any) (int, []byte) {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		buf.ReadFrom(resp.Body)
		return resp.StatusCode, buf.Bytes()
	}
	body := CardLifecycleRequest{PAN: ch.PAN, Action: ActionSuspend, Reason: "CARD_STOLEN"}
	if code, _ := post("/v1/issuer/cards/lifecycle", "", body); code != http.StatusUnauthorized {
		t.Fatalf("no bearer: %d", code)
	}
	if code, _ := post("/v1/issuer/cards/lifecycle", "rq", body); code != http.StatusForbidden {
		t.Fatalf("wallet bearer: %d", code)
	}
	code, out := post("/v1/issuer/cards/lifecycle", "is", body)
	if code != http.StatusOK || bytes.Contains(out, []byte(ch.PAN)) || !bytes.Contains(out, []byte(a.TokenRef)) {
		t.Fatalf("%d %s", code, out)
	}
	var res CardLifecycleResponse
	if err := json.Unmarshal(out, &res); err != nil || res.Changed != 1 || res.Tokens[0].State != StateSuspended {
		t.Fatalf("%s %v", out, err)
	}
	newPAN := replacementPAN(t, ch.PAN)
	code, out = post("/v1/issuer/cards/replace", "is", CardReplaceRequest{OldPAN: ch.PAN, NewPAN: newPAN, NewExpiry: "3112"})
	if code != http.StatusOK || bytes.Contains(out, []byte(ch.PAN)) || bytes.Contains(out, []byte(newPAN)) {
		t.Fatalf("replace %d %s", code, out)
	}
	if code, out := post("/v1/issuer/cards/replace", "is", CardReplaceRequest{OldPAN: "1", NewPAN: newPAN, NewExpiry: "3112"}); code != http.StatusBadRequest || bytes.Contains(out, []byte(newPAN)) {
		t.Fatalf("bad replace %d %s", code, out)
	}
}

// FuzzIssuerCardRequests feeds the card endpoints' decoded fields to the
// service: no panic, only *mipay.Error answers, and no answer or error
// ever holds a PAN it was given.
func FuzzIssuerCardRequests(f *testing.F) {
	fx := newFixture(f)
	_, ch := fx.mustActiveToken(f, config.Debit, "dev-1")
	f.Add(ch.PAN, "suspend", "CARD_STOLEN", "3112")
	f.Add(ch.PAN, "resume", "", "9912")
	f.Add("6", "delete", strings.Repeat("x", 300), "1")
	f.Add(replacementPAN(f, ch.PAN), "activate", "r", "3113")
	f.Fuzz(func(t *testing.T, pan, action, reason, expiry string) {
		ctx := context.Background()
		check := func(v any, err error) {
			if err != nil {
				var me *mipay.Error
				if !errors.As(err, &me) {
					t.Fatalf("not a *mipay.Error: %v", err)
				}
			}
			b, _ := json.Marshal(v)
			for _, s := range []string{string(b), fmt.Sprint(err)} {
				if len(pan) >= 12 && strings.Contains(s, pan) {
					t.Fatalf("PAN in answer: %s", s)
				}
			}
		}
		v, err := fx.svc.CardLifecycle(ctx, CardLifecycleRequest{PAN: pan, Action: Action(action), Reason: reason})
		check(v, err)
		r, err := fx.svc.ReplaceCard(ctx, CardReplaceRequest{OldPAN: pan, NewPAN: pan, NewExpiry: expiry, Reason: reason})
		check(r, err)
	})
}

// TestCardTokens: the bank lists every token of a card (every device and
// state), masked PAN only; a card without tokens is 404; bad PANs 400.
func TestCardTokens(t *testing.T) {
	f := newAuthFixture(t)
	ctx := context.Background()
	a, ch := f.mustActiveToken(t, config.Debit, "dev-1")
	b, _ := f.mustActiveToken(t, config.Debit, "dev-2")
	if _, err := f.svc.Lifecycle(ctx, b.TokenRef, ActionSuspend, CausedByCardholder, "DEVICE_LOST"); err != nil {
		t.Fatal(err)
	}
	res, err := f.svc.CardTokens(ctx, CardTokensRequest{PAN: ch.PAN})
	if err != nil || len(res.Tokens) != 2 || res.PAN != MaskPAN(ch.PAN) {
		t.Fatalf("%+v %v", res, err)
	}
	got := map[string]State{}
	for _, tk := range res.Tokens {
		got[tk.TokenRef+"@"+tk.DeviceID] = tk.State
	}
	if got[a.TokenRef+"@dev-1"] != StateActive || got[b.TokenRef+"@dev-2"] != StateSuspended {
		t.Fatalf("tokens %v", got)
	}
	if b, _ := json.Marshal(res); bytes.Contains(b, []byte(ch.PAN)) {
		t.Fatalf("the answer holds the PAN: %s", b)
	}
	if _, err := f.svc.CardTokens(ctx, CardTokensRequest{PAN: replacementPAN(t, ch.PAN)}); mipay.ErrorCode(err) != mipay.ENOTFOUND {
		t.Fatalf("card without tokens: %v", err)
	}
	if _, err := f.svc.CardTokens(ctx, CardTokensRequest{PAN: "1234"}); mipay.ErrorCode(err) != mipay.EINVALID {
		t.Fatalf("bad PAN: %v", err)
	}
	if s := (CardTokensRequest{PAN: ch.PAN}).String(); strings.Contains(s, ch.PAN) {
		t.Fatalf("String shows the PAN: %s", s)
	}
}
