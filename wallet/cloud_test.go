package wallet

import (
	"fmt"
	"testing"
	"time"
)

func TestLocations(t *testing.T) {
	e := mustWallet(t, func(c *Config) { c.LocationsKept = 10 })
	u := e.mustUser()
	d := "/v1/devices/" + u.deviceID
	for i := 0; i < 15; i++ {
		e.call("POST", d+"/locations", u.token, map[string]any{
			"latitude": 39.9 + float64(i)/1000, "longitude": 116.4, "accuracyMeters": 15.5,
			"time": e.clock.Now().Add(time.Duration(i-20) * time.Minute),
		}).want(t, 201)
	}
	l := e.call("GET", d+"/locations", u.token, nil).want(t, 200)
	ls := l.body["locations"].([]any)
	if len(ls) != 10 {
		t.Fatalf("%d locations kept, want 10", len(ls))
	}
	newest := ls[0].(map[string]any)
	if newest["latitude"] != 39.914 || newest["accuracyMeters"] != 15.5 {
		t.Errorf("newest %v", newest)
	}
	if dev := e.call("GET", d, u.token, nil).want(t, 200); dev.str("lastSeenAt") == "" {
		t.Errorf("device not seen: %s", dev.raw)
	}
	two := e.call("GET", d+"/locations?limit=2", u.token, nil).want(t, 200)
	if len(two.body["locations"].([]any)) != 2 {
		t.Errorf("%s", two.raw)
	}
}

func TestCommands(t *testing.T) {
	e := mustWallet(t)
	u := e.mustUser()
	d := "/v1/devices/" + u.deviceID
	wipe := e.call("POST", d+"/commands", u.token, map[string]string{"kind": "WIPE"}).want(t, 202)
	again := e.call("POST", d+"/commands", u.token, map[string]string{"kind": "WIPE"}).want(t, 202)
	if wipe.str("id") != again.str("id") || wipe.str("state") != CommandPending {
		t.Errorf("a second WIPE was queued: %s / %s", wipe.raw, again.raw)
	}
	e.call("POST", d+"/commands", u.token, map[string]string{"kind": "LOCATE"}).want(t, 202)

	// The device learns of them on its notification feed, and takes them.
	n := e.call("GET", d+"/notifications?wait=0s", u.token, nil).want(t, 200)
	if len(n.body["notifications"].([]any)) != 2 {
		t.Errorf("notifications %s", n.raw)
	}
	s := e.call("POST", d+"/sync", u.token, map[string]any{"location": map[string]any{"latitude": 31.2, "longitude": 121.5}}).want(t, 200)
	cs := s.body["commands"].([]any)
	if len(cs) != 2 || cs[0].(map[string]any)["state"] != CommandDelivered {
		t.Fatalf("sync %s", s.raw)
	}
	if e.rows("locations") != 1 {
		t.Errorf("sync did not record the location")
	}
	if s2 := e.call("POST", d+"/sync", u.token, nil).want(t, 200); len(s2.body["commands"].([]any)) != 0 {
		t.Errorf("commands delivered twice: %s", s2.raw)
	}
	r := e.call("POST", d+"/commands/"+wipe.str("id")+"/result", u.token, map[string]any{"ok": true, "result": "wallet wiped"}).want(t, 200)
	if r.str("state") != CommandDone || r.str("result") != "wallet wiped" {
		t.Errorf("result %s", r.raw)
	}
	e.call("POST", d+"/commands/"+wipe.str("id")+"/result", u.token, map[string]any{"ok": true}).want(t, 409)
	l := e.call("GET", d+"/commands", u.token, nil).want(t, 200)
	if len(l.body["commands"].([]any)) != 2 {
		t.Errorf("commands %s", l.raw)
	}
	// A WIPE can be queued again once the last one was taken.
	if w2 := e.call("POST", d+"/commands", u.token, map[string]string{"kind": "WIPE"}).want(t, 202); w2.str("id") == wipe.str("id") {
		t.Errorf("new WIPE has the old id")
	}
}

func TestCommandQueueBounded(t *testing.T) {
	e := mustWallet(t)
	u := e.mustUser()
	kinds := []string{CommandLocate, CommandRing, CommandWipe}
	// Same-kind commands collapse, so fill the queue through the repo.
	for i := 0; i < MaxPendingCommandsPerDevice; i++ {
		c := &Command{ID: fmt.Sprintf("cmd_%d", i), DeviceID: u.deviceID, Kind: fmt.Sprintf("K%d", i), State: CommandPending, Created: e.clock.Now()}
		if _, err := e.repo.queueCommand(t.Context(), c, DefaultNotificationsKept); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range kinds {
		e.call("POST", "/v1/devices/"+u.deviceID+"/commands", u.token, map[string]string{"kind": k}).want(t, 429)
	}
}

func TestCommandHistoryBounded(t *testing.T) {
	e := mustWallet(t)
	u := e.mustUser()
	d := "/v1/devices/" + u.deviceID
	for i := 0; i < maxFinishedCommandsKept+10; i++ {
		e.clock.Advance(time.Millisecond)
		e.call("POST", d+"/commands", u.token, map[string]string{"kind": "RING"}).want(t, 202)
		e.call("POST", d+"/sync", u.token, nil).want(t, 200)
	}
	e.call("POST", d+"/commands", u.token, map[string]string{"kind": "RING"}).want(t, 202)
	if n := e.rows("commands"); n != maxFinishedCommandsKept+1 {
		t.Errorf("%d command rows, want %d delivered + 1 pending", n, maxFinishedCommandsKept+1)
	}
}
