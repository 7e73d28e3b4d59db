package wallet

import (
	"encoding/base64"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBindingGreen(t *testing.T) {
	e := mustWallet(t)
	u := e.mustUser()
	a := e.call("POST", "/v1/devices/"+u.deviceID+"/cards", u.token, scenario("green")).want(t, 201)
	if a.str("decision") != DecisionApproved || a.str("cardId") == "" || a.str("card", "state") != StateActive {
		t.Fatalf("binding %s", a.raw)
	}
	for _, f := range []string{"panLast4", "tokenLast4", "bank", "product", "art", "cardType"} {
		if a.str("card", f) == "" {
			t.Errorf("card has no %s: %s", f, a.raw)
		}
	}
	if a.str("card", "default") != "true" {
		t.Errorf("the first card is not the default: %s", a.raw)
	}
	if strings.Contains(string(a.raw), "DNITHE") {
		t.Errorf("the token reference leaked to the phone: %s", a.raw)
	}
	req := e.tsp.lastReq
	if req.Device.SEID != u.se.id || req.Device.DeviceID != u.deviceID || req.Device.Model != "Xiaomi 15" ||
		req.Device.SEPublicKey != base64.StdEncoding.EncodeToString(u.se.pub) || req.TokenRequestorID != "50110030273" ||
		req.AccountID != u.accountID {
		t.Errorf("tokenize request device/requestor %+v", req)
	}
	if req.Risk.AccountAgeDays != 0 || req.Risk.DeviceScore < 1 || req.Risk.DeviceScore > 5 {
		t.Errorf("risk %+v", req.Risk)
	}
	if req.EncryptedCardData != scenario("green")["encryptedCardData"] {
		t.Errorf("card data not relayed as is")
	}

	id := a.str("cardId")
	if got := e.call("GET", "/v1/cards/"+id, u.token, nil).want(t, 200); !reflect.DeepEqual(got.body, a.body["card"]) {
		t.Errorf("the binding's card %v differs from the stored one %v", a.body["card"], got.body)
	}
	t.Run("provisioning", func(t *testing.T) {
		p := e.call("GET", "/v1/cards/"+id+"/provisioning", u.token, nil).want(t, 200)
		if p.str("sealedKey") == "" {
			t.Errorf("profile %s", p.raw)
		}
		c := e.call("POST", "/v1/cards/"+id+"/provisioned", u.token, nil).want(t, 200)
		if c.str("provisioned") != "true" {
			t.Errorf("card %s", c.raw)
		}
		e.call("POST", "/v1/cards/"+id+"/provisioned", u.token, map[string]any{}).want(t, 200)
	})
	t.Run("list", func(t *testing.T) {
		l := e.call("GET", "/v1/devices/"+u.deviceID+"/cards", u.token, nil).want(t, 200)
		cs := l.body["cards"].([]any)
		if len(cs) != 1 || l.str("defaultCardId") != id {
			t.Errorf("cards %s", l.raw)
		}
	})
	t.Run("older account scores better", func(t *testing.T) {
		e.clock.Advance(3 * 24 * time.Hour)
		e.signIn(u)
		before := e.tsp.lastReq.Risk
		e.call("POST", "/v1/devices/"+u.deviceID+"/cards", u.token, scenario("green")).want(t, 201)
		after := e.tsp.lastReq.Risk
		if after.AccountAgeDays != 3 || after.DeviceScore <= before.DeviceScore {
			t.Errorf("risk before %+v after %+v", before, after)
		}
	})
}

func TestBindingYellow(t *testing.T) {
	e := mustWallet(t)
	u := e.mustUser()
	a := e.call("POST", "/v1/devices/"+u.deviceID+"/cards", u.token, scenario("yellow")).want(t, 201)
	if a.str("decision") != DecisionRequireAuth || a.str("card", "state") != StateInactive {
		t.Fatalf("binding %s", a.raw)
	}
	ms := a.body["methods"].([]any)
	m := ms[0].(map[string]any)
	if m["id"] != "sms-1" || m["value"] != "***8000" {
		t.Fatalf("methods %s", a.raw)
	}
	id := a.str("cardId")
	e.call("GET", "/v1/cards/"+id+"/provisioning", u.token, nil).want(t, 409)

	o := e.call("POST", "/v1/cards/"+id+"/otp", u.token, map[string]string{"methodId": "sms-1"}).want(t, 200)
	if o.str("destination") != "***8000" || o.str("resendsLeft") != "2" {
		t.Errorf("otp %s", o.raw)
	}
	w := e.call("POST", "/v1/cards/"+id+"/otp/verify", u.token, map[string]string{"code": "000000"}).want(t, 400)
	if !strings.Contains(w.errMsg(), "attempts left") || w.str("error", "reason") != "OTP_WRONG" {
		t.Errorf("wrong code %s", w.raw)
	}
	v := e.call("POST", "/v1/cards/"+id+"/otp/verify", u.token, map[string]string{"code": fakeOTP}).want(t, 200)
	if v.str("result") != "VERIFIED" || v.str("card", "state") != StateActive {
		t.Fatalf("verify %s", v.raw)
	}
	e.call("POST", "/v1/cards/"+id+"/otp/verify", u.token, map[string]string{"code": fakeOTP}).want(t, 409)
	e.call("GET", "/v1/cards/"+id+"/provisioning", u.token, nil).want(t, 200)

	ns := e.call("GET", "/v1/devices/"+u.deviceID+"/notifications?wait=0s", u.token, nil).want(t, 200)
	if !strings.Contains(string(ns.raw), `"state":"ACTIVE"`) {
		t.Errorf("no card state notification: %s", ns.raw)
	}
}

func TestBindingOTPLocked(t *testing.T) {
	e := mustWallet(t)
	u := e.mustUser()
	id := e.mustCard(u, "yellow")
	var a answer
	for i := 0; i < 5; i++ {
		a = e.call("POST", "/v1/cards/"+id+"/otp/verify", u.token, map[string]string{"code": "999999"})
	}
	a.want(t, 423)
	c := e.call("GET", "/v1/cards/"+id, u.token, nil).want(t, 200)
	if c.str("state") != StateDeactivated {
		t.Errorf("card after a locked binding %s", c.raw)
	}
	l := e.call("GET", "/v1/devices/"+u.deviceID+"/cards", u.token, nil).want(t, 200)
	if len(l.body["cards"].([]any)) != 0 {
		t.Errorf("a void binding is listed: %s", l.raw)
	}
}

func TestBindingDeclinedCreatesNothing(t *testing.T) {
	e := mustWallet(t)
	u := e.mustUser()
	a := e.call("POST", "/v1/devices/"+u.deviceID+"/cards", u.token, scenario("red")).want(t, 200)
	if a.str("decision") != DecisionDeclined || a.str("reason") != "PHONE_MISMATCH" || !strings.Contains(a.str("message"), "phone number") {
		t.Fatalf("decline %s", a.raw)
	}
	if a.str("cardId") != "" || e.rows("cards") != 0 {
		t.Errorf("a declined binding left a card")
	}
	t.Run("TSP error", func(t *testing.T) {
		b := e.call("POST", "/v1/devices/"+u.deviceID+"/cards", u.token, scenario("garbage")).want(t, 400)
		if !strings.Contains(b.errMsg(), "decrypted") || e.rows("cards") != 0 {
			t.Errorf("TSP error %s, %d cards", b.raw, e.rows("cards"))
		}
	})
	t.Run("TSP down", func(t *testing.T) {
		e.tsp.srv.Close()
		b := e.call("POST", "/v1/devices/"+u.deviceID+"/cards", u.token, scenario("green")).want(t, 503)
		if b.errCode() != "unavailable" || e.rows("cards") != 0 {
			t.Errorf("TSP down %s, %d cards", b.raw, e.rows("cards"))
		}
	})
}

func TestNinthCard(t *testing.T) {
	e := mustWallet(t)
	u := e.mustUser()
	ids := make([]string, 0, 8)
	for i := 0; i < DefaultMaxCardsPerDevice; i++ {
		ids = append(ids, e.mustCard(u, []string{"green", "yellow"}[i%2]))
	}
	calls, rows := e.tsp.count(), e.rows("cards")
	a := e.call("POST", "/v1/devices/"+u.deviceID+"/cards", u.token, scenario("green")).want(t, 429)
	if a.errCode() != "limit" || !strings.Contains(a.errMsg(), "8 cards") {
		t.Errorf("9th card %s", a.raw)
	}
	if e.tsp.count() != calls || e.rows("cards") != rows {
		t.Errorf("the 9th card reached the TSP (%d→%d calls) or the store (%d→%d rows)", calls, e.tsp.count(), rows, e.rows("cards"))
	}
	t.Run("other device unaffected", func(t *testing.T) {
		s := e.vendor.issue(t, "SE-SECOND-DEVICE")
		d := e.call("POST", "/v1/devices", u.token, s.body("Redmi", true)).want(t, 201)
		e.call("POST", "/v1/devices/"+d.str("id")+"/cards", u.token, scenario("green")).want(t, 201)
	})
	t.Run("removing one makes room", func(t *testing.T) {
		r := e.call("DELETE", "/v1/cards/"+ids[3], u.token, nil).want(t, 200)
		if r.str("state") != StateDeactivated {
			t.Errorf("removed card %s", r.raw)
		}
		e.call("POST", "/v1/devices/"+u.deviceID+"/cards", u.token, scenario("green")).want(t, 201)
		e.call("POST", "/v1/devices/"+u.deviceID+"/cards", u.token, scenario("green")).want(t, 429)
	})
}

func TestNinthCardConcurrent(t *testing.T) {
	e := mustWallet(t)
	u := e.mustUser()
	const tries = 12
	var wg sync.WaitGroup
	status := make(chan int, tries)
	for i := 0; i < tries; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status <- e.call("POST", "/v1/devices/"+u.deviceID+"/cards", u.token, scenario("green")).status
		}()
	}
	wg.Wait()
	close(status)
	got := map[int]int{}
	for s := range status {
		got[s]++
	}
	if got[201] != DefaultMaxCardsPerDevice || got[429] != tries-DefaultMaxCardsPerDevice {
		t.Errorf("statuses %v", got)
	}
}

