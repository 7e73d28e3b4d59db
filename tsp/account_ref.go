package tsp

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
)

// Account references (issue 8, per-account promotion limits): see
// migrations/0010_account_refs.sql. The reference is
// HMAC(KeyPANHMAC, label ‖ account id), base64url of its first 16 bytes:
// the same for every token of one account, and nobody without the TSP's
// key can tell which account it is. Vault.Insert records it with the token,
// in the same write.

const hmacLabelAccount = "mipay tsp account ref v1\x00"

// accountRef is the opaque reference of a wallet account id ("" for none).
func (s *Service) accountRef(ctx context.Context, accountID string) (string, error) {
	if accountID == "" {
		return "", nil
	}
	mac, err := s.keys.MAC(ctx, append([]byte(hmacLabelAccount), accountID...))
	if err != nil {
		return "", fmt.Errorf("tsp: account ref HMAC: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(mac[:min(len(mac), 16)]), nil
}

// loadAccountRef reads a token's account reference ("" when it has none).
func loadAccountRef(ctx context.Context, db *sql.DB, tokenRef string) (string, error) {
	var ref string
	err := db.QueryRowContext(ctx, `SELECT account_ref FROM token_accounts WHERE ref = $1`, tokenRef).Scan(&ref)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("tsp: account ref: %w", err)
	}
	return ref, nil
}
