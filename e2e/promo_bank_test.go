package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/network"
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/phone"
)

// bankPromo calls the issuer host's campaign API with key (the bank staff's
// operator key) and answers the status and the JSON answer.
func (s *system) bankPromo(tb testing.TB, key, method, path string, body any) (int, map[string]any) {
	tb.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			tb.Fatal(err)
		}
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequest(method, s.url(node.RoleIssuer)+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func campaignIDs(tb testing.TB, list map[string]any) map[string]string {
	tb.Helper()
	out := map[string]string{}
	cs, _ := list["campaigns"].([]any)
	for _, c := range cs {
		m := c.(map[string]any)
		out[m["id"].(string)] = m["status"].(string)
	}
	return out
}

// A bank manages its own campaigns through its issuer host: create (bad
// definitions refused with 400 and nothing stored), list, pause, resume, end,
// statistics; another bank's staff can neither see nor touch them; a payment
// gets the new offer and shows in the statistics.
func TestBankManagesItsCampaigns(t *testing.T) {
	s := mustStart(t, "", nil)
	icbc, boc := s.bankKey(t, "icbc-debit"), s.bankKey(t, "boc-debit")
	base := "/v1/issuers/icbc-debit/campaigns"
	now := time.Now()
	def := func(id string) map[string]any {
		return map[string]any{
			"id": id, "name": "5 CNY off groceries", "currency": "CNY",
			"eligibility": map[string]any{"channel": "mipay", "mccs": []string{"5411"}, "minAmountMinor": 2000},
			"benefit":     map[string]any{"kind": "fixed", "amountMinor": 500},
			"limits":      map[string]any{"budgetMinor": 1500, "perCardPerDay": 1},
			"window":      map[string]any{"start": now.Add(-time.Hour), "end": now.Add(24 * time.Hour)},
		}
	}

	code, before := s.bankPromo(t, icbc, "GET", base, nil)
	if code != 200 {
		t.Fatalf("list: HTTP %d %v", code, before)
	}
	t.Run("bad definitions: 4xx, nothing stored", func(t *testing.T) {
		bad := map[string]func(map[string]any){
			"negative amount":  func(d map[string]any) { d["benefit"] = map[string]any{"kind": "fixed", "amountMinor": -500} },
			"end before start": func(d map[string]any) { d["window"] = map[string]any{"start": now, "end": now.Add(-time.Hour)} },
			"unknown currency": func(d map[string]any) { d["currency"] = "XYZ" },
			"negative budget":  func(d map[string]any) { d["limits"] = map[string]any{"budgetMinor": -1} },
			"unknown field":    func(d map[string]any) { d["discount"] = 5 },
		}
		for name, mutate := range bad {
			d := def("bad-" + name[:3])
			mutate(d)
			code, out := s.bankPromo(t, icbc, "POST", base, d)
			if code != http.StatusBadRequest {
				t.Errorf("%s: HTTP %d %v, want 400", name, code, out)
			}
		}
		if code, out := s.bankPromo(t, icbc, "POST", base, map[string]any{"id": "x", "issuerId": "boc-debit"}); code != http.StatusForbidden {
			t.Errorf("a campaign funded by another bank: HTTP %d %v", code, out)
		}
		_, after := s.bankPromo(t, icbc, "GET", base, nil)
		if a, b := campaignIDs(t, after), campaignIDs(t, before); len(a) != len(b) {
			t.Fatalf("bad definitions stored something: %v → %v", b, a)
		}
	})

	code, created := s.bankPromo(t, icbc, "POST", base, def("icbc-grocery-5off"))
	if code != http.StatusCreated || created["issuerId"] != "icbc-debit" || created["status"] != "active" {
		t.Fatalf("create: HTTP %d %v", code, created)
	}
	if code, _ := s.bankPromo(t, icbc, "POST", base, def("icbc-grocery-5off")); code != http.StatusConflict {
		t.Fatalf("create twice: HTTP %d", code)
	}
	_, list := s.bankPromo(t, icbc, "GET", base, nil)
	if ids := campaignIDs(t, list); ids["icbc-grocery-5off"] != "active" || ids["boc-credit-dining-10pct"] != "" {
		t.Fatalf("ICBC's list %v", ids)
	}

	t.Run("another bank can neither see nor touch it", func(t *testing.T) {
		_, list := s.bankPromo(t, boc, "GET", "/v1/issuers/boc-debit/campaigns", nil)
		if _, seen := campaignIDs(t, list)["icbc-grocery-5off"]; seen {
			t.Fatal("BOC lists ICBC's campaign")
		}
		for _, p := range []string{"/v1/issuers/boc-debit/campaigns/icbc-grocery-5off/pause", "/v1/issuers/boc-debit/campaigns/icbc-grocery-5off/end"} {
			if code, _ := s.bankPromo(t, boc, "POST", p, nil); code != http.StatusNotFound {
				t.Fatalf("%s with BOC's key: HTTP %d, want 404", p, code)
			}
		}
		if code, _ := s.bankPromo(t, boc, "GET", "/v1/issuers/boc-debit/campaigns/icbc-grocery-5off/stats", nil); code != http.StatusNotFound {
			t.Fatalf("BOC reads ICBC's stats: HTTP %d", code)
		}
		// BOC's key on ICBC's path: refused by the host's staff check.
		if code, _ := s.bankPromo(t, boc, "POST", base+"/icbc-grocery-5off/pause", nil); code != http.StatusForbidden {
			t.Fatalf("BOC's key on ICBC's path: HTTP %d", code)
		}
		if code, _ := s.bankPromo(t, "", "GET", base, nil); code != http.StatusUnauthorized {
			t.Fatalf("no key: HTTP %d", code)
		}
		// The switch itself refuses a forged member key.
		req, _ := http.NewRequest("GET", s.url(node.RoleNetwork)+"/v1/promo/campaigns", nil)
		req.Header.Set("Authorization", "Bearer forged")
		req.Header.Set(network.HeaderPromoIssuer, "icbc-debit")
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("forged member key at the switch: %v %v", resp.StatusCode, err)
		}
	})

	// A Mi Pay payment at a grocery gets the bank's new offer (the engine
	// loaded it when the bank created it).
	p, _ := s.boundPhone(t, "grocer", "icbc-debit", 0)
	link, term := s.answerTerminal(t, "GROC0201", "5411")
	if rec := tap(t, term, p, 3000, phone.FingerOK); rec.ResponseCode != "00" {
		t.Fatalf("receipt %+v", rec)
	}
	if f, err := iso8583.ParsePromotion(link.last(t).String(iso8583.FieldPromotion)); err != nil || f.CampaignID != "icbc-grocery-5off" {
		t.Fatalf("answer DE124 %+v %v", f, err)
	}
	code, st := s.bankPromo(t, icbc, "GET", base+"/icbc-grocery-5off/stats", nil)
	if code != 200 || st["redemptions"] != 1.0 || st["budgetUsedMinor"] != 500.0 {
		t.Fatalf("stats: HTTP %d %v", code, st)
	}

	for _, step := range []struct{ action, status string }{{"pause", "paused"}, {"resume", "active"}, {"end", "ended"}} {
		code, out := s.bankPromo(t, icbc, "POST", base+"/icbc-grocery-5off/"+step.action, nil)
		if code != 200 || out["status"] != step.status {
			t.Fatalf("%s: HTTP %d %v", step.action, code, out)
		}
	}
	if code, _ := s.bankPromo(t, icbc, "POST", base+"/icbc-grocery-5off/resume", nil); code != http.StatusConflict {
		t.Fatalf("resume after end: HTTP %d", code)
	}
	// Ended: the next grocery payment pays in full.
	p2, _ := s.boundPhone(t, "grocer2", "icbc-debit", 1)
	if rec := tap(t, term, p2, 3000, phone.FingerOK); rec.ResponseCode != "00" {
		t.Fatalf("receipt %+v", rec)
	}
	if link.last(t).Has(iso8583.FieldPromotion) {
		t.Fatal("an ended campaign still discounts")
	}
	s.ledgerOK(t)
}
