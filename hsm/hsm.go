// Package hsm is the one place secret keys are used. Keys are named by handle
// (e.g. "tsp/vault-kek", "tsp/imk/icbc", "tsp/box") and every operation takes
// a handle; no operation returns secret key bytes. Card keys leave only
// sealed (cryptobox) to a secure element's public key.
//
// Soft is the software implementation: keys sealed under a 256-bit master key
// (AES-256-GCM, the handle and kind as associated data) in a keystore file.
package hsm

import (
	"context"
	"crypto"
	"crypto/ecdh"
	"errors"

	"github.com/mipay-oss/mipay/emv"
)

// Handle names a key.
type Handle string

// Kind is a key type.
type Kind string

// Key kinds.
const (
	AES256     Kind = "aes256"      // 32-byte AES key: Seal/Open (AES-256-GCM)
	HMACSHA256 Kind = "hmac-sha256" // 32-byte HMAC-SHA256 key: HMAC
	TDES2      Kind = "tdes2"       // 16-byte double-length 3DES key, odd parity: EMV issuer/master keys
	P256       Kind = "p256"        // NIST P-256 private key: PublicKey, OpenBox, Signer
)

// HSM is every operation on secret keys.
type HSM interface {
	// EnsureKey creates a random key of kind under h unless one exists;
	// concurrent callers end up with the same key. An existing key of
	// another kind is a conflict.
	EnsureKey(ctx context.Context, h Handle, kind Kind) error
	// ImportKey stores key under h (test vectors, configured keys). Importing
	// the same key again is a no-op; a different key under h is a conflict.
	ImportKey(ctx context.Context, h Handle, kind Kind, key []byte) error
	// KindOf reports the kind of the key under h.
	KindOf(ctx context.Context, h Handle) (Kind, error)

	// PublicKey is the public half of a P256 key.
	PublicKey(ctx context.Context, h Handle) (*ecdh.PublicKey, error)
	// Seal encrypts with an AES256 key (AES-256-GCM, random nonce); aad is
	// authenticated. Open reverses it.
	Seal(ctx context.Context, h Handle, plaintext, aad []byte) ([]byte, error)
	Open(ctx context.Context, h Handle, sealed, aad []byte) ([]byte, error)
	// HMAC is HMAC-SHA256 with an HMACSHA256 key (32 bytes).
	HMAC(ctx context.Context, h Handle, data []byte) ([]byte, error)
	// OpenBox opens a cryptobox blob sealed to a P256 key's public half.
	OpenBox(ctx context.Context, h Handle, blob, aad []byte) ([]byte, error)
	// Signer signs (ECDSA, ASN.1) with a P256 key inside the HSM.
	Signer(ctx context.Context, h Handle) (crypto.Signer, error)

	// DeriveICCKeySealed derives the ICC master key of (pan, psn) from the
	// TDES2 issuer master key imk (EMV Option A; Option B above 16 digits)
	// and returns it (16 bytes) sealed with cryptobox to recipient.
	DeriveICCKeySealed(ctx context.Context, imk Handle, pan string, psn int, recipient *ecdh.PublicKey, aad []byte) ([]byte, error)
	// VerifyARQC checks a PBOC CVN 01 ARQC and, when valid, makes the ARPC
	// (method 1) for in.ARC. An invalid ARQC is Valid false, not an error.
	VerifyARQC(ctx context.Context, imk Handle, in ARQCInput) (ARQCResult, error)
	// DeriveDiversifiedKeySealed derives 3DES(key, div) ‖ 3DES(key, NOT div)
	// (odd parity) from a TDES2 key and returns it sealed to recipient
	// (transit e-purse card keys).
	DeriveDiversifiedKeySealed(ctx context.Context, key Handle, diversifier [8]byte, recipient *ecdh.PublicKey, aad []byte) ([]byte, error)

	// E-purse operations of transit agencies, with card keys diversified
	// inside the HSM from TDES2 master keys (see EPurseLoadInput).
	EPurseLoad(ctx context.Context, mlk Handle, in EPurseLoadInput) (EPurseLoadResult, error)
	EPurseVerifyLoadTAC(ctx context.Context, mtk Handle, diversifier [8]byte, newBalance uint32, onlineSerial [2]byte, tx emv.EPurseTx, tac [4]byte) (bool, error)
	EPursePurchaseMAC1(ctx context.Context, mpk Handle, in EPursePurchaseInput) ([4]byte, error)
	EPurseVerifyPurchaseMAC2(ctx context.Context, mpk Handle, in EPursePurchaseInput, mac2 [4]byte) (bool, error)
	EPurseVerifyPurchaseTAC(ctx context.Context, mtk Handle, diversifier [8]byte, tx emv.EPurseTx, termSerial [4]byte, tac [4]byte) (bool, error)

	// Close forgets the unsealed keys held in memory.
	Close() error
}

// ARQCInput is what VerifyARQC needs. Data is the MAC input, already
// assembled (emv.ARQCDataPBOC).
type ARQCInput struct {
	PAN  string
	PSN  int
	ATC  uint16
	Data []byte
	ARQC [8]byte
	ARC  [2]byte
}

// ARQCResult is VerifyARQC's answer. ARPC is zero when Valid is false.
type ARQCResult struct {
	Valid bool
	ARPC  [8]byte
}

// Errors the HSM wraps (with errors.Is) inside *mipay.Error values.
var (
	ErrNotFound      = errors.New("hsm: no such key")           // mipay.ENOTFOUND
	ErrConflict      = errors.New("hsm: key exists")            // mipay.ECONFLICT: other kind or other key
	ErrWrongKind     = errors.New("hsm: wrong kind of key")     // mipay.EINVALID: the op needs another kind
	ErrAuth          = errors.New("hsm: authentication failed") // mipay.EINVALID: sealed data or blob did not open
	ErrMasterKey     = errors.New("hsm: master key does not open the keystore")
	ErrPermissions   = errors.New("hsm: key file permissions too open")
	ErrNotExportable = errors.New("hsm: key not exportable") // mipay.EFORBIDDEN
)

// Bounds of inputs.
const (
	MaxHandleBytes   = 128
	MaxSealBytes     = 1 << 20 // plaintext of Seal, and so sealed input of Open (1 MiB + overhead)
	MaxHMACDataBytes = 1 << 20
	MaxAADBytes      = 4 << 10
	MaxARQCDataBytes = 1 << 10
	MaxImportBytes   = 64
)
