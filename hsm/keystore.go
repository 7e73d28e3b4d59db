package hsm

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/atomicfile"
)

// keystoreVersion is the format of keystore.json.
const keystoreVersion = 1

// MaxKeystoreBytes bounds the keystore file read at start and on reload.
const MaxKeystoreBytes = 64 << 20

// Associated data binding sealed values to their place.
const (
	checkAAD    = "mipay-hsm-check-v1"
	checkPlain  = "mipay hsm keystore"
	keyAADLabel = "mipay-hsm-key-v1"
)

// keystoreFile is the JSON on disk. Secret keys appear only sealed.
type keystoreFile struct {
	Version int                  `json:"version"`
	Check   []byte               `json:"check"` // checkPlain sealed under the master key: detects a wrong master key
	Keys    map[Handle]storedKey `json:"keys"`
}

type storedKey struct {
	Kind    Kind      `json:"kind"`
	Sealed  []byte    `json:"sealed"` // nonce ‖ ciphertext ‖ tag, AAD = label, kind and handle
	Created time.Time `json:"created"`
}

// keystore is the sealed keys file: read whole, rewritten whole and
// atomically (temp file, fsync, rename, fsync of the directory) under an
// exclusive file lock, merging what other processes wrote.
type keystore struct {
	path   string
	master cipher.AEAD
	mu     sync.Mutex // serialises this process's writers before the file lock
}

func newKeystore(path string) *keystore { return &keystore{path: path} }

func (ks *keystore) exists() (bool, error) {
	_, err := os.Stat(ks.path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("hsm: keystore: %w", err)
}

// init creates the keystore on first start, or checks that the master key
// opens the existing one.
func (ks *keystore) init() error {
	return ks.update(func(map[Handle]storedKey) (bool, error) { return false, nil })
}

// lookup re-reads the file and returns h's sealed key.
func (ks *keystore) lookup(h Handle) (storedKey, bool, error) {
	f, err := ks.read()
	if err != nil {
		return storedKey{}, false, err
	}
	sk, ok := f.Keys[h]
	return sk, ok, nil
}

// update applies fn to the keys on disk under the file lock and writes them
// back when fn reports a change (or the file does not exist yet).
func (ks *keystore) update(fn func(keys map[Handle]storedKey) (bool, error)) error {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	unlock, err := lockFile(ks.path + ".lock")
	if err != nil {
		return err
	}
	defer unlock()
	f, err := ks.read()
	fresh := false
	if errors.Is(err, fs.ErrNotExist) {
		f, fresh = ks.empty()
	} else if err != nil {
		return err
	}
	changed, err := fn(f.Keys)
	if err != nil {
		return err
	}
	if !changed && !fresh {
		return nil
	}
	return ks.write(f)
}

func (ks *keystore) empty() (*keystoreFile, bool) {
	return &keystoreFile{
		Version: keystoreVersion,
		Check:   sealWith(ks.master, []byte(checkPlain), []byte(checkAAD)),
		Keys:    make(map[Handle]storedKey),
	}, true
}

// read loads and checks the file. A missing file is fs.ErrNotExist.
func (ks *keystore) read() (*keystoreFile, error) {
	fh, err := os.Open(ks.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("hsm: keystore: %w", err)
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, MaxKeystoreBytes+1))
	if err != nil {
		return nil, fmt.Errorf("hsm: keystore %s: %w", ks.path, err)
	}
	if len(b) > MaxKeystoreBytes {
		return nil, fmt.Errorf("hsm: keystore %s is larger than %d bytes", ks.path, MaxKeystoreBytes)
	}
	var f keystoreFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("hsm: keystore %s is corrupt (%v); restore it from a backup", ks.path, err)
	}
	if f.Version != keystoreVersion {
		return nil, fmt.Errorf("hsm: keystore %s has version %d; this build reads version %d", ks.path, f.Version, keystoreVersion)
	}
	if pt, err := openWith(ks.master, f.Check, []byte(checkAAD)); err != nil || string(pt) != checkPlain {
		return nil, fmt.Errorf("%w at %s: the master key (%s or MIPAY_HSM_MASTER_KEY) is not the one the keystore was created with",
			ErrMasterKey, ks.path, filepath.Join(filepath.Dir(ks.path), MasterKeyFile))
	}
	if f.Keys == nil {
		f.Keys = make(map[Handle]storedKey)
	}
	return &f, nil
}

// write replaces the file atomically and durably.
func (ks *keystore) write(f *keystoreFile) error {
	b, err := json.MarshalIndent(f, "", " ")
	if err != nil {
		return fmt.Errorf("hsm: keystore: %w", err)
	}
	if err := atomicfile.Write(ks.path, b, 0o600); err != nil {
		return mipay.WrapError(mipay.EINTERNAL, err, "keystore write failed")
	}
	return nil
}

