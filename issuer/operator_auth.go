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
	"github.com/mipay-oss/mipay/atomicfile"
	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/httpx"
	"github.com/mipay-oss/mipay/store"
)

// Bank staff authenticate to the host's operator endpoints (card lifecycle,
// accounts) with an API key of their bank, sent as a bearer token. A key
// acts only on its own bank's issuer id. The host keeps only a SHA-256 of
// each key (the keys are 256-bit random, so a plain hash is enough); the
// plaintext is handed over once. A bank may hold several keys (table
// operator_api_keys): each is valid until it expires or is revoked.
//
//   - MIPAY_ISSUER_OPERATOR_KEYS="icbc-debit=KEY,boc-credit=KEY" sets keys:
//     a key not stored yet becomes the bank's key and every other valid key
//     of the bank expires at once (how a lost key is replaced by whoever
//     runs the host); a key already stored is left as it is, so a restart
//     with the same setting neither undoes a rotation nor brings back a
//     revoked or expired key;
//   - otherwise a bank that never had a key gets a new one on the host's
//     first start, written to <data>/issuer/operator-keys/<issuer id>.key
//     (mode 0600) for the bank to move into its own secret store;
//   - a bank's staff rotate their key (a new key; the old ones stay valid
//     for a grace period, default 24 h) or revoke one (refused at once)
//     through the API (operator_auth_keys.go, `mipay bank keys`).
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
	operatorReloadEvery   = time.Second // the stored keys are re-read at most this often (another node's revoke)
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
	// Grace is how long a bank's old keys keep working after a rotation
	// that does not say (0: DefaultOperatorKeyGrace; at most
	// MaxOperatorKeyGrace).
	Grace time.Duration
	Now   func() time.Time
}

// Operators authenticates bank staff.
type Operators struct {
	db   *store.DB
	cfg  OperatorConfig
	mu   sync.Mutex
	keys []cachedKey // not revoked (expiry checked at use)
	last time.Time   // last reload from the store
	// epoch counts the key changes this node committed (rotate, revoke): a
	// reload that began reading before one installs nothing, so a copy read
	// before a revoke never brings the revoked key back.
	epoch uint64
	// afterRead, in tests, runs between a reload's read and its install.
	afterRead func()

	fmu   sync.Mutex
	fails map[string]*opFails

	// Generated are the banks whose key this start wrote to Dir.
	Generated []string
}

