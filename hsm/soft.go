package hsm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"io"
	"path/filepath"
	"sync"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/cryptobox"
	"github.com/mipay-oss/mipay/emv"
)

// SoftConfig configures the software HSM.
type SoftConfig struct {
	// Dir holds master.key (unless MasterKeyHex is set) and keystore.json.
	Dir string
	// MasterKeyHex is the master key as 64 hex characters (the CLI passes
	// MIPAY_HSM_MASTER_KEY). Empty: <Dir>/master.key, created on first start.
	MasterKeyHex string
	// ARQCCacheEntries bounds the cache of derived ICC master keys used by
	// VerifyARQC. 0: DefaultARQCCacheEntries.
	ARQCCacheEntries int
}

// Defaults and bounds of the software HSM.
const (
	DefaultARQCCacheEntries = 1 << 16 // ~100 bytes each
	MaxKeys                 = 100_000 // keys in one keystore
	MasterKeyFile           = "master.key"
	KeystoreFile            = "keystore.json"
)

// Soft is the software HSM. It is safe for concurrent use, also by several
// processes sharing Dir (writes are serialised with a file lock and merge
// what is on disk).
type Soft struct {
	dir   string
	store *keystore

	mu   sync.RWMutex
	keys map[Handle]*key // unsealed keys, prepared for use

	mks *mkCache
}

var _ HSM = (*Soft)(nil)

// key is an unsealed key prepared for its operations.
type key struct {
	kind   Kind
	secret []byte // raw bytes; never leave the package
	aead   cipher.AEAD
	imk    *emv.IMK
	tdes   emv.Key
	ecdh   *ecdh.PrivateKey
	ecdsa  *ecdsa.PrivateKey
	macs   *sync.Pool // of hash.Hash: HMAC-SHA256 states keyed once
}

// OpenSoft opens (creating on first start) the software HSM in cfg.Dir.
func OpenSoft(ctx context.Context, cfg SoftConfig) (*Soft, error) {
	if cfg.Dir == "" {
		return nil, errors.New("hsm: SoftConfig.Dir is required")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := ensureDir(cfg.Dir); err != nil {
		return nil, err
	}
	ks := newKeystore(filepath.Join(cfg.Dir, KeystoreFile))
	exists, err := ks.exists()
	if err != nil {
		return nil, err
	}
	mk, err := loadMasterKey(cfg.Dir, cfg.MasterKeyHex, exists)
	if err != nil {
		return nil, err
	}
	master, err := newGCM(mk)
	clear(mk)
	if err != nil {
		return nil, err
	}
	ks.master = master
	if err := ks.init(); err != nil {
		return nil, err
	}
	n := cfg.ARQCCacheEntries
	if n <= 0 {
		n = DefaultARQCCacheEntries
	}
	return &Soft{dir: cfg.Dir, store: ks, keys: make(map[Handle]*key), mks: newMKCache(n)}, nil
}

func newGCM(k []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, fmt.Errorf("hsm: aes: %w", err)
	}
	return cipher.NewGCM(block)
}

