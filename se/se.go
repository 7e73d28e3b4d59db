// Package se is the secure element of the handset emulator (an EAL6+ class
// chip in a real Mi phone). It generates its P-256 key pair inside itself,
// holds a factory certificate chain for attestation, installs payment applet
// instances only from card profiles whose keys are sealed to its own key, and
// answers ISO 7816 APDUs from the NFC controller.
//
// Nothing secret leaves it: the private key and the cards' ICC master keys are
// only in its state, which is persisted sealed (AES-256-GCM) under a device
// key in the phone's directory (in hardware that key is fused into the chip).
package se

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/mipay-oss/mipay"
)

// Limits.
const (
	// MaxPaymentCards is how many payment applet instances an SE holds
	// unless Options.MaxPaymentCards says otherwise; the 9th install is
	// refused (Mi Pay binds at most 8 cards per device).
	MaxPaymentCards = 8
	// DefaultArmWindow is how long a fingerprint match arms a payment applet.
	DefaultArmWindow = 60 * time.Second
	// maxStateBytes bounds the sealed state file read at start.
	maxStateBytes = 1 << 20
)

const (
	stateFile = "se.state"
	sealFile  = "se.seal" // the device sealing key (fused in real hardware)
	stateAAD  = "mipay se state v1"
)

// ErrCardsFull is returned when a 9th payment card is installed.
var ErrCardsFull = mipay.Errorf(mipay.ELIMIT, "the secure element already holds %d payment cards", MaxPaymentCards)

// SE is one secure element. It is safe for concurrent use.
type SE struct {
	dir      string
	volatile bool
	now      func() time.Time
	aead     cipher.AEAD

	mu    sync.Mutex
	st    state
	priv  *ecdsa.PrivateKey
	armed arming
	sel   *paymentCard // the applet selected on the contactless interface

	j *journalState // the e-purse journal, once opened (epurse_journal.go)
	// rewriteState: a write failed and what is on disk is uncertain; the
	// next e-purse transaction writes the whole state (new generation).
	rewriteState bool
	ep           epSession    // the selected e-purse applet's session (epurse.go)
	maxTransit   int          // Options.MaxTransitCards
	maxPayment   int          // Options.MaxPaymentCards
	epRand       func([]byte) // tests: the e-purse's random numbers (nil: crypto/rand)
	lock         *os.File     // the directory's lock (lock.go); nil: volatile or Manufacture's
	closed       bool
}

// state is what the SE persists (sealed).
type state struct {
	ID       string         `json:"id"`
	Key      []byte         `json:"key"` // P-256 private scalar
	Cert     []byte         `json:"cert"`
	CACert   []byte         `json:"caCert"`
	Cards    []*paymentCard `json:"cards"`
	Selected string         `json:"selected"`         // token ref of the card used for contactless
	Purses   []*purse       `json:"purses,omitempty"` // transit e-purse instances (epurse.go)
	// JournalGen is the e-purse journal generation this state starts (the
	// journal's records of it are replayed on top; epurse_journal.go).
	JournalGen uint64 `json:"journalGen,omitempty"`
}

type arming struct {
	tokenRef string
	cdcvm    bool
	until    time.Time
}

// Options configure Open.
type Options struct {
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// MaxTransitCards bounds the e-purse instances; 0 means DefaultMaxTransitCards.
	MaxTransitCards int
	// MaxPaymentCards bounds the payment applet instances; 0 means
	// MaxPaymentCards (8). Only load generators (a bench SE holding 1,000
	// tokens) raise it; it is not kept in the SE's state.
	MaxPaymentCards int
	// Volatile keeps every change in memory only: a load generator's copy of
	// an SE (mipay bench) must not pay an fsync per cryptogram. A volatile SE
	// forgets its ATCs when closed, so it must never be reopened for real use.
	Volatile bool
}

// ErrExists is wrapped by Manufacture's error when dir already holds an SE.
var ErrExists = errors.New("se: the directory already holds a secure element")

