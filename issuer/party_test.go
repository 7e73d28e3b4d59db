package issuer

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/hsm"
	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/sms"
	"github.com/mipay-oss/mipay/store/storetest"
)

// parties is an sms gateway and an issuer host started as `mipay up` starts
// them, on loopback ports.
type parties struct {
	issuer *Party
	sms    node.Party
	cards  map[string]testCard
	logs   *bytes.Buffer
	dir    string
}

// MustStartParties starts the sms and issuer parties over fresh stores with
// the soft HSM.
func MustStartParties(t *testing.T) *parties {
	t.Helper()
	ctx := context.Background()
	cfg := storetest.Config(t)
	soft, err := hsm.OpenSoft(ctx, hsm.SoftConfig{Dir: filepath.Join(cfg.Dir, "hsm")})
	if err != nil {
		t.Fatal(err)
	}
	ref, cards := testRef(t)
	logs := &bytes.Buffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	smsParty, err := sms.Start(ctx, &node.Env{Role: node.RoleSMS, DataDir: cfg.Dir, Store: cfg, HSM: soft, Log: log, Ref: ref,
		Listen: map[string]string{"http": "127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { smsParty.Close(context.Background()) })
	p, err := StartParty(ctx, &node.Env{Role: node.RoleIssuer, DataDir: cfg.Dir, Store: cfg, HSM: soft, Log: log, Ref: ref,
		Listen: map[string]string{"http": "127.0.0.1:0", "iso8583": "127.0.0.1:0"},
		Peers:  map[string]map[string]string{node.RoleSMS: {"http": smsParty.Addrs()["http"]}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(context.Background()); err != nil {
			t.Errorf("close issuer: %v", err)
		}
	})
	return &parties{issuer: p, sms: smsParty, cards: cards, logs: logs, dir: cfg.Dir}
}

func call(t *testing.T, method, url string, in any, out any) int {
	t.Helper()
	return callAs(t, "", method, url, in, out)
}

// callAs is call with a bank operator key as the bearer ("" sends none).
func callAs(t *testing.T, key, method, url string, in any, out any) int {
	t.Helper()
	var body io.Reader
	switch v := in.(type) {
	case nil:
	case string:
		body = strings.NewReader(v)
	default:
		b, _ := json.Marshal(v)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, body)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %d %q", method, url, resp.StatusCode, b)
		}
	}
	return resp.StatusCode
}

func TestPartiesBindingOverHTTP(t *testing.T) {
	p := MustStartParties(t)
	base := p.issuer.Addrs()["http"] + "/v1/issuers/"
	yellow := p.cards["yellow"]
	req := DecisionRequest{PAN: yellow.PAN, Expiry: yellow.Expiry, CVN2: yellow.CVN2, Phone: yellow.Phone, DeviceID: "dev-1",
		SEID: "se-1", TokenRequestorID: miPay, AccountAgeDays: 1, DeviceScore: 4}
	var d Decision
	if st := call(t, "POST", base+"boc-credit/tokenization-decisions", req, &d); st != 200 || d.Decision != DecisionRequireAA {
		t.Fatalf("decision %d %+v", st, d)
	}
	var sent OTPSent
	if st := call(t, "POST", base+"boc-credit/otp", map[string]string{"decisionId": d.DecisionID, "methodId": "sms-1"}, &sent); st != 200 {
		t.Fatalf("otp send %d", st)
	}
	// The handset reads its SMS from the gateway's outbox.
	var outbox struct {
		Messages []sms.Message `json:"messages"`
	}
	call(t, "GET", p.sms.Addrs()["http"]+"/v1/outbox/"+yellow.Phone, nil, &outbox)
	if len(outbox.Messages) != 1 || outbox.Messages[0].Sender != "BOC" {
		t.Fatalf("outbox %+v", outbox)
	}
	code := codeIn(t, outbox.Messages[0].Text)
	var v OTPVerdict
	if st := call(t, "POST", base+"boc-credit/otp/verify", map[string]string{"decisionId": d.DecisionID, "code": code}, &v); st != 200 || v.Result != OTPVerified {
		t.Fatalf("verify %d %+v", st, v)
	}
	if st := call(t, "POST", base+"boc-credit/token-notices", TokenNotice{TokenRef: "DNITHE9", DecisionID: d.DecisionID,
		PANLast4: d.PANLast4, Event: "TOKEN_CREATED", State: "ACTIVE"}, nil); st != http.StatusAccepted {
		t.Fatalf("notice %d", st)
	}
	var list struct {
		Issuers []issuerInfo `json:"issuers"`
	}
	if call(t, "GET", p.issuer.Addrs()["http"]+"/v1/issuers", nil, &list); len(list.Issuers) != 32 {
		t.Fatalf("%d issuers", len(list.Issuers))
	}

	t.Run("bad input", func(t *testing.T) {
		cases := []struct {
			name, path, body string
			status           int
		}{
			{"malformed", "icbc-credit/tokenization-decisions", `{"pan":`, 400},
			{"unknown field", "icbc-credit/tokenization-decisions", `{"pan":"1","x":1}`, 400},
			{"wrong type", "icbc-credit/tokenization-decisions", `{"pan":6250}`, 400},
			{"missing fields", "icbc-credit/tokenization-decisions", `{}`, 400},
			{"huge", "icbc-credit/tokenization-decisions", `{"name":"` + strings.Repeat("x", maxBodyBytes) + `"}`, 413},
			{"unknown issuer", "nobank/tokenization-decisions", `{}`, 404},
			{"otp unknown decision", "boc-credit/otp", `{"decisionId":"dcs_x","methodId":"sms-1"}`, 404},
			{"verify bad code", "boc-credit/otp/verify", `{"decisionId":"dcs_x","code":"abc"}`, 400},
			{"notice bad", "boc-credit/token-notices", `{"tokenRef":""}`, 400},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				var e struct {
					Error struct{ Code, Message string } `json:"error"`
				}
				if st := call(t, "POST", base+c.path, c.body, &e); st != c.status || e.Error.Message == "" {
					t.Fatalf("%d %+v; want %d", st, e, c.status)
				}
			})
		}
	})

	t.Run("authorization over ISO 8583", func(t *testing.T) {
		cl, err := iso8583.Dial(context.Background(), iso8583.ClientConfig{Addr: p.issuer.Addrs()["iso8583"], RequestTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		th := &testHost{Host: p.issuer.Host, cards: p.cards, clock: &clock{t: time.Now()}}
		r := th.auth("debit", 12_50)
		resp, err := cl.Send(context.Background(), isoAuth(t, r, nil))
		if err != nil || resp.String(iso8583.FieldResponseCode) != "00" {
			t.Fatalf("%v %v", resp, err)
		}
		var acc struct {
			Accounts []AccountView `json:"accounts"`
		}
		debit := p.cards["debit"]
		key, err := ReadOperatorKey(filepath.Join(p.dir, "issuer", OperatorKeyDir), "icbc-debit")
		if err != nil {
			t.Fatal(err)
		}
		callAs(t, key, "GET", base+"icbc-debit/accounts/"+debit.PAN[len(debit.PAN)-4:], nil, &acc)
		if len(acc.Accounts) != 1 || acc.Accounts[0].HeldMinor != 12_50 || acc.Accounts[0].AvailableMinor != debit.BalanceMinor-12_50 ||
			acc.Accounts[0].PAN != debit.PAN[:6]+"******"+debit.PAN[12:] {
			t.Fatalf("accounts %+v", acc)
		}
		var rep LedgerReport
		if st := call(t, "GET", p.issuer.Addrs()["http"]+"/v1/admin/ledger/check", nil, &rep); st != 200 || !rep.OK || rep.Approvals != 1 {
			t.Fatalf("ledger check %d %+v", st, rep)
		}
	})

	t.Run("no PAN in logs or store files", func(t *testing.T) {
		p.issuer.Host.w.Close() // flush; the party's Close at cleanup tolerates it
		files, _ := filepath.Glob(filepath.Join(p.dir, "*.db*"))
		if len(files) == 0 && storetest.Postgres() == "" {
			t.Fatal("no store files found")
		}
		for _, c := range p.cards {
			for _, f := range files {
				b, _ := os.ReadFile(f)
				if bytes.Contains(b, []byte(c.PAN)) {
					t.Fatalf("PAN %s… in %s", c.PAN[:6], filepath.Base(f))
				}
				if c.CVN2 != "" && bytes.Contains(b, []byte(c.PAN[len(c.PAN)-4:]+c.CVN2)) {
					t.Fatalf("CVN2 in %s", filepath.Base(f))
				}
			}
			if strings.Contains(p.logs.String(), c.PAN) {
				t.Fatalf("PAN in logs")
			}
		}
		if strings.Contains(p.logs.String(), code) {
			t.Fatalf("OTP in logs")
		}
	})
}