// EnsureKey creates a random key of kind under h unless one exists.
func (s *Soft) EnsureKey(ctx context.Context, h Handle, kind Kind) error {
	if err := checkHandleKind(h, kind); err != nil {
		return err
	}
	k, err := s.get(h, "")
	if err == nil {
		return sameKind(h, k.kind, kind)
	}
	if !errors.Is(err, ErrNotFound) {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.store.update(func(keys map[Handle]storedKey) (bool, error) {
		if sk, ok := keys[h]; ok {
			return false, sameKind(h, sk.Kind, kind)
		}
		if len(keys) >= MaxKeys {
			return false, mipay.Errorf(mipay.ELIMIT, "keystore holds %d keys already", MaxKeys)
		}
		secret, err := generate(kind)
		if err != nil {
			return false, err
		}
		defer clear(secret)
		keys[h] = s.store.seal(h, kind, secret)
		return true, nil
	})
}

// ImportKey stores key under h; the same key again is a no-op.
func (s *Soft) ImportKey(ctx context.Context, h Handle, kind Kind, keyBytes []byte) error {
	if err := checkHandleKind(h, kind); err != nil {
		return err
	}
	secret, err := normalizeImport(kind, keyBytes)
	if err != nil {
		return err
	}
	defer clear(secret)
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.store.update(func(keys map[Handle]storedKey) (bool, error) {
		if sk, ok := keys[h]; ok {
			if err := sameKind(h, sk.Kind, kind); err != nil {
				return false, err
			}
			old, err := s.store.unseal(h, sk)
			if err != nil {
				return false, err
			}
			defer clear(old)
			if subtle.ConstantTimeCompare(old, secret) != 1 {
				return false, &mipay.Error{Code: mipay.ECONFLICT, Message: fmt.Sprintf("key %s exists with other key material", h), Err: ErrConflict}
			}
			return false, nil
		}
		if len(keys) >= MaxKeys {
			return false, mipay.Errorf(mipay.ELIMIT, "keystore holds %d keys already", MaxKeys)
		}
		keys[h] = s.store.seal(h, kind, secret)
		return true, nil
	})
}

// Close forgets the unsealed keys and cached card keys; keys are unsealed
// again on next use. (Unsealed key bytes are not zeroed: an operation in
// flight may still be using them.)
func (s *Soft) Close() error {
	s.mu.Lock()
	clear(s.keys)
	s.mu.Unlock()
	s.mks.reset()
	return nil
}

// KindOf reports the kind of the key under h.
func (s *Soft) KindOf(_ context.Context, h Handle) (Kind, error) {
	k, err := s.get(h, "")
	if err != nil {
		return "", err
	}
	return k.kind, nil
}

// PublicKey is the public half of a P256 key.
func (s *Soft) PublicKey(_ context.Context, h Handle) (*ecdh.PublicKey, error) {
	k, err := s.get(h, P256)
	if err != nil {
		return nil, err
	}
	return k.ecdh.PublicKey(), nil
}

// sealVersion prefixes Seal's output so the format can change.
const sealVersion = 0x01

// Seal encrypts plaintext with an AES256 key: 0x01 ‖ nonce(12) ‖ ciphertext ‖ tag.
func (s *Soft) Seal(_ context.Context, h Handle, plaintext, aad []byte) ([]byte, error) {
	if len(plaintext) > MaxSealBytes || len(aad) > MaxAADBytes {
		return nil, mipay.Errorf(mipay.ETOOLARGE, "seal: data over %d bytes or aad over %d bytes", MaxSealBytes, MaxAADBytes)
	}
	k, err := s.get(h, AES256)
	if err != nil {
		return nil, err
	}
	ns := k.aead.NonceSize()
	out := make([]byte, 1+ns, 1+ns+len(plaintext)+k.aead.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, mipay.WrapError(mipay.EINTERNAL, err, "seal: nonce")
	}
	return k.aead.Seal(out, out[1:1+ns], plaintext, aad), nil
}

// Open decrypts what Seal made with the same key and aad.
func (s *Soft) Open(_ context.Context, h Handle, sealed, aad []byte) ([]byte, error) {
	k, err := s.get(h, AES256)
	if err != nil {
		return nil, err
	}
	ns := k.aead.NonceSize()
	if len(sealed) < 1+ns+k.aead.Overhead() || len(sealed) > 1+ns+MaxSealBytes+k.aead.Overhead() ||
		sealed[0] != sealVersion || len(aad) > MaxAADBytes {
		return nil, authError("sealed data is malformed")
	}
	pt, err := k.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], aad)
	if err != nil {
		return nil, authError("sealed data failed authentication")
	}
	return pt, nil
}

// HMAC is HMAC-SHA256 of data with an HMACSHA256 key.
func (s *Soft) HMAC(_ context.Context, h Handle, data []byte) ([]byte, error) {
	if len(data) > MaxHMACDataBytes {
		return nil, mipay.Errorf(mipay.ETOOLARGE, "hmac: data over %d bytes", MaxHMACDataBytes)
	}
	k, err := s.get(h, HMACSHA256)
	if err != nil {
		return nil, err
	}
	m := k.macs.Get().(hash.Hash)
	m.Reset()
	m.Write(data)
	sum := m.Sum(make([]byte, 0, sha256.Size))
	k.macs.Put(m)
	return sum, nil
}

