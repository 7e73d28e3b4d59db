package wallet

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/httpx"
)

// tokenRef reads a card's token reference from the store (the API never
// shows it).
func (e *env) tokenRef(cardID string) string {
	e.t.Helper()
	var ref string
	if err := e.repo.db.DB.QueryRow(`SELECT token_ref FROM cards WHERE id = $1`, cardID).Scan(&ref); err != nil {
		e.t.Fatal(err)
	}
	return ref
}

func txEvent(ref, id string, amount int64, approved bool) json.RawMessage {
	b, _ := json.Marshal(map[string]any{
		"transactionId": id, "tokenRef": ref, "amountMinor": amount, "currency": "156", "merchantName": "Luckin Coffee",
		"approved": approved, "responseCode": map[bool]string{true: "00", false: "51"}[approved], "authCode": "A1B2C3",
		"time": time.Date(2026, 11, 26, 1, 30, 0, 0, time.UTC), "stan": "000123", "rrn": "633001000123",
		"pan": "must be ignored", "extraFromSwitch": 1,
	})
	return b
}

func TestTransactionsAndLongPoll(t *testing.T) {
	e := mustWallet(t)
	u := e.mustUser()
	card := e.mustCard(u, "green")
	ref := e.tokenRef(card)
	ctx := context.Background()

	// A long poll waiting before the transaction arrives is woken by it.
	done := make(chan answer, 1)
	go func() {
		done <- e.call("GET", "/v1/devices/"+u.deviceID+"/notifications?after=0&wait=10s", u.token, nil)
	}()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	if err := e.svc.HandleTransaction(ctx, "ev-1", txEvent(ref, "tx-1", 1250, true)); err != nil {
		t.Fatal(err)
	}
	a := (<-done).want(t, 200)
	if time.Since(start) > 2*time.Second {
		t.Errorf("long poll took %v to see the notification", time.Since(start))
	}
	ns := a.body["notifications"].([]any)
	if len(ns) != 1 || !strings.Contains(string(a.raw), `"merchantName":"Luckin Coffee"`) || a.str("next") != "1" {
		t.Fatalf("notifications %s", a.raw)
	}
	if strings.Contains(string(a.raw), "must be ignored") {
		t.Errorf("an unknown event field reached the phone")
	}

	t.Run("idempotent", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			if err := e.svc.HandleTransaction(ctx, fmt.Sprintf("ev-redelivered-%d", i), txEvent(ref, "tx-1", 1250, true)); err != nil {
				t.Fatal(err)
			}
		}
		if n := e.rows("transactions"); n != 1 {
			t.Errorf("%d transactions after redelivery", n)
		}
		if n := e.rows("notifications"); n != 1 {
			t.Errorf("%d notifications after redelivery", n)
		}
	})
	t.Run("event id when no transaction id", func(t *testing.T) {
		b, _ := json.Marshal(map[string]any{"tokenRef": ref, "amountMinor": 99, "approved": false, "responseCode": "51"})
		for i := 0; i < 2; i++ {
			if err := e.svc.HandleTransaction(ctx, "ev-no-id", b); err != nil {
				t.Fatal(err)
			}
		}
		if n := e.rows("transactions"); n != 2 {
			t.Errorf("%d transactions", n)
		}
	})
	t.Run("unknown token and malformed events are dropped", func(t *testing.T) {
		for _, ev := range []json.RawMessage{txEvent("DNITHE-OTHER-WALLET", "tx-x", 1, true), json.RawMessage(`{"tokenRef":`), json.RawMessage(`{}`)} {
			if err := e.svc.HandleTransaction(ctx, "ev-x", ev); err != nil {
				t.Errorf("%s: %v", ev, err)
			}
		}
		if n := e.rows("transactions"); n != 2 {
			t.Errorf("%d transactions", n)
		}
	})
	t.Run("card transactions", func(t *testing.T) {
		if err := e.svc.HandleTransaction(ctx, "ev-3", txEvent(ref, "tx-3", 20000, false)); err != nil {
			t.Fatal(err)
		}
		l := e.call("GET", "/v1/cards/"+card+"/transactions", u.token, nil).want(t, 200)
		ts := l.body["transactions"].([]any)
		if len(ts) != 3 {
			t.Fatalf("transactions %s", l.raw)
		}
		first := ts[0].(map[string]any)
		if first["tokenLast4"] == "" || first["cardId"] != card {
			t.Errorf("transaction %v", first)
		}
		l2 := e.call("GET", "/v1/cards/"+card+"/transactions?limit=1", u.token, nil).want(t, 200)
		if len(l2.body["transactions"].([]any)) != 1 {
			t.Errorf("limit 1: %s", l2.raw)
		}
	})
	t.Run("resume after", func(t *testing.T) {
		l := e.call("GET", "/v1/devices/"+u.deviceID+"/notifications?after=1&wait=0s", u.token, nil).want(t, 200)
		ns := l.body["notifications"].([]any)
		if len(ns) != 2 || l.str("next") != "3" {
			t.Errorf("after 1: %s", l.raw)
		}
		empty := e.call("GET", "/v1/devices/"+u.deviceID+"/notifications?after=3&wait=100ms", u.token, nil).want(t, 200)
		if len(empty.body["notifications"].([]any)) != 0 || empty.str("next") != "3" {
			t.Errorf("after 3: %s", empty.raw)
		}
	})
}

