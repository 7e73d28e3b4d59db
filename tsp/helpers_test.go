package tsp

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/cryptobox"
	"github.com/mipay-oss/mipay/emv"
	"github.com/mipay-oss/mipay/hsm"
	"github.com/mipay-oss/mipay/store/storetest"
)

// testKeys is the real software HSM behind HSMKeys, with the issuer master
// keys imported from known bytes so tests can act as the SE (derive the
// token's card key and make cryptograms).
type testKeys struct {
	*HSMKeys
	h    *hsm.Soft
	imks map[string][]byte
}

func newTestKeys(tb testing.TB, ref *config.Reference) *testKeys {
	tb.Helper()
	ctx := context.Background()
	h, err := hsm.OpenSoft(ctx, hsm.SoftConfig{Dir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	k := &testKeys{HSMKeys: NewHSMKeys(h), h: h, imks: map[string][]byte{}}
	for _, is := range ref.Issuers {
		b := make([]byte, 16)
		rand.Read(b)
		emv.OddParity(b)
		if err := h.ImportKey(ctx, hsm.Handle(IMKHandle(is.ID)), hsm.TDES2, b); err != nil {
			tb.Fatal(err)
		}
		k.imks[is.ID] = b
	}
	if err := EnsureKeys(ctx, h, ref); err != nil {
		tb.Fatal(err)
	}
	return k
}

func (k *testKeys) imk(issuerID string) []byte { return k.imks[issuerID] }

func (k *testKeys) boxPub(tb testing.TB) *ecdh.PublicKey {
	tb.Helper()
	b, err := k.BoxPublicKey(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	pub, err := ecdh.P256().NewPublicKey(b)
	if err != nil {
		tb.Fatal(err)
	}
	return pub
}

// fakeIssuer answers like the issuer API: decisions per PAN, one OTP code.
type fakeIssuer struct {
	mu        sync.Mutex
	decision  map[string]DecisionResponse // by PAN; default APPROVED
	otp       map[string]string           // decision id → code
	attempts  map[string]int
	expired   map[string]bool
	verified  map[string]bool
	calls     int
	notices   []TokenNotice
	sawCVN2   []string
	err       error // answer every call with this
	decisions int
}

func newFakeIssuer() *fakeIssuer {
	return &fakeIssuer{decision: map[string]DecisionResponse{}, otp: map[string]string{}, attempts: map[string]int{}, expired: map[string]bool{}, verified: map[string]bool{}}
}

func (f *fakeIssuer) Decide(_ context.Context, issuerID string, req DecisionRequest) (DecisionResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.sawCVN2 = append(f.sawCVN2, req.CVN2)
	if f.err != nil {
		return DecisionResponse{}, f.err
	}
	f.decisions++
	d, ok := f.decision[req.PAN]
	if !ok {
		d = DecisionResponse{Decision: DecisionApproved}
	}
	if d.Decision != DecisionDeclined {
		d.DecisionID = fmt.Sprintf("dcs_%d", f.decisions)
	}
	if d.Decision == DecisionRequireAdditional {
		d.Methods = []AuthMethod{{ID: "sms-1", Type: "SMS", Value: "***8000"}}
		f.otp[d.DecisionID] = "123456"
	}
	d.PANLast4 = req.PAN[len(req.PAN)-4:]
	return d, nil
}

func (f *fakeIssuer) SendOTP(_ context.Context, issuerID, decisionID, methodID string) (OTPSent, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if _, ok := f.otp[decisionID]; !ok || methodID != "sms-1" {
		return OTPSent{}, mipay.Errorf(mipay.ENOTFOUND, "unknown decision or method")
	}
	return OTPSent{DecisionID: decisionID, MethodID: methodID, Destination: "***8000", ExpiresAt: time.Now().Add(5 * time.Minute), ResendsLeft: 2}, nil
}

func (f *fakeIssuer) VerifyOTP(_ context.Context, issuerID, decisionID, code string) (OTPVerdict, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	want, ok := f.otp[decisionID]
	if !ok {
		return OTPVerdict{}, mipay.Errorf(mipay.ENOTFOUND, "unknown decision")
	}
	switch {
	case f.attempts[decisionID] >= 5:
		return OTPVerdict{Result: OTPLocked}, nil
	case f.expired[decisionID]:
		return OTPVerdict{Result: OTPExpired, AttemptsLeft: 5 - f.attempts[decisionID]}, nil
	case code == want:
		f.verified[decisionID] = true
		return OTPVerdict{Result: OTPVerified, AttemptsLeft: 5 - f.attempts[decisionID]}, nil
	}
	f.attempts[decisionID]++
	if f.attempts[decisionID] >= 5 {
		return OTPVerdict{Result: OTPLocked}, nil
	}
	return OTPVerdict{Result: OTPWrong, AttemptsLeft: 5 - f.attempts[decisionID]}, nil
}

func (f *fakeIssuer) Notice(_ context.Context, issuerID string, n TokenNotice) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.notices = append(f.notices, n)
	return nil
}

func (f *fakeIssuer) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// fakeBus records published events as JSON.
type fakeBus struct {
	mu     sync.Mutex
	events []StateChange
	raw    [][]byte
}

func (b *fakeBus) Publish(_ context.Context, subject string, v any) error {
	if subject == SubjectStatesChanged { // a batch: recorded change by change
		data, err := json.Marshal(v)
		if err != nil {
			return err
		}
		var cs StateChanges
		if err := json.Unmarshal(data, &cs); err != nil {
			return err
		}
		b.mu.Lock()
		b.events = append(b.events, cs.Changes...)
		b.mu.Unlock()
		return nil
	}
	if subject != SubjectStateChanged {
		return fmt.Errorf("unexpected subject %s", subject)
	}
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var c StateChange
	if err := json.Unmarshal(data, &c); err != nil {
		return err
	}
	b.mu.Lock()
	b.events = append(b.events, c)
	b.raw = append(b.raw, data)
	b.mu.Unlock()
	return nil
}

func (b *fakeBus) all() []StateChange {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]StateChange(nil), b.events...)
}

