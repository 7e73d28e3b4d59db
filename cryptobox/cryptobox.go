// Package cryptobox is public-key encryption to a P-256 key: ECDH-ES with an
// ephemeral key, HKDF-SHA256, AES-256-GCM. The phone seals card data to the
// TSP's key with it, and the TSP's HSM seals card keys to an SE's key.
//
// Blob layout (all lengths fixed, so parsing bounds everything):
//
//	0x01 ‖ ephemeral public key (65, uncompressed) ‖ nonce (12) ‖ ciphertext ‖ tag (16)
//
// The AES key is HKDF-SHA256(secret=ECDH(eph, recipient), salt=eph‖recipient,
// info="mipay cryptobox v1"), so a blob is bound to its recipient key.
package cryptobox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

const (
	version      = 0x01
	pubLen       = 65
	nonceLen     = 12
	tagLen       = 16
	overheadLen  = 1 + pubLen + nonceLen + tagLen
	info         = "mipay cryptobox v1"
	MaxBlobBytes = 64 << 10 // the largest blob Open accepts
)

// Overhead is how many bytes Seal adds to a plaintext.
const Overhead = overheadLen

var errBlob = errors.New("cryptobox: malformed blob")

// Seal encrypts plaintext to recipient. aad is authenticated, not encrypted.
func Seal(recipient *ecdh.PublicKey, plaintext, aad []byte) ([]byte, error) {
	if recipient == nil || recipient.Curve() != ecdh.P256() {
		return nil, errors.New("cryptobox: recipient must be a P-256 key")
	}
	eph, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("cryptobox: ephemeral key: %w", err)
	}
	secret, err := eph.ECDH(recipient)
	if err != nil {
		return nil, fmt.Errorf("cryptobox: ecdh: %w", err)
	}
	ephPub := eph.PublicKey().Bytes()
	gcm, err := newGCM(secret, ephPub, recipient.Bytes())
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, overheadLen+len(plaintext))
	out = append(out, version)
	out = append(out, ephPub...)
	nonce := make([]byte, nonceLen)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("cryptobox: nonce: %w", err)
	}
	out = append(out, nonce...)
	return gcm.Seal(out, nonce, plaintext, aad), nil
}

// Open decrypts a blob sealed to priv's public key.
func Open(priv *ecdh.PrivateKey, blob, aad []byte) ([]byte, error) {
	if len(blob) < overheadLen || len(blob) > MaxBlobBytes || blob[0] != version {
		return nil, errBlob
	}
	ephPub, err := ecdh.P256().NewPublicKey(blob[1 : 1+pubLen])
	if err != nil {
		return nil, errBlob
	}
	secret, err := priv.ECDH(ephPub)
	if err != nil {
		return nil, errBlob
	}
	gcm, err := newGCM(secret, blob[1:1+pubLen], priv.PublicKey().Bytes())
	if err != nil {
		return nil, err
	}
	nonce := blob[1+pubLen : 1+pubLen+nonceLen]
	pt, err := gcm.Open(nil, nonce, blob[1+pubLen+nonceLen:], aad)
	if err != nil {
		return nil, errors.New("cryptobox: authentication failed")
	}
	return pt, nil
}

func newGCM(secret, ephPub, recipientPub []byte) (cipher.AEAD, error) {
	salt := make([]byte, 0, len(ephPub)+len(recipientPub))
	salt = append(append(salt, ephPub...), recipientPub...)
	key, err := hkdf.Key(sha256.New, secret, salt, info, 32)
	if err != nil {
		return nil, fmt.Errorf("cryptobox: hkdf: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("cryptobox: aes: %w", err)
	}
	return cipher.NewGCM(block)
}
