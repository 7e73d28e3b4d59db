package hsm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/des"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/cryptobox"
	"github.com/mipay-oss/mipay/emv"
)

// The issuer master key of /work/shared/vectors/emv-vectors.md.
const vectorIMK = "0123456789ABCDEFFEDCBA9876543210"

func mustHex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// MustOpenSoft opens a software HSM in dir (a new temp dir when "").
func MustOpenSoft(tb testing.TB, dir string) *Soft {
	tb.Helper()
	if dir == "" {
		dir = tb.TempDir()
	}
	s, err := OpenSoft(context.Background(), SoftConfig{Dir: dir})
	if err != nil {
		tb.Fatalf("OpenSoft: %v", err)
	}
	return s
}

func mustImport(tb testing.TB, s *Soft, h Handle, kind Kind, key []byte) {
	tb.Helper()
	if err := s.ImportKey(context.Background(), h, kind, key); err != nil {
		tb.Fatalf("ImportKey %s: %v", h, err)
	}
}

func mustEnsure(tb testing.TB, s *Soft, h Handle, kind Kind) {
	tb.Helper()
	if err := s.EnsureKey(context.Background(), h, kind); err != nil {
		tb.Fatalf("EnsureKey %s: %v", h, err)
	}
}

func newRecipient(tb testing.TB) *ecdh.PrivateKey {
	tb.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func TestMasterKeyFile(t *testing.T) {
	dir := t.TempDir()
	MustOpenSoft(t, dir)
	st, err := os.Stat(filepath.Join(dir, MasterKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("master.key mode %04o, want 0600", st.Mode().Perm())
	}
	if st, err := os.Stat(filepath.Join(dir, KeystoreFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("keystore: %v, mode %v", err, st)
	}
	if err := os.Chmod(filepath.Join(dir, MasterKeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = OpenSoft(context.Background(), SoftConfig{Dir: dir})
	if !errors.Is(err, ErrPermissions) || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("loose permissions: err = %v", err)
	}
}

func TestMissingMasterKeyWithKeystore(t *testing.T) {
	dir := t.TempDir()
	MustOpenSoft(t, dir)
	if err := os.Remove(filepath.Join(dir, MasterKeyFile)); err != nil {
		t.Fatal(err)
	}
	_, err := OpenSoft(context.Background(), SoftConfig{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "is missing") {
		t.Errorf("err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, MasterKeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Error("a new master key was written next to the old keystore")
	}
}

func TestMasterKeyHex(t *testing.T) {
	dir := t.TempDir()
	mk := strings.Repeat("ab", 32)
	s, err := OpenSoft(context.Background(), SoftConfig{Dir: dir, MasterKeyHex: mk})
	if err != nil {
		t.Fatal(err)
	}
	mustEnsure(t, s, "k", AES256)
	if _, err := os.Stat(filepath.Join(dir, MasterKeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Error("master.key written although the key came from configuration")
	}
	if _, err := OpenSoft(context.Background(), SoftConfig{Dir: dir, MasterKeyHex: mk}); err != nil {
		t.Errorf("reopen: %v", err)
	}
	_, err = OpenSoft(context.Background(), SoftConfig{Dir: dir, MasterKeyHex: strings.Repeat("cd", 32)})
	if !errors.Is(err, ErrMasterKey) {
		t.Errorf("wrong master key: err = %v", err)
	}
	for _, bad := range []string{"abc", strings.Repeat("zz", 32), strings.Repeat("ab", 16)} {
		if _, err := OpenSoft(context.Background(), SoftConfig{Dir: t.TempDir(), MasterKeyHex: bad}); err == nil || !strings.Contains(err.Error(), "64 hex") {
			t.Errorf("master key %q: err = %v", bad, err)
		}
	}
}

func TestWrongMasterKeyFile(t *testing.T) {
	dir := t.TempDir()
	MustOpenSoft(t, dir)
	other := hex.EncodeToString(bytes.Repeat([]byte{7}, 32))
	if err := os.WriteFile(filepath.Join(dir, MasterKeyFile), []byte(other), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := OpenSoft(context.Background(), SoftConfig{Dir: dir})
	if !errors.Is(err, ErrMasterKey) || !strings.Contains(err.Error(), "not the one") {
		t.Errorf("err = %v", err)
	}
}

func TestRestartKeepsKeys(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s1 := MustOpenSoft(t, dir)
	mustEnsure(t, s1, "tsp/vault-kek", AES256)
	mustEnsure(t, s1, "tsp/vault-hmac", HMACSHA256)
	mustEnsure(t, s1, "tsp/box", P256)
	sealed, err := s1.Seal(ctx, "tsp/vault-kek", []byte("data key"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	mac1, _ := s1.HMAC(ctx, "tsp/vault-hmac", []byte("6225881234567898"))
	pub1, _ := s1.PublicKey(ctx, "tsp/box")

	s2 := MustOpenSoft(t, dir)
	pt, err := s2.Open(ctx, "tsp/vault-kek", sealed, []byte("aad"))
	if err != nil || string(pt) != "data key" {
		t.Errorf("Open after restart = %q, %v", pt, err)
	}
	mac2, _ := s2.HMAC(ctx, "tsp/vault-hmac", []byte("6225881234567898"))
	pub2, _ := s2.PublicKey(ctx, "tsp/box")
	if !bytes.Equal(mac1, mac2) || !pub1.Equal(pub2) {
		t.Error("keys changed across restart")
	}
	mustEnsure(t, s2, "tsp/vault-kek", AES256) // idempotent: same key
	if pt, err := s2.Open(ctx, "tsp/vault-kek", sealed, []byte("aad")); err != nil || string(pt) != "data key" {
		t.Errorf("EnsureKey replaced an existing key: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, KeystoreFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte(`"tsp/box"`)) {
		t.Errorf("keystore lacks handle: %s", raw)
	}
}

func TestSealedUnderMasterKey(t *testing.T) {
	dir := t.TempDir()
	s := MustOpenSoft(t, dir)
	key := bytes.Repeat([]byte{0x5a}, 32)
	mustImport(t, s, "k", AES256, key)
	raw, err := os.ReadFile(filepath.Join(dir, KeystoreFile))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, key) || bytes.Contains(raw, []byte(hex.EncodeToString(key))) ||
		bytes.Contains(raw, []byte("WlpaWlpaWlpa")) { // base64 of the key bytes
		t.Fatal("keystore holds the key in clear")
	}
	// A sealed key moved to another handle does not open: the handle is AAD.
	var f keystoreFile
	if err := jsonUnmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	f.Keys["moved"] = f.Keys["k"]
	if err := s.store.write(&f); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Seal(context.Background(), "moved", []byte("x"), nil); mipay.ErrorCode(err) != mipay.EINTERNAL || !errors.Is(err, ErrAuth) {
		t.Errorf("moved key: err = %v", err)
	}
}

func TestEnsureKeyConcurrent(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	// Two HSM instances on one directory stand for two processes.
	hsms := []*Soft{MustOpenSoft(t, dir), MustOpenSoft(t, dir)}
	var wg sync.WaitGroup
	pubs := make([]*ecdh.PublicKey, 16)
	for i := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := hsms[i%2]
			if err := s.EnsureKey(ctx, "se-ca", P256); err != nil {
				t.Error(err)
				return
			}
			if err := s.EnsureKey(ctx, Handle("other/"+string(rune('a'+i))), AES256); err != nil {
				t.Error(err)
			}
			pub, err := s.PublicKey(ctx, "se-ca")
			if err != nil {
				t.Error(err)
				return
			}
			pubs[i] = pub
		}()
	}
	wg.Wait()
	for i, p := range pubs {
		if p == nil || !p.Equal(pubs[0]) {
			t.Fatalf("caller %d got another key", i)
		}
	}
	// Every key written by either instance survives.
	s := MustOpenSoft(t, dir)
	for i := range pubs {
		if _, err := s.KindOf(ctx, Handle("other/"+string(rune('a'+i)))); err != nil {
			t.Errorf("key %d lost: %v", i, err)
		}
	}
}

func TestImportKey(t *testing.T) {
	ctx := context.Background()
	s := MustOpenSoft(t, "")
	imk := mustHex(t, vectorIMK)
	mustImport(t, s, "tsp/imk/test", TDES2, imk)
	mustImport(t, s, "tsp/imk/test", TDES2, imk) // same key again: fine
	other := bytes.Clone(imk)
	other[0] ^= 0x10
	err := s.ImportKey(ctx, "tsp/imk/test", TDES2, other)
	if mipay.ErrorCode(err) != mipay.ECONFLICT || !errors.Is(err, ErrConflict) {
		t.Errorf("overwrite with another key: %v", err)
	}
	err = s.ImportKey(ctx, "tsp/imk/test", AES256, make([]byte, 32))
	if mipay.ErrorCode(err) != mipay.ECONFLICT {
		t.Errorf("overwrite with another kind: %v", err)
	}
	if err := s.EnsureKey(ctx, "tsp/imk/test", AES256); mipay.ErrorCode(err) != mipay.ECONFLICT {
		t.Errorf("EnsureKey of another kind: %v", err)
	}
	bad := []struct {
		name string
		kind Kind
		key  []byte
	}{
		{"aes short", AES256, make([]byte, 16)},
		{"hmac short", HMACSHA256, make([]byte, 16)},
		{"tdes long", TDES2, make([]byte, 24)},
		{"tdes single", TDES2, mustHex(t, "0123456789ABCDEF0123456789ABCDEF")},
		{"p256 zero", P256, make([]byte, 32)},
		{"unknown kind", Kind("rsa"), make([]byte, 32)},
		{"too long", HMACSHA256, make([]byte, 65)},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.ImportKey(ctx, "bad", tc.kind, tc.key); mipay.ErrorCode(err) != mipay.EINVALID {
				t.Errorf("err = %v", err)
			}
		})
	}
	for _, h := range []Handle{"", "a b", Handle(strings.Repeat("x", MaxHandleBytes+1)), "é"} {
		if err := s.EnsureKey(ctx, h, AES256); mipay.ErrorCode(err) != mipay.EINVALID {
			t.Errorf("handle %q: err = %v", h, err)
		}
	}
}

func TestSealOpen(t *testing.T) {
	ctx := context.Background()
	s := MustOpenSoft(t, "")
	mustEnsure(t, s, "kek", AES256)
	mustEnsure(t, s, "mac", HMACSHA256)
	sealed, err := s.Seal(ctx, "kek", []byte("secret"), []byte("token-1"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := s.Open(ctx, "kek", sealed, []byte("token-1")); err != nil || string(pt) != "secret" {
		t.Fatalf("Open = %q, %v", pt, err)
	}
	again, _ := s.Seal(ctx, "kek", []byte("secret"), []byte("token-1"))
	if bytes.Equal(again, sealed) {
		t.Error("two seals are equal: nonce reused")
	}
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	cases := map[string]func() error{
		"wrong aad": func() error { _, err := s.Open(ctx, "kek", sealed, []byte("token-2")); return err },
		"tampered":  func() error { _, err := s.Open(ctx, "kek", tampered, []byte("token-1")); return err },
		"truncated": func() error { _, err := s.Open(ctx, "kek", sealed[:10], []byte("token-1")); return err },
		"empty":     func() error { _, err := s.Open(ctx, "kek", nil, nil); return err },
		"bad version": func() error {
			b := bytes.Clone(sealed)
			b[0] = 9
			_, err := s.Open(ctx, "kek", b, []byte("token-1"))
			return err
		},
	}
	for name, fn := range cases {
		t.Run(name, func(t *testing.T) {
			if err := fn(); !errors.Is(err, ErrAuth) || mipay.ErrorCode(err) != mipay.EINVALID {
				t.Errorf("err = %v", err)
			}
		})
	}
	if _, err := s.Seal(ctx, "mac", []byte("x"), nil); !errors.Is(err, ErrWrongKind) {
		t.Errorf("Seal with an HMAC key: %v", err)
	}
	if _, err := s.Seal(ctx, "nope", []byte("x"), nil); mipay.ErrorCode(err) != mipay.ENOTFOUND || !errors.Is(err, ErrNotFound) {
		t.Errorf("Seal with no key: %v", err)
	}
	if _, err := s.Seal(ctx, "kek", make([]byte, MaxSealBytes+1), nil); mipay.ErrorCode(err) != mipay.ETOOLARGE {
		t.Errorf("oversized seal: %v", err)
	}
}

func TestHMACMatchesImportedKey(t *testing.T) {
	ctx := context.Background()
	s := MustOpenSoft(t, "")
	key := bytes.Repeat([]byte{0x0b}, 32)
	mustImport(t, s, "mac", HMACSHA256, key)
	got, err := s.HMAC(ctx, "mac", []byte("Hi There"))
	if err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("Hi There"))
	if !bytes.Equal(got, m.Sum(nil)) {
		t.Errorf("HMAC = %x", got)
	}
}

func TestOpenBoxAndSigner(t *testing.T) {
	ctx := context.Background()
	s := MustOpenSoft(t, "")
	mustEnsure(t, s, "tsp/box", P256)
	pub, err := s.PublicKey(ctx, "tsp/box")
	if err != nil {
		t.Fatal(err)
	}
	blob, err := cryptobox.Seal(pub, []byte("card data"), []byte("wallet-1"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := s.OpenBox(ctx, "tsp/box", blob, []byte("wallet-1")); err != nil || string(pt) != "card data" {
		t.Fatalf("OpenBox = %q, %v", pt, err)
	}
	if _, err := s.OpenBox(ctx, "tsp/box", blob, []byte("wallet-2")); !errors.Is(err, ErrAuth) {
		t.Errorf("wrong aad: %v", err)
	}
	if _, err := s.OpenBox(ctx, "tsp/box", []byte{1, 2, 3}, nil); !errors.Is(err, ErrAuth) {
		t.Errorf("garbage blob: %v", err)
	}

	sg, err := s.Signer(ctx, "tsp/box")
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("SE certificate"))
	sig, err := sg.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	epub, ok := sg.Public().(*ecdsa.PublicKey)
	if !ok || !ecdsa.VerifyASN1(epub, digest[:], sig) {
		t.Fatal("signature does not verify")
	}
	if b, _ := epub.Bytes(); !bytes.Equal(b, pub.Bytes()) {
		t.Error("signer public key differs from PublicKey")
	}
	if _, err := sg.Sign(rand.Reader, digest[:20], crypto.SHA256); err == nil {
		t.Error("digest of the wrong size signed")
	}
	if _, err := s.Signer(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("no key: %v", err)
	}
}

// ICC master keys of emv-vectors.md (EMV Book 2 A1.4).
var iccVectors = []struct {
	pan string
	psn int
	mk  string
}{
	{"1234567890123456", 0, "154F349D8585CB7F6B0798E9839B10C1"},   // 16 digits: Option A
	{"12345678901234567", 45, "F767ECC2263B2C543775CB62AB6B57D6"}, // Option B
	{"12345678901234567", 0, "1C13AE23B54AF7BA49FBE09192C87983"},
	{"123456789012345679", 0, "1083E9C8A72AA26BDC9B10570B73BACB"},
}

func TestDeriveICCKeySealed(t *testing.T) {
	ctx := context.Background()
	s := MustOpenSoft(t, "")
	mustImport(t, s, "tsp/imk/test", TDES2, mustHex(t, vectorIMK))
	se := newRecipient(t)
	for _, v := range iccVectors {
		t.Run(v.pan, func(t *testing.T) {
			aad := []byte("se-1|" + v.pan[len(v.pan)-4:])
			blob, err := s.DeriveICCKeySealed(ctx, "tsp/imk/test", v.pan, v.psn, se.PublicKey(), aad)
			if err != nil {
				t.Fatal(err)
			}
			mk, err := cryptobox.Open(se, blob, aad)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.ToUpper(hex.EncodeToString(mk)); got != v.mk {
				t.Errorf("MK = %s, want %s", got, v.mk)
			}
			if _, err := cryptobox.Open(newRecipient(t), blob, aad); err == nil {
				t.Error("another key opened the blob")
			}
		})
	}
	if _, err := s.DeriveICCKeySealed(ctx, "tsp/imk/test", "12ab", 0, se.PublicKey(), nil); mipay.ErrorCode(err) != mipay.EINVALID {
		t.Errorf("bad PAN: %v", err)
	}
	if _, err := s.DeriveICCKeySealed(ctx, "tsp/imk/test", "1234567890123456", 100, se.PublicKey(), nil); mipay.ErrorCode(err) != mipay.EINVALID {
		t.Errorf("bad PSN: %v", err)
	}
	if _, err := s.DeriveICCKeySealed(ctx, "tsp/imk/test", "1234567890123456", 0, nil, nil); mipay.ErrorCode(err) != mipay.EINVALID {
		t.Errorf("nil recipient: %v", err)
	}
	x25519, _ := ecdh.X25519().GenerateKey(rand.Reader)
	if _, err := s.DeriveICCKeySealed(ctx, "tsp/imk/test", "1234567890123456", 0, x25519.PublicKey(), nil); mipay.ErrorCode(err) != mipay.EINVALID {
		t.Errorf("X25519 recipient: %v", err)
	}
}

func TestDeriveDiversifiedKeySealed(t *testing.T) {
	ctx := context.Background()
	s := MustOpenSoft(t, "")
	master := mustHex(t, vectorIMK)
	mustImport(t, s, "transit/sh/dpk", TDES2, master)
	se := newRecipient(t)
	div := [8]byte{0x12, 0x34, 0x56, 0x78, 0x90, 0x12, 0x34, 0x56}
	blob, err := s.DeriveDiversifiedKeySealed(ctx, "transit/sh/dpk", div, se.PublicKey(), []byte("card"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := cryptobox.Open(se, blob, []byte("card"))
	if err != nil {
		t.Fatal(err)
	}
	// Reference with crypto/des: 3DES(K, div) ‖ 3DES(K, NOT div), odd parity.
	want := append(tdesEncrypt(t, master, div[:]), tdesEncrypt(t, master, not8(div[:]))...)
	emv.OddParity(want)
	if !bytes.Equal(got, want) {
		t.Errorf("diversified key = %X, want %X", got, want)
	}
}

func not8(b []byte) []byte {
	out := make([]byte, len(b))
	for i := range b {
		out[i] = ^b[i]
	}
	return out
}

// tdesEncrypt is a reference double-length 3DES-ECB of one block with the
// standard library, independent of package emv.
func tdesEncrypt(tb testing.TB, key16, block []byte) []byte {
	tb.Helper()
	c, err := des.NewTripleDESCipher(append(bytes.Clone(key16), key16[:8]...))
	if err != nil {
		tb.Fatal(err)
	}
	out := make([]byte, 8)
	c.Encrypt(out, block)
	return out
}

// refMACAlg3 is ISO 9797-1 MAC algorithm 3 with padding method 2, written
// with the standard library as an independent reference.
func refMACAlg3(tb testing.TB, key16, data []byte) []byte {
	tb.Helper()
	padded := append(bytes.Clone(data), 0x80)
	for len(padded)%8 != 0 {
		padded = append(padded, 0)
	}
	kl, _ := des.NewCipher(key16[:8])
	kr, _ := des.NewCipher(key16[8:])
	h := make([]byte, 8)
	for i := 0; i < len(padded); i += 8 {
		for j := range 8 {
			h[j] ^= padded[i+j]
		}
		kl.Encrypt(h, h)
	}
	kr.Decrypt(h, h)
	kl.Encrypt(h, h)
	return h
}

// refPBOCSessionKey is DESIGN.md's PBOC session key with the standard library.
func refPBOCSessionKey(tb testing.TB, mk []byte, atc uint16) []byte {
	var a, b [8]byte
	binary.BigEndian.PutUint16(a[6:], atc)
	binary.BigEndian.PutUint16(b[6:], atc^0xFFFF)
	sk := append(tdesEncrypt(tb, mk, a[:]), tdesEncrypt(tb, mk, b[:])...)
	emv.OddParity(sk)
	return sk
}

func TestReferenceMACMatchesVector(t *testing.T) {
	// emv-vectors.md: SK 29B3…, data 0123…EF ×2, padding 2 → ARQC FA624250B008B59A;
	// ARPC method 1 with ARC 0000 → 45D4255EEF10C920.
	sk := mustHex(t, "29B33180E567CE38EA4CBC9D753B0E61")
	mac := refMACAlg3(t, sk, mustHex(t, "0123456789ABCDEF0123456789ABCDEF"))
	if got := strings.ToUpper(hex.EncodeToString(mac)); got != "FA624250B008B59A" {
		t.Fatalf("reference MAC = %s", got)
	}
	arpc := tdesEncrypt(t, sk, mac) // ARC 0000: ARQC xor 0 = ARQC
	if got := strings.ToUpper(hex.EncodeToString(arpc)); got != "45D4255EEF10C920" {
		t.Fatalf("reference ARPC = %s", got)
	}
}

// pbocData is a PBOC CVN 01 MAC input (9F02‖9F03‖9F1A‖95‖5F2A‖9A‖9C‖9F37‖82‖9F36‖CVR).
const pbocData = "000000004000" + "000000000000" + "0156" + "8000048000" + "0156" + "261126" + "00" + "52BF4585" + "7C00" + "001C" + "03A00000"

func TestVerifyARQC(t *testing.T) {
	ctx := context.Background()
	s := MustOpenSoft(t, "")
	mustImport(t, s, "tsp/imk/test", TDES2, mustHex(t, vectorIMK))
	data := mustHex(t, pbocData)
	for _, v := range iccVectors {
		t.Run(v.pan, func(t *testing.T) {
			const atc = 0x001C
			sk := refPBOCSessionKey(t, mustHex(t, v.mk), atc)
			arqc := [8]byte(refMACAlg3(t, sk, data))
			arc := [2]byte{'0', '0'}
			in := ARQCInput{PAN: v.pan, PSN: v.psn, ATC: atc, Data: data, ARQC: arqc, ARC: arc}
			for range 2 { // second round from the MK cache
				res, err := s.VerifyARQC(ctx, "tsp/imk/test", in)
				if err != nil {
					t.Fatal(err)
				}
				x := arqc
				x[0] ^= arc[0]
				x[1] ^= arc[1]
				if !res.Valid || !bytes.Equal(res.ARPC[:], tdesEncrypt(t, sk, x[:])) {
					t.Fatalf("result %+v", res)
				}
			}
			wrong := []struct {
				name string
				edit func(*ARQCInput)
			}{
				{"atc", func(i *ARQCInput) { i.ATC++ }},
				{"psn", func(i *ARQCInput) { i.PSN = (i.PSN + 1) % 100 }},
				{"pan", func(i *ARQCInput) { i.PAN = i.PAN[:len(i.PAN)-1] + otherDigit(i.PAN[len(i.PAN)-1]) }},
				{"data", func(i *ARQCInput) { i.Data = append(bytes.Clone(i.Data[:len(i.Data)-1]), 0x01) }},
				{"arqc", func(i *ARQCInput) { i.ARQC[7] ^= 1 }},
			}
			for _, w := range wrong {
				bad := in
				w.edit(&bad)
				res, err := s.VerifyARQC(ctx, "tsp/imk/test", bad)
				if err != nil || res.Valid || res.ARPC != [8]byte{} {
					t.Errorf("%s changed: %+v, %v", w.name, res, err)
				}
			}
		})
	}
	if _, err := s.VerifyARQC(ctx, "tsp/imk/test", ARQCInput{PAN: "1234567890123456", Data: nil}); mipay.ErrorCode(err) != mipay.EINVALID {
		t.Errorf("empty data: %v", err)
	}
	if _, err := s.VerifyARQC(ctx, "tsp/imk/test", ARQCInput{PAN: "12x4567890123456", Data: data}); mipay.ErrorCode(err) != mipay.EINVALID {
		t.Errorf("bad PAN: %v", err)
	}
	if _, err := s.VerifyARQC(ctx, "nope", ARQCInput{PAN: "1234567890123456", Data: data}); mipay.ErrorCode(err) != mipay.ENOTFOUND {
		t.Errorf("no key: %v", err)
	}
}

func otherDigit(d byte) string {
	if d == '9' {
		return "8"
	}
	return "9"
}

// The session key cache follows the ATC: a new ATC, then the old one again.
func TestVerifyARQCAcrossATCs(t *testing.T) {
	ctx := context.Background()
	s := MustOpenSoft(t, "")
	mustImport(t, s, "imk", TDES2, mustHex(t, vectorIMK))
	data := mustHex(t, pbocData)
	mk := mustHex(t, "154F349D8585CB7F6B0798E9839B10C1")
	in := func(atc uint16) ARQCInput {
		return ARQCInput{PAN: "1234567890123456", ATC: atc, Data: data,
			ARQC: [8]byte(refMACAlg3(t, refPBOCSessionKey(t, mk, atc), data))}
	}
	for _, atc := range []uint16{1, 1, 2, 1, 0xFFFF, 2} {
		res, err := s.VerifyARQC(ctx, "imk", in(atc))
		if err != nil || !res.Valid {
			t.Fatalf("ATC %d: %+v, %v", atc, res, err)
		}
		wrong := in(atc)
		wrong.ATC++
		if res, err := s.VerifyARQC(ctx, "imk", wrong); err != nil || res.Valid {
			t.Fatalf("ATC %d accepted for the cryptogram of %d", wrong.ATC, atc)
		}
	}
}

func TestMKCacheBounded(t *testing.T) {
	c := newMKCache(3)
	for i := range 10 {
		c.put(mkKey{imk: "k", pan: "1234567890123456", psn: i}, emv.Key{byte(i)})
	}
	if c.len() != 3 {
		t.Fatalf("len = %d", c.len())
	}
	if _, ok := c.get(mkKey{imk: "k", pan: "1234567890123456", psn: 0}); ok {
		t.Error("oldest entry not evicted")
	}
	if mk, ok := c.get(mkKey{imk: "k", pan: "1234567890123456", psn: 9}); !ok || mk[0] != 9 {
		t.Error("newest entry missing")
	}
}

func BenchmarkVerifyARQC(b *testing.B) {
	ctx := context.Background()
	s := MustOpenSoft(b, "")
	mustImport(b, s, "imk", TDES2, mustHex(b, vectorIMK))
	data := mustHex(b, pbocData)
	mk := mustHex(b, "1083E9C8A72AA26BDC9B10570B73BACB")
	// One card (19 digits: Option B), a new ATC per transaction.
	ins := make([]ARQCInput, 256)
	for i := range ins {
		in := ARQCInput{PAN: "123456789012345679", PSN: 0, ATC: uint16(i + 1), Data: data}
		in.ARQC = [8]byte(refMACAlg3(b, refPBOCSessionKey(b, mk, in.ATC), data))
		ins[i] = in
	}
	verify := func(b *testing.B, s *Soft, in ARQCInput) {
		if res, err := s.VerifyARQC(ctx, "imk", in); err != nil || !res.Valid {
			b.Fatal("verify failed")
		}
	}
	b.Run("new ATC, MK cached", func(b *testing.B) {
		b.ReportAllocs()
		start := cpuTime(b)
		i := 0
		for b.Loop() {
			verify(b, s, ins[i%len(ins)])
			i++
		}
		b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
	})
	b.Run("same ATC again (ARPC)", func(b *testing.B) {
		b.ReportAllocs()
		start := cpuTime(b)
		for b.Loop() {
			verify(b, s, ins[0])
		}
		b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
	})
	b.Run("parallel new ATC", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if res, err := s.VerifyARQC(ctx, "imk", ins[i%len(ins)]); err != nil || !res.Valid {
					b.Error("verify failed")
					return
				}
				i++
			}
		})
	})
	b.Run("uncached", func(b *testing.B) {
		small, err := OpenSoft(ctx, SoftConfig{Dir: b.TempDir(), ARQCCacheEntries: 1})
		if err != nil {
			b.Fatal(err)
		}
		mustImport(b, small, "imk", TDES2, mustHex(b, vectorIMK))
		other := ARQCInput{PAN: "1234567890123456", Data: data}
		b.ReportAllocs()
		start := cpuTime(b)
		i := 0
		for b.Loop() {
			x := ins[0]
			if i%2 == 1 {
				x = other // alternate cards so the 1-entry cache always misses
			}
			i++
			if _, err := small.VerifyARQC(ctx, "imk", x); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
	})
}

func TestBadKeystore(t *testing.T) {
	ctx := context.Background()
	t.Run("corrupt", func(t *testing.T) {
		dir := t.TempDir()
		MustOpenSoft(t, dir)
		if err := os.WriteFile(filepath.Join(dir, KeystoreFile), []byte("{not json"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := OpenSoft(ctx, SoftConfig{Dir: dir})
		if err == nil || !strings.Contains(err.Error(), "corrupt") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("unknown version", func(t *testing.T) {
		dir := t.TempDir()
		MustOpenSoft(t, dir)
		if err := os.WriteFile(filepath.Join(dir, KeystoreFile), []byte(`{"version":9}`), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenSoft(ctx, SoftConfig{Dir: dir}); err == nil || !strings.Contains(err.Error(), "version 9") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("unwritable dir", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root writes anywhere")
		}
		parent := t.TempDir()
		if err := os.Chmod(parent, 0o500); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Chmod(parent, 0o700) })
		if _, err := OpenSoft(ctx, SoftConfig{Dir: filepath.Join(parent, "hsm")}); err == nil || !strings.Contains(err.Error(), "cannot create") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("no dir", func(t *testing.T) {
		if _, err := OpenSoft(ctx, SoftConfig{}); err == nil {
			t.Error("empty Dir accepted")
		}
	})
	t.Run("master key not hex", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, MasterKeyFile), []byte("hello"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenSoft(ctx, SoftConfig{Dir: dir}); err == nil || !strings.Contains(err.Error(), "64 hex") {
			t.Errorf("err = %v", err)
		}
	})
}

func BenchmarkVaultOps(b *testing.B) {
	ctx := context.Background()
	s := MustOpenSoft(b, "")
	mustEnsure(b, s, "kek", AES256)
	mustEnsure(b, s, "mac", HMACSHA256)
	pan := []byte("6225881234567898")
	aad := []byte("token-ref-0001")
	sealed, err := s.Seal(ctx, "kek", pan, aad)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Seal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Seal(ctx, "kek", pan, aad); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Open", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Open(ctx, "kek", sealed, aad); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("HMAC", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.HMAC(ctx, "mac", pan); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Several processes (here: goroutines) opening a fresh directory at once
// end up with one master key.
func TestConcurrentFirstStart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	const n = 8
	hsms := make([]*Soft, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := OpenSoft(ctx, SoftConfig{Dir: dir})
			if err != nil {
				t.Error(err)
				return
			}
			hsms[i] = s
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	mustEnsure(t, hsms[0], "k", AES256)
	sealed, err := hsms[0].Seal(ctx, "k", []byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range hsms {
		if pt, err := s.Open(ctx, "k", sealed, nil); err != nil || string(pt) != "x" {
			t.Errorf("instance %d: %v", i, err)
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temp file left: %s", e.Name())
		}
	}
}
