package tsp

import (
	"context"
	"crypto/ecdh"
	"fmt"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/hsm"
)

// The vault's PAN encryption: each PAN is sealed directly by the HSM with
// KeyVault (AES-256-GCM, random nonce, the token reference as associated
// data), rather than under a per-record data key that the TSP would unwrap
// into its own memory. The PAN is the only secret per record and is small,
// so a per-record data key buys nothing but a key living outside the HSM;
// with direct sealing no key byte ever leaves it. Rotation re-seals the
// vault (an offline batch job: Open with the old handle, Seal with the new).

// HSMKeys implements Keys over the hsm package.
type HSMKeys struct {
	h hsm.HSM
}

// NewHSMKeys returns the TSP's key operations on h.
func NewHSMKeys(h hsm.HSM) *HSMKeys { return &HSMKeys{h: h} }

// EnsureKeys creates the TSP's keys in h unless they exist: the box key, the
// vault key, the PAN HMAC key and one issuer master key per issuer.
func EnsureKeys(ctx context.Context, h hsm.HSM, ref *config.Reference) error {
	for _, k := range []struct {
		h    string
		kind hsm.Kind
	}{{KeyBox, hsm.P256}, {KeyVault, hsm.AES256}, {KeyPANHMAC, hsm.HMACSHA256}} {
		if err := h.EnsureKey(ctx, hsm.Handle(k.h), k.kind); err != nil {
			return fmt.Errorf("tsp: key %s: %w", k.h, err)
		}
	}
	for _, is := range ref.Issuers {
		if err := h.EnsureKey(ctx, hsm.Handle(IMKHandle(is.ID)), hsm.TDES2); err != nil {
			return fmt.Errorf("tsp: key %s: %w", IMKHandle(is.ID), err)
		}
	}
	return nil
}

func (k *HSMKeys) BoxPublicKey(ctx context.Context) ([]byte, error) {
	pub, err := k.h.PublicKey(ctx, KeyBox)
	if err != nil {
		return nil, err
	}
	return pub.Bytes(), nil
}

func (k *HSMKeys) OpenCardData(ctx context.Context, blob, aad []byte) ([]byte, error) {
	return k.h.OpenBox(ctx, KeyBox, blob, aad)
}

func (k *HSMKeys) SealPAN(ctx context.Context, pan string, aad []byte) ([]byte, error) {
	return k.h.Seal(ctx, KeyVault, []byte(pan), aad)
}

func (k *HSMKeys) OpenPAN(ctx context.Context, sealed, aad []byte) (string, error) {
	p, err := k.h.Open(ctx, KeyVault, sealed, aad)
	if err != nil {
		return "", err
	}
	return string(p), nil
}

func (k *HSMKeys) MAC(ctx context.Context, data []byte) ([]byte, error) {
	return k.h.HMAC(ctx, KeyPANHMAC, data)
}

func (k *HSMKeys) SealICCKey(ctx context.Context, issuerID, dpan string, psn int, sePub, aad []byte) ([]byte, error) {
	pub, err := ecdh.P256().NewPublicKey(sePub)
	if err != nil {
		return nil, fmt.Errorf("tsp: SE public key: %w", err)
	}
	return k.h.DeriveICCKeySealed(ctx, hsm.Handle(IMKHandle(issuerID)), dpan, psn, pub, aad)
}

func (k *HSMKeys) VerifyARQC(ctx context.Context, issuerID, dpan string, psn int, atc uint16, data []byte, arqc [8]byte, arc [2]byte) (bool, [8]byte, error) {
	r, err := k.h.VerifyARQC(ctx, hsm.Handle(IMKHandle(issuerID)), hsm.ARQCInput{PAN: dpan, PSN: psn, ATC: atc, Data: data, ARQC: arqc, ARC: arc})
	if err != nil {
		return false, [8]byte{}, err
	}
	return r.Valid, r.ARPC, nil
}
