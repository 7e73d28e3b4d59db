package gate

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mipay-oss/mipay/atomicfile"
	"github.com/mipay-oss/mipay/cryptobox"
	"github.com/mipay-oss/mipay/emv"
	"github.com/mipay-oss/mipay/transit"
)

// The PSAM (purchase secure access module) is the gate's secure module: it
// holds the city's purchase master key, diversifies it per card, makes MAC1
// and checks the card's MAC2. Like the phone's SE in this emulator it is a
// small module with its own P-256 key pair made inside it and its state
// sealed (AES-256-GCM) under a device key in its directory — in hardware
// that key is fused into the chip.
//
// Provisioning: the gate sends the PSAM's public key to the agency with the
// operator token; the agency's HSM seals the purchase master (and only it:
// hsm.PSAMExporter refuses any other key) to that key, bound to the city and
// the PSAM id; only this PSAM opens it. The load and TAC masters never
// reach a gate, so a stolen gate can neither load cards nor forge TACs.

const (
	psamStateFile = "psam.state"
	psamSealFile  = "psam.seal"
	psamAAD       = "mipay psam state v1"
	maxPSAMState  = 64 << 10
)

// PSAM is a gate's purchase secure access module.
type PSAM struct {
	dir  string
	aead cipher.AEAD
	priv *ecdh.PrivateKey
	st   psamState
	mk   emv.Key
}

type psamState struct {
	ID       string  `json:"id"`       // the terminal number as hex
	Terminal [6]byte `json:"terminal"` // the PSAM terminal number in MACs and TACs
	Key      []byte  `json:"key"`      // P-256 private key
	City     string  `json:"city,omitempty"`
	Master   []byte  `json:"master,omitempty"` // the purchase master, once provisioned
}

// CreatePSAM makes a new PSAM in dir (which must not hold one).
func CreatePSAM(dir string) (*PSAM, error) {
	if _, err := os.Stat(filepath.Join(dir, psamStateFile)); err == nil {
		return nil, fmt.Errorf("gate: %s already holds a PSAM", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("gate: %w", err)
	}
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	var term [6]byte
	if _, err := rand.Read(term[:]); err != nil {
		return nil, err
	}
	seal := make([]byte, 32)
	if _, err := rand.Read(seal); err != nil {
		return nil, err
	}
	if err := atomicfile.Write(filepath.Join(dir, psamSealFile), seal, 0o600); err != nil {
		return nil, err
	}
	p, err := newPSAM(dir, seal)
	if err != nil {
		return nil, err
	}
	p.priv = priv
	p.st = psamState{ID: hex.EncodeToString(term[:]), Terminal: term, Key: priv.Bytes()}
	return p, p.persist()
}

// OpenPSAM opens the PSAM in dir.
func OpenPSAM(dir string) (*PSAM, error) {
	seal, err := os.ReadFile(filepath.Join(dir, psamSealFile))
	if err != nil {
		return nil, fmt.Errorf("gate: no PSAM in %s (provision the gate first): %w", dir, err)
	}
	p, err := newPSAM(dir, seal)
	if err != nil {
		return nil, err
	}
	blob, err := os.ReadFile(filepath.Join(dir, psamStateFile))
	if err != nil {
		return nil, fmt.Errorf("gate: %w", err)
	}
	if len(blob) > maxPSAMState || len(blob) < p.aead.NonceSize() {
		return nil, errors.New("gate: PSAM state file is malformed")
	}
	pt, err := p.aead.Open(nil, blob[:p.aead.NonceSize()], blob[p.aead.NonceSize():], []byte(psamAAD))
	if err != nil {
		return nil, errors.New("gate: PSAM state does not open under this PSAM's sealing key")
	}
	if err := json.Unmarshal(pt, &p.st); err != nil {
		return nil, fmt.Errorf("gate: PSAM state: %w", err)
	}
	if p.priv, err = ecdh.P256().NewPrivateKey(p.st.Key); err != nil {
		return nil, fmt.Errorf("gate: PSAM key: %w", err)
	}
	if len(p.st.Master) == 16 {
		p.mk = emv.Key(p.st.Master)
	}
	return p, nil
}

func newPSAM(dir string, seal []byte) (*PSAM, error) {
	block, err := aes.NewCipher(seal)
	if err != nil {
		return nil, fmt.Errorf("gate: PSAM sealing key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &PSAM{dir: dir, aead: aead}, nil
}

func (p *PSAM) persist() error {
	pt, err := json.Marshal(&p.st)
	if err != nil {
		return err
	}
	nonce := make([]byte, p.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(p.dir, psamStateFile), p.aead.Seal(nonce, nonce, pt, []byte(psamAAD)), 0o600)
}

// ID is the PSAM's id (its terminal number in hex).
func (p *PSAM) ID() string { return p.st.ID }

// Terminal is the PSAM terminal number.
func (p *PSAM) Terminal() [6]byte { return p.st.Terminal }

// PublicKey is the PSAM's P-256 public key (uncompressed).
func (p *PSAM) PublicKey() []byte { return p.priv.PublicKey().Bytes() }

// City is the city the PSAM was provisioned for ("" before).
func (p *PSAM) City() string { return p.st.City }

// Install opens the agency's sealed purchase master (bound to city and this
// PSAM's id) and keeps it.
func (p *PSAM) Install(city string, sealed []byte) error {
	k, err := cryptobox.Open(p.priv, sealed, transit.PSAMKeyAAD(city, p.st.ID))
	if err != nil || len(k) != 16 {
		return errors.New("gate: the purchase key does not open in this PSAM")
	}
	p.st.City, p.st.Master = city, k
	if err := p.persist(); err != nil {
		return err
	}
	p.mk = emv.Key(k)
	return nil
}

// purchase is one PSAM purchase session.
type purchase struct {
	sk [8]byte
	tx emv.EPurseTx
}

// startPurchase makes the session key and MAC1 for a card's INITIALIZE
// answer (random, offline serial) and the terminal serial.
func (p *PSAM) startPurchase(cardNumber string, random [4]byte, offlineSerial [2]byte, tsn [4]byte, tx emv.EPurseTx) (*purchase, [4]byte, error) {
	if len(p.st.Master) != 16 {
		return nil, [4]byte{}, errors.New("gate: the PSAM has no purchase key (provision the gate)")
	}
	div, err := emv.EPurseDiversifier(cardNumber)
	if err != nil {
		return nil, [4]byte{}, err
	}
	dpk := emv.DiversifyKey(p.mk, div)
	sk := emv.EPursePurchaseSessionKey(dpk, random, offlineSerial, [2]byte(tsn[2:4]))
	clear(dpk[:])
	return &purchase{sk: sk, tx: tx}, emv.EPursePurchaseMAC1(sk, tx), nil
}

// verifyMAC2 checks the card's MAC2 after DEBIT FOR PURCHASE.
func (s *purchase) verifyMAC2(mac2 []byte) bool {
	want := emv.EPursePurchaseMAC2(s.sk, s.tx.Amount)
	return subtle.ConstantTimeCompare(want[:], mac2) == 1
}
