package issuer

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/httpx"
)

// Rotation and revocation of bank operator keys, by the bank's own staff
// (a valid key of the bank, for its own issuer id only; see staff):
//
//	GET  /v1/issuers/{id}/operator-keys         the bank's keys (ids, dates, state)
//	POST /v1/issuers/{id}/operator-keys/rotate  {"grace":"24h"} → a new key, shown once;
//	                                            the other valid keys stop working after grace
//	POST /v1/issuers/{id}/operator-keys/revoke  {"keyId":"opk_…"} → refused at once
//
// A key is named by its id, "opk_" and 16 hex digits of a SHA-256 of the
// stored hash: the id says which key it is, not what it is. Keys and hashes
// never leave the host; the plaintext of a new key is in the rotate answer
// only. A revoked or expired key is refused at once on the node that changed
// it and within operatorReloadEvery on the others.

// Operator key lifetimes.
const (
	DefaultOperatorKeyGrace = 24 * time.Hour     // an old key's life after a rotation, unless the call says
	MaxOperatorKeyGrace     = 7 * 24 * time.Hour // the longest grace a rotation may give
	maxValidOperatorKeys    = 10                 // valid keys per bank (a rotation beyond: ELIMIT)
	maxListedOperatorKeys   = 100                // the newest keys a listing shows
	operatorKeyIDPrefix     = "opk_"
	operatorKeyIDLabel      = "mipay issuer operator key id v1\x00"
)

// Operator key states.
const (
	KeyActive   = "active"   // valid, no expiry
	KeyExpiring = "expiring" // valid until Expires (rotated, in its grace period)
	KeyExpired  = "expired"
	KeyRevoked  = "revoked"
)

var operatorKeyIDRE = regexp.MustCompile(`^opk_[0-9a-f]{16}$`)

// IsOperatorKeyID reports whether id has the form of an operator key id
// (opk_ and 16 hex digits), so a client can refuse anything else, such as
// a key given by mistake, before sending it.
func IsOperatorKeyID(id string) bool { return operatorKeyIDRE.MatchString(id) }

// OperatorKeyInfo describes one key of a bank: never the key or its hash.
type OperatorKeyInfo struct {
	ID      string     `json:"id"`
	State   string     `json:"state"`
	Created time.Time  `json:"created"`
	Expires *time.Time `json:"expires,omitempty"`
	Revoked *time.Time `json:"revoked,omitempty"`
	// Current marks the key the call was made with.
	Current bool `json:"current,omitempty"`
}

// OperatorKeyList answers GET …/operator-keys, newest first.
type OperatorKeyList struct {
	Keys []OperatorKeyInfo `json:"keys"`
}

// OperatorKeyRotateRequest asks for a new key. Grace is a Go duration
// ("24h", "90m", "0s": the old keys stop at once), at most
// MaxOperatorKeyGrace; empty means the host's default (24 h).
type OperatorKeyRotateRequest struct {
	Grace string `json:"grace,omitempty"`
}

// OperatorKeyRotateResult holds the new key (its only showing) and the
// bank's other keys still valid, each with the end of its grace.
type OperatorKeyRotateResult struct {
	Key      string            `json:"key"`
	New      OperatorKeyInfo   `json:"new"`
	Expiring []OperatorKeyInfo `json:"expiring"`
}

// OperatorKeyRevokeRequest names the key to refuse from now on.
type OperatorKeyRevokeRequest struct {
	KeyID string `json:"keyId"`
}

// OperatorKeyRevokeResult is the revoked key and how many valid keys the
// bank has left (0: nobody can use the bank's operator API until the host
// sets a key, EnvOperatorKeys).
type OperatorKeyRevokeResult struct {
	Revoked   OperatorKeyInfo `json:"revoked"`
	Remaining int             `json:"remaining"`
}

// operatorKeyID names a stored key by its hash.
func operatorKeyID(hash []byte) string {
	s := sha256.Sum256(append([]byte(operatorKeyIDLabel), hash...))
	return operatorKeyIDPrefix + hex.EncodeToString(s[:8])
}

// storedKey is a row of operator_api_keys.
type storedKey struct {
	hash                        []byte
	createdMs, expiresMs, revMs int64
}

func (k storedKey) valid(nowMs int64) bool {
	return k.revMs == 0 && (k.expiresMs == 0 || nowMs < k.expiresMs)
}

func (k storedKey) info(nowMs int64, current []byte) OperatorKeyInfo {
	in := OperatorKeyInfo{ID: operatorKeyID(k.hash), Created: time.UnixMilli(k.createdMs).UTC(),
		Current: current != nil && string(current) == string(k.hash)}
	switch {
	case k.revMs != 0:
		in.State = KeyRevoked
	case k.expiresMs == 0:
		in.State = KeyActive
	case nowMs < k.expiresMs:
		in.State = KeyExpiring
	default:
		in.State = KeyExpired
	}
	if k.expiresMs != 0 {
		t := time.UnixMilli(k.expiresMs).UTC()
		in.Expires = &t
	}
	if k.revMs != 0 {
		t := time.UnixMilli(k.revMs).UTC()
		in.Revoked = &t
	}
	return in
}

