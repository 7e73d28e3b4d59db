package wallet

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// fixture is an account with a device, an ACTIVE card, an INACTIVE card and
// a queued command, and the ids to put in every route's path.
type fixture struct {
	u                          *user
	activeCard, pendingCard    string
	commandID                  string
	tspCalls, cards, locations int
}

func (e *env) mustFixture() *fixture {
	e.t.Helper()
	u := e.mustUser()
	f := &fixture{u: u, activeCard: e.mustCard(u, "green"), pendingCard: e.mustCard(u, "yellow")}
	c := e.call("POST", "/v1/devices/"+u.deviceID+"/commands", u.token, map[string]string{"kind": "RING"}).want(e.t, 202)
	f.commandID = c.str("id")
	return f
}

// path fills a route's pattern with the fixture's ids.
func (f *fixture) path(pattern string) string {
	p := strings.ReplaceAll(pattern, "{commandId}", f.commandID)
	switch {
	case strings.HasPrefix(p, "/v1/portal/challenges/{id}"):
		p = strings.Replace(p, "{id}", "chl_unknown", 1)
	case strings.HasPrefix(p, "/v1/devices/{id}"):
		p = strings.Replace(p, "{id}", f.u.deviceID, 1)
	case strings.HasPrefix(p, "/v1/cards/{id}/otp"):
		p = strings.Replace(p, "{id}", f.pendingCard, 1)
	case strings.HasPrefix(p, "/v1/cards/{id}"):
		p = strings.Replace(p, "{id}", f.activeCard, 1)
	}
	return p
}

// bodySpec is a valid body of a route and which of its fields are required.
type bodySpec struct {
	valid    map[string]any
	required []string
	optional bool // the whole body may be left out
}

func (f *fixture) bodies() map[string]bodySpec {
	return map[string]bodySpec{
		"POST /v1/accounts": {valid: map[string]any{"phone": "13500135000", "email": "new@example.com", "password": "correct horse"},
			required: []string{"phone", "email", "password"}},
		"POST /v1/sessions": {valid: map[string]any{"login": "13500135999", "password": "correct horse"},
			required: []string{"login", "password"}},
		"POST /v1/devices": {valid: map[string]any{"model": "X", "seId": "SE-X", "sePublicKey": "BA==", "certificateChain": []string{"MA=="}, "fingerprintEnrolled": true},
			required: []string{"model", "seId", "sePublicKey", "certificateChain", "fingerprintEnrolled"}},
		"PUT /v1/devices/{id}/fingerprint":                  {valid: map[string]any{"enrolled": false}, required: []string{"enrolled"}},
		"POST /v1/devices/{id}/cards":                       {valid: map[string]any{"encryptedCardData": scenario("green")["encryptedCardData"]}, required: []string{"encryptedCardData"}},
		"PUT /v1/devices/{id}/default-card":                 {valid: map[string]any{"cardId": f.activeCard}, required: []string{"cardId"}},
		"POST /v1/devices/{id}/locations":                   {valid: map[string]any{"latitude": 39.9, "longitude": 116.4, "accuracyMeters": 20.0}, required: []string{"latitude", "longitude"}},
		"POST /v1/devices/{id}/commands":                    {valid: map[string]any{"kind": "WIPE"}, required: []string{"kind"}},
		"POST /v1/devices/{id}/sync":                        {valid: map[string]any{"location": map[string]any{"latitude": 1.0, "longitude": 2.0}}, optional: true},
		"POST /v1/devices/{id}/commands/{commandId}/result": {valid: map[string]any{"ok": true, "result": "rang"}, required: []string{"ok"}},
		"POST /v1/cards/{id}/otp":                           {valid: map[string]any{"methodId": "sms-1"}, required: []string{"methodId"}},
		"POST /v1/cards/{id}/otp/verify":                    {valid: map[string]any{"code": fakeOTP}, required: []string{"code"}},
		"POST /v1/cards/{id}/provisioned":                   {valid: map[string]any{}, optional: true},
		"POST /v1/portal/challenges": {valid: map[string]any{"login": "13500135998", "password": "correct horse"},
			required: []string{"login", "password"}},
		// Either code will do, so neither is required on its own.
		"POST /v1/portal/challenges/{id}/verify": {valid: map[string]any{"emailCode": "123456"}},
		"POST /v1/cards/{id}/suspend":            {valid: map[string]any{"reason": "LOST_WALLET"}, optional: true},
		"POST /v1/cards/{id}/resume":             {valid: map[string]any{"reason": "FOUND_WALLET"}, optional: true},
		"POST /v1/devices/{id}/switch-off":       {valid: map[string]any{"reason": "DEVICE_LOST"}, optional: true},
		"POST /v1/devices/{id}/found":            {valid: map[string]any{"reason": "FOUND"}, optional: true},
	}
}

