package issuer

import (
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/mipay-oss/mipay/httpx"
)

func TestHTTPAccountsAndLedger(t *testing.T) {
	th := MustOpenHost(t)
	key, credit := th.withOperatorKeys(t, "icbc-debit", "icbc-credit")
	srv := httptest.NewServer(httpx.Handler("issuer", th.Handler(), slog.New(slog.DiscardHandler), nil))
	defer srv.Close()
	poor := th.cards["poor"]
	cases := []struct {
		name, key, path string
		status          int
	}{
		{"found", key, "/v1/issuers/icbc-debit/accounts/" + poor.PAN[len(poor.PAN)-4:], 200},
		{"other bank's card", credit, "/v1/issuers/icbc-credit/accounts/" + poor.PAN[len(poor.PAN)-4:], 404},
		{"not 4 digits", key, "/v1/issuers/icbc-debit/accounts/12a4", 400},
		{"full PAN refused", key, "/v1/issuers/icbc-debit/accounts/" + poor.PAN, 400},
		{"unknown issuer", key, "/v1/issuers/nobank/accounts/1234", 403},
		{"no key", "", "/v1/issuers/icbc-debit/accounts/" + poor.PAN[len(poor.PAN)-4:], 401},
		{"ledger", "", "/v1/admin/ledger/check", 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out map[string]any
			if st := callAs(t, c.key, "GET", srv.URL+c.path, nil, &out); st != c.status {
				t.Fatalf("%d %v; want %d", st, out, c.status)
			}
		})
	}
	t.Run("answers never hold the PAN", func(t *testing.T) {
		var out struct {
			Accounts []AccountView `json:"accounts"`
		}
		callAs(t, key, "GET", srv.URL+"/v1/issuers/icbc-debit/accounts/"+poor.PAN[len(poor.PAN)-4:], nil, &out)
		if len(out.Accounts) != 1 || out.Accounts[0].PAN == poor.PAN || out.Accounts[0].PAN[:6] != poor.PAN[:6] {
			t.Fatalf("%+v", out)
		}
	})
}