func keyAAD(h Handle, kind Kind) []byte {
	return []byte(keyAADLabel + "\x00" + string(kind) + "\x00" + string(h))
}

func (ks *keystore) seal(h Handle, kind Kind, secret []byte) storedKey {
	return storedKey{Kind: kind, Sealed: sealWith(ks.master, secret, keyAAD(h, kind)), Created: time.Now().UTC()}
}

func (ks *keystore) unseal(h Handle, sk storedKey) ([]byte, error) {
	secret, err := openWith(ks.master, sk.Sealed, keyAAD(h, sk.Kind))
	if err != nil {
		return nil, &mipay.Error{Code: mipay.EINTERNAL, Message: fmt.Sprintf("key %s does not unseal", h), Err: fmt.Errorf("%w: key %s", ErrAuth, h)}
	}
	return secret, nil
}

func sealWith(aead cipher.AEAD, plaintext, aad []byte) []byte {
	ns := aead.NonceSize()
	out := make([]byte, ns, ns+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		panic("hsm: crypto/rand failed: " + err.Error()) // crypto/rand does not fail on supported systems
	}
	return aead.Seal(out, out, plaintext, aad)
}

func openWith(aead cipher.AEAD, sealed, aad []byte) ([]byte, error) {
	ns := aead.NonceSize()
	if len(sealed) < ns+aead.Overhead() {
		return nil, ErrAuth
	}
	return aead.Open(nil, sealed[:ns], sealed[ns:], aad)
}

// lockFile takes an exclusive advisory lock shared with other processes.
func lockFile(path string) (unlock func(), err error) {
	fh, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("hsm: lock file: %w", err)
	}
	if err := syscall.Flock(int(fh.Fd()), syscall.LOCK_EX); err != nil {
		fh.Close()
		return nil, fmt.Errorf("hsm: lock %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(fh.Fd()), syscall.LOCK_UN)
		fh.Close()
	}, nil
}

// ensureDir creates dir (0700) if needed.
func ensureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("hsm: cannot create key directory %s: %w", dir, err)
	}
	return nil
}

// masterKeyBytes is the size of the master key (AES-256).
const masterKeyBytes = 32

// loadMasterKey returns the master key: from hexKey when set, else from
// <dir>/master.key, which is created on first start (0600). A key file
// readable by others is refused. A missing key file next to an existing
// keystore is refused rather than replaced.
func loadMasterKey(dir, hexKey string, keystoreExists bool) ([]byte, error) {
	if hexKey != "" {
		k, err := hex.DecodeString(strings.TrimSpace(hexKey))
		if err != nil || len(k) != masterKeyBytes {
			return nil, errors.New("hsm: MIPAY_HSM_MASTER_KEY must be 64 hex characters (a 32-byte key); generate one with: openssl rand -hex 32")
		}
		return k, nil
	}
	path := filepath.Join(dir, MasterKeyFile)
	k, err := readMasterKeyFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	if keystoreExists {
		return nil, fmt.Errorf("hsm: the keystore in %s exists but %s is missing; restore the master key file (mode 0600) or set MIPAY_HSM_MASTER_KEY", dir, path)
	}
	return createMasterKeyFile(path)
}

func readMasterKeyFile(path string) ([]byte, error) {
	st, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("hsm: %s must be a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o but must be readable by its owner only; fix with: chmod 600 %s",
			ErrPermissions, path, perm, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("hsm: %w", err)
	}
	k, err := hex.DecodeString(strings.TrimSpace(string(b)))
	clear(b)
	if err != nil || len(k) != masterKeyBytes {
		return nil, fmt.Errorf("hsm: %s must hold 64 hex characters (a 32-byte key)", path)
	}
	return k, nil
}

// createMasterKeyFile writes a new random master key to a temp file and
// links it into place, so the key file appears whole or not at all, and two
// processes starting together keep the one that won.
func createMasterKeyFile(path string) ([]byte, error) {
	k := make([]byte, masterKeyBytes)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("hsm: master key: %w", err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, MasterKeyFile+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("hsm: cannot create %s: %w", path, err)
	}
	name := tmp.Name()
	defer os.Remove(name)
	_, werr := tmp.WriteString(hex.EncodeToString(k) + "\n")
	cerr := tmp.Chmod(0o600)
	serr := tmp.Sync()
	if err := errors.Join(werr, cerr, serr, tmp.Close()); err != nil {
		return nil, fmt.Errorf("hsm: writing %s: %w", path, err)
	}
	if err := os.Link(name, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			clear(k)
			return readMasterKeyFile(path)
		}
		return nil, fmt.Errorf("hsm: cannot create %s: %w", path, err)
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return nil, fmt.Errorf("hsm: %w", err)
	}
	return k, nil
}