// Manufacture makes a new SE in dir (which must not hold one): generates its
// key pair inside, and has the factory certify it. It holds the directory's
// lock while it makes the SE (another holder: an error wrapping ErrInUse),
// but the SE it returns does not keep it: a caller that goes on using the SE
// next to other processes closes it and Opens the directory (as phone.Open
// does).
func Manufacture(dir string, f *Factory, opts Options) (*SE, error) {
	if Exists(dir) {
		return nil, fmt.Errorf("se: %s already holds a secure element: %w", dir, ErrExists)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("se: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if Exists(dir) {
		return nil, fmt.Errorf("se: %s already holds a secure element: %w", dir, ErrExists)
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	idb := make([]byte, 8)
	if _, err := rand.Read(idb); err != nil {
		return nil, err
	}
	id := "SE" + hex.EncodeToString(idb)
	cert, err := f.issue(id, &priv.PublicKey)
	if err != nil {
		return nil, err
	}
	sealKey := make([]byte, 32)
	if _, err := rand.Read(sealKey); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, sealFile), sealKey, 0o600); err != nil {
		return nil, err
	}
	s, err := newSE(dir, sealKey, opts)
	if err != nil {
		return nil, err
	}
	s.priv = priv
	s.st = state{ID: id, Key: priv.D.FillBytes(make([]byte, 32)), Cert: cert, CACert: f.RootDER()}
	if err := s.persist(); err != nil {
		return nil, err
	}
	return s, nil
}

// Open opens the SE persisted in dir. Unless opts.Volatile, it takes the
// directory's exclusive lock (lock.go) and holds it until Close: while
// another SE holds it, in this process or another, Open fails at once with
// a *mipay.Error (ECONFLICT) wrapping an *InUseError (errors.Is ErrInUse).
func Open(dir string, opts Options) (*SE, error) {
	sealKey, err := os.ReadFile(filepath.Join(dir, sealFile))
	if err != nil {
		return nil, fmt.Errorf("se: no secure element in %s: %w", dir, err)
	}
	var lock *os.File
	if !opts.Volatile {
		if lock, err = lockDir(dir); err != nil {
			return nil, err
		}
	}
	s, err := newSE(dir, sealKey, opts)
	if err != nil {
		if lock != nil {
			lock.Close()
		}
		return nil, err
	}
	s.lock = lock
	if err := s.load(); err != nil {
		s.Close() // the journal load may have opened, and the lock
		return nil, err
	}
	return s, nil
}

// errClosed is what a change to a closed SE gets.
var errClosed = mipay.Errorf(mipay.ECONFLICT, "the secure element is closed")

// Close closes the e-purse journal and releases the directory's lock. The
// SE then refuses every change (its state may be read); Close again is a
// no-op.
func (s *SE) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	if s.j != nil {
		errs = append(errs, s.j.f.Close())
		s.j = nil
	}
	if s.lock != nil {
		// Closing the only descriptor of the lock file releases the flock.
		errs = append(errs, s.lock.Close())
		s.lock = nil
	}
	return errors.Join(errs...)
}

// Exists reports whether dir holds an SE.
func Exists(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, stateFile))
	return err == nil
}

func newSE(dir string, sealKey []byte, opts Options) (*SE, error) {
	block, err := aes.NewCipher(sealKey)
	if err != nil {
		return nil, fmt.Errorf("se: sealing key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &SE{dir: dir, now: now, aead: aead, maxTransit: opts.MaxTransitCards, maxPayment: opts.MaxPaymentCards, volatile: opts.Volatile}, nil
}

func (s *SE) load() error {
	path := filepath.Join(s.dir, stateFile)
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("se: %w", err)
	}
	if fi.Size() > maxStateBytes {
		return fmt.Errorf("se: state file %s is %d bytes, over %d", path, fi.Size(), maxStateBytes)
	}
	blob, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("se: %w", err)
	}
	ns := s.aead.NonceSize()
	if len(blob) < ns {
		return errors.New("se: state file is truncated")
	}
	pt, err := s.aead.Open(nil, blob[:ns], blob[ns:], []byte(stateAAD))
	if err != nil {
		return errors.New("se: state file does not open under this device's sealing key")
	}
	var st state
	if err := json.Unmarshal(pt, &st); err != nil {
		return fmt.Errorf("se: state: %w", err)
	}
	priv, err := privateKey(st.Key)
	if err != nil {
		return err
	}
	for _, c := range st.Cards {
		if err := c.prepare(); err != nil {
			return err
		}
	}
	for _, p := range st.Purses {
		if p.CAPP == nil {
			p.CAPP = map[int][]byte{}
		}
	}
	s.st, s.priv = st, priv
	s.sel = s.card(st.Selected)
	if s.volatile {
		return nil
	}
	return s.openJournal(false)
}

