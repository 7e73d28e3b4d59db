package issuer

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/httpx"
	"github.com/mipay-oss/mipay/store"
)

// Bank staff authenticate to the host's operator endpoints (card lifecycle,
// accounts) with an API key of their bank, sent as a bearer token. A key
// acts only on its own bank's issuer id. The host keeps only a SHA-256 of
// each key (the keys are 256-bit random, so a plain hash is enough); the
// plaintext is handed over once:
//
//   - MIPAY_ISSUER_OPERATOR_KEYS="icbc-debit=KEY,boc-credit=KEY" sets keys
//     (their hashes replace the stored ones: this is also how a key is
//     rotated or a lost one replaced);
//   - otherwise a bank without a stored key gets a new one on the host's
//     first start, written to <data>/issuer/operator-keys/<issuer id>.key
//     (mode 0600) for the bank to move into its own secret store.
//
// Wrong keys are counted per client address; too many within the window
// lock that client out for the rest of it (429), so keys cannot be guessed
// online. A missing key is not counted (no guess was made).

// Operator key settings.
const (
	EnvOperatorKeys       = "MIPAY_ISSUER_OPERATOR_KEYS"
	OperatorKeyDir        = "operator-keys" // under <data>/issuer
	operatorKeyPrefix     = "mbk_"
	operatorKeyRandBytes  = 32
	minOperatorKeyBytes   = 16
	maxOperatorKeyBytes   = 256
	operatorKeyHashLabel  = "mipay issuer operator key v1\x00"
	operatorReloadEvery   = time.Second // a miss re-reads the stored hashes at most this often
	maxOperatorClients    = 10000       // clients tracked by the failure limiter
	operatorAuthRealm     = `Bearer realm="mipay issuer operator"`
	DefaultOperatorFails  = 10              // wrong keys per client per window
	DefaultOperatorWindow = 5 * time.Minute // the failure window (and lockout)
)

// OperatorConfig says where operator keys come from.
type OperatorConfig struct {
	// Keys are plaintext keys by issuer id (from EnvOperatorKeys): their
	// hashes are stored, replacing any stored one.
	Keys map[string]string
	// Dir, when set, receives a new key file for every bank that has no key
	// yet (0600). Empty: such banks have no key (every call 401).
	Dir string
	// MaxFails wrong keys per client within Window lock it out until the
	// window ends (DefaultOperatorFails, DefaultOperatorWindow).
	MaxFails int
	Window   time.Duration
	Now      func() time.Time
}

// Operators authenticates bank staff.
type Operators struct {
	db   *store.DB
	cfg  OperatorConfig
	mu   sync.Mutex
	hash map[string][]byte // issuer id → key hash
	last time.Time         // last reload from the store

	fmu   sync.Mutex
	fails map[string]*opFails

	// Generated are the banks whose key this start wrote to Dir.
	Generated []string
}

type opFails struct {
	n     int
	since time.Time
}

// ParseOperatorKeys reads EnvOperatorKeys' format: comma-separated
// issuerId=key pairs, every issuer id known, every key 16–256 printable
// characters without spaces or commas.
func ParseOperatorKeys(ref *config.Reference, v string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(v) == "" {
		return out, nil
	}
	for _, pair := range strings.Split(v, ",") {
		id, key, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || id == "" {
			return nil, mipay.Errorf(mipay.EINVALID, "%s: each entry must be issuerId=key", EnvOperatorKeys)
		}
		if _, known := ref.Issuer(id); !known {
			return nil, mipay.Errorf(mipay.EINVALID, "%s: no issuer %q in the reference data", EnvOperatorKeys, id)
		}
		if err := checkOperatorKey(key); err != nil {
			return nil, mipay.Errorf(mipay.EINVALID, "%s: the key of %s %s", EnvOperatorKeys, id, mipay.ErrorMessage(err))
		}
		if _, dup := out[id]; dup {
			return nil, mipay.Errorf(mipay.EINVALID, "%s: %s is given twice", EnvOperatorKeys, id)
		}
		out[id] = key
	}
	return out, nil
}

func checkOperatorKey(key string) error {
	if len(key) < minOperatorKeyBytes || len(key) > maxOperatorKeyBytes {
		return mipay.Errorf(mipay.EINVALID, "must be %d to %d characters", minOperatorKeyBytes, maxOperatorKeyBytes)
	}
	for i := 0; i < len(key); i++ {
		if key[i] <= ' ' || key[i] > '~' || key[i] == ',' {
			return mipay.Errorf(mipay.EINVALID, "must be printable ASCII without spaces or commas")
		}
	}
	return nil
}

