package issuer

import (
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/mipay-oss/mipay/httpx"
)

func TestHTTPAccountsAndLedger(t *testing.T) {
	th := MustOpenHost(t)
	srv := httptest.NewServer(httpx.Handler("issuer", th.Handler(), slog.New(slog.DiscardHandler), nil))
	defer srv.Close()
	poor := th.cards["poor"]
	cases := []struct {
		name, path string
		status     int
	}{
		{"found", "/v1/issuers/icbc-debit/accounts/" + poor.PAN[len(poor.PAN)-4:], 200},
		{"other bank", "/v1/issuers/icbc-credit/accounts/" + poor.PAN[len(poor.PAN)-4:], 404},
		{"not 4 digits", "/v1/issuers/icbc-debit/accounts/12a4", 400},
		{"full PAN refused", "/v1/issuers/icbc-debit/accounts/" + poor.PAN, 400},
		{"unknown issuer", "/v1/issuers/nobank/accounts/1234", 404},
		{"ledger", "/v1/admin/ledger/check", 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out map[string]any
			if st := call(t, "GET", srv.URL+c.path, nil, &out); st != c.status {
				t.Fatalf("%d %v; want %d", st, out, c.status)
			}
		})
	}
	t.Run("answers never hold the PAN", func(t *testing.T) {
		var out struct {
			Accounts []AccountView `json:"accounts"`
		}
		call(t, "GET", srv.URL+"/v1/issuers/icbc-debit/accounts/"+poor.PAN[len(poor.PAN)-4:], nil, &out)
		if len(out.Accounts) != 1 || out.Accounts[0].PAN == poor.PAN || out.Accounts[0].PAN[:6] != poor.PAN[:6] {
			t.Fatalf("%+v", out)
		}
	})
}