// persist seals and writes the state; callers hold mu. A tap's ATC is
// persisted before the cryptogram leaves the SE. The state holds everything
// the e-purse journal had, so it starts a new journal generation (the old
// records no longer open; see epurse_journal.go).
func (s *SE) persist() error {
	if s.closed {
		return errClosed
	}
	if s.volatile {
		return nil
	}
	oldGen := s.st.JournalGen
	gen, err := newJournalGen()
	if err != nil {
		return err
	}
	s.st.JournalGen = gen
	pt, err := json.Marshal(&s.st)
	if err != nil {
		s.st.JournalGen = oldGen
		return err
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		s.st.JournalGen = oldGen
		return err
	}
	if err := writeFileAtomic(filepath.Join(s.dir, stateFile), s.aead.Seal(nonce, nonce, pt, []byte(stateAAD)), 0o600); err != nil {
		// Whether the rename happened is unknown: write the state again
		// (under a new generation) at the next e-purse transaction.
		s.st.JournalGen = oldGen
		s.rewriteState = true
		return err
	}
	s.journalRestarted()
	return nil
}

func privateKey(d []byte) (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d)
	if err != nil {
		return nil, fmt.Errorf("se: private key: %w", err)
	}
	return k, nil
}

// ID is the SE's identifier (also its certificate's common name).
func (s *SE) ID() string { return s.st.ID }

// PublicKey is the SE's P-256 public key, uncompressed (65 bytes).
func (s *SE) PublicKey() []byte {
	k, _ := s.priv.PublicKey.ECDH()
	return k.Bytes()
}

// CertificateChain is the SE's certificate and the vendor root, DER.
func (s *SE) CertificateChain() [][]byte { return [][]byte{s.st.Cert, s.st.CACert} }

func (s *SE) ecdhKey() (*ecdh.PrivateKey, error) { return s.priv.ECDH() }

// Card is what the phone may know of an installed payment card.
type Card struct {
	TokenRef  string
	TokenLast string // last 4 digits of the token
	CardType  string
	AppLabel  string
	ATC       uint16
	Selected  bool
}

// Cards lists the installed payment cards.
func (s *SE) Cards() []Card {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Card, 0, len(s.st.Cards))
	for _, c := range s.st.Cards {
		out = append(out, Card{
			TokenRef: c.TokenRef, TokenLast: c.DPAN[len(c.DPAN)-4:], CardType: c.CardType,
			AppLabel: c.AppLabel, ATC: c.ATC, Selected: c.TokenRef == s.st.Selected,
		})
	}
	return out
}

func (s *SE) card(ref string) *paymentCard {
	for _, c := range s.st.Cards {
		if c.TokenRef == ref {
			return c
		}
	}
	return nil
}

// Select makes the card with tokenRef the one the contactless interface
// offers (the wallet's default card, or the one the user picked).
func (s *SE) Select(tokenRef string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.card(tokenRef)
	if c == nil {
		return mipay.Errorf(mipay.ENOTFOUND, "no card %s in the secure element", tokenRef)
	}
	s.st.Selected = tokenRef
	if err := s.persist(); err != nil {
		return err
	}
	s.sel = c
	return nil
}

// Arm arms the payment applet of tokenRef for one transaction within the arm
// window: the fingerprint matched (consumer-device CVM performed). Only the
// phone's fingerprint path calls it, after a match.
func (s *SE) Arm(tokenRef string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.card(tokenRef) == nil {
		return mipay.Errorf(mipay.ENOTFOUND, "no card %s in the secure element", tokenRef)
	}
	s.armed = arming{tokenRef: tokenRef, cdcvm: true, until: s.now().Add(DefaultArmWindow)}
	return nil
}

// Disarm cancels an armed transaction.
func (s *SE) Disarm() {
	s.mu.Lock()
	s.armed = arming{}
	s.mu.Unlock()
}

// Remove deletes a payment card and its keys.
func (s *SE) Remove(tokenRef string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.st.Cards[:0]
	found := false
	for _, c := range s.st.Cards {
		if c.TokenRef == tokenRef {
			found = true
			continue
		}
		kept = append(kept, c)
	}
	if !found {
		return mipay.Errorf(mipay.ENOTFOUND, "no card %s in the secure element", tokenRef)
	}
	s.st.Cards = kept
	if s.st.Selected == tokenRef {
		s.st.Selected, s.sel = "", nil
	}
	if s.armed.tokenRef == tokenRef {
		s.armed = arming{}
	}
	return s.persist()
}

// Wipe removes every applet and key installed since manufacture (the lost
// phone's wipe command). The SE's own identity stays.
func (s *SE) Wipe() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Cards, s.st.Selected, s.sel, s.armed = nil, "", nil, arming{}
	s.st.Purses, s.ep = nil, epSession{}
	return s.persist()
}