type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// bankKeys reads a bank's keys, newest first (at most limit; 0: all).
func bankKeys(ctx context.Context, q queryer, issuerID string, limit int) ([]storedKey, error) {
	query := `SELECT key_hash, created_ms, expires_ms, revoked_ms FROM operator_api_keys WHERE issuer_id = $1 ORDER BY created_ms DESC, key_hash`
	args := []any{issuerID}
	if limit > 0 {
		query += ` LIMIT $2`
		args = append(args, limit)
	}
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []storedKey
	for rows.Next() {
		var k storedKey
		if err := rows.Scan(&k.hash, &k.createdMs, &k.expiresMs, &k.revMs); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// ListKeys lists a bank's keys, newest first; current (a key hash, may be
// nil) is marked.
func (o *Operators) ListKeys(ctx context.Context, issuerID string, current []byte) (OperatorKeyList, error) {
	keys, err := bankKeys(ctx, o.db.DB, issuerID, maxListedOperatorKeys)
	if err != nil {
		return OperatorKeyList{}, fmt.Errorf("issuer: list operator keys: %w", err)
	}
	now := o.cfg.Now().UnixMilli()
	out := OperatorKeyList{Keys: make([]OperatorKeyInfo, 0, len(keys))}
	for _, k := range keys {
		out.Keys = append(out.Keys, k.info(now, current))
	}
	return out, nil
}

func (o *Operators) parseGrace(v string) (time.Duration, error) {
	if v == "" {
		return o.cfg.Grace, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d > MaxOperatorKeyGrace {
		return 0, mipay.Errorf(mipay.EINVALID, "grace must be a duration from 0s to %s, such as 24h or 90m", MaxOperatorKeyGrace)
	}
	return d, nil
}

// Rotate gives the bank a new key; each other valid key of the bank stops
// working after grace (a key that would stop sooner keeps its expiry).
// current (the caller's key hash, may be nil) is marked in the answer.
func (o *Operators) Rotate(ctx context.Context, issuerID string, req OperatorKeyRotateRequest, current []byte) (OperatorKeyRotateResult, error) {
	grace, err := o.parseGrace(req.Grace)
	if err != nil {
		return OperatorKeyRotateResult{}, err
	}
	if err := o.mayManage(current); err != nil {
		return OperatorKeyRotateResult{}, err
	}
	key, err := NewOperatorKey()
	if err != nil {
		return OperatorKeyRotateResult{}, err
	}
	hash := operatorKeyHash(key)
	nowT := o.cfg.Now()
	now, until := nowT.UnixMilli(), nowT.Add(grace).UnixMilli()
	var old []storedKey
	err = o.db.Tx(ctx, func(tx *sql.Tx) error {
		old = nil
		if err := lockOperatorBank(ctx, o.db, tx, issuerID, now); err != nil {
			return err
		}
		keys, err := bankKeys(ctx, tx, issuerID, 0)
		if err != nil {
			return err
		}
		valid := 0
		for _, k := range keys {
			if k.valid(now) {
				valid++
			}
		}
		if valid >= maxValidOperatorKeys {
			return mipay.Errorf(mipay.ELIMIT, "the bank already has %d valid operator keys: revoke one or wait for one to expire", valid)
		}
		if err := expireBankKeys(ctx, tx, issuerID, until); err != nil {
			return err
		}
		if err := addBankKey(ctx, tx, issuerID, hash, now); err != nil {
			return err
		}
		for _, k := range keys {
			if k.valid(now) {
				if k.expiresMs == 0 || k.expiresMs > until {
					k.expiresMs = until
				}
				old = append(old, k)
			}
		}
		return nil
	})
	if err != nil {
		return OperatorKeyRotateResult{}, keyChangeErr(err, "rotate the operator key", issuerID)
	}
	o.changed()
	_ = o.reload(ctx) // this node refuses the old keys on time even if the read fails now (bankOf re-reads)
	res := OperatorKeyRotateResult{Key: key, New: storedKey{hash: hash, createdMs: now}.info(now, current),
		Expiring: make([]OperatorKeyInfo, 0, len(old))}
	for _, k := range old {
		res.Expiring = append(res.Expiring, k.info(now, current))
	}
	return res, nil
}

// mayManage refuses key management (rotate, revoke) to a key in its grace
// period: once superseded, a key keeps working for the bank's other calls
// until it expires, but a leaked old key must not mint keys or revoke the
// new one. current nil is an in-process caller.
func (o *Operators) mayManage(current []byte) error {
	if current == nil {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if k := o.findKeyLocked(current); k != nil && k.expiresMs != 0 {
		return mipay.Errorf(mipay.EFORBIDDEN, "this operator key was superseded by a rotation and only works until it expires: rotate or revoke keys with the bank's newest key")
	}
	return nil
}

// Revoke refuses a key of the bank from now on. A key id of no key of this
// bank is ENOTFOUND (another bank's key is not found either), one already
// revoked ECONFLICT.
func (o *Operators) Revoke(ctx context.Context, issuerID string, req OperatorKeyRevokeRequest, current []byte) (OperatorKeyRevokeResult, error) {
	if !IsOperatorKeyID(req.KeyID) {
		return OperatorKeyRevokeResult{}, mipay.Errorf(mipay.EINVALID, "keyId must be a key id such as opk_0123456789abcdef (see the key list)")
	}
	if err := o.mayManage(current); err != nil {
		return OperatorKeyRevokeResult{}, err
	}
	now := o.cfg.Now().UnixMilli()
	var res OperatorKeyRevokeResult
	err := o.db.Tx(ctx, func(tx *sql.Tx) error {
		res = OperatorKeyRevokeResult{}
		if err := lockOperatorBank(ctx, o.db, tx, issuerID, now); err != nil {
			return err
		}
		keys, err := bankKeys(ctx, tx, issuerID, 0)
		if err != nil {
			return err
		}
		var target *storedKey
		for i := range keys {
			if operatorKeyID(keys[i].hash) == req.KeyID {
				target = &keys[i]
			}
		}
		if target == nil {
			return mipay.Errorf(mipay.ENOTFOUND, "this bank has no operator key %s", req.KeyID)
		}
		if target.revMs != 0 {
			return mipay.Errorf(mipay.ECONFLICT, "operator key %s was already revoked at %s", req.KeyID,
				time.UnixMilli(target.revMs).UTC().Format(time.RFC3339))
		}
		if _, err := tx.ExecContext(ctx, `UPDATE operator_api_keys SET revoked_ms = $1 WHERE key_hash = $2 AND issuer_id = $3`,
			now, target.hash, issuerID); err != nil {
			return err
		}
		target.revMs = now
		res.Revoked = target.info(now, current)
		for _, k := range keys {
			if k.valid(now) {
				res.Remaining++
			}
		}
		return nil
	})
	if err != nil {
		return OperatorKeyRevokeResult{}, keyChangeErr(err, "revoke an operator key", issuerID)
	}
	o.changed()
	_ = o.reload(ctx)
	// Refused here at once, whatever the reload did (it may have failed, or
	// a later change's reload may have superseded it).
	o.mu.Lock()
	kept := o.keys[:0:0]
	for _, k := range o.keys {
		if operatorKeyID(k.hash) != req.KeyID {
			kept = append(kept, k)
		}
	}
	o.keys = kept
	o.mu.Unlock()
	return res, nil
}

// keyChangeErr passes a refusal (*mipay.Error) on as it is and wraps any
// other error of a key change (what) of the bank.
func keyChangeErr(err error, what, issuerID string) error {
	var me *mipay.Error
	if errors.As(err, &me) {
		return err
	}
	return fmt.Errorf("issuer: %s of %s: %w", what, issuerID, err)
}

// operatorKeyRoutes registers the bank's key management (staff only).
func (h *Host) operatorKeyRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/issuers/{id}/operator-keys", h.staff(func(w http.ResponseWriter, r *http.Request) {
		out, err := h.ops.ListKeys(r.Context(), r.PathValue("id"), operatorKeyHash(bearerKey(r)))
		if err != nil {
			httpx.WriteError(w, r, err)
			return
		}
		httpx.WriteJSON(w, http.StatusOK, out)
	}))
	mux.HandleFunc("POST /v1/issuers/{id}/operator-keys/rotate", h.staff(func(w http.ResponseWriter, r *http.Request) {
		bankCall(w, r, func(ctx context.Context, id string, req OperatorKeyRotateRequest) (OperatorKeyRotateResult, error) {
			res, err := h.ops.Rotate(ctx, id, req, operatorKeyHash(bearerKey(r)))
			if err == nil {
				h.log.InfoContext(ctx, "bank operator key rotated", "issuer", id, "newKey", res.New.ID,
					"oldKeys", len(res.Expiring), "client", clientAddr(r))
			}
			return res, err
		})
	}))
	mux.HandleFunc("POST /v1/issuers/{id}/operator-keys/revoke", h.staff(func(w http.ResponseWriter, r *http.Request) {
		bankCall(w, r, func(ctx context.Context, id string, req OperatorKeyRevokeRequest) (OperatorKeyRevokeResult, error) {
			res, err := h.ops.Revoke(ctx, id, req, operatorKeyHash(bearerKey(r)))
			if err == nil {
				h.log.InfoContext(ctx, "bank operator key revoked", "issuer", id, "key", res.Revoked.ID,
					"remaining", res.Remaining, "client", clientAddr(r))
			}
			return res, err
		})
	}))
}