func TestNotificationStream(t *testing.T) {
	e := mustWallet(t)
	u := e.mustUser()
	card := e.mustCard(u, "green")
	ref := e.tokenRef(card)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.svc.HandleTransaction(ctx, "ev-1", txEvent(ref, "tx-1", 100, true)); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", e.url+"/v1/devices/"+u.deviceID+"/notifications/stream", nil)
	req.Header.Set("Authorization", "Bearer "+u.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := make(chan [3]string, 8)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		var ev [3]string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "id: "):
				ev[0] = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev[1] = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev[2] = line[6:]
			case line == "" && ev[0] != "":
				events <- ev
				ev = [3]string{}
			}
		}
		close(events)
	}()
	next := func() [3]string {
		t.Helper()
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("stream ended")
			}
			return ev
		case <-time.After(5 * time.Second):
			t.Fatal("no event within 5s")
		}
		return [3]string{}
	}
	if ev := next(); ev[0] != "1" || ev[1] != NotifyTransaction || !strings.Contains(ev[2], `"amountMinor":100`) {
		t.Errorf("first event %q", ev)
	}
	// Live: a state change and a second transaction arrive on the open stream.
	if err := e.svc.HandleTokenState(ctx, "ev-s", mustJSON(map[string]any{"tokenUniqueReference": ref, "state": "SUSPENDED",
		"causedBy": "ISSUER", "reason": "CARD_LOST", "time": e.clock.Now().Add(time.Minute)})); err != nil {
		t.Fatal(err)
	}
	if ev := next(); ev[0] != "2" || ev[1] != NotifyCardState || !strings.Contains(ev[2], `"state":"SUSPENDED"`) {
		t.Errorf("second event %q", ev)
	}
	if err := e.svc.HandleTransaction(ctx, "ev-2", txEvent(ref, "tx-2", 200, false)); err != nil {
		t.Fatal(err)
	}
	if ev := next(); ev[0] != "3" || !strings.Contains(ev[2], `"approved":false`) {
		t.Errorf("third event %q", ev)
	}

	t.Run("resume with Last-Event-ID", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(ctx, "GET", e.url+"/v1/devices/"+u.deviceID+"/notifications/stream", nil)
		req.Header.Set("Authorization", "Bearer "+u.token)
		req.Header.Set("Last-Event-ID", "2")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if l := sc.Text(); strings.HasPrefix(l, "id: ") {
				if l != "id: 3" {
					t.Errorf("resumed at %q", l)
				}
				return
			}
		}
		t.Error("no event after resuming")
	})
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func TestTokenStateEvents(t *testing.T) {
	e := mustWallet(t)
	u := e.mustUser()
	card := e.mustCard(u, "green")
	ref := e.tokenRef(card)
	ctx := context.Background()
	at := e.clock.Now()
	state := func() string {
		return e.call("GET", "/v1/cards/"+card, u.token, nil).want(t, 200).str("state")
	}
	ev := func(s string, when time.Time) {
		t.Helper()
		if err := e.svc.HandleTokenState(ctx, "ev", mustJSON(map[string]any{"tokenUniqueReference": ref, "state": s, "causedBy": "CARDHOLDER", "time": when})); err != nil {
			t.Fatal(err)
		}
	}
	ev(StateSuspended, at.Add(time.Minute))
	if state() != StateSuspended {
		t.Fatalf("state %s", state())
	}
	ev(StateActive, at.Add(30*time.Second)) // older than the suspension: ignored
	if state() != StateSuspended {
		t.Errorf("an older event put back %s", state())
	}
	ev(StateActive, at.Add(2*time.Minute))
	if state() != StateActive {
		t.Errorf("resume: %s", state())
	}
	ev("EXPLODED", at.Add(3*time.Minute)) // unknown: dropped
	ev(StateDeactivated, at.Add(4*time.Minute))
	ev(StateActive, at.Add(5*time.Minute)) // a deleted token never comes back
	if state() != StateDeactivated {
		t.Errorf("after delete: %s", state())
	}
	if n := e.rows("notifications"); n != 3 {
		t.Errorf("%d notifications, want 3 (suspended, active, deactivated)", n)
	}
	if err := e.svc.HandleTokenState(ctx, "ev", json.RawMessage(`not json`)); err != nil {
		t.Errorf("malformed event: %v", err)
	}
}

