package wallet

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/mipay-oss/mipay"
)

// maxRootFileBytes bounds a configured vendor root PEM file.
const maxRootFileBytes = 256 << 10

// Attestation is what a device presents to be registered: its SE's public key
// and the factory chain that vouches for it (SE certificate first, then the
// vendor CA), all DER.
type Attestation struct {
	SEID        string
	SEPublicKey []byte   // uncompressed P-256 point (65 bytes)
	Chain       [][]byte // DER: SE certificate, then intermediates up to (not including) a root
}

// Roots holds the SE vendor roots the wallet trusts: PEM files read again
// whenever they change on disk (the emulator's factory root may appear after
// the wallet started), so a missing file is simply not trusted yet.
type Roots struct {
	files []string

	mu    sync.Mutex
	stamp string // sizes and modification times of files when pool was built
	pool  *x509.CertPool
}

// NewRoots trusts the certificates in the given PEM files.
func NewRoots(files ...string) *Roots { return &Roots{files: files} }

// Pool returns the current trust pool (nil when no root is available).
func (r *Roots) Pool() (*x509.CertPool, error) {
	var stamp bytes.Buffer
	for _, f := range r.files {
		if st, err := os.Stat(f); err == nil {
			fmt.Fprintf(&stamp, "%s:%d:%d;", f, st.Size(), st.ModTime().UnixNano())
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pool != nil && stamp.String() == r.stamp {
		return r.pool, nil
	}
	pool := x509.NewCertPool()
	n := 0
	for _, f := range r.files {
		b, err := readBounded(f, maxRootFileBytes)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("wallet: vendor root %s: %w", f, err)
		}
		for rest := b; ; {
			var blk *pem.Block
			blk, rest = pem.Decode(rest)
			if blk == nil {
				break
			}
			if blk.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("wallet: vendor root %s: %w", f, err)
			}
			pool.AddCert(c)
			n++
		}
	}
	if n == 0 {
		pool = nil
	}
	r.pool, r.stamp = pool, stamp.String()
	return pool, nil
}

func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > max {
		return nil, fmt.Errorf("larger than %d bytes", max)
	}
	b := make([]byte, st.Size())
	_, err = f.ReadAt(b, 0)
	if err != nil && st.Size() > 0 {
		return nil, err
	}
	return b, nil
}

// VerifyAttestation checks that the chain leads to a trusted vendor root at
// now, that the SE certificate names the SE (its subject common name or
// serial number is the SE id) and certifies exactly the presented key.
func VerifyAttestation(a Attestation, roots *x509.CertPool, now time.Time) error {
	if roots == nil {
		return mipay.Errorf(mipay.EUNAVAILABLE, "no secure element vendor root is configured: the device cannot be verified yet")
	}
	if len(a.Chain) == 0 || len(a.Chain) > MaxChainCertificates {
		return mipay.Errorf(mipay.EINVALID, "certificateChain must hold 1 to %d certificates", MaxChainCertificates)
	}
	certs := make([]*x509.Certificate, len(a.Chain))
	for i, der := range a.Chain {
		if len(der) > MaxCertificateBytes {
			return mipay.Errorf(mipay.ETOOLARGE, "certificateChain[%d] is larger than %d bytes", i, MaxCertificateBytes)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return mipay.WrapError(mipay.EINVALID, err, "certificateChain[%d] is not a DER X.509 certificate", i)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return mipay.WrapError(mipay.EFORBIDDEN, err, "the secure element's certificate chain is not from a trusted vendor")
	}
	if a.SEID != certs[0].Subject.CommonName && a.SEID != certs[0].Subject.SerialNumber {
		return mipay.Errorf(mipay.EFORBIDDEN, "the secure element's certificate is not for seId %q", a.SEID)
	}
	certKey, ok := certs[0].PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return mipay.Errorf(mipay.EFORBIDDEN, "the secure element's certificate does not hold a P-256 key")
	}
	ek, err := certKey.ECDH()
	if err != nil || ek.Curve() != ecdh.P256() {
		return mipay.Errorf(mipay.EFORBIDDEN, "the secure element's certificate does not hold a P-256 key")
	}
	if !bytes.Equal(ek.Bytes(), a.SEPublicKey) {
		return mipay.Errorf(mipay.EFORBIDDEN, "sePublicKey is not the key the secure element's certificate certifies")
	}
	return nil
}

// parseSEPublicKey checks an uncompressed P-256 point.
func parseSEPublicKey(b []byte) error {
	if len(b) != 65 || b[0] != 0x04 {
		return mipay.Errorf(mipay.EINVALID, "sePublicKey must be an uncompressed P-256 point (65 bytes, base64)")
	}
	if _, err := ecdh.P256().NewPublicKey(b); err != nil {
		return mipay.Errorf(mipay.EINVALID, "sePublicKey is not a point on P-256")
	}
	return nil
}
