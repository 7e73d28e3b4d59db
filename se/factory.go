package se

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/mipay-oss/mipay/atomicfile"
)

// The factory is the SE vendor's certificate authority. In the field it sits
// in the vendor's plant and signs the certificate of every SE it makes; here
// it is created with the data directory (<data>/se-factory) so a new emulated
// phone can get its SE certificate, and the wallet trusts its root.
//
// Its key is the SE vendor's, not a payment key: it never signs anything but
// SE certificates, and the wallet checks chains against its root.

// FactoryDir is where a data directory keeps the emulator's SE factory.
const FactoryDir = "se-factory"

// RootFile is the factory root certificate (PEM) under FactoryDir; the wallet
// trusts it.
const RootFile = "root.pem"

const (
	factoryKeyFile = "ca.key"
	// certLifetime is how long an SE certificate is valid: an SE outlives the
	// phone it is soldered into.
	certLifetime = 20 * 365 * 24 * time.Hour
)

// Factory issues SE certificates.
type Factory struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
	der  []byte
}

// FactoryRootPath returns the path of the factory root certificate of a
// data directory.
func FactoryRootPath(dataDir string) string {
	return filepath.Join(dataDir, FactoryDir, RootFile)
}

// OpenFactory opens the factory under dataDir, creating it on first use.
func OpenFactory(dataDir string) (*Factory, error) {
	dir := filepath.Join(dataDir, FactoryDir)
	keyPath := filepath.Join(dir, factoryKeyFile)
	rootPath := filepath.Join(dir, RootFile)
	keyPEM, err := os.ReadFile(keyPath)
	if errors.Is(err, os.ErrNotExist) {
		return createFactory(dir, keyPath, rootPath)
	}
	if err != nil {
		return nil, fmt.Errorf("se factory: read %s: %w", keyPath, err)
	}
	certPEM, err := os.ReadFile(rootPath)
	if err != nil {
		return nil, fmt.Errorf("se factory: read %s: %w", rootPath, err)
	}
	return parseFactory(keyPEM, certPEM)
}

func parseFactory(keyPEM, certPEM []byte) (*Factory, error) {
	kb, _ := pem.Decode(keyPEM)
	cb, _ := pem.Decode(certPEM)
	if kb == nil || cb == nil {
		return nil, errors.New("se factory: key or root certificate is not PEM; remove the se-factory directory to recreate it")
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("se factory: key: %w", err)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("se factory: root certificate: %w", err)
	}
	return &Factory{key: key, cert: cert, der: cb.Bytes}, nil
}

func createFactory(dir, keyPath, rootPath string) (*Factory, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("se factory: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"mipay emulator SE vendor"}, CommonName: "mipay SE vendor root CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(2 * certLifetime),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("se factory: root certificate: %w", err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	// The key first: a root without its key would be a factory that cannot issue.
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(rootPath, certPEM, 0o644); err != nil {
		return nil, err
	}
	return parseFactory(keyPEM, certPEM)
}

// RootDER is the factory root certificate.
func (f *Factory) RootDER() []byte { return f.der }

// issue signs an SE certificate for pub with the SE id as its subject.
func (f *Factory) issue(seID string, pub *ecdsa.PublicKey) ([]byte, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"mipay emulator SE vendor"}, CommonName: seID},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(certLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.cert, pub, f.key)
	if err != nil {
		return nil, fmt.Errorf("se factory: SE certificate: %w", err)
	}
	return der, nil
}

func randomSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// writeFileAtomic writes an SE file whole or not at all (atomicfile).
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := atomicfile.Write(path, data, mode); err != nil {
		return fmt.Errorf("se: %w", err)
	}
	return nil
}