func TestNotificationsPruned(t *testing.T) {
	const keep = 5
	e := mustWallet(t, func(c *Config) { c.NotificationsKept = keep })
	u := e.mustUser()
	ref := e.tokenRef(e.mustCard(u, "green"))
	pay := func(from, to int) {
		t.Helper()
		for i := from; i <= to; i++ {
			if err := e.svc.HandleTransaction(context.Background(), "ev", txEvent(ref, fmt.Sprintf("tx-%d", i), int64(i), true)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// shows checks the device sees exactly the newest keep, first..last.
	shows := func(first, last int) {
		t.Helper()
		l := e.call("GET", "/v1/devices/"+u.deviceID+"/notifications?wait=0s", u.token, nil).want(t, 200)
		ns := l.body["notifications"].([]any)
		if len(ns) != last-first+1 || l.str("next") != fmt.Sprint(last) {
			t.Fatalf("want %d..%d: %s", first, last, l.raw)
		}
		for i, n := range ns {
			if seq := n.(map[string]any)["seq"].(float64); int(seq) != first+i {
				t.Fatalf("want %d..%d: %s", first, last, l.raw)
			}
		}
		// Resuming inside the kept window gives the rest of it.
		l = e.call("GET", fmt.Sprintf("/v1/devices/%s/notifications?after=%d&wait=0s", u.deviceID, last-2), u.token, nil).want(t, 200)
		if ns := l.body["notifications"].([]any); len(ns) != 2 {
			t.Fatalf("after %d: %s", last-2, l.raw)
		}
		// The store holds at most pruneStride-1 more than it shows.
		if n := e.rows("notifications"); n < keep || n > keep+pruneStride-1 {
			t.Errorf("%d notifications stored, want %d to %d", n, keep, keep+pruneStride-1)
		}
	}
	pay(1, 12)
	shows(8, 12)
	pay(13, 2*pruneStride+3) // two prunes
	shows(2*pruneStride-1, 2*pruneStride+3)
	if n := e.rows("notifications"); n != keep+3 {
		t.Errorf("%d notifications stored after the prune at %d, want %d", n, 2*pruneStride, keep+3)
	}

	// A wallet started again on the same store numbers on from the last
	// (the number lives in the store, not in memory).
	again := NewService(e.svc.cfg, newRepo(e.repo.db, e.writer.Write))
	t.Cleanup(again.Stop)
	if err := again.HandleTransaction(context.Background(), "ev", txEvent(ref, "tx-after-restart", 1, true)); err != nil {
		t.Fatal(err)
	}
	shows(2*pruneStride, 2*pruneStride+4)
}

// TestLongPollOutlivesServerTimeouts: the party's server has read and write
// timeouts shorter than the longest poll; a poll must still get a
// notification that arrives after them.
func TestLongPollOutlivesServerTimeouts(t *testing.T) {
	e := mustWallet(t)
	u := e.mustUser()
	ref := e.tokenRef(e.mustCard(u, "green"))
	srv := httpx.NewServer("wallet", NewAPI(e.svc).Handler(), nil, nil)
	srv.ReadTimeout, srv.WriteTimeout = 300*time.Millisecond, 300*time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	e.url = "http://" + ln.Addr().String()
	go func() {
		time.Sleep(time.Second)
		_ = e.svc.HandleTransaction(context.Background(), "ev", txEvent(ref, "tx-late", 1, true))
	}()
	a := e.call("GET", "/v1/devices/"+u.deviceID+"/notifications?wait=5s", u.token, nil).want(t, 200)
	if len(a.body["notifications"].([]any)) != 1 {
		t.Errorf("poll answered without the late notification: %s", a.raw)
	}
}

func TestHubForgetsFinishedWaiters(t *testing.T) {
	e := mustWallet(t)
	u := e.mustUser()
	for i := 0; i < 3; i++ {
		e.call("GET", "/v1/devices/"+u.deviceID+"/notifications?wait=100ms", u.token, nil).want(t, 200)
	}
	if n := e.svc.hub.size(); n != 0 {
		t.Errorf("%d devices still in the hub after every poll ended", n)
	}
}
