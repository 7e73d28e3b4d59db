package wallet

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/httpx"
)

func TestSwitchOffAndFound(t *testing.T) {
	e := mustWallet(t)
	u := e.mustUser()
	a, b := e.mustCard(u, "green"), e.mustCard(u, "green")
	pending := e.mustCard(u, "yellow")
	broken := e.mustCard(u, "green")
	e.tsp.mu.Lock()
	delete(e.tsp.tokens, e.tokenRef(broken)) // the TSP will not know it
	e.tsp.mu.Unlock()
	d := "/v1/devices/" + u.deviceID

	off := e.call("POST", d+"/switch-off", u.token, nil).want(t, 200)
	if off.str("command", "kind") != CommandWipe {
		t.Errorf("no wipe queued: %s", off.raw)
	}
	got := map[string]map[string]any{}
	for _, c := range off.body["cards"].([]any) {
		m := c.(map[string]any)
		got[m["cardId"].(string)] = m
	}
	for _, id := range []string{a, b} {
		if got[id]["state"] != StateSuspended || got[id]["changed"] != true || e.tsp.state(e.tokenRef(id)) != StateSuspended {
			t.Errorf("card %s after switch-off: %v (TSP %s)", id, got[id], e.tsp.state(e.tokenRef(id)))
		}
	}
	if got[pending]["state"] != StateInactive || got[pending]["changed"] != false {
		t.Errorf("pending card touched: %v", got[pending])
	}
	if got[broken]["error"] == nil || got[broken]["state"] != StateActive {
		t.Errorf("refused card not reported: %v", got[broken])
	}
	ns := e.call("GET", d+"/notifications?wait=0s", u.token, nil).want(t, 200)
	if n := strings.Count(string(ns.raw), `"state":"SUSPENDED"`); n != 2 {
		t.Errorf("%d suspension notifications: %s", n, ns.raw)
	}

	found := e.call("POST", d+"/found", u.token, map[string]string{}).want(t, 200)
	for _, c := range found.body["cards"].([]any) {
		m := c.(map[string]any)
		if id := m["cardId"]; (id == a || id == b) && m["state"] != StateActive {
			t.Errorf("card after found: %v", m)
		}
	}
	if e.tsp.state(e.tokenRef(a)) != StateActive {
		t.Errorf("TSP state after found: %s", e.tsp.state(e.tokenRef(a)))
	}

	t.Run("one card", func(t *testing.T) {
		c := e.call("POST", "/v1/cards/"+a+"/suspend", u.token, map[string]string{"reason": "LOST_WALLET"}).want(t, 200)
		if c.str("state") != StateSuspended {
			t.Errorf("%s", c.raw)
		}
		c = e.call("POST", "/v1/cards/"+a+"/resume", u.token, nil).want(t, 200)
		if c.str("state") != StateActive {
			t.Errorf("%s", c.raw)
		}
		e.call("POST", "/v1/cards/"+broken+"/suspend", u.token, nil).want(t, 404)
	})
	t.Run("remove all", func(t *testing.T) {
		r := e.call("DELETE", d+"/cards", u.token, nil).want(t, 200)
		if n := strings.Count(string(r.raw), `"state":"DEACTIVATED"`); n != 3 {
			t.Errorf("%d removed: %s", n, r.raw)
		}
		l := e.call("GET", d+"/cards", u.token, nil).want(t, 200)
		if cs := l.body["cards"].([]any); len(cs) != 1 || l.str("defaultCardId") != broken {
			t.Errorf("left: %s", l.raw)
		}
	})
}

func TestSwitchOffHotlistsTransitCards(t *testing.T) {
	var gotBearer, gotPath string
	fail := false
	transit := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotBearer, gotPath = r.Header.Get("Authorization"), r.URL.Path
		if fail {
			httpx.WriteJSON(w, 503, httpx.ErrorBody{Error: httpx.ErrorDetail{Code: "unavailable", Message: "the agency is down"}})
			return
		}
		httpx.WriteJSON(w, 200, map[string]any{"hotlisted": []string{"3100000000000017"}})
	}))
	t.Cleanup(transit.Close)
	e := mustWallet(t, func(c *Config) { c.Transit = &HTTPTransit{Base: func() string { return transit.URL }} })
	u := e.mustUser()
	card := e.mustCard(u, "green")
	off := e.call("POST", "/v1/devices/"+u.deviceID+"/switch-off", u.token, nil).want(t, 200)
	if gotBearer != "Bearer "+u.token || gotPath != "/v1/devices/"+u.deviceID+"/hotlist" {
		t.Errorf("transit called with %q %q", gotBearer, gotPath)
	}
	if hs, _ := off.body["transitHotlisted"].([]any); len(hs) != 1 {
		t.Errorf("%s", off.raw)
	}
	t.Run("transit down", func(t *testing.T) {
		fail = true
		e.call("POST", "/v1/devices/"+u.deviceID+"/found", u.token, nil).want(t, 200)
		off := e.call("POST", "/v1/devices/"+u.deviceID+"/switch-off", u.token, nil).want(t, 200)
		if off.str("transitError") != "the agency is down" {
			t.Errorf("%s", off.raw)
		}
		if c := e.call("GET", "/v1/cards/"+card, u.token, nil).want(t, 200); c.str("state") != StateSuspended {
			t.Errorf("card not suspended when transit failed: %s", c.raw)
		}
	})
	t.Run("no transit configured", func(t *testing.T) {
		e2 := mustWallet(t, func(c *Config) { c.Transit = &HTTPTransit{Base: func() string { return "" }} })
		u2 := e2.mustUser()
		off := e2.call("POST", "/v1/devices/"+u2.deviceID+"/switch-off", u2.token, nil).want(t, 200)
		if off.str("transitError") != "" || off.str("command", "kind") != CommandWipe {
			t.Errorf("%s", off.raw)
		}
	})
}

func TestFoundNeedsSecondFactor(t *testing.T) {
	e := mustWallet(t)
	u := e.mustUser()
	e.mustCard(u, "green")
	e.call("POST", "/v1/devices/"+u.deviceID+"/switch-off", u.token, nil).want(t, 200)
	// The stolen phone's own password session cannot undo the switch-off.
	thief := e.call("POST", "/v1/sessions", "", map[string]string{"login": u.login, "password": "correct horse"}).want(t, 201).str("token")
	e.call("POST", "/v1/devices/"+u.deviceID+"/found", thief, nil).want(t, 403)
	// Neither can a second-factor sign-in that has grown old.
	e.clock.Advance(DefaultSecondFactorWindow + time.Minute)
	e.call("POST", "/v1/devices/"+u.deviceID+"/found", u.token, nil).want(t, 403)
	e.markSecondFactor(u.token)
	e.call("POST", "/v1/devices/"+u.deviceID+"/found", u.token, nil).want(t, 200)
}