// snapshot is what must not change when a request is refused.
type snapshot struct {
	tsp  int
	rows map[string]int
	card string
}

func (e *env) snapshot(f *fixture) snapshot {
	s := snapshot{tsp: e.tsp.count(), rows: map[string]int{}}
	for _, t := range []string{"accounts", "devices", "cards", "transactions", "notifications", "locations", "commands", "recovery_codes"} {
		s.rows[t] = e.rows(t)
	}
	var fp, def string
	_ = e.repo.db.DB.QueryRow(`SELECT fingerprint_enrolled, default_card_id FROM devices WHERE id = $1`, f.u.deviceID).Scan(&fp, &def)
	var states []string
	rows, _ := e.repo.db.DB.Query(`SELECT id || state || provisioned FROM cards ORDER BY id`)
	for rows.Next() {
		var v string
		_ = rows.Scan(&v)
		states = append(states, v)
	}
	rows.Close()
	var cmd string
	_ = e.repo.db.DB.QueryRow(`SELECT state FROM commands WHERE id = $1`, f.commandID).Scan(&cmd)
	s.card = fp + "|" + def + "|" + strings.Join(states, ",") + "|" + cmd
	return s
}

func (a snapshot) same(b snapshot) bool {
	return a.tsp == b.tsp && maps.Equal(a.rows, b.rows) && a.card == b.card
}

// TestOwnership: another signed-in account gets 404 on every endpoint that
// names this account's device, card or command, and nothing changes.
func TestOwnership(t *testing.T) {
	e := mustWallet(t)
	f := e.mustFixture()
	other := e.mustUser()
	otherCard := e.mustCard(other, "green")
	bodies := f.bodies()
	before := e.snapshot(f)
	for _, rt := range NewAPI(e.svc).routes() {
		if !rt.auth || !strings.Contains(rt.path, "{") {
			continue // public routes belong to no account
		}
		key := rt.method + " " + rt.path
		t.Run(key, func(t *testing.T) {
			var body any
			if b, ok := bodies[key]; ok {
				body = b.valid
			} else if rt.method == "POST" || rt.method == "PUT" {
				t.Fatalf("no valid body for %s: add one to fixture.bodies", key)
			}
			a := e.call(rt.method, f.path(rt.path), other.token, body).want(t, 404)
			if a.errCode() != "not_found" {
				t.Errorf("code %q", a.errCode())
			}
		})
	}
	t.Run("own device, other's card", func(t *testing.T) {
		e.call("PUT", "/v1/devices/"+other.deviceID+"/default-card", other.token, map[string]string{"cardId": f.activeCard}).want(t, 404)
	})
	t.Run("own device, other's command", func(t *testing.T) {
		e.call("POST", "/v1/devices/"+other.deviceID+"/commands/"+f.commandID+"/result", other.token, map[string]any{"ok": true}).want(t, 404)
	})
	t.Run("lists show only own", func(t *testing.T) {
		a := e.call("GET", "/v1/devices", other.token, nil).want(t, 200)
		if strings.Contains(string(a.raw), f.u.deviceID) || !strings.Contains(string(a.raw), other.deviceID) {
			t.Errorf("devices %s", a.raw)
		}
	})
	if after := e.snapshot(f); !after.same(before) {
		t.Errorf("another account's requests changed something:\nbefore %+v\nafter  %+v", before, after)
	}
	// The owner still can.
	e.call("GET", "/v1/cards/"+f.activeCard, f.u.token, nil).want(t, 200)
	e.call("GET", "/v1/cards/"+otherCard, f.u.token, nil).want(t, 404)
}

