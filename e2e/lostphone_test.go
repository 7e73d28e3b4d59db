package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/phone"
	"github.com/mipay-oss/mipay/portal"
)

// portalPassword is the password of the lost-phone tests' accounts.
const portalPassword = "correct horse battery staple"

// owner is a phone's owner as the portal tests know them.
type owner struct {
	p        *phone.Phone
	email    string
	login    string
	recovery []string
}

// newOwner registers an account with a known e-mail on a new phone, signs
// in and enrolls a finger; with issuerID it also binds that bank's demo
// cardholder i's card (ACTIVE).
func (s *system) newOwner(tb testing.TB, name, issuerID string, i int) *owner {
	tb.Helper()
	ctx := context.Background()
	p := s.newPhone(tb, name)
	o := &owner{p: p, email: fmt.Sprintf("%s-%d@example.com", name, time.Now().UnixNano())}
	var card phone.CardDetails
	number := fmt.Sprintf("1390000%04d", time.Now().UnixNano()%10000)
	if issuerID != "" {
		card = cardOf(s, tb, issuerID, i)
		number = card.Phone
	}
	o.login = number
	codes, err := p.Register(ctx, number, o.email, portalPassword)
	if err != nil {
		tb.Fatalf("register: %v", err)
	}
	o.recovery = codes
	if err := p.Login(ctx, number, portalPassword); err != nil {
		tb.Fatalf("login: %v", err)
	}
	if err := p.EnrollFinger(ctx); err != nil {
		tb.Fatalf("enroll: %v", err)
	}
	if issuerID == "" {
		return o
	}
	res, err := p.AddCard(ctx, card)
	if err != nil {
		tb.Fatalf("add card: %v", err)
	}
	if res.Decision == phone.DecisionOTP {
		code, err := p.LastCode(ctx)
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := p.VerifyOTP(ctx, res.CardID, code); err != nil {
			tb.Fatal(err)
		}
	} else if res.Decision != phone.DecisionApproved {
		tb.Fatalf("binding %+v", res)
	}
	return o
}