func TestDefaultCardAndRemove(t *testing.T) {
	e := mustWallet(t)
	u := e.mustUser()
	first := e.mustCard(u, "green")
	second := e.mustCard(u, "green")
	d := e.call("PUT", "/v1/devices/"+u.deviceID+"/default-card", u.token, map[string]string{"cardId": second}).want(t, 200)
	if d.str("defaultCardId") != second {
		t.Fatalf("device %s", d.raw)
	}
	e.call("PUT", "/v1/devices/"+u.deviceID+"/default-card", u.token, map[string]string{"cardId": "card_nope"}).want(t, 404)

	r := e.call("DELETE", "/v1/cards/"+second, u.token, nil).want(t, 200)
	if r.str("default") == "true" {
		t.Errorf("a removed card stayed default")
	}
	var ref string
	if err := e.repo.db.DB.QueryRow(`SELECT token_ref FROM cards WHERE id = $1`, second).Scan(&ref); err != nil {
		t.Fatal(err)
	}
	if e.tsp.state(ref) != StateDeactivated {
		t.Errorf("token at the TSP is %s", e.tsp.state(ref))
	}
	l := e.call("GET", "/v1/devices/"+u.deviceID+"/cards", u.token, nil).want(t, 200)
	if l.str("defaultCardId") != first || len(l.body["cards"].([]any)) != 1 {
		t.Errorf("after removal %s", l.raw)
	}
	all := e.call("GET", "/v1/devices/"+u.deviceID+"/cards?includeRemoved=true", u.token, nil).want(t, 200)
	if len(all.body["cards"].([]any)) != 2 {
		t.Errorf("with removed %s", all.raw)
	}
	e.call("DELETE", "/v1/cards/"+second, u.token, nil).want(t, 409)
	e.call("PUT", "/v1/devices/"+u.deviceID+"/default-card", u.token, map[string]string{"cardId": second}).want(t, 404)
}