// OpenBox opens a cryptobox blob sealed to the P256 key under h.
func (s *Soft) OpenBox(_ context.Context, h Handle, blob, aad []byte) ([]byte, error) {
	if len(aad) > MaxAADBytes {
		return nil, mipay.Errorf(mipay.ETOOLARGE, "aad over %d bytes", MaxAADBytes)
	}
	k, err := s.get(h, P256)
	if err != nil {
		return nil, err
	}
	pt, err := cryptobox.Open(k.ecdh, blob, aad)
	if err != nil {
		return nil, authError("encrypted data could not be opened")
	}
	return pt, nil
}

// Signer signs with the P256 key under h; the key stays in the HSM.
func (s *Soft) Signer(_ context.Context, h Handle) (crypto.Signer, error) {
	k, err := s.get(h, P256)
	if err != nil {
		return nil, err
	}
	return &signer{priv: k.ecdsa}, nil
}

// signer is a crypto.Signer over a key kept unexported.
type signer struct{ priv *ecdsa.PrivateKey }

func (s *signer) Public() crypto.PublicKey { return &s.priv.PublicKey }

// Sign signs digest (ECDSA, ASN.1 DER). When opts names a hash, digest must
// have its size.
func (s *signer) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts != nil && opts.HashFunc() != 0 && len(digest) != opts.HashFunc().Size() {
		return nil, fmt.Errorf("hsm: digest of %d bytes for %v", len(digest), opts.HashFunc())
	}
	if r == nil {
		r = rand.Reader
	}
	return ecdsa.SignASN1(r, s.priv, digest)
}

// DeriveICCKeySealed derives a card's ICC master key and seals it to recipient.
func (s *Soft) DeriveICCKeySealed(_ context.Context, imk Handle, pan string, psn int, recipient *ecdh.PublicKey, aad []byte) ([]byte, error) {
	if err := checkRecipient(recipient, aad); err != nil {
		return nil, err
	}
	k, err := s.get(imk, TDES2)
	if err != nil {
		return nil, err
	}
	mk, err := k.imk.DeriveICCMK(pan, psn)
	if err != nil {
		return nil, emvInputError(err)
	}
	defer clear(mk[:])
	blob, err := cryptobox.Seal(recipient, mk[:], aad)
	if err != nil {
		return nil, mipay.WrapError(mipay.EINTERNAL, err, "sealing card key")
	}
	return blob, nil
}

// VerifyARQC checks a PBOC CVN 01 ARQC: ICC MK (cached per imk, PAN, PSN),
// PBOC session key for the ATC, MAC algorithm 3 with padding 2, constant-time
// comparison; ARPC method 1 when valid.
func (s *Soft) VerifyARQC(_ context.Context, imk Handle, in ARQCInput) (ARQCResult, error) {
	if len(in.Data) == 0 || len(in.Data) > MaxARQCDataBytes {
		return ARQCResult{}, mipay.Errorf(mipay.EINVALID, "arqc: data of %d bytes (want 1–%d)", len(in.Data), MaxARQCDataBytes)
	}
	sk, err := s.sessionKey(imk, in.PAN, in.PSN, in.ATC)
	if err != nil {
		return ARQCResult{}, err
	}
	mac, err := emv.MACAlg3(sk[:], in.Data, emv.PadMethod2)
	if err != nil {
		return ARQCResult{}, emvInputError(err)
	}
	if subtle.ConstantTimeCompare(mac[:], in.ARQC[:]) != 1 {
		return ARQCResult{}, nil
	}
	return ARQCResult{Valid: true, ARPC: emv.ARPCMethod1(sk, in.ARQC, in.ARC)}, nil
}

// sessionKey is the PBOC session key of (pan, psn) for atc under imk, from
// the cache or derived (from the cached ICC master key when there is one).
func (s *Soft) sessionKey(imk Handle, pan string, psn int, atc uint16) (emv.Key, error) {
	ck := mkKey{imk: imk, pan: pan, psn: psn}
	if sk, ok := s.mks.sessionKey(ck, atc); ok {
		return sk, nil
	}
	mk, err := s.iccMK(imk, pan, psn)
	if err != nil {
		return emv.Key{}, err
	}
	sk := emv.SessionKeyPBOC(mk, atc)
	s.mks.putSessionKey(ck, atc, sk)
	return sk, nil
}