// wrongType returns a JSON value of another type than v.
func wrongType(v any) any {
	switch v.(type) {
	case string:
		return 12345
	case bool:
		return "yes"
	case float64, int:
		return "north"
	case []string:
		return "not-an-array"
	default:
		return []int{1}
	}
}

// TestBadInput: every endpoint with a body refuses malformed JSON, a huge
// body, unknown fields, wrong types and missing fields with a 4xx and a
// clear message, and stores nothing.
func TestBadInput(t *testing.T) {
	e := mustWallet(t)
	f := e.mustFixture()
	bodies := f.bodies()
	before := e.snapshot(f)
	huge := `{"x":"` + strings.Repeat("a", MaxRequestBytes) + `"}`
	for _, rt := range NewAPI(e.svc).routes() {
		if rt.method != "POST" && rt.method != "PUT" {
			continue
		}
		key := rt.method + " " + rt.path
		spec, ok := bodies[key]
		if !ok {
			t.Errorf("no body spec for %s: add one to fixture.bodies", key)
			continue
		}
		path := f.path(rt.path)
		token := f.u.token
		check := func(t *testing.T, body any, status int, wantInMsg string) {
			t.Helper()
			a := e.call(rt.method, path, token, body).want(t, status)
			if a.errMsg() == "" || (wantInMsg != "" && !strings.Contains(a.errMsg(), wantInMsg)) {
				t.Errorf("message %q should mention %q", a.errMsg(), wantInMsg)
			}
		}
		t.Run(key, func(t *testing.T) {
			t.Run("malformed JSON", func(t *testing.T) { check(t, `{"a":`, 400, "JSON") })
			t.Run("not an object", func(t *testing.T) { check(t, `[1,2]`, 400, "body") })
			t.Run("two values", func(t *testing.T) { check(t, `{} {}`, 400, "single") })
			t.Run("huge body", func(t *testing.T) { check(t, huge, 413, "larger than") })
			t.Run("unknown field", func(t *testing.T) {
				b := maps.Clone(spec.valid)
				b["surprise"] = 1
				check(t, b, 400, "surprise")
			})
			for _, field := range slices.Sorted(maps.Keys(spec.valid)) {
				t.Run("wrong type "+field, func(t *testing.T) {
					b := maps.Clone(spec.valid)
					b[field] = wrongType(spec.valid[field])
					check(t, b, 400, field)
				})
			}
			for _, field := range spec.required {
				t.Run("missing "+field, func(t *testing.T) {
					b := maps.Clone(spec.valid)
					delete(b, field)
					check(t, b, 400, field)
				})
			}
			if !spec.optional {
				t.Run("empty body", func(t *testing.T) { check(t, "", 400, "empty") })
			}
			t.Run("wrong content type", func(t *testing.T) {
				b, _ := json.Marshal(spec.valid)
				req, _ := http.NewRequest(rt.method, e.url+path, strings.NewReader(string(b)))
				req.Header.Set("Content-Type", "text/plain")
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 400 {
					t.Errorf("status %d", resp.StatusCode)
				}
			})
		})
	}
	t.Run("query parameters", func(t *testing.T) {
		d, c := "/v1/devices/"+f.u.deviceID, "/v1/cards/"+f.activeCard
		for _, p := range []string{
			d + "/notifications?after=-1", d + "/notifications?after=x", d + "/notifications?wait=forever",
			d + "/notifications?wait=2h", d + "/notifications/stream?after=x", d + "/cards?includeRemoved=maybe",
			d + "/locations?limit=0", d + "/locations?limit=100000", c + "/transactions?limit=-3",
			c + "/transactions?before=yesterday",
		} {
			a := e.call("GET", p, f.u.token, nil).want(t, 400)
			if a.errMsg() == "" {
				t.Errorf("%s: no message", p)
			}
		}
	})
	t.Run("field values", func(t *testing.T) {
		d := "/v1/devices/" + f.u.deviceID
		for _, tc := range []struct {
			path string
			body any
		}{
			{d + "/locations", map[string]any{"latitude": 91.0, "longitude": 0.0}},
			{d + "/locations", map[string]any{"latitude": 0.0, "longitude": -181.0}},
			{d + "/locations", map[string]any{"latitude": 0.0, "longitude": 0.0, "accuracyMeters": -1.0}},
			{d + "/locations", map[string]any{"latitude": 0.0, "longitude": 0.0, "time": "2001-01-01T00:00:00Z"}},
			{d + "/commands", map[string]any{"kind": "EXPLODE"}},
			{d + "/cards", map[string]any{"encryptedCardData": "not base64!"}},
			{"/v1/cards/" + f.pendingCard + "/otp/verify", map[string]any{"code": "12ab"}},
			{"/v1/cards/" + f.pendingCard + "/otp/verify", map[string]any{"code": "1234567890123"}},
			{"/v1/devices", map[string]any{"model": strings.Repeat("m", 200), "seId": "S", "sePublicKey": "BA==", "certificateChain": []string{"MA=="}, "fingerprintEnrolled": true}},
			{"/v1/devices", map[string]any{"model": "M", "seId": "S", "sePublicKey": "BA==", "certificateChain": []string{"MA==", "MA==", "MA==", "MA==", "MA=="}, "fingerprintEnrolled": true}},
		} {
			method := "POST"
			e.call(method, tc.path, f.u.token, tc.body).want(t, 400)
		}
		e.call("POST", d+"/cards", f.u.token, map[string]any{"encryptedCardData": strings.Repeat("A", MaxEncryptedCardDataBytes+4)}).want(t, 413)
		e.call("GET", "/v1/cards/"+strings.Repeat("z", 500), f.u.token, nil).want(t, 404)
	})
	if after := e.snapshot(f); !after.same(before) {
		t.Errorf("refused requests changed something:\nbefore %+v\nafter  %+v", before, after)
	}
}

