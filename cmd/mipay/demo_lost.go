package main

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
	"time"

	"github.com/mipay-oss/mipay/nfc"
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/phone"
	"github.com/mipay-oss/mipay/portal"
	"github.com/mipay-oss/mipay/pos"
)

// The lost-phone part of the story: the owner signs in to the portal from
// another computer with the e-mailed code, switches Mi Pay off on the phone;
// whoever holds the phone cannot pay (the network declines the token); the
// owner finds it, signs in again, and pays.

// portalBrowser is a cookie-keeping HTTP client on the portal's pages.
type portalBrowser struct {
	c    *http.Client
	base string
	page string
}

var (
	demoCSRF      = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	demoEmailCode = regexp.MustCompile(`\b[0-9]{6}\b`)
)

func (b *portalBrowser) do(ctx context.Context, method, path string, form url.Values) error {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, b.base+path, body)
	if err != nil {
		return err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	page, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	b.page = string(page)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("portal %s %s answered %d", method, path, resp.StatusCode)
	}
	return nil
}

// submit posts a form of the current page (with its CSRF token).
func (b *portalBrowser) submit(ctx context.Context, path string, fields ...string) error {
	m := demoCSRF.FindStringSubmatch(b.page)
	if m == nil {
		return fmt.Errorf("no form on the portal page before %s", path)
	}
	form := url.Values{"csrf": {m[1]}}
	for i := 0; i+1 < len(fields); i += 2 {
		form.Set(fields[i], fields[i+1])
	}
	return b.do(ctx, "POST", path, form)
}

// emailCode reads the latest code the wallet e-mailed to the owner.
func (d *demo) emailCode(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", d.sys.URL(node.RoleWallet)+"/v1/email-outbox/"+url.PathEscape(demoEmail), nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		Messages []struct {
			Text string `json:"text"`
		} `json:"messages"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil || len(out.Messages) == 0 {
		return "", fmt.Errorf("no e-mail arrived for %s", demoEmail)
	}
	code := demoEmailCode.FindString(out.Messages[len(out.Messages)-1].Text)
	if code == "" {
		return "", fmt.Errorf("no code in the e-mail")
	}
	return code, nil
}

// portalSignIn signs in with the password and the e-mailed code: the second
// factor that does not need the lost phone.
func (d *demo) portalSignIn(ctx context.Context, b *portalBrowser) error {
	if err := b.do(ctx, "GET", "/portal/signin", nil); err != nil {
		return err
	}
	if err := b.submit(ctx, "/portal/signin", "login", d.phone.Number(), "password", demoPassword); err != nil {
		return err
	}
	code, err := d.emailCode(ctx)
	if err != nil {
		return err
	}
	return b.submit(ctx, "/portal/verify", "emailCode", code)
}

func (d *demo) lostSignIn(ctx context.Context) (string, error) {
	base := d.sys.URL(portal.Role)
	if base == "" {
		return "", fmt.Errorf("no portal running")
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		return "", err
	}
	d.browser = &portalBrowser{c: &http.Client{Jar: jar, Timeout: 30 * time.Second}, base: base}
	if err := d.portalSignIn(ctx, d.browser); err != nil {
		return "", err
	}
	if !strings.Contains(d.browser.page, d.phone.DeviceID()) {
		return "", fmt.Errorf("the portal does not list the phone")
	}
	return "password, then the code e-mailed to " + demoEmail + "; the portal lists the phone", nil
}

func (d *demo) lostSwitchOff(ctx context.Context) (string, error) {
	dev := "/portal/devices/" + url.PathEscape(d.phone.DeviceID())
	if err := d.browser.do(ctx, "GET", dev+"/switch-off", nil); err != nil {
		return "", err
	}
	if err := d.browser.submit(ctx, dev+"/switch-off"); err != nil {
		return "", err
	}
	if !strings.Contains(d.browser.page, "suspended") {
		return "", fmt.Errorf("the portal did not confirm the switch-off")
	}
	return "every card of the phone suspended, a wipe queued for its next sync", nil
}

// lostTap is whoever holds the phone paying anyway: the SE still holds the
// card (the wipe waits for a sync), so only the network can refuse.
func (d *demo) lostTap(ctx context.Context) (string, error) {
	if err := d.terminal(ctx); err != nil {
		return "", err
	}
	var ref string
	for _, c := range d.phone.SE().Cards() {
		if c.Selected {
			ref = c.TokenRef
		}
	}
	if ref == "" {
		return "", fmt.Errorf("no card selected in the SE")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		rec, err := d.rawTap(ctx, ref)
		if err != nil {
			return "", err
		}
		if rec.ResponseCode == "62" {
			return "the phone's own cryptogram is declined 62 (restricted card) by the network", nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("the network answered %s %s after the switch-off", rec.ResponseCode, rec.Response)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rawTap arms the SE directly (no app, no wallet) and taps the terminal.
func (d *demo) rawTap(ctx context.Context, tokenRef string) (*pos.Receipt, error) {
	r, err := nfc.Listen("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if err := d.phone.SE().Arm(tokenRef); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- nfc.Tap(ctx, r.Addr(), d.phone.SE()) }()
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	rec, err := d.term.ChargeOnReader(cctx, r, pos.Charge{AmountMinor: 500, Currency: "156"})
	<-done
	return rec, err
}

func (d *demo) lostFound(ctx context.Context) (string, error) {
	dev := "/portal/devices/" + url.PathEscape(d.phone.DeviceID())
	if err := d.browser.do(ctx, "GET", dev+"/found", nil); err != nil {
		return "", err
	}
	if err := d.browser.submit(ctx, dev+"/found"); err != nil {
		return "", err
	}
	// Found it asks for a fresh sign-in before anything is turned back on.
	if err := d.browser.submit(ctx, "/portal/signin", "login", d.phone.Number(), "password", demoPassword); err != nil {
		return "", err
	}
	code, err := d.emailCode(ctx)
	if err != nil {
		return "", err
	}
	if err := d.browser.submit(ctx, "/portal/verify", "emailCode", code); err != nil {
		return "", err
	}
	if !strings.Contains(d.browser.page, "turned back on") {
		return "", fmt.Errorf("the portal did not confirm the cards are back on")
	}
	return "signed in again with a new e-mailed code; cards turned back on", nil
}

func (d *demo) lostPayAgain(ctx context.Context) (string, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		rec, err := d.tap(ctx, d.debit, 800, phone.FingerOK)
		if err == nil && rec.Outcome == pos.OutcomeApproved {
			return fmt.Sprintf("8.00 CNY approved, auth code %s", rec.AuthCode), nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return "", err
			}
			return "", fmt.Errorf("terminal shows %s %s", rec.Outcome, rec.Response)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