// iccMK is the ICC master key of (pan, psn) under imk, from the cache or
// derived and cached.
func (s *Soft) iccMK(imk Handle, pan string, psn int) (emv.Key, error) {
	ck := mkKey{imk: imk, pan: pan, psn: psn}
	if mk, ok := s.mks.get(ck); ok {
		return mk, nil
	}
	k, err := s.get(imk, TDES2)
	if err != nil {
		return emv.Key{}, err
	}
	mk, err := k.imk.DeriveICCMK(pan, psn)
	if err != nil {
		return emv.Key{}, emvInputError(err)
	}
	s.mks.put(ck, mk)
	return mk, nil
}

// DeriveDiversifiedKeySealed derives a diversified card key (e-purse) and
// seals it to recipient.
func (s *Soft) DeriveDiversifiedKeySealed(_ context.Context, h Handle, diversifier [8]byte, recipient *ecdh.PublicKey, aad []byte) ([]byte, error) {
	if err := checkRecipient(recipient, aad); err != nil {
		return nil, err
	}
	k, err := s.get(h, TDES2)
	if err != nil {
		return nil, err
	}
	dk := emv.DiversifyKey(k.tdes, diversifier)
	defer clear(dk[:])
	blob, err := cryptobox.Seal(recipient, dk[:], aad)
	if err != nil {
		return nil, mipay.WrapError(mipay.EINTERNAL, err, "sealing card key")
	}
	return blob, nil
}

func checkRecipient(recipient *ecdh.PublicKey, aad []byte) error {
	if recipient == nil || recipient.Curve() != ecdh.P256() {
		return mipay.Errorf(mipay.EINVALID, "recipient must be a P-256 public key")
	}
	if len(aad) > MaxAADBytes {
		return mipay.Errorf(mipay.ETOOLARGE, "aad over %d bytes", MaxAADBytes)
	}
	return nil
}

// emvInputError turns emv's bad-input errors (which never hold a PAN or key)
// into EINVALID.
func emvInputError(err error) error {
	if errors.Is(err, emv.ErrBadInput) {
		return mipay.WrapError(mipay.EINVALID, err, "%s", err.Error())
	}
	return mipay.WrapError(mipay.EINTERNAL, err, "emv")
}

func authError(msg string) error {
	return &mipay.Error{Code: mipay.EINVALID, Message: msg, Err: ErrAuth}
}

// get returns the unsealed key under h, checking its kind ("" accepts any).
func (s *Soft) get(h Handle, kind Kind) (*key, error) {
	s.mu.RLock()
	k := s.keys[h]
	s.mu.RUnlock()
	if k == nil {
		var err error
		if k, err = s.load(h); err != nil {
			return nil, err
		}
	}
	if kind != "" && k.kind != kind {
		return nil, &mipay.Error{Code: mipay.EINVALID, Message: fmt.Sprintf("key %s is %s, not %s", h, k.kind, kind), Err: ErrWrongKind}
	}
	return k, nil
}

// load unseals h from the keystore (re-reading the file when another
// process may have added it) and caches it.
func (s *Soft) load(h Handle) (*key, error) {
	if err := checkHandle(h); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if k := s.keys[h]; k != nil {
		return k, nil
	}
	sk, ok, err := s.store.lookup(h)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, &mipay.Error{Code: mipay.ENOTFOUND, Message: fmt.Sprintf("no key %s", h), Err: ErrNotFound}
	}
	secret, err := s.store.unseal(h, sk)
	if err != nil {
		return nil, err
	}
	k, err := prepare(sk.Kind, secret)
	if err != nil {
		return nil, mipay.WrapError(mipay.EINTERNAL, err, "key %s is unusable", h)
	}
	s.keys[h] = k
	return k, nil
}

