package tsp

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/cryptobox"
	"github.com/mipay-oss/mipay/emv"
)

func TestTokenizeGreen(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	is, ch := demoCard(t, f.ref, config.Credit)
	res, err := f.svc.Tokenize(ctx, f.tokenizeReq(t, cardOf(ch), "dev-1"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Decision != DecisionApproved || res.State != StateActive || res.IssuerID != is.ID || res.Bank != is.Bank {
		t.Fatalf("response %+v", res)
	}
	if res.PANLast4 != ch.PAN[12:] || len(res.AuthenticationMethods) != 0 || res.Art == "" || res.Product == "" {
		t.Fatalf("response %+v", res)
	}
	tok, err := f.vault.Get(ctx, res.TokenRef)
	if err != nil {
		t.Fatal(err)
	}
	if !LuhnValid(tok.DPAN) || len(tok.DPAN) != DPANDigits || tok.DPAN == ch.PAN || tok.DPANLast4() != res.TokenLast4 {
		t.Fatalf("DPAN %s", tok.DPAN)
	}
	if got, ok := f.ref.IssuerByToken(tok.DPAN); !ok || got.ID != is.ID {
		t.Fatalf("DPAN %s not in %s's token range", tok.DPAN, is.ID)
	}
	if _, ok := f.ref.IssuerByPAN(tok.DPAN); ok {
		t.Fatalf("DPAN %s lies in a PAN range", tok.DPAN)
	}
	if len(tok.PAR) != PARLength || tok.LastATC != -1 || tok.EntryModes != DefaultEntryModes {
		t.Fatalf("token %+v", tok.Token)
	}
	pan, err := f.keys.OpenPAN(ctx, tok.PANSealed, panAAD(tok.Ref))
	if err != nil || pan != ch.PAN {
		t.Fatalf("sealed PAN does not open to the card's PAN: %v", err)
	}
	if _, err := f.keys.OpenPAN(ctx, tok.PANSealed, panAAD("DTSP"+strings.Repeat("0", 32))); err == nil {
		t.Fatal("sealed PAN opens under another token's AAD")
	}
	t.Run("CVN2 only to the issuer", func(t *testing.T) {
		if len(f.issuer.sawCVN2) != 1 || f.issuer.sawCVN2[0] != ch.CVN2 {
			t.Fatalf("issuer saw CVN2 %q", f.issuer.sawCVN2)
		}
	})
	t.Run("event and notice", func(t *testing.T) {
		ev := f.bus.all()
		if len(ev) != 1 || ev[0].State != StateActive || ev[0].TokenRef != res.TokenRef || ev[0].PANLast4 != res.PANLast4 {
			t.Fatalf("events %+v", ev)
		}
		if len(f.issuer.notices) != 1 || f.issuer.notices[0].Event != NoticeTokenCreated || f.issuer.notices[0].DecisionID == "" {
			t.Fatalf("notices %+v", f.issuer.notices)
		}
	})
}

func TestTokenizeSameCardTwoDevices(t *testing.T) {
	f := newFixture(t)
	a, _ := f.mustActiveToken(t, config.Debit, "dev-1")
	b, _ := f.mustActiveToken(t, config.Debit, "dev-2")
	ta, _ := f.vault.Get(context.Background(), a.TokenRef)
	tb, _ := f.vault.Get(context.Background(), b.TokenRef)
	if ta.Ref == tb.Ref || ta.DPAN == tb.DPAN {
		t.Fatal("two devices share a token")
	}
	if ta.PAR != tb.PAR || ta.PANRef != tb.PANRef || !bytes.Equal(ta.PANHMAC, tb.PANHMAC) {
		t.Fatal("PAR / PAN ref / PAN HMAC differ for the same PAN")
	}
}

func TestTokenizeYellow(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, ch := demoCard(t, f.ref, config.Debit)
	f.issuer.decision[ch.PAN] = DecisionResponse{Decision: DecisionRequireAdditional}
	res, err := f.svc.Tokenize(ctx, f.tokenizeReq(t, cardOf(ch), "dev-1"))
	if err != nil || res.Decision != DecisionRequireAdditional || res.State != StateInactive || len(res.AuthenticationMethods) != 1 {
		t.Fatalf("tokenize %+v %v", res, err)
	}
	t.Run("no profile while inactive", func(t *testing.T) {
		_, err := f.svc.Provisioning(ctx, res.TokenRef)
		if mipay.ErrorCode(err) != mipay.ECONFLICT {
			t.Fatalf("provisioning: %v", err)
		}
	})
	t.Run("unknown method", func(t *testing.T) {
		_, err := f.svc.RequestAuthentication(ctx, res.TokenRef, "email-9")
		if mipay.ErrorCode(err) != mipay.ENOTFOUND {
			t.Fatalf("%v", err)
		}
	})
	sent, err := f.svc.RequestAuthentication(ctx, res.TokenRef, "sms-1")
	if err != nil || sent.Destination != "***8000" {
		t.Fatalf("request OTP %+v %v", sent, err)
	}
	t.Run("wrong code", func(t *testing.T) {
		_, err := f.svc.VerifyAuthentication(ctx, res.TokenRef, "000000")
		if mipay.ErrorCode(err) != mipay.EINVALID || mipay.ErrorReason(err) != "OTP_WRONG" || !strings.Contains(mipay.ErrorMessage(err), "4 attempts left") {
			t.Fatalf("%v", err)
		}
	})
	t.Run("not digits", func(t *testing.T) {
		_, err := f.svc.VerifyAuthentication(ctx, res.TokenRef, "12ab56")
		if mipay.ErrorCode(err) != mipay.EINVALID {
			t.Fatalf("%v", err)
		}
	})
	v, err := f.svc.VerifyAuthentication(ctx, res.TokenRef, "123456")
	if err != nil || v.State != StateActive {
		t.Fatalf("verify %+v %v", v, err)
	}
	t.Run("retry after success", func(t *testing.T) {
		v, err := f.svc.VerifyAuthentication(ctx, res.TokenRef, "123456")
		if err != nil || v.State != StateActive {
			t.Fatalf("%+v %v", v, err)
		}
	})
	t.Run("history", func(t *testing.T) {
		view, err := f.svc.View(ctx, res.TokenRef)
		if err != nil || len(view.History) != 2 || view.History[1].From != StateInactive || view.History[1].State != StateActive || view.History[1].CausedBy != CausedByCardholder {
			t.Fatalf("%+v %v", view.History, err)
		}
	})
	tok, _ := f.vault.Get(ctx, res.TokenRef)
	if tok.Assurance != AssuranceOTP {
		t.Fatalf("assurance %q", tok.Assurance)
	}
}

func TestOTPExpiredAndLocked(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, ch := demoCard(t, f.ref, config.Debit)
	f.issuer.decision[ch.PAN] = DecisionResponse{Decision: DecisionRequireAdditional}
	res, err := f.svc.Tokenize(ctx, f.tokenizeReq(t, cardOf(ch), "dev-1"))
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := f.vault.Get(ctx, res.TokenRef)
	f.issuer.expired[tok.DecisionID] = true
	_, err = f.svc.VerifyAuthentication(ctx, res.TokenRef, "123456")
	if mipay.ErrorReason(err) != "OTP_EXPIRED" || mipay.ErrorCode(err) != mipay.ECONFLICT {
		t.Fatalf("expired: %v", err)
	}
	f.issuer.expired[tok.DecisionID] = false
	for i := 0; i < 4; i++ {
		if _, err := f.svc.VerifyAuthentication(ctx, res.TokenRef, "999999"); mipay.ErrorReason(err) != "OTP_WRONG" {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	_, err = f.svc.VerifyAuthentication(ctx, res.TokenRef, "999999")
	if mipay.ErrorCode(err) != mipay.ELOCKED {
		t.Fatalf("locked: %v", err)
	}
	v, _ := f.svc.View(ctx, res.TokenRef)
	if v.State != StateDeactivated {
		t.Fatalf("locked binding left the token %s", v.State)
	}
	_, err = f.svc.VerifyAuthentication(ctx, res.TokenRef, "123456")
	if mipay.ErrorCode(err) != mipay.ECONFLICT {
		t.Fatalf("verify after lock: %v", err)
	}
}

func TestTokenizeDeclines(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, ch := demoCard(t, f.ref, config.Credit)

	t.Run("issuer declines", func(t *testing.T) {
		f.issuer.decision[ch.PAN] = DecisionResponse{Decision: DecisionDeclined, Reason: "PHONE_MISMATCH", Message: "The phone number does not match the one registered at the bank."}
		defer delete(f.issuer.decision, ch.PAN)
		res, err := f.svc.Tokenize(ctx, f.tokenizeReq(t, cardOf(ch), "dev-1"))
		if err != nil || res.Decision != DecisionDeclined || res.TokenRef != "" || res.Reason != "PHONE_MISMATCH" || res.Message == "" {
			t.Fatalf("%+v %v", res, err)
		}
	})
	t.Run("unsupported BIN", func(t *testing.T) {
		before := f.issuer.callCount()
		c := CardData{PAN: "4111111111111111", Expiry: "3012"}
		res, err := f.svc.Tokenize(ctx, f.tokenizeReq(t, c, "dev-1"))
		if err != nil || res.Decision != DecisionDeclined || res.Reason != ReasonCardNotSupported || res.Message != msgCardNotSupported {
			t.Fatalf("%+v %v", res, err)
		}
		if f.issuer.callCount() != before {
			t.Fatal("issuer asked about an unsupported card")
		}
	})
	t.Run("a token is not a card", func(t *testing.T) {
		tok, _ := f.mustActiveToken(t, config.Debit, "dev-9")
		row, _ := f.vault.Get(ctx, tok.TokenRef)
		res, err := f.svc.Tokenize(ctx, f.tokenizeReq(t, CardData{PAN: row.DPAN, Expiry: row.Expiry}, "dev-1"))
		if err != nil || res.Decision != DecisionDeclined || res.Reason != ReasonCardNotSupported {
			t.Fatalf("%+v %v", res, err)
		}
	})
	t.Run("luhn failure", func(t *testing.T) {
		before := f.issuer.callCount()
		c := cardOf(ch)
		c.PAN = c.PAN[:15] + string('0'+(c.PAN[15]-'0'+1)%10)
		_, err := f.svc.Tokenize(ctx, f.tokenizeReq(t, c, "dev-1"))
		if mipay.ErrorCode(err) != mipay.EINVALID || mipay.ErrorReason(err) != "LUHN" {
			t.Fatalf("%v", err)
		}
		if f.issuer.callCount() != before {
			t.Fatal("issuer asked about a Luhn-invalid number")
		}
	})
	t.Run("issuer down", func(t *testing.T) {
		f.issuer.err = mipay.Errorf(mipay.EUNAVAILABLE, "the bank cannot be reached; please try again later")
		defer func() { f.issuer.err = nil }()
		_, err := f.svc.Tokenize(ctx, f.tokenizeReq(t, cardOf(ch), "dev-1"))
		if mipay.ErrorCode(err) != mipay.EUNAVAILABLE {
			t.Fatalf("%v", err)
		}
	})
	var n int
	if err := f.vault.db.DB.QueryRow(`SELECT COUNT(*) FROM tokens WHERE device_id = 'dev-1'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("declines left %d tokens (%v)", n, err)
	}
}

func TestTokenizeBadInput(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, ch := demoCard(t, f.ref, config.Credit)
	good := func() TokenizeRequest { return f.tokenizeReq(t, cardOf(ch), "dev-1") }
	for name, c := range map[string]struct {
		mut  func(*TokenizeRequest)
		code string
	}{
		"unknown requestor": {func(r *TokenizeRequest) { r.TokenRequestorID = "99999999999" }, mipay.EFORBIDDEN},
		"no device":         {func(r *TokenizeRequest) { r.Device.DeviceID = "" }, mipay.EINVALID},
		"no se id":          {func(r *TokenizeRequest) { r.Device.SEID = "" }, mipay.EINVALID},
		"long device":       {func(r *TokenizeRequest) { r.Device.DeviceID = strings.Repeat("d", 200) }, mipay.ETOOLARGE},
		"bad se key":        {func(r *TokenizeRequest) { r.Device.SEPublicKey = "AAAA" }, mipay.EINVALID},
		"se key off curve": {func(r *TokenizeRequest) {
			r.Device.SEPublicKey = base64.StdEncoding.EncodeToString(append([]byte{4}, make([]byte, 64)...))
		}, mipay.EINVALID},
		"negative age":       {func(r *TokenizeRequest) { r.Risk.AccountAgeDays = -1 }, mipay.EINVALID},
		"score 9":            {func(r *TokenizeRequest) { r.Risk.DeviceScore = 9 }, mipay.EINVALID},
		"no card data":       {func(r *TokenizeRequest) { r.EncryptedCardData = "" }, mipay.EINVALID},
		"card data not b64":  {func(r *TokenizeRequest) { r.EncryptedCardData = "!!!" }, mipay.EINVALID},
		"huge card data":     {func(r *TokenizeRequest) { r.EncryptedCardData = strings.Repeat("A", 8<<10) }, mipay.ETOOLARGE},
		"sealed for another": {func(r *TokenizeRequest) { r.EncryptedCardData = f.sealCard(t, cardOf(ch), "12345678901") }, mipay.EINVALID},
	} {
		t.Run(name, func(t *testing.T) {
			r := good()
			c.mut(&r)
			_, err := f.svc.Tokenize(ctx, r)
			if mipay.ErrorCode(err) != c.code {
				t.Fatalf("code %q (%v), want %q", mipay.ErrorCode(err), err, c.code)
			}
		})
	}
	if f.issuer.callCount() != 0 {
		t.Fatal("issuer asked on bad input")
	}
}

func TestLifecycle(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	res, _ := f.mustActiveToken(t, config.Debit, "dev-1")
	ref := res.TokenRef
	step := func(a Action, by CausedBy, want State, code string) {
		t.Helper()
		v, err := f.svc.Lifecycle(ctx, ref, a, by, "test "+string(a))
		if mipay.ErrorCode(err) != code || (code == "" && v.State != want) {
			t.Fatalf("%s by %s: %+v %v (want %s %q)", a, by, v.State, err, want, code)
		}
	}
	step(ActionResume, CausedByCardholder, "", mipay.ECONFLICT)
	step(ActionSuspend, CausedByCardholder, StateSuspended, "")
	step(ActionSuspend, CausedByCardholder, "", mipay.ECONFLICT)
	step(ActionResume, CausedByTokenRequestor, StateActive, "")
	step(ActionSuspend, CausedByIssuer, StateSuspended, "")
	step(ActionResume, CausedByCardholder, "", mipay.EFORBIDDEN)
	step(ActionResume, CausedByIssuer, StateActive, "")
	step(ActionDelete, CausedByCardholder, StateDeactivated, "")
	step(ActionResume, CausedByIssuer, "", mipay.ECONFLICT)
	step(ActionDelete, CausedByCardholder, "", mipay.ECONFLICT)
	if _, err := f.svc.Lifecycle(ctx, ref, ActionSuspend, "SOMEONE", ""); mipay.ErrorCode(err) != mipay.EINVALID {
		t.Fatalf("bad causedBy: %v", err)
	}
	if _, err := f.svc.Lifecycle(ctx, "DTSP"+strings.Repeat("a", 32), ActionSuspend, CausedByCardholder, ""); mipay.ErrorCode(err) != mipay.ENOTFOUND {
		t.Fatalf("unknown token: %v", err)
	}
	v, err := f.svc.View(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	want := []State{StateActive, StateSuspended, StateActive, StateSuspended, StateActive, StateDeactivated}
	if len(v.History) != len(want) {
		t.Fatalf("history %+v", v.History)
	}
	for i, h := range v.History {
		if h.State != want[i] {
			t.Fatalf("history[%d] = %s, want %s", i, h.State, want[i])
		}
	}
	ev := f.bus.all()
	if len(ev) != len(want) {
		t.Fatalf("%d events for %d changes", len(ev), len(want))
	}
	last := ev[len(ev)-1]
	if last.State != StateDeactivated || last.From != StateActive || last.CausedBy != CausedByCardholder || last.Reason != "test delete" {
		t.Fatalf("last event %+v", last)
	}
	if n := len(f.issuer.notices); n != len(want) || f.issuer.notices[n-1].Event != NoticeStateChanged {
		t.Fatalf("notices %+v", f.issuer.notices)
	}
}

func TestProvisioningProfile(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	res, _ := f.mustActiveToken(t, config.Credit, "dev-1")
	p, err := f.svc.Provisioning(ctx, res.TokenRef)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := f.vault.Get(ctx, res.TokenRef)
	if p.DPAN != tok.DPAN || p.AID != AIDCredit || p.SEID != "se-dev-1" || p.CVN != 1 || p.TokenRequestorID != miPay {
		t.Fatalf("profile %+v", p)
	}
	mk, err := cryptobox.Open(f.se, p.SealedKey, ProfileKeyAAD(p.SEID, p.TokenRef))
	if err != nil {
		t.Fatalf("SE cannot open its key: %v", err)
	}
	want, _ := emv.DeriveICCMK(f.keys.imk(tok.IssuerID), tok.DPAN, tok.PSN)
	if !bytes.Equal(mk, want[:]) {
		t.Fatal("sealed key is not the token's ICC master key")
	}
	if _, err := cryptobox.Open(f.se, p.SealedKey, ProfileKeyAAD("se-other", p.TokenRef)); err == nil {
		t.Fatal("key opens for another SE id")
	}
	other, _ := ecdh.P256().GenerateKey(nil)
	if other != nil {
		if _, err := cryptobox.Open(other, p.SealedKey, ProfileKeyAAD(p.SEID, p.TokenRef)); err == nil {
			t.Fatal("key opens with another SE's private key")
		}
	}
	b, _ := json.Marshal(p)
	if bytes.Contains(b, mk) || strings.Contains(string(b), strings.ToUpper(string(mk))) {
		t.Fatal("profile JSON holds the clear key")
	}
	v, err := f.svc.ConfirmProvisioning(ctx, res.TokenRef)
	if err != nil || !v.Provisioned {
		t.Fatalf("confirm %+v %v", v, err)
	}
}

// TestNoPlaintextPANInStore runs bindings and lifecycle changes, then scans
// the SQLite files for any PAN in ASCII or BCD.
func TestNoPlaintextPANInStore(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var pans []string
	for _, typ := range []string{config.Debit, config.Credit} {
		res, ch := f.mustActiveToken(t, typ, "dev-"+typ)
		pans = append(pans, ch.PAN)
		if _, err := f.svc.Lifecycle(ctx, res.TokenRef, ActionSuspend, CausedByCardholder, "DEVICE_LOST"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Provisioning(ctx, res.TokenRef); err == nil {
			t.Fatal("profile of a suspended token")
		}
	}
	_, ch := demoCard(t, f.ref, config.Debit)
	f.issuer.decision[ch.PAN] = DecisionResponse{Decision: DecisionDeclined, Reason: "RISK"}
	if _, err := f.svc.Tokenize(ctx, f.tokenizeReq(t, cardOf(ch), "dev-x")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.vault.db.DB.ExecContext(ctx, `PRAGMA wal_checkpoint(FULL)`); err != nil {
		t.Logf("checkpoint: %v", err)
	}
	scanForPANs(t, f.vault.db.String(), pans)
	for _, e := range f.bus.raw {
		for _, p := range pans {
			if bytes.Contains(e, []byte(p)) {
				t.Fatalf("event holds a PAN: %s", e)
			}
		}
	}
}

// scanForPANs fails if any file beside path (the SQLite file, its WAL and
// journal) holds a PAN as ASCII digits or packed BCD.
func scanForPANs(t *testing.T, path string, pans []string) {
	t.Helper()
	dir := filepath.Dir(path)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		t.Skipf("store is not a local file (%s)", path)
	}
	if fn, pan, n := findPAN(dir, pans); n == 0 {
		t.Fatalf("no store files under %s", dir)
	} else if fn != "" {
		t.Fatalf("%s holds PAN %s", fn, MaskPAN(pan))
	}
}

// findPAN returns the first file under dir holding one of pans, and how
// many files it read.
func findPAN(dir string, pans []string) (file, pan string, read int) {
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, fn := range files {
		data, err := os.ReadFile(fn)
		if err != nil {
			continue
		}
		read++
		for _, p := range pans {
			bcd, _ := bcdPadF(p)
			if bytes.Contains(data, []byte(p)) || bytes.Contains(data, bcd) {
				return fn, p, read
			}
		}
	}
	return "", "", read
}

func TestFindPANDetects(t *testing.T) {
	dir := t.TempDir()
	pan := "6210102803651527"
	os.WriteFile(filepath.Join(dir, "a"), []byte("nothing here"), 0o600)
	if fn, _, n := findPAN(dir, []string{pan}); fn != "" || n != 1 {
		t.Fatalf("false positive %s (%d files)", fn, n)
	}
	bcd, _ := bcdPadF(pan)
	os.WriteFile(filepath.Join(dir, "b"), append([]byte("x"), bcd...), 0o600)
	if fn, _, _ := findPAN(dir, []string{pan}); fn == "" {
		t.Fatal("BCD PAN not found")
	}
}
