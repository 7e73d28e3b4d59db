package tsp

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/cryptobox"
	"github.com/mipay-oss/mipay/emv"
	"github.com/mipay-oss/mipay/store/storetest"
)

// softKeys is a test double of the HSM-backed Keys, built from the same
// primitives (cryptobox, AES-GCM, HMAC, emv) so the service and authorizer
// can be tested before and independently of the hsm package.
type softKeys struct {
	box  *ecdh.PrivateKey
	aead cipher.AEAD
	mac  []byte
	mu   sync.Mutex
	imks map[string][]byte
}

func newSoftKeys(tb testing.TB) *softKeys {
	tb.Helper()
	box, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	k := make([]byte, 32)
	rand.Read(k)
	blk, _ := aes.NewCipher(k)
	aead, _ := cipher.NewGCM(blk)
	mac := make([]byte, 32)
	rand.Read(mac)
	return &softKeys{box: box, aead: aead, mac: mac, imks: map[string][]byte{}}
}

func (s *softKeys) imk(issuerID string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.imks[issuerID]
	if !ok {
		k = make([]byte, 16)
		rand.Read(k)
		emv.OddParity(k)
		s.imks[issuerID] = k
	}
	return k
}

func (s *softKeys) BoxPublicKey(context.Context) ([]byte, error) {
	return s.box.PublicKey().Bytes(), nil
}

func (s *softKeys) OpenCardData(_ context.Context, blob, aad []byte) ([]byte, error) {
	return cryptobox.Open(s.box, blob, aad)
}

func (s *softKeys) SealPAN(_ context.Context, pan string, aad []byte) ([]byte, error) {
	nonce := make([]byte, 12)
	rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, []byte(pan), aad), nil
}

func (s *softKeys) OpenPAN(_ context.Context, sealed, aad []byte) (string, error) {
	if len(sealed) < 12 {
		return "", errors.New("short")
	}
	p, err := s.aead.Open(nil, sealed[:12], sealed[12:], aad)
	return string(p), err
}

func (s *softKeys) MAC(_ context.Context, data []byte) ([]byte, error) {
	m := hmac.New(sha256.New, s.mac)
	m.Write(data)
	return m.Sum(nil), nil
}

func (s *softKeys) SealICCKey(_ context.Context, issuerID, dpan string, psn int, sePub, aad []byte) ([]byte, error) {
	mk, err := emv.DeriveICCMK(s.imk(issuerID), dpan, psn)
	if err != nil {
		return nil, err
	}
	pub, err := ecdh.P256().NewPublicKey(sePub)
	if err != nil {
		return nil, err
	}
	return cryptobox.Seal(pub, mk[:], aad)
}

func (s *softKeys) VerifyARQC(_ context.Context, issuerID, dpan string, psn int, atc uint16, data []byte, arqc [8]byte) (bool, error) {
	imk, err := emv.NewIMK(s.imk(issuerID))
	if err != nil {
		return false, err
	}
	ok, _, err := emv.VerifyARQCPBOC(imk, dpan, psn, atc, data, arqc)
	return ok, err
}

func (s *softKeys) ARPC(_ context.Context, issuerID, dpan string, psn int, atc uint16, arqc [8]byte, arc [2]byte) ([8]byte, error) {
	mk, err := emv.DeriveICCMK(s.imk(issuerID), dpan, psn)
	if err != nil {
		return [8]byte{}, err
	}
	return emv.ARPCMethod1(emv.SessionKeyPBOC(mk, atc), arqc, arc), nil
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
	keys   *softKeys
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
	f := &fixture{vault: NewVault(db), keys: newSoftKeys(tb), issuer: newFakeIssuer(), bus: &fakeBus{}, ref: mustDefaultRef(tb)}
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
	blob, err := cryptobox.Seal(f.keys.box.PublicKey(), pt, CardDataAAD(requestor))
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