type fixture struct {
	svc    *Service
	vault  *Vault
	keys   *testKeys
	issuer *fakeIssuer
	bus    *fakeBus
	ref    *config.Reference
	se     *ecdh.PrivateKey
	dbPath string
}

func mustDefaultRef(tb testing.TB) *config.Reference {
	tb.Helper()
	r, err := config.Default()
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

func newFixture(tb testing.TB) *fixture {
	tb.Helper()
	db := storetest.Open(tb, PartyName, Migrations())
	ref := mustDefaultRef(tb)
	f := &fixture{vault: NewVault(db), keys: newTestKeys(tb, ref), issuer: newFakeIssuer(), bus: &fakeBus{}, ref: ref}
	svc, err := NewService(ServiceConfig{Vault: f.vault, Keys: f.keys, Issuers: f.issuer, Ref: f.ref, Bus: f.bus})
	if err != nil {
		tb.Fatal(err)
	}
	f.svc = svc
	se, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	f.se = se
	return f
}

// demoCard returns a demo cardholder of the reference data of the card type.
func demoCard(tb testing.TB, ref *config.Reference, cardType string) (*config.Issuer, config.Cardholder) {
	tb.Helper()
	for i := range ref.Issuers {
		is := &ref.Issuers[i]
		if is.CardType == cardType && len(is.Cardholders) > 0 {
			return is, is.Cardholders[0]
		}
	}
	tb.Fatalf("no %s demo card", cardType)
	return nil, config.Cardholder{}
}

func (f *fixture) sealCard(tb testing.TB, c CardData, requestor string) string {
	tb.Helper()
	pt, _ := json.Marshal(c)
	blob, err := cryptobox.Seal(f.keys.boxPub(tb), pt, CardDataAAD(requestor))
	if err != nil {
		tb.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(blob)
}

const miPay = "50110030273"

func (f *fixture) tokenizeReq(tb testing.TB, c CardData, device string) TokenizeRequest {
	return TokenizeRequest{
		TokenRequestorID:  miPay,
		AccountID:         "acct-1",
		EncryptedCardData: f.sealCard(tb, c, miPay),
		Device: Device{DeviceID: device, SEID: "se-" + device, Model: "Mi 5",
			SEPublicKey: base64.StdEncoding.EncodeToString(f.se.PublicKey().Bytes())},
		Risk: Risk{AccountAgeDays: 30, DeviceScore: 4},
	}
}

func cardOf(ch config.Cardholder) CardData {
	return CardData{PAN: ch.PAN, Expiry: ch.Expiry, CVN2: ch.CVN2, Name: ch.Name, Phone: ch.Phone}
}

// mustActiveToken tokenizes a demo card on the green path.
func (f *fixture) mustActiveToken(tb testing.TB, cardType, device string) (TokenizeResponse, config.Cardholder) {
	tb.Helper()
	_, ch := demoCard(tb, f.ref, cardType)
	res, err := f.svc.Tokenize(context.Background(), f.tokenizeReq(tb, cardOf(ch), device))
	if err != nil || res.Decision != DecisionApproved || res.State != StateActive {
		tb.Fatalf("tokenize: %+v %v", res, err)
	}
	return res, ch
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }
