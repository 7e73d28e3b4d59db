package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/phone"
	"github.com/mipay-oss/mipay/transit"
	"github.com/mipay-oss/mipay/transit/gate"
	"github.com/mipay-oss/mipay/transit/transittest"
)

// TestPortalFoundItLiftsTransitHotlist: the portal's switch-off hotlists the
// phone's transit card (a gate refuses it after its hotlist sync); "found
// it" takes it off the hotlist again and the gate lets the phone through
// after its next sync.
func TestPortalFoundItLiftsTransitHotlist(t *testing.T) {
	ctx := context.Background()
	s := mustStart(t, "", nil)
	o := s.newOwner(t, "found-transit", "icbc-debit", 0)
	agency := s.url(node.RoleTransit)
	tc, err := o.p.TransitIssue(ctx, phone.TransitIssueOptions{Agency: agency, City: "sz", Finger: phone.FingerOK})
	if err != nil {
		t.Fatalf("transit card: %v", err)
	}
	if _, err := o.p.TransitTopUp(ctx, phone.TransitTopUpOptions{Agency: agency, CardNumber: tc.CardNumber, AmountMinor: 2000, Finger: phone.FingerOK}); err != nil {
		t.Fatalf("top up: %v", err)
	}
	token, err := transit.OperatorToken(s.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	city, _ := s.ref.City("sz")
	cfg := gate.Config{DataDir: t.TempDir(), City: city, Station: "bus-1", Mode: gate.ModeBus, Agency: agency, OperatorToken: token}
	if _, err := gate.Provision(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	g, err := gate.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	tapGate := func() gate.Result {
		t.Helper()
		r, err := g.Process(ctx, transittest.SECard{S: o.p.SE()})
		if err != nil {
			t.Fatalf("gate: %v", err)
		}
		return r
	}
	if r := tapGate(); !r.Open {
		t.Fatalf("before the switch-off: %+v", r)
	}

	dev := o.p.DeviceID()
	b := s.newBrowser(t)
	b.signIn(s, o)
	b.want(200, b.get("/portal/devices/"+dev+"/switch-off"))
	b.want(200, b.post("/portal/devices/"+dev+"/switch-off", b.csrf()), "1 transit card(s) blocked")
	if _, err := g.RefreshHotlist(ctx); err != nil {
		t.Fatal(err)
	}
	if r := tapGate(); r.Open || !strings.Contains(r.Reason, "hotlisted") {
		t.Fatalf("switched-off phone at the gate: %+v", r)
	}

	b.want(200, b.get("/portal/devices/"+dev+"/found"))
	b.post("/portal/devices/"+dev+"/found", b.csrf())
	if strings.Contains(b.page, "Sign in again") {
		b.want(200, b.post("/portal/signin", b.csrf(), "login", o.login, "password", portalPassword), "Second step")
		b.want(200, b.post("/portal/verify", b.csrf(), "emailCode", s.lastEmailCode(t, o.email)))
	}
	if c, err := o.p.TransitCards(ctx, agency); err != nil || len(c) != 1 || c[0].Status != transit.CardActive {
		t.Fatalf("transit card after found it: %+v %v\n%s", c, err, b.page)
	}
	if _, err := g.RefreshHotlist(ctx); err != nil {
		t.Fatal(err)
	}
	if r := tapGate(); !r.Open || r.ChargedMinor != city.BusFareMinor {
		t.Fatalf("found phone at the gate: %+v", r)
	}
}