// lastEmailCode reads the newest sign-in code in the wallet's e-mail outbox.
func (s *system) lastEmailCode(tb testing.TB, address string) string {
	tb.Helper()
	resp, err := http.Get(s.url(node.RoleWallet) + "/v1/email-outbox/" + url.PathEscape(address))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Messages []struct {
			Text string `json:"text"`
		} `json:"messages"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || len(out.Messages) == 0 {
		tb.Fatalf("no e-mail to %s: %v", address, err)
	}
	code := regexp.MustCompile(`\b[0-9]{6}\b`).FindString(out.Messages[len(out.Messages)-1].Text)
	if code == "" {
		tb.Fatal("no code in the e-mail")
	}
	return code
}

// browser is a cookie-keeping HTTP client on the portal.
type browser struct {
	tb   testing.TB
	c    *http.Client
	base string
	page string // the last page's HTML
	path string // the last page's path (after redirects)
}

func (s *system) newBrowser(tb testing.TB) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return &browser{tb: tb, c: &http.Client{Jar: jar, Timeout: 30 * time.Second}, base: s.url(portal.Role)}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf is the CSRF token of the last page's forms.
func (b *browser) csrf() string {
	b.tb.Helper()
	m := csrfRE.FindStringSubmatch(b.page)
	if m == nil {
		b.tb.Fatalf("no CSRF token on %s:\n%s", b.path, b.page)
	}
	return m[1]
}

func (b *browser) do(req *http.Request) int {
	b.tb.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	b.page, b.path = string(body), resp.Request.URL.Path
	return resp.StatusCode
}

func (b *browser) get(path string) int {
	b.tb.Helper()
	req, _ := http.NewRequest("GET", b.base+path, nil)
	return b.do(req)
}

// post submits a form; csrf "" sends none.
func (b *browser) post(path, csrf string, fields ...string) int {
	b.tb.Helper()
	form := url.Values{}
	if csrf != "" {
		form.Set("csrf", csrf)
	}
	for i := 0; i+1 < len(fields); i += 2 {
		form.Set(fields[i], fields[i+1])
	}
	req, _ := http.NewRequest("POST", b.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

func (b *browser) want(status, got int, contains ...string) {
	b.tb.Helper()
	if got != status {
		b.tb.Fatalf("%s: status %d, want %d:\n%s", b.path, got, status, b.page)
	}
	for _, c := range contains {
		if !strings.Contains(b.page, c) {
			b.tb.Fatalf("%s does not say %q:\n%s", b.path, c, b.page)
		}
	}
}

// signIn signs in with the password and the e-mailed code.
func (b *browser) signIn(s *system, o *owner) {
	b.tb.Helper()
	b.want(200, b.get("/portal/signin"))
	b.want(200, b.post("/portal/signin", b.csrf(), "login", o.login, "password", portalPassword), "Second step")
	b.want(200, b.post("/portal/verify", b.csrf(), "emailCode", s.lastEmailCode(b.tb, o.email)))
}

// cardPayer sends 0200s with genuine cryptograms of the phone's SE straight
// to the switch: a phone that has not heard of the switch-off (or ignores
// it) still makes them, so only the network can refuse.
type cardPayer struct {
	src  *cardSource
	c    *iso8583.Client
	stan atomic.Uint32
}

func (c *cardPayer) pay(tb testing.TB) string {
	tb.Helper()
	m, err := c.src.next(context.Background(), 100)
	if err != nil {
		tb.Fatal(err)
	}
	n := c.stan.Add(1)
	stamp(m, "LOST0002", n, fmt.Sprintf("77%010d", n))
	resp, err := c.c.Send(context.Background(), m)
	if err != nil {
		tb.Fatal(err)
	}
	return resp.String(39)
}

func TestLostPhonePortal(t *testing.T) {
	s := mustStart(t, "", nil)
	ctx := context.Background()
	term := s.newTerminal(t, "LOST0001")
	alice := s.newOwner(t, "lost-alice", "icbc-debit", 2)
	dev := alice.p.DeviceID()
	if err := alice.p.ReportPosition(ctx, phone.Position{Latitude: 39.9087, Longitude: 116.3975, AccuracyMeters: 25}); err != nil {
		t.Fatal(err)
	}
	if rec := tap(t, term, alice.p, 1200, phone.FingerOK); rec.ResponseCode != "00" {
		t.Fatalf("first tap: %+v", rec)
	}
	payer := &cardPayer{src: newCardSource(t, alice.p.SE()), c: term.link.c}
	if rc := payer.pay(t); rc != "00" {
		t.Fatalf("before the switch-off: %s", rc)
	}
	cardState := func() string {
		cards, err := alice.p.Cards(ctx)
		if err != nil || len(cards) != 1 {
			t.Fatalf("cards: %v %v", cards, err)
		}
		return cards[0].State
	}
	b := s.newBrowser(t)

	t.Run("signed out, the portal asks to sign in", func(t *testing.T) {
		b.want(200, b.get("/portal/"), "Lost your phone?")
		if b.path != "/portal/signin" {
			t.Fatalf("landed on %s", b.path)
		}
		b.want(200, b.get("/portal/devices/"+dev), "Lost your phone?")
	})
	t.Run("the password alone does not sign in", func(t *testing.T) {
		b.want(200, b.get("/portal/signin"))
		b.want(200, b.post("/portal/signin", b.csrf(), "login", alice.login, "password", portalPassword), "Second step")
		b.want(200, b.get("/portal/"), "Lost your phone?")
		b.want(200, b.get("/portal/verify"), "Second step")
		b.want(401, b.post("/portal/verify", b.csrf(), "emailCode", "000000"))
	})
	t.Run("security headers and cookie", func(t *testing.T) {
		resp, err := b.c.Get(b.base + "/portal/signin")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script-src") || resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("headers %v", resp.Header)
		}
		fresh := s.newBrowser(t)
		resp, err = fresh.c.Get(fresh.base + "/portal/signin")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		sc := resp.Header.Get("Set-Cookie")
		if !strings.Contains(sc, "HttpOnly") || !strings.Contains(sc, "SameSite=Strict") {
			t.Fatalf("cookie %q", sc)
		}
	})
	t.Run("recovery code is a second factor", func(t *testing.T) {
		rb := s.newBrowser(t)
		rb.want(200, rb.get("/portal/signin"))
		rb.want(200, rb.post("/portal/signin", rb.csrf(), "login", alice.email, "password", portalPassword))
		rb.want(200, rb.post("/portal/verify", rb.csrf(), "recoveryCode", alice.recovery[0]), "Your devices")
	})

	b.signIn(s, alice)
	t.Run("devices with cards and location", func(t *testing.T) {
		b.want(200, b.get("/portal/"), "Your devices", phone.DefaultModel, "ACTIVE", "39.90870")
		b.want(200, b.get("/portal/devices/"+dev), "Switch off Mi Pay on this device", "<svg", `id="last-position"`, "Location history")
		if strings.Contains(b.page, "<script") {
			t.Fatal("the page has a script")
		}
	})
	t.Run("CSRF token missing or wrong is refused", func(t *testing.T) {
		b.want(403, b.post("/portal/devices/"+dev+"/switch-off", ""))
		b.want(403, b.post("/portal/devices/"+dev+"/switch-off", "not-the-token"))
		if st := cardState(); st != "ACTIVE" {
			t.Fatalf("card %s after refused forms", st)
		}
		if rc := payer.pay(t); rc != "00" {
			t.Fatalf("after refused forms: %s", rc)
		}
	})

	t.Run("switch off: the network declines 62 within a second", func(t *testing.T) {
		b.want(200, b.get("/portal/devices/"+dev+"/switch-off"), "Switch off Mi Pay")
		b.want(200, b.post("/portal/devices/"+dev+"/switch-off", b.csrf()), "1 card was suspended", "wipe")
		answered := time.Now()
		var rc string
		for tries := 1; ; tries++ {
			if rc = payer.pay(t); rc == "62" {
				t.Logf("declined 62 on try %d, %v after the portal's answer", tries, time.Since(answered).Round(time.Millisecond))
				break
			}
			if rc != "00" || time.Since(answered) > time.Second {
				t.Fatalf("%v after the switch-off the switch answered %s", time.Since(answered), rc)
			}
			time.Sleep(10 * time.Millisecond)
		}
		eventually(t, "the wallet shows the card suspended", func() bool { return cardState() == "SUSPENDED" })
		b.want(200, b.get("/portal/devices/"+dev), "SUSPENDED", "Found it")
	})

	t.Run("another account cannot see or act on the device", func(t *testing.T) {
		bob := s.newOwner(t, "lost-bob", "", 0)
		bb := s.newBrowser(t)
		bb.signIn(s, bob)
		bb.want(200, bb.get("/portal/"), "Your devices")
		if strings.Contains(bb.page, dev) {
			t.Fatal("bob's device list shows alice's device")
		}
		token := bb.csrf()
		bb.want(404, bb.get("/portal/devices/"+dev))
		for _, a := range []string{"switch-off", "found", "remove", "locate", "ring"} {
			bb.want(404, bb.get("/portal/devices/"+dev+"/"+a))
			bb.want(404, bb.post("/portal/devices/"+dev+"/"+a, token))
		}
		if st := cardState(); st != "SUSPENDED" {
			t.Fatalf("alice's card is %s after bob's tries", st)
		}
	})

	t.Run("found it needs a fresh sign-in, then pays again", func(t *testing.T) {
		b.want(200, b.get("/portal/devices/"+dev+"/found"))
		b.want(200, b.post("/portal/devices/"+dev+"/found", b.csrf()), "Sign in again")
		if st := cardState(); st != "SUSPENDED" {
			t.Fatalf("card %s before signing in again", st)
		}
		b.want(200, b.post("/portal/signin", b.csrf(), "login", alice.login, "password", portalPassword), "Second step")
		b.want(200, b.post("/portal/verify", b.csrf(), "emailCode", s.lastEmailCode(t, alice.email)), "1 card was turned back on")
		eventually(t, "the switch approves again", func() bool { return payer.pay(t) == "00" })
		eventually(t, "the wallet shows the card active", func() bool { return cardState() == "ACTIVE" })
		if rec := tap(t, term, alice.p, 300, phone.FingerOK); rec.ResponseCode != "00" {
			t.Fatalf("tap after found it: %+v", rec)
		}
	})

	t.Run("locate now: the phone reports on its next sync", func(t *testing.T) {
		b.want(200, b.get("/portal/devices/"+dev+"/locate"))
		b.want(200, b.post("/portal/devices/"+dev+"/locate", b.csrf()), "LOCATE")
		if err := alice.p.SetPosition(phone.Position{Latitude: 39.9150, Longitude: 116.4040, AccuracyMeters: 15}); err != nil {
			t.Fatal(err)
		}
		b.want(200, b.get("/portal/devices/"+dev+"/ring"))
		b.want(200, b.post("/portal/devices/"+dev+"/ring", b.csrf()), "RING")
	})

	t.Run("remove: 62 for good", func(t *testing.T) {
		b.want(200, b.get("/portal/devices/"+dev+"/remove"))
		b.want(200, b.post("/portal/devices/"+dev+"/remove", b.csrf()), "1 card was removed")
		answered := time.Now()
		eventually(t, "the switch declines the removed token", func() bool { return payer.pay(t) == "62" })
		t.Logf("declined 62 %v after removal", time.Since(answered).Round(time.Millisecond))
		for range 3 {
			if rc := payer.pay(t); rc != "62" {
				t.Fatalf("removed token answered %s", rc)
			}
		}
		// "Found it" cannot bring a removed card back.
		b.want(200, b.post("/portal/devices/"+dev+"/found", b.csrf()))
		b.want(200, b.post("/portal/signin", b.csrf(), "login", alice.login, "password", portalPassword))
		b.want(200, b.post("/portal/verify", b.csrf(), "emailCode", s.lastEmailCode(t, alice.email)), "No card needed to change")
		if rc := payer.pay(t); rc != "62" {
			t.Fatalf("after found it on a removed card: %s", rc)
		}
	})

	t.Run("phone sync: wipe empties the SE, locate and ring answered", func(t *testing.T) {
		res, err := alice.p.Sync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		kinds := map[string]bool{}
		for _, c := range res.Commands {
			if !c.OK {
				t.Fatalf("command %+v failed", c)
			}
			kinds[c.Kind] = true
		}
		if !kinds["WIPE"] || !kinds["LOCATE"] || !kinds["RING"] || !res.Wiped || !res.Rang {
			t.Fatalf("sync %+v", res)
		}
		if n := len(alice.p.SE().Cards()); n != 0 {
			t.Fatalf("%d cards left in the SE after the wipe", n)
		}
		b.want(200, b.get("/portal/devices/"+dev), "39.91500", "DONE")
		again, err := alice.p.Sync(ctx)
		if err != nil || len(again.Commands) != 0 {
			t.Fatalf("second sync %+v %v", again, err)
		}
	})

	t.Run("sign out ends the session", func(t *testing.T) {
		b.want(200, b.get("/portal/"))
		b.want(200, b.post("/portal/signout", b.csrf()), "Lost your phone?")
		b.want(200, b.get("/portal/devices/"+dev), "Lost your phone?")
	})
	s.ledgerOK(t)
}

// TestPortalBruteForce: wrong passwords lock the account at the wallet
// (423), and a client failing too often is refused by the portal (429).
func TestPortalBruteForce(t *testing.T) {
	s := mustStart(t, "", nil)
	o := s.newOwner(t, "brute", "", 0)
	b := s.newBrowser(t)
	b.want(200, b.get("/portal/signin"))
	token := b.csrf()
	for i := 1; i < 5; i++ {
		b.want(401, b.post("/portal/signin", token, "login", o.login, "password", "wrong password"))
	}
	b.want(423, b.post("/portal/signin", token, "login", o.login, "password", "wrong password"), "too many failed sign-ins")
	// Locked even with the right password.
	b.want(423, b.post("/portal/signin", token, "login", o.login, "password", portalPassword))
	// The portal's own per-address limit: other logins from here are refused too.
	var status int
	for range portal.DefaultMaxAttemptsPerClient {
		status = b.post("/portal/signin", token, "login", "nobody@example.com", "password", "wrong password")
	}
	b.want(429, status, "Too many failed sign-in attempts")
}

// TestPortalTransitHotlist: the portal lists a device's transit cards and
// switching Mi Pay off hotlists them at the agency.
func TestPortalTransitHotlist(t *testing.T) {
	s := mustStart(t, "", nil)
	o := s.newOwner(t, "lost-transit", "icbc-debit", 0)
	tc, err := o.p.TransitIssue(context.Background(), phone.TransitIssueOptions{Agency: s.url(node.RoleTransit), City: "sz", Finger: phone.FingerOK})
	if err != nil {
		t.Fatalf("transit card: %v", err)
	}
	dev := o.p.DeviceID()
	b := s.newBrowser(t)
	b.signIn(s, o)
	b.want(200, b.get("/portal/devices/"+dev), "Transit (sz)", tc.CardNumber)
	b.want(200, b.get("/portal/devices/"+dev+"/switch-off"))
	b.want(200, b.post("/portal/devices/"+dev+"/switch-off", b.csrf()), "1 card was suspended", "1 transit card(s) blocked")
	b.want(200, b.get("/portal/devices/"+dev), "HOTLISTED")
}