type cachedKey struct {
	hash      []byte
	issuerID  string
	expiresMs int64 // 0: no expiry
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
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultOperatorKeyGrace
	}
	cfg.Grace = min(cfg.Grace, MaxOperatorKeyGrace)
	o := &Operators{db: db, cfg: cfg, fails: map[string]*opFails{}}
	now := cfg.Now().UnixMilli()
	for id, key := range cfg.Keys {
		if err := checkOperatorKey(key); err != nil {
			return nil, fmt.Errorf("issuer: operator key of %s: %w", id, err)
		}
		if err := o.setConfigured(ctx, id, operatorKeyHash(key), now); err != nil {
			return nil, err
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

// setConfigured stores a key set by EnvOperatorKeys: a key not stored yet
// becomes the bank's and every other valid key of the bank expires now; a
// key stored for this bank stays as it is (rotated, expired or revoked);
// a key stored for another bank is refused.
func (o *Operators) setConfigured(ctx context.Context, issuerID string, hash []byte, now int64) error {
	err := o.db.Tx(ctx, func(tx *sql.Tx) error {
		if err := lockOperatorBank(ctx, o.db, tx, issuerID, now); err != nil {
			return err
		}
		var owner string
		err := tx.QueryRowContext(ctx, `SELECT issuer_id FROM operator_api_keys WHERE key_hash = $1`, hash).Scan(&owner)
		switch {
		case err == nil && owner == issuerID:
			return nil
		case err == nil:
			return mipay.Errorf(mipay.EINVALID, "%s: the key of %s is already a key of another bank", EnvOperatorKeys, issuerID)
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		if err := expireBankKeys(ctx, tx, issuerID, now); err != nil {
			return err
		}
		return addBankKey(ctx, tx, issuerID, hash, now)
	})
	if err != nil {
		return fmt.Errorf("issuer: store operator key of %s: %w", issuerID, err)
	}
	return nil
}

// lockOperatorBank makes the bank's operator_banks row if there is none and
// locks it (PostgreSQL; SQLite has one writer), so that changes to one
// bank's keys run one at a time.
func lockOperatorBank(ctx context.Context, db *store.DB, tx *sql.Tx, issuerID string, now int64) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO operator_banks (issuer_id, created_ms) VALUES ($1, $2)
		ON CONFLICT (issuer_id) DO NOTHING`, issuerID, now); err != nil {
		return err
	}
	var id string
	return tx.QueryRowContext(ctx, `SELECT issuer_id FROM operator_banks WHERE issuer_id = $1`+db.ForUpdate(), issuerID).Scan(&id)
}

// addBankKey stores a new key of the bank (by its hash), valid until it
// expires or is revoked.
func addBankKey(ctx context.Context, tx *sql.Tx, issuerID string, hash []byte, now int64) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO operator_api_keys (key_hash, issuer_id, created_ms) VALUES ($1, $2, $3)`,
		hash, issuerID, now)
	return err
}

// expireBankKeys makes every valid key of the bank stop working at until; a
// key that stops sooner keeps its expiry.
func expireBankKeys(ctx context.Context, tx *sql.Tx, issuerID string, until int64) error {
	_, err := tx.ExecContext(ctx, `UPDATE operator_api_keys SET expires_ms = $1
		WHERE issuer_id = $2 AND revoked_ms = 0 AND (expires_ms = 0 OR expires_ms > $1)`, until, issuerID)
	return err
}

// generate makes a key for a bank that never had one: the hash is stored
// only if no node made the bank's row first, and only then is the key file
// written.
func (o *Operators) generate(ctx context.Context, issuerID string, now int64) error {
	key, err := NewOperatorKey()
	if err != nil {
		return err
	}
	var inserted bool
	if err := o.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO operator_banks (issuer_id, created_ms) VALUES ($1, $2)
			ON CONFLICT (issuer_id) DO NOTHING`, issuerID, now)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil || n != 1 {
			inserted = false
			return err
		}
		inserted = true
		return addBankKey(ctx, tx, issuerID, operatorKeyHash(key), now)
	}); err != nil {
		return fmt.Errorf("issuer: store operator key of %s: %w", issuerID, err)
	}
	if !inserted {
		return nil
	}
	if err := writeSecretFile(filepath.Join(o.cfg.Dir, issuerID+".key"), key+"\n"); err != nil {
		// Without the file nobody knows the key: forget it, so the next
		// start tries again.
		derr := o.db.Tx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `DELETE FROM operator_api_keys WHERE issuer_id = $1`, issuerID); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `DELETE FROM operator_banks WHERE issuer_id = $1`, issuerID)
			return err
		})
		return errors.Join(fmt.Errorf("issuer: write the operator key of %s: %w", issuerID, err), derr)
	}
	o.Generated = append(o.Generated, issuerID)
	return nil
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

// reload reads the keys not revoked (expired ones are refused at use).
func (o *Operators) reload(ctx context.Context) error {
	o.mu.Lock()
	epoch, afterRead := o.epoch, o.afterRead
	o.mu.Unlock()
	rows, err := o.db.DB.QueryContext(ctx, `SELECT issuer_id, key_hash, expires_ms FROM operator_api_keys WHERE revoked_ms = 0`)
	if err != nil {
		return fmt.Errorf("issuer: read operator keys: %w", err)
	}
	defer rows.Close()
	var keys []cachedKey
	for rows.Next() {
		var k cachedKey
		if err := rows.Scan(&k.issuerID, &k.hash, &k.expiresMs); err != nil {
			return fmt.Errorf("issuer: read operator keys: %w", err)
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("issuer: read operator keys: %w", err)
	}
	if afterRead != nil {
		afterRead()
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.epoch != epoch {
		return nil // read before a change committed here: the change's own reload installs a newer copy
	}
	o.keys, o.last = keys, o.cfg.Now()
	return nil
}

// changed marks a key change committed on this node (before its reload).
func (o *Operators) changed() {
	o.mu.Lock()
	o.epoch++
	o.mu.Unlock()
}

// bankOf returns the issuer id whose valid key this is. Every stored hash
// is compared in constant time (no early exit on a match), so the time
// taken says nothing about which bank or how close a guess was. The stored
// keys are re-read when the copy is a second old, so a key revoked or
// rotated on another node is refused here within a second (on this node at
// once: rotate and revoke reload). If the store cannot be read the last
// copy is used.
func (o *Operators) bankOf(ctx context.Context, key string) (string, bool) {
	h := operatorKeyHash(key)
	o.mu.Lock()
	stale := o.cfg.Now().Sub(o.last) >= operatorReloadEvery
	o.mu.Unlock()
	if stale {
		_ = o.reload(ctx)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	found := o.findKeyLocked(h)
	if found == nil || (found.expiresMs != 0 && o.cfg.Now().UnixMilli() >= found.expiresMs) {
		return "", false
	}
	return found.issuerID, true
}

// findKeyLocked returns the cached key whose hash is h, or nil. Every
// cached hash is compared in constant time, with no early exit on a match.
// o.mu must be held.
func (o *Operators) findKeyLocked(h []byte) *cachedKey {
	var found *cachedKey
	for i := range o.keys {
		if subtle.ConstantTimeCompare(h, o.keys[i].hash) == 1 {
			found = &o.keys[i]
		}
	}
	return found
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

// writeSecretFile writes a 0600 file whole or not at all, creating its
// directory (0700).
func writeSecretFile(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(path, []byte(content), 0o600)
}
