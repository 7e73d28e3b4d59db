package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/phone"
)

// TestBindingRules drives the binding rules end to end: the OTP's attempt
// limit, expiry and resend limit, the CVN2 attempt limit, the bank phone,
// and the 9th card.
func TestBindingRules(t *testing.T) {
	s := mustStart(t, "", func(r *config.Reference) {
		is, _ := r.Issuer("bocom-credit")
		is.OTP.TTL = config.Duration(time.Second)
	})
	ctx := context.Background()

	t.Run("wrong code five times locks the binding", func(t *testing.T) {
		p := s.newPhone(t, "otp-lock")
		card := cardOf(s, t, "boc-debit", 1)
		onboard(t, p, card.Phone)
		res, err := p.AddCard(ctx, card)
		if err != nil || res.Decision != phone.DecisionOTP {
			t.Fatalf("add card: %+v %v", res, err)
		}
		good, err := p.LastCode(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wrong := "000000"
		if good == wrong {
			wrong = "111111"
		}
		var last error
		for i := 0; i < 5; i++ {
			_, last = p.VerifyOTP(ctx, res.CardID, wrong)
			if last == nil {
				t.Fatal("a wrong code was accepted")
			}
		}
		if _, err := p.VerifyOTP(ctx, res.CardID, good); err == nil {
			t.Fatal("the right code still works after five wrong ones")
		}
		if code := mipay.ErrorCode(last); code != mipay.ELOCKED && code != mipay.ELIMIT && code != mipay.EFORBIDDEN {
			t.Logf("fifth wrong code answered %s: %v", code, last)
		}
	})

	t.Run("expired code refused", func(t *testing.T) {
		p := s.newPhone(t, "otp-expired")
		card := cardOf(s, t, "bocom-credit", 0)
		onboard(t, p, card.Phone)
		res, err := p.AddCard(ctx, card)
		if err != nil || res.Decision != phone.DecisionOTP {
			t.Fatalf("add card: %+v %v", res, err)
		}
		code, err := p.LastCode(ctx)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
		if _, err := p.VerifyOTP(ctx, res.CardID, code); err == nil {
			t.Fatal("an expired code was accepted")
		}
	})

	t.Run("resend limit", func(t *testing.T) {
		p := s.newPhone(t, "otp-resend")
		card := cardOf(s, t, "psbc-debit", 0)
		onboard(t, p, card.Phone)
		res, err := p.AddCard(ctx, card)
		if err != nil || res.Decision != phone.DecisionOTP {
			t.Fatalf("add card: %+v %v", res, err)
		}
		is, _ := s.ref.Issuer("psbc-debit")
		var last error
		for i := 0; i < is.OTP.MaxResends+1 && last == nil; i++ {
			_, last = p.ResendOTP(ctx, res.CardID)
		}
		if last == nil {
			t.Fatalf("%d resends allowed past the limit of %d", is.OTP.MaxResends+1, is.OTP.MaxResends)
		}
	})

	t.Run("CVN2 attempt limit", func(t *testing.T) {
		p := s.newPhone(t, "cvn2")
		card := cardOf(s, t, "ccb-credit", 0)
		onboard(t, p, card.Phone)
		is, _ := s.ref.Issuer("ccb-credit")
		bad := card
		bad.CVN2 = wrongCVN2(card.CVN2)
		for i := 0; i < is.Limits.CVN2MaxAttempts; i++ {
			if res, err := p.AddCard(ctx, bad); err != nil || res.Decision != phone.DecisionDeclined {
				t.Fatalf("attempt %d: %+v %v", i, res, err)
			}
		}
		res, err := p.AddCard(ctx, card)
		if err != nil {
			t.Fatal(err)
		}
		if res.Decision != phone.DecisionDeclined {
			t.Fatalf("the right CVN2 after %d wrong ones: %+v", is.Limits.CVN2MaxAttempts, res)
		}
	})

	t.Run("bank phone mismatch declined", func(t *testing.T) {
		p := s.newPhone(t, "phone-mismatch")
		card := cardOf(s, t, "cmb-debit", 1)
		onboard(t, p, card.Phone)
		card.Phone = "13999999999"
		res, err := p.AddCard(ctx, card)
		if err != nil {
			t.Fatal(err)
		}
		if res.Decision != phone.DecisionDeclined || !strings.Contains(strings.ToLower(res.Message), "phone") {
			t.Fatalf("result %+v", res)
		}
	})

	t.Run("ninth card refused, nothing created", func(t *testing.T) {
		p := s.newPhone(t, "nine")
		first := cardOf(s, t, greenIssuers[0], 1)
		onboard(t, p, first.Phone)
		n := 0
		for _, id := range greenIssuers {
			if n == 8 {
				break
			}
			if _, err := p.AddCard(ctx, cardOf(s, t, id, 1)); err != nil {
				t.Fatalf("card %d (%s): %v", n+1, id, err)
			}
			n++
		}
		cards, _ := p.Cards(ctx)
		if len(cards) != 8 {
			t.Fatalf("%d cards after 8 bindings", len(cards))
		}
		_, err := p.AddCard(ctx, cardOf(s, t, greenIssuers[9], 0))
		if mipay.ErrorCode(err) != mipay.ELIMIT {
			t.Fatalf("9th card: %v", err)
		}
		if cards, _ := p.Cards(ctx); len(cards) != 8 || len(p.SE().Cards()) != 8 {
			t.Fatalf("after the 9th: %d cards, %d in the SE", len(cards), len(p.SE().Cards()))
		}
	})

	t.Run("no plaintext PAN in any file or log line", func(t *testing.T) { assertNoPAN(t, s) })
}

// assertNoPAN scans every file of the data directory (SQLite files and their
// WALs, NATS streams, keystores, phones) and the log lines for any demo PAN.
func assertNoPAN(t *testing.T, s *system) {
	t.Helper()
	var pans []string
	for _, is := range s.ref.Issuers {
		for _, c := range is.Cardholders {
			pans = append(pans, c.PAN)
		}
	}
	scan := func(where string, b []byte) {
		for _, pan := range pans {
			if bytes.Contains(b, []byte(pan)) {
				t.Errorf("PAN %s…%s in %s", pan[:6], pan[len(pan)-4:], where)
			}
		}
	}
	err := filepath.WalkDir(s.dataDir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // a running party's temporary file (NATS, SQLite) went away
		}
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		scan(path, b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	scan("the logs", []byte(s.logBuf.String()))
}
