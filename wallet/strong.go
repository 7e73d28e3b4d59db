package wallet

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/mipay-oss/mipay"
)

// DefaultSecondFactorWindow is how long after a second-factor sign-in the
// session may resume Mi Pay on a device.
const DefaultSecondFactorWindow = 10 * time.Minute

// errNeedSecondFactor is what resuming a switched-off device answers to a
// session without a recent second factor.
var errNeedSecondFactor = mipay.Errorf(mipay.EFORBIDDEN,
	"resuming Mi Pay needs a fresh sign-in with your password and a second factor (e-mailed code or recovery code)")

// markSecondFactor records that the session of token was opened with a
// second factor now.
func (r *repo) markSecondFactor(ctx context.Context, tokenHash string, now time.Time) error {
	return r.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE sessions SET second_factor_ms = $2 WHERE token_hash = $1`, tokenHash, ms(now))
		if err != nil {
			return fmt.Errorf("wallet: mark second factor: %w", err)
		}
		return nil
	})
}

func (r *repo) secondFactorAt(ctx context.Context, tokenHash string) (time.Time, error) {
	var at int64
	err := r.db.DB.QueryRowContext(ctx, `SELECT second_factor_ms FROM sessions WHERE token_hash = $1`, tokenHash).Scan(&at)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, mipay.Errorf(mipay.EUNAUTHORIZED, "the session is not valid: sign in again")
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("wallet: read session: %w", err)
	}
	if at == 0 {
		return time.Time{}, nil
	}
	return time.UnixMilli(at), nil
}

// newSecondFactorSession opens a session marked as signed in with a second
// factor.
func (s *Service) newSecondFactorSession(ctx context.Context, accountID string) (*Session, error) {
	sess, err := s.NewSession(ctx, accountID)
	if err != nil {
		return nil, err
	}
	if err := s.repo.markSecondFactor(ctx, sha256Hex(sess.Token), s.now()); err != nil {
		return nil, err
	}
	return sess, nil
}

// RequireRecentSecondFactor refuses a session that was not opened with a
// second factor within DefaultSecondFactorWindow.
func (s *Service) RequireRecentSecondFactor(ctx context.Context, token string) error {
	at, err := s.repo.secondFactorAt(ctx, sha256Hex(token))
	if err != nil {
		return err
	}
	if at.IsZero() || s.now().Sub(at) > DefaultSecondFactorWindow {
		return errNeedSecondFactor
	}
	return nil
}
