package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/mipay-oss/mipay/phone"
	"github.com/mipay-oss/mipay/portal"
)

// chromiumPath finds a Chromium to drive, or "" when there is none.
func chromiumPath() string {
	if p := os.Getenv("MIPAY_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// TestPortalInBrowser drives the portal with headless Chromium: sign in with
// the e-mailed code, see the device and its location, switch Mi Pay off (the
// switch then declines 62), and "found it" after signing in again (approved
// again). Screenshots go to the test's temporary directory.
func TestPortalInBrowser(t *testing.T) {
	chrome := chromiumPath()
	if chrome == "" {
		t.Skip("no Chromium installed (apt-get install chromium, or set MIPAY_CHROMIUM)")
	}
	s := mustStart(t, "", nil)
	term := s.newTerminal(t, "BROW0001")
	o := s.newOwner(t, "browser-owner", "icbc-debit", 1)
	dev := o.p.DeviceID()
	if err := o.p.ReportPosition(context.Background(), phone.Position{Latitude: 31.2304, Longitude: 121.4737, AccuracyMeters: 40}); err != nil {
		t.Fatal(err)
	}
	payer := &cardPayer{src: newCardSource(t, o.p.SE()), c: term.link.c}
	if rc := payer.pay(t); rc != "00" {
		t.Fatalf("before: %s", rc)
	}

	// Screenshots for a person to look at: the test's temporary directory,
	// or MIPAY_PORTAL_SCREENSHOTS to keep them.
	shots := t.TempDir()
	if d := os.Getenv("MIPAY_PORTAL_SCREENSHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		shots = d
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(412, 915))...)
	defer cancelAlloc()
	browserCtx, cancel := chromedp.NewContext(alloc)
	defer cancel()
	base := s.url(portal.Role)
	// The first action starts the browser: no timeout on it (that would
	// stop the browser); the later ones are bounded.
	if err := chromedp.Do(browserCtx, chromedp.Navigate(base+"/portal/")); err != nil {
		t.Fatal(err)
	}
	ctx, cancelT := context.WithTimeout(browserCtx, 90*time.Second)
	defer cancelT()
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			buf, err := chromedp.FullScreenshot(100)(ctx, tg) // 100: PNG
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(shots, name+".png"), buf, 0o644)
		})
	}
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return v
	}
	signIn := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Steps(
			chromedp.WaitVisible(chromedp.ID("password")),
			chromedp.SetValue(chromedp.ID("login"), o.login),
			chromedp.SetValue(chromedp.ID("password"), portalPassword),
			shot(name+"-password"),
			chromedp.Click(chromedp.ID("signin")),
			chromedp.WaitVisible(chromedp.ID("emailCode")),
			chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
				_, err := chromedp.SetValue(chromedp.ID("emailCode"), s.lastEmailCode(t, o.email))(ctx, tg)
				return err
			}),
			shot(name+"-code"),
			chromedp.Click(chromedp.ID("verify")),
		)
	}
	if err := chromedp.Do(ctx,
		signIn("1-signin"),
		chromedp.WaitVisible(chromedp.CSS(".device-link")),
		shot("2-devices"),
	); err != nil {
		t.Fatal(err)
	}
	if devices := text("main"); !strings.Contains(devices, phone.DefaultModel) || !strings.Contains(devices, "ACTIVE") {
		t.Fatalf("devices page: %q", devices)
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(".device-link")),
		chromedp.WaitVisible(chromedp.ID("last-location")),
		shot("3-device"),
	); err != nil {
		t.Fatal(err)
	}
	if location := text("#last-location"); !strings.Contains(location, "31.23040") {
		t.Fatalf("location: %q", location)
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("switch-off")),
		chromedp.WaitVisible(chromedp.ID("confirm")),
		shot("4-confirm"),
		chromedp.Click(chromedp.ID("confirm")),
		chromedp.WaitVisible(chromedp.ID("result")),
		shot("5-switched-off"),
	); err != nil {
		t.Fatal(err)
	}
	if result := text("#result"); !strings.Contains(result, "1 card was suspended") {
		t.Fatalf("result: %q", result)
	}
	eventually(t, "the switch declines the switched-off phone", func() bool { return payer.pay(t) == "62" })

	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/portal/devices/"+dev),
		chromedp.WaitVisible(chromedp.ID("found")),
		chromedp.Click(chromedp.ID("found")),
		chromedp.WaitVisible(chromedp.ID("confirm")),
		chromedp.Click(chromedp.ID("confirm")),
		signIn("6-again"),
		chromedp.WaitVisible(chromedp.ID("result")),
		shot("7-found"),
	); err != nil {
		t.Fatal(err)
	}
	if result := text("#result"); !strings.Contains(result, "1 card was turned back on") {
		t.Fatalf("result: %q", result)
	}
	eventually(t, "the switch approves again", func() bool { return payer.pay(t) == "00" })
	t.Logf("screenshots in %s", shots)
}
