package promo

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestOffersForACard(t *testing.T) {
	clk := newClock(testNow)
	e, _ := MustOpenEngine(t, clk.Now)
	dining := fixedCampaign("dining", 1000, 100_000)
	dining.Eligibility.MCCs = []string{"5812"}
	dining.Eligibility.Channel = ChannelMiPay
	mustCreate(t, e, dining)
	credit := fixedCampaign("credit-only", 500, 100_000)
	credit.Eligibility.CardType = "Credit"
	mustCreate(t, e, credit)
	binned := fixedCampaign("binned", 500, 100_000)
	binned.Eligibility.BINRanges = []BINRange{{Low: "622126", High: "622126"}}
	mustCreate(t, e, binned)
	later := fixedCampaign("later", 500, 100_000)
	later.Window.Start = testNow.Add(48 * time.Hour)
	mustCreate(t, e, later)
	paused := fixedCampaign("paused", 500, 100_000)
	paused.Status = StatusPaused
	mustCreate(t, e, paused)

	srv := httptest.NewServer(e.OffersHandler())
	defer srv.Close()
	get := func(query string) (int, []Offer) {
		resp, err := http.Get(srv.URL + "/v1/promo/offers?" + query)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct{ Offers []Offer }
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out.Offers
	}
	ids := func(os []Offer) map[string]bool {
		m := map[string]bool{}
		for _, o := range os {
			m[o.CampaignID] = true
		}
		return m
	}
	code, os := get("issuerId=icbc-debit&cardType=DEBIT&channel=mipay")
	if got := ids(os); code != 200 || len(got) != 1 || !got["dining"] {
		t.Fatalf("a Mi Pay debit card: HTTP %d %v", code, got)
	}
	if os[0].MinAmountMinor != 0 || len(os[0].MCCs) != 1 || os[0].BankName != "ICBC" {
		t.Fatalf("offer %+v", os[0])
	}
	if _, os := get("issuerId=icbc-debit&cardType=Debit"); len(os) != 0 {
		t.Fatalf("a plain card got a Mi Pay offer: %v", ids(os))
	}
	if _, os := get("issuerId=icbc-debit&cardType=Credit&channel=mipay&bin=62212612"); !ids(os)["credit-only"] || !ids(os)["binned"] {
		t.Fatalf("a credit card in the BIN range: %v", ids(os))
	}
	if _, os := get("issuerId=boc-debit&cardType=Debit&channel=mipay"); len(os) != 0 {
		t.Fatalf("another bank's card got ICBC offers: %v", ids(os))
	}
	for _, bad := range []string{"", "issuerId=icbc-debit&bin=6212261234567890", "issuerId=icbc-debit&cardType=Gold", "issuerId=icbc-debit&channel=nfc"} {
		if code, _ := get(bad); code != http.StatusBadRequest {
			t.Errorf("query %q: HTTP %d, want 400", bad, code)
		}
	}
}