func TestUnknownEndpoint(t *testing.T) {
	e := mustWallet(t)
	a := e.call("GET", "/v1/nothing", "", nil).want(t, 404)
	if a.errCode() != "not_found" {
		t.Errorf("%s", a.raw)
	}
}

// TestOpenAPIMatchesRoutes: every route of the mux is in /openapi.json with
// its method, and the document lists nothing else.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	e := mustWallet(t)
	a := e.call("GET", "/openapi.json", "", nil).want(t, 200)
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(a.raw, &doc); err != nil || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("not an OpenAPI 3 document: %v", err)
	}
	inDoc := map[string]bool{}
	for p, ops := range doc.Paths {
		for m := range ops {
			if m == "parameters" {
				continue
			}
			inDoc[strings.ToUpper(m)+" "+p] = true
		}
	}
	inMux := map[string]bool{}
	for _, rt := range NewAPI(e.svc).routes() {
		key := rt.method + " " + rt.path
		inMux[key] = true
		if !inDoc[key] {
			t.Errorf("route %s is not in openapi.json", key)
		}
	}
	for key := range inDoc {
		if !inMux[key] {
			t.Errorf("openapi.json lists %s, which the mux does not serve", key)
		}
	}
	// Every operation that needs no session says so, and no other does.
	for _, rt := range NewAPI(e.svc).routes() {
		var op struct {
			Security *[]any `json:"security"`
		}
		_ = json.Unmarshal(doc.Paths[rt.path][strings.ToLower(rt.method)], &op)
		public := op.Security != nil && len(*op.Security) == 0
		if public == rt.auth {
			t.Errorf("%s %s: auth %v but the document says public=%v", rt.method, rt.path, rt.auth, public)
		}
	}
}

func TestWrongMethod(t *testing.T) {
	e := mustWallet(t)
	a := e.call("PATCH", "/v1/devices", "", nil).want(t, 405)
	if a.errCode() != "invalid" || !strings.Contains(a.errMsg(), "GET") || !strings.Contains(a.errMsg(), "POST") {
		t.Errorf("%s", a.raw)
	}
	e.call("GET", "/v1/sessions", "", nil).want(t, 405)
}
