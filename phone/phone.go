// Package phone is the handset emulator: the Mi Wallet app logic, the
// fingerprint sensor and the NFC controller routing a reader's APDUs to the
// secure element. The app talks only to the wallet server over HTTP; SMS
// arrive through the SMS gateway's outbox, which stands in for the SIM.
//
// A phone is named; its state lives under <data>/phones/<name>: app.json
// (session, device id, the SIM's number, card ↔ token mapping, the enrolled
// fingerprint's template) and se/ (the secure element's sealed state).
package phone

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sync"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/cryptobox"
	"github.com/mipay-oss/mipay/httpx"
	"github.com/mipay-oss/mipay/se"
)

// MiPayRequestorID is the token requestor id of Mi Pay; card data is sealed
// to the TSP for it.
const MiPayRequestorID = "50110030273"

// DefaultModel is the handset model reported to the wallet.
const DefaultModel = "Xiaomi Mi 5 (emulated)"

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_-]{0,31}$`)

// Config says where the phone lives and whom it talks to.
type Config struct {
	DataDir   string // the data directory (phones/<name>, se-factory)
	Name      string // the handset's name
	WalletURL string // e.g. http://127.0.0.1:8410
	SMSURL    string // the SMS gateway, e.g. http://127.0.0.1:8440
	// SE are the secure element's options (zero: a handset's); a load
	// generator's phone raises MaxPaymentCards and may be Volatile.
	SE se.Options
}

// Phone is one handset.
type Phone struct {
	cfg    Config
	dir    string
	se     *se.SE
	wallet httpx.Client
	sms    httpx.Client

	mu  sync.Mutex
	app appState
}

// appState is the Mi Wallet app's local data.
type appState struct {
	Number        string            `json:"number"` // the SIM's phone number
	Login         string            `json:"login,omitempty"`
	Session       string            `json:"session,omitempty"`
	DeviceID      string            `json:"deviceId,omitempty"`
	Finger        []byte            `json:"finger,omitempty"`  // enrolled template (in the TEE on a real phone)
	CardTokens    map[string]string `json:"cardTokens"`        // wallet card id → token ref in the SE
	LastNotifySeq int64             `json:"lastNotifySeq"`     // notifications already shown
	SMSSeen       int64             `json:"smsSeen,omitempty"` // last SMS id read
}

// Open opens the named phone, making it (and its SE, certified by the data
// directory's SE factory) on first use.
func Open(ctx context.Context, cfg Config) (*Phone, error) {
	if !nameRE.MatchString(cfg.Name) {
		return nil, mipay.Errorf(mipay.EINVALID, "phone name %q: use 1-32 letters, digits, '-' or '_'", cfg.Name)
	}
	dir := filepath.Join(cfg.DataDir, "phones", cfg.Name)
	p := &Phone{cfg: cfg, dir: dir, wallet: httpx.Client{Base: cfg.WalletURL}, sms: httpx.Client{Base: cfg.SMSURL}}
	var err error
	if p.se, err = openSE(filepath.Join(dir, "se"), cfg); err != nil {
		var inUse *se.InUseError
		if errors.As(err, &inUse) {
			return nil, mipay.WrapError(mipay.ECONFLICT, err,
				"phone %s is in use by %s, which holds its secure element (%s): wait for that command to finish, then retry",
				cfg.Name, inUse.Holder(), inUse.Dir)
		}
		return nil, err
	}
	if err := p.load(); err != nil {
		p.se.Close()
		return nil, err
	}
	p.wallet.Token = p.app.Session
	return p, nil
}

// openSE opens the phone's SE, which holds the SE directory's lock until
// Close (one process at a time uses a phone), making it on first use. A
// volatile SE (load generators) takes no lock.
func openSE(seDir string, cfg Config) (*se.SE, error) {
	if se.Exists(seDir) {
		return se.Open(seDir, cfg.SE)
	}
	f, err := se.OpenFactory(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	s, err := se.Manufacture(seDir, f, cfg.SE)
	if errors.Is(err, se.ErrExists) {
		return se.Open(seDir, cfg.SE) // another process made it first
	}
	if err != nil || cfg.SE.Volatile {
		// A volatile SE's state is only in memory: it cannot be reopened.
		return s, err
	}
	// Manufacture does not keep the lock: reopen to hold it.
	if err := s.Close(); err != nil {
		return nil, err
	}
	return se.Open(seDir, cfg.SE)
}

// Close closes the phone's SE, releasing its lock for the next process.
// The phone must not be used afterwards.
func (p *Phone) Close() error { return p.se.Close() }

func (p *Phone) statePath() string { return filepath.Join(p.dir, "app.json") }

func (p *Phone) load() error {
	b, err := os.ReadFile(p.statePath())
	if errors.Is(err, os.ErrNotExist) {
		p.app.CardTokens = map[string]string{}
		return nil
	}
	if err != nil {
		return fmt.Errorf("phone: %w", err)
	}
	if err := json.Unmarshal(b, &p.app); err != nil {
		return fmt.Errorf("phone: %s is corrupt: %w", p.statePath(), err)
	}
	if p.app.CardTokens == nil {
		p.app.CardTokens = map[string]string{}
	}
	return nil
}

// save persists the app state; callers hold mu.
func (p *Phone) save() error {
	b, err := json.MarshalIndent(&p.app, "", "  ")
	if err != nil {
		return err
	}
	tmp := p.statePath() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("phone: %w", err)
	}
	return os.Rename(tmp, p.statePath())
}

// SE is the phone's secure element.
func (p *Phone) SE() *se.SE { return p.se }

// Name is the handset's name.
func (p *Phone) Name() string { return p.cfg.Name }

// Number is the SIM's phone number.
func (p *Phone) Number() string { return p.app.Number }

// DeviceID is the wallet's id of this handset ("" before sign-in).
func (p *Phone) DeviceID() string { return p.app.DeviceID }

func (p *Phone) requireSession() error {
	if p.app.Session == "" {
		return mipay.Errorf(mipay.EUNAUTHORIZED, "phone %s is not signed in: run `mipay phone login --phone %s`", p.cfg.Name, p.cfg.Name)
	}
	return nil
}

func (p *Phone) requireDevice() error {
	if err := p.requireSession(); err != nil {
		return err
	}
	if p.app.DeviceID == "" {
		return mipay.Errorf(mipay.ECONFLICT, "phone %s is not registered to the account: sign in again", p.cfg.Name)
	}
	return nil
}

// Register creates a Mi account with this phone's number; the SIM's number
// becomes that number. It returns the recovery codes (shown once).
func (p *Phone) Register(ctx context.Context, number, email, password string) ([]string, error) {
	var out struct {
		RecoveryCodes []string `json:"recoveryCodes"`
	}
	if err := p.wallet.Do(ctx, "POST", "/v1/accounts", map[string]string{"phone": number, "email": email, "password": password}, &out); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.app.Number = number
	return out.RecoveryCodes, p.save()
}

// Login signs in to the Mi account and registers this handset (with its SE
// attestation) to it if it is not yet.
func (p *Phone) Login(ctx context.Context, login, password string) error {
	var sess struct {
		Token string `json:"token"`
	}
	if err := p.wallet.Do(ctx, "POST", "/v1/sessions", map[string]string{"login": login, "password": password}, &sess); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.app.Session, p.app.Login = sess.Token, login
	p.wallet.Token = sess.Token
	if p.app.Number == "" && regexp.MustCompile(`^\+?[0-9]{6,15}$`).MatchString(login) {
		p.app.Number = login
	}
	if err := p.registerDevice(ctx); err != nil {
		return err
	}
	return p.save()
}

// registerDevice registers the handset unless the account already has it.
func (p *Phone) registerDevice(ctx context.Context) error {
	var list struct {
		Devices []struct {
			ID   string `json:"id"`
			SEID string `json:"seId"`
		} `json:"devices"`
	}
	if err := p.wallet.Do(ctx, "GET", "/v1/devices", nil, &list); err != nil {
		return err
	}
	for _, d := range list.Devices {
		if d.SEID == p.se.ID() {
			p.app.DeviceID = d.ID
			return nil
		}
	}
	var dev struct {
		ID string `json:"id"`
	}
	req := map[string]any{
		"model": DefaultModel, "seId": p.se.ID(), "sePublicKey": p.se.PublicKey(),
		"certificateChain": p.se.CertificateChain(), "fingerprintEnrolled": len(p.app.Finger) > 0,
	}
	if err := p.wallet.Do(ctx, "POST", "/v1/devices", req, &dev); err != nil {
		return err
	}
	p.app.DeviceID = dev.ID
	return nil
}

// EnrollFinger enrolls the owner's fingerprint on the handset and tells the
// wallet that Mi Pay can use it.
func (p *Phone) EnrollFinger(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.requireDevice(); err != nil {
		return err
	}
	if len(p.app.Finger) == 0 {
		t := make([]byte, 32)
		if _, err := rand.Read(t); err != nil {
			return err
		}
		p.app.Finger = t
	}
	if err := p.wallet.Do(ctx, "PUT", "/v1/devices/"+url.PathEscape(p.app.DeviceID)+"/fingerprint", map[string]bool{"enrolled": true}, nil); err != nil {
		return err
	}
	return p.save()
}

// Finger is what touches the sensor.
type Finger string

// Fingers.
const (
	FingerOK    Finger = "ok"    // the enrolled finger
	FingerWrong Finger = "wrong" // someone else's finger
	FingerNone  Finger = "none"  // nobody touches the sensor
)

// ParseFinger validates a --finger value.
func ParseFinger(s string) (Finger, error) {
	switch f := Finger(s); f {
	case FingerOK, FingerWrong, FingerNone:
		return f, nil
	}
	return "", mipay.Errorf(mipay.EINVALID, "--finger %q: use ok, wrong or none", s)
}

// matchFinger is the sensor and matcher: it compares what touched it to the
// enrolled template.
func (p *Phone) matchFinger(f Finger) bool {
	if len(p.app.Finger) == 0 || f == FingerNone {
		return false
	}
	sample := p.app.Finger
	if f == FingerWrong {
		sum := sha256.Sum256(append([]byte("another person"), p.app.Finger...))
		sample = sum[:]
	}
	return subtle.ConstantTimeCompare(sample, p.app.Finger) == 1
}

// sealCardData seals card details to the TSP's key (fetched through the
// wallet); the wallet relays the blob without being able to read it.
func (p *Phone) sealCardData(ctx context.Context, c CardDetails) (string, error) {
	var key struct {
		Key string `json:"key"`
	}
	if err := p.wallet.Do(ctx, "GET", "/v1/tsp-key", nil, &key); err != nil {
		return "", err
	}
	raw, err := base64.StdEncoding.DecodeString(key.Key)
	if err != nil {
		return "", mipay.WrapError(mipay.EUNAVAILABLE, err, "the wallet gave a malformed TSP key")
	}
	pub, err := ecdh.P256().NewPublicKey(raw)
	if err != nil {
		return "", mipay.WrapError(mipay.EUNAVAILABLE, err, "the wallet gave a malformed TSP key")
	}
	pt, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	blob, err := cryptobox.Seal(pub, pt, []byte("mipay tsp card data v1\x00"+MiPayRequestorID))
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(blob), nil
}