// prepare builds the ready-to-use form of a key.
func prepare(kind Kind, secret []byte) (*key, error) {
	k := &key{kind: kind, secret: secret}
	var err error
	switch kind {
	case AES256:
		k.aead, err = newGCM(secret)
	case HMACSHA256:
		k.macs = &sync.Pool{New: func() any { return hmac.New(sha256.New, secret) }}
	case TDES2:
		k.imk, err = emv.NewIMK(secret)
		k.tdes, _ = emv.KeyFromBytes(secret)
	case P256:
		if k.ecdh, err = ecdh.P256().NewPrivateKey(secret); err == nil {
			k.ecdsa, err = ecdsa.ParseRawPrivateKey(elliptic.P256(), secret)
		}
	default:
		err = fmt.Errorf("unknown kind %q", kind)
	}
	if err != nil {
		return nil, err
	}
	return k, nil
}

// generate makes fresh key material of kind.
func generate(kind Kind) ([]byte, error) {
	switch kind {
	case AES256, HMACSHA256:
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, mipay.WrapError(mipay.EINTERNAL, err, "random key")
		}
		return b, nil
	case TDES2:
		b := make([]byte, 16)
		for {
			if _, err := rand.Read(b); err != nil {
				return nil, mipay.WrapError(mipay.EINTERNAL, err, "random key")
			}
			emv.OddParity(b)
			if !bytes.Equal(b[:8], b[8:]) { // equal halves would be single DES
				return b, nil
			}
		}
	case P256:
		priv, err := ecdh.P256().GenerateKey(rand.Reader)
		if err != nil {
			return nil, mipay.WrapError(mipay.EINTERNAL, err, "random key")
		}
		return priv.Bytes(), nil
	}
	return nil, mipay.Errorf(mipay.EINVALID, "unknown key kind %q", kind)
}

// normalizeImport checks imported key material and returns the form stored.
func normalizeImport(kind Kind, b []byte) ([]byte, error) {
	bad := func(why string) error {
		return mipay.Errorf(mipay.EINVALID, "import %s key: %s", kind, why)
	}
	if len(b) > MaxImportBytes {
		return nil, bad(fmt.Sprintf("%d bytes is too long", len(b)))
	}
	out := bytes.Clone(b)
	switch kind {
	case AES256:
		if len(b) != 32 {
			return nil, bad("want 32 bytes")
		}
	case HMACSHA256:
		if len(b) < 32 || len(b) > 64 {
			return nil, bad("want 32–64 bytes")
		}
	case TDES2:
		if len(b) != 16 {
			return nil, bad("want 16 bytes")
		}
		emv.OddParity(out) // DES ignores parity bits; store the canonical form
		if bytes.Equal(out[:8], out[8:]) {
			return nil, bad("equal halves make single DES")
		}
	case P256:
		if _, err := ecdh.P256().NewPrivateKey(b); err != nil {
			return nil, bad("not a P-256 private scalar of 32 bytes")
		}
	default:
		return nil, mipay.Errorf(mipay.EINVALID, "unknown key kind %q", kind)
	}
	return out, nil
}

func checkHandleKind(h Handle, kind Kind) error {
	if err := checkHandle(h); err != nil {
		return err
	}
	switch kind {
	case AES256, HMACSHA256, TDES2, P256:
		return nil
	}
	return mipay.Errorf(mipay.EINVALID, "unknown key kind %q", kind)
}

// checkHandle allows printable ASCII without spaces, at most MaxHandleBytes.
func checkHandle(h Handle) error {
	if h == "" || len(h) > MaxHandleBytes {
		return mipay.Errorf(mipay.EINVALID, "key handle must be 1–%d bytes", MaxHandleBytes)
	}
	for i := 0; i < len(h); i++ {
		if h[i] <= ' ' || h[i] >= 0x7f {
			return mipay.Errorf(mipay.EINVALID, "key handle has a bad character at byte %d", i+1)
		}
	}
	return nil
}

func sameKind(h Handle, have, want Kind) error {
	if have != want {
		return &mipay.Error{Code: mipay.ECONFLICT, Message: fmt.Sprintf("key %s exists as %s, not %s", h, have, want), Err: ErrConflict}
	}
	return nil
}