// TestNoCardDataStored checks that what the phone sent as card data never
// lands in the wallet's store.
func TestNoCardDataStored(t *testing.T) {
	e := mustWallet(t)
	u := e.mustUser()
	marker := "6250001234567894"
	e.call("POST", "/v1/devices/"+u.deviceID+"/cards", u.token,
		map[string]string{"encryptedCardData": base64.StdEncoding.EncodeToString([]byte(marker))}).want(t, 400)
	for _, table := range []string{"cards", "notifications", "transactions"} {
		rows, err := e.repo.db.DB.Query("SELECT * FROM " + table)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(fmt.Sprint(vals...), marker) {
				t.Errorf("%s holds the card number", table)
			}
		}
		rows.Close()
	}
}

func TestRemoveCardAlreadyDeletedAtTSP(t *testing.T) {
	e := mustWallet(t)
	u := e.mustUser()
	id := e.mustCard(u, "green")
	ref := e.tokenRef(id)
	e.tsp.mu.Lock()
	e.tsp.tokens[ref].state = StateDeactivated // the bank deleted it; its event has not arrived
	e.tsp.mu.Unlock()
	r := e.call("DELETE", "/v1/cards/"+id, u.token, nil).want(t, 200)
	if r.str("state") != StateDeactivated {
		t.Errorf("%s", r.raw)
	}
}

func TestStaleReservationFreesItsSlot(t *testing.T) {
	e := mustWallet(t)
	u := e.mustUser()
	for i := 0; i < DefaultMaxCardsPerDevice-1; i++ {
		e.mustCard(u, "green")
	}
	// A binding whose node died after reserving the 8th slot.
	dead := &Card{ID: "card_dead", DeviceID: u.deviceID, AccountID: u.accountID, Created: e.clock.Now()}
	if err := e.repo.reserveCard(t.Context(), dead, DefaultMaxCardsPerDevice, DefaultPendingBindingTTL); err != nil {
		t.Fatal(err)
	}
	e.call("POST", "/v1/devices/"+u.deviceID+"/cards", u.token, scenario("green")).want(t, 429)
	if l := e.call("GET", "/v1/devices/"+u.deviceID+"/cards", u.token, nil).want(t, 200); len(l.body["cards"].([]any)) != 7 {
		t.Errorf("a reservation is listed: %s", l.raw)
	}
	e.clock.Advance(DefaultPendingBindingTTL)
	e.signIn(u)
	e.call("POST", "/v1/devices/"+u.deviceID+"/cards", u.token, scenario("green")).want(t, 201)
	if n := e.rows("cards"); n != DefaultMaxCardsPerDevice {
		t.Errorf("%d card rows, the stale reservation is still there", n)
	}
}
