package tsp

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/mipay-oss/mipay"
)

// Detokenize returns the PAN and PAN expiry behind a token for a message the
// switch sends the issuer about an earlier, already authorized transaction
// (a reversal of it). It is logged like every de-tokenization. It does not
// check the token's state: a suspended token's earlier payment must still be
// reversible.
func (a *Authorizer) Detokenize(ctx context.Context, tokenRef, requester, purpose string) (pan, panExpiry string, err error) {
	e, ok := a.cache.byRef(tokenRef)
	if !ok {
		r, err := NewVault(a.db).Get(ctx, tokenRef)
		if err != nil {
			return "", "", err
		}
		e = newCacheEntry(&r.Token, a.now())
	}
	pan, err = a.keys.OpenPAN(ctx, e.panSealed, panAAD(e.ref))
	if err != nil {
		return "", "", fmt.Errorf("tsp: open PAN of %s: %w", e.ref, err)
	}
	if requester == "" {
		requester = a.node
	}
	if len(requester) > maxIDBytes || len(purpose) > maxIDBytes {
		return "", "", mipay.Errorf(mipay.EINVALID, "requester and purpose must be at most %d bytes", maxIDBytes)
	}
	now := a.now()
	entry := &detokenization{ID: a.logIDs.next(now), TokenRef: e.ref, Requester: requester, Purpose: purpose, ATC: -1, At: now}
	if err := a.w.Write(ctx, func(tx *sql.Tx) error { return insertDetokenizations(ctx, tx, []*detokenization{entry}) }); err != nil {
		return "", "", fmt.Errorf("tsp: log de-tokenization: %w", err)
	}
	return pan, e.panExpiry, nil
}