func operatorKeyHash(key string) []byte {
	s := sha256.Sum256([]byte(operatorKeyHashLabel + key))
	return s[:]
}

// NewOperatorKey returns a fresh random key.
func NewOperatorKey() (string, error) {
	b := make([]byte, operatorKeyRandBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("issuer: operator key: %w", err)
	}
	return operatorKeyPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// OpenOperators stores the configured keys' hashes, makes a key for every
// bank of ref without one (when cfg.Dir is set) and loads the hashes.
func OpenOperators(ctx context.Context, db *store.DB, ref *config.Reference, cfg OperatorConfig) (*Operators, error) {
	if cfg.MaxFails <= 0 {
		cfg.MaxFails = DefaultOperatorFails
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultOperatorWindow
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	o := &Operators{db: db, cfg: cfg, fails: map[string]*opFails{}}
	now := cfg.Now().UnixMilli()
	for id, key := range cfg.Keys {
		if err := checkOperatorKey(key); err != nil {
			return nil, fmt.Errorf("issuer: operator key of %s: %w", id, err)
		}
		if err := db.Tx(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO operator_keys (issuer_id, key_hash, created_ms) VALUES ($1, $2, $3)
				ON CONFLICT (issuer_id) DO UPDATE SET key_hash = excluded.key_hash, created_ms = excluded.created_ms`,
				id, operatorKeyHash(key), now)
			return err
		}); err != nil {
			return nil, fmt.Errorf("issuer: store operator key of %s: %w", id, err)
		}
	}
	if cfg.Dir != "" {
		for i := range ref.Issuers {
			id := ref.Issuers[i].ID
			if _, given := cfg.Keys[id]; given {
				continue
			}
			if err := o.generate(ctx, id, now); err != nil {
				return nil, err
			}
		}
	}
	if err := o.reload(ctx); err != nil {
		return nil, err
	}
	return o, nil
}

// generate makes a key for a bank that has none: the hash is stored only if
// no node stored one first, and only then is the key file written.
func (o *Operators) generate(ctx context.Context, issuerID string, now int64) error {
	key, err := NewOperatorKey()
	if err != nil {
		return err
	}
	var inserted bool
	if err := o.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO operator_keys (issuer_id, key_hash, created_ms) VALUES ($1, $2, $3)
			ON CONFLICT (issuer_id) DO NOTHING`, issuerID, operatorKeyHash(key), now)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		inserted = n == 1
		return err
	}); err != nil {
		return fmt.Errorf("issuer: store operator key of %s: %w", issuerID, err)
	}
	if !inserted {
		return nil
	}
	if err := writeSecretFile(filepath.Join(o.cfg.Dir, issuerID+".key"), key+"\n"); err != nil {
		// Without the file nobody knows the key: forget it, so the next
		// start tries again.
		_, derr := o.db.DB.ExecContext(ctx, `DELETE FROM operator_keys WHERE issuer_id = $1`, issuerID)
		return errors.Join(fmt.Errorf("issuer: write the operator key of %s: %w", issuerID, err), derr)
	}
	o.Generated = append(o.Generated, issuerID)
	return nil
}

// writeSecretFile writes a 0600 file atomically (temporary file, rename).
func writeSecretFile(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".key-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.WriteString(content)
	if err == nil {
		err = f.Chmod(0o600)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// ReadOperatorKey reads a bank's key file from dir (tests, the demo, and
// `mipay bank` when no key is given).
func ReadOperatorKey(dir, issuerID string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, issuerID+".key"))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func (o *Operators) reload(ctx context.Context) error {
	rows, err := o.db.DB.QueryContext(ctx, `SELECT issuer_id, key_hash FROM operator_keys`)
	if err != nil {
		return fmt.Errorf("issuer: read operator keys: %w", err)
	}
	defer rows.Close()
	m := map[string][]byte{}
	for rows.Next() {
		var (
			id string
			h  []byte
		)
		if err := rows.Scan(&id, &h); err != nil {
			return fmt.Errorf("issuer: read operator keys: %w", err)
		}
		m[id] = h
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("issuer: read operator keys: %w", err)
	}
	o.mu.Lock()
	o.hash, o.last = m, o.cfg.Now()
	o.mu.Unlock()
	return nil
}

// bankOf returns the issuer id whose key this is. Every stored hash is
// compared in constant time (no early exit on a match), so the time taken
// says nothing about which bank or how close a guess was. A miss re-reads
// the stored hashes (bounded) to see keys set by another node.
func (o *Operators) bankOf(ctx context.Context, key string) (string, bool) {
	h := operatorKeyHash(key)
	find := func() string {
		o.mu.Lock()
		defer o.mu.Unlock()
		found := ""
		for id, stored := range o.hash {
			if subtle.ConstantTimeCompare(h, stored) == 1 {
				found = id
			}
		}
		return found
	}
	if id := find(); id != "" {
		return id, true
	}
	o.mu.Lock()
	stale := o.cfg.Now().Sub(o.last) >= operatorReloadEvery
	o.mu.Unlock()
	if stale && o.reload(ctx) == nil {
		if id := find(); id != "" {
			return id, true
		}
	}
	return "", false
}

// locked says whether a client used up its wrong keys for this window.
func (o *Operators) locked(client string) bool {
	o.fmu.Lock()
	defer o.fmu.Unlock()
	f, ok := o.fails[client]
	if !ok {
		return false
	}
	if o.cfg.Now().Sub(f.since) >= o.cfg.Window {
		delete(o.fails, client)
		return false
	}
	return f.n >= o.cfg.MaxFails
}

// fail counts a wrong key of a client. The table is bounded: when full,
// expired entries go, and if none expired the oldest one does.
func (o *Operators) fail(client string) {
	o.fmu.Lock()
	defer o.fmu.Unlock()
	now := o.cfg.Now()
	f, ok := o.fails[client]
	if ok && now.Sub(f.since) >= o.cfg.Window {
		ok = false
	}
	if !ok {
		if len(o.fails) >= maxOperatorClients {
			var oldest string
			for c, e := range o.fails {
				if now.Sub(e.since) >= o.cfg.Window {
					delete(o.fails, c)
				} else if oldest == "" || e.since.Before(o.fails[oldest].since) {
					oldest = c
				}
			}
			if len(o.fails) >= maxOperatorClients {
				delete(o.fails, oldest)
			}
		}
		f = &opFails{since: now}
		o.fails[client] = f
	}
	f.n++
}

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func bearerKey(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") || len(h) > 7+maxOperatorKeyBytes+8 {
		return ""
	}
	return strings.TrimSpace(h[7:])
}

// staff admits a request whose bearer key belongs to the bank named by the
// path's {id}: no key 401, wrong key 401 (counted), another bank's key 403
// (counted), a client over its wrong keys 429 before any key is looked at.
func (h *Host) staff(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		o := h.ops
		if o == nil {
			w.Header().Set("WWW-Authenticate", operatorAuthRealm)
			httpx.WriteError(w, r, mipay.Errorf(mipay.EUNAUTHORIZED, "no bank operator keys are configured on this host (%s)", EnvOperatorKeys))
			return
		}
		client := clientAddr(r)
		if o.locked(client) {
			w.Header().Set("Retry-After", fmt.Sprint(int(o.cfg.Window.Seconds())))
			httpx.WriteError(w, r, mipay.Errorf(mipay.ELIMIT, "too many wrong operator keys from this address: try again later"))
			return
		}
		key := bearerKey(r)
		if key == "" {
			w.Header().Set("WWW-Authenticate", operatorAuthRealm)
			httpx.WriteError(w, r, mipay.Errorf(mipay.EUNAUTHORIZED, "send Authorization: Bearer <your bank's operator key>"))
			return
		}
		bank, ok := o.bankOf(r.Context(), key)
		if !ok {
			o.fail(client)
			h.log.WarnContext(r.Context(), "wrong bank operator key", "client", client, "issuer", r.PathValue("id"))
			w.Header().Set("WWW-Authenticate", operatorAuthRealm)
			httpx.WriteError(w, r, mipay.Errorf(mipay.EUNAUTHORIZED, "wrong operator key"))
			return
		}
		if bank != r.PathValue("id") {
			o.fail(client)
			h.log.WarnContext(r.Context(), "operator key used for another bank", "client", client, "keyOf", bank, "issuer", r.PathValue("id"))
			httpx.WriteError(w, r, mipay.Errorf(mipay.EFORBIDDEN, "this operator key does not act for this bank"))
			return
		}
		next(w, r)
	}
}
