package wallet

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/mipay-oss/mipay"
)

// The lost-phone portal's sign-in: the Mi account password first (with the
// account lockout and the per-client limit of Authenticate), then a second
// factor that does not need the lost phone: a one-time code sent by e-mail
// or one of the account's recovery codes. Only then is a session opened.
//
// E-mail is simulated by an outbox kept by the wallet (like the SMS
// gateway's, it stands in for the user's mailbox): GET
// /v1/email-outbox/{address} reads it, for tests and the demo.

// Bounds of the portal's second factor and of the e-mail outbox.
const (
	// DefaultChallengeTTL is how long an e-mailed code (and its challenge) lives.
	DefaultChallengeTTL = 10 * time.Minute
	// MaxChallengeAttempts wrong codes end a challenge: sign in again.
	MaxChallengeAttempts = 5
	// emailCodeDigits is the length of the e-mailed code (10^6 codes, at
	// most MaxChallengeAttempts guesses per password-checked challenge).
	emailCodeDigits = 6
	// DefaultEmailsKept per address: older messages are pruned.
	DefaultEmailsKept = 50
	// MaxEmailsPerPage bounds one outbox read.
	MaxEmailsPerPage = 50
	// challengeGrace: expired challenges are deleted after this.
	challengeGrace  = time.Hour
	maxCodeBytes    = 64
	maxChallengeIDs = maxIDBytes
)

// Challenge is a pending portal sign-in: the password was right, a second
// factor is awaited.
type Challenge struct {
	ID        string    `json:"challengeId"`
	Email     string    `json:"email"` // masked, e.g. a***@example.com
	ExpiresAt time.Time `json:"expiresAt"`
	// Methods are the second factors accepted: EMAIL_CODE and RECOVERY_CODE.
	Methods []string `json:"methods"`
}

// Email is one message of the simulated e-mail outbox.
type Email struct {
	ID        int64     `json:"id"`
	To        string    `json:"to"`
	Subject   string    `json:"subject"`
	Text      string    `json:"text"`
	CreatedAt time.Time `json:"createdAt"`
}

// Second factor methods.
const (
	MethodEmailCode    = "EMAIL_CODE"
	MethodRecoveryCode = "RECOVERY_CODE"
)

// maskEmail keeps the first character of the local part and the domain.
func maskEmail(e string) string {
	local, domain, ok := strings.Cut(e, "@")
	if !ok || local == "" {
		return "***"
	}
	return local[:1] + "***@" + domain
}

func newEmailCode() (string, error) {
	n, err := rand.Int(rand.Reader, big.NewInt(1_000_000))
	if err != nil {
		return "", fmt.Errorf("wallet: e-mail code: %w", err)
	}
	return fmt.Sprintf("%0*d", emailCodeDigits, n.Int64()), nil
}

// challengeCodeHash binds the code to its challenge (the id salts it).
func challengeCodeHash(challengeID, code string) string {
	return sha256Hex("portal-code:" + challengeID + ":" + code)
}

// StartChallenge checks login and password (Authenticate: lockout and
// per-client limit) and e-mails a one-time code to the account's address.
// The answer names the masked address; the code is only in the e-mail.
func (s *Service) StartChallenge(ctx context.Context, client, login, password string) (*Challenge, error) {
	a, err := s.Authenticate(ctx, client, login, password)
	if err != nil {
		return nil, err
	}
	code, err := newEmailCode()
	if err != nil {
		return nil, err
	}
	now := s.now()
	ch := &Challenge{ID: newID("chl"), Email: maskEmail(a.Email), ExpiresAt: now.Add(DefaultChallengeTTL),
		Methods: []string{MethodEmailCode, MethodRecoveryCode}}
	mail := Email{
		To:      a.Email,
		Subject: "Your Mi account sign-in code",
		Text: fmt.Sprintf("Your Mi account sign-in code is %s. It expires in %d minutes. "+
			"If you did not try to sign in, change your password.", code, int(DefaultChallengeTTL/time.Minute)),
		CreatedAt: now,
	}
	if err := s.repo.insertChallenge(ctx, ch.ID, a.ID, challengeCodeHash(ch.ID, code), now, ch.ExpiresAt, &mail); err != nil {
		return nil, err
	}
	return ch, nil
}

// VerifyChallenge completes a portal sign-in with the e-mailed code or a
// recovery code (exactly one of them) and opens a session. Wrong codes
// count against the challenge (MaxChallengeAttempts, then ELOCKED) and the
// client's failure limit.
func (s *Service) VerifyChallenge(ctx context.Context, client, challengeID, emailCode, recoveryCode string) (*Session, error) {
	now := s.now()
	if err := s.clientFails.check(client, now); err != nil {
		return nil, err
	}
	switch {
	case challengeID == "" || len(challengeID) > maxChallengeIDs:
		return nil, mipay.Errorf(mipay.EUNAUTHORIZED, "the sign-in expired: enter your password again")
	case (emailCode == "") == (recoveryCode == ""):
		return nil, mipay.Errorf(mipay.EINVALID, "give either the code from the e-mail or a recovery code")
	case len(emailCode) > maxCodeBytes || len(recoveryCode) > maxCodeBytes:
		return nil, mipay.Errorf(mipay.EUNAUTHORIZED, "wrong code")
	}
	accountID, codeHash, err := s.repo.challenge(ctx, challengeID, now)
	if err != nil {
		return nil, err
	}
	ok := false
	if emailCode != "" {
		got := challengeCodeHash(challengeID, strings.TrimSpace(emailCode))
		ok = subtle.ConstantTimeCompare([]byte(got), []byte(codeHash)) == 1
	} else {
		err := s.UseRecoveryCode(ctx, accountID, recoveryCode)
		if err != nil && mipay.ErrorCode(err) != mipay.EUNAUTHORIZED {
			return nil, err
		}
		ok = err == nil
	}
	if !ok {
		s.clientFails.fail(client, now)
		left, err := s.repo.challengeFailed(ctx, challengeID)
		if err != nil {
			return nil, err
		}
		if left <= 0 {
			return nil, mipay.Errorf(mipay.ELOCKED, "too many wrong codes: enter your password again for a new code")
		}
		return nil, mipay.Errorf(mipay.EUNAUTHORIZED, "wrong code (%d tries left)", left)
	}
	if err := s.repo.useChallenge(ctx, challengeID, now); err != nil {
		return nil, err
	}
	return s.newSecondFactorSession(ctx, accountID)
}

// EmailOutbox reads the simulated mailbox of an address: messages after the
// given id, oldest first, at most limit (MaxEmailsPerPage when 0).
func (s *Service) EmailOutbox(ctx context.Context, address string, after int64, limit int) ([]Email, error) {
	e, err := normalizeEmail(address)
	if err != nil {
		return nil, err
	}
	if limit <= 0 || limit > MaxEmailsPerPage {
		limit = MaxEmailsPerPage
	}
	return s.repo.emails(ctx, e, after, limit)
}

// --- store ---

func (r *repo) insertChallenge(ctx context.Context, id, accountID, codeHash string, now, expires time.Time, m *Email) error {
	return r.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx,
			`DELETE FROM portal_challenges WHERE expires_ms < $1`, ms(now.Add(-challengeGrace))); err != nil {
			return fmt.Errorf("wallet: prune challenges: %w", err)
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO portal_challenges (id, account_id, code_hash, attempts, created_ms, expires_ms, used_ms)
			 VALUES ($1, $2, $3, 0, $4, $5, 0)`, id, accountID, codeHash, ms(now), ms(expires)); err != nil {
			return fmt.Errorf("wallet: insert challenge: %w", err)
		}
		return insertEmail(ctx, tx, m, DefaultEmailsKept)
	})
}

// insertEmail takes the next outbox id from the counter row inside the
// transaction (ids grow in commit order, so after=<last> never skips one)
// and keeps the newest `keep` messages of the address.
func insertEmail(ctx context.Context, tx *sql.Tx, m *Email, keep int) error {
	if err := tx.QueryRowContext(ctx,
		`UPDATE email_counter SET value = value + 1 WHERE name = 'message' RETURNING value`).Scan(&m.ID); err != nil {
		return fmt.Errorf("wallet: next e-mail id: %w", err)
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO email_outbox (id, address, subject, body, created_ms) VALUES ($1, $2, $3, $4, $5)`,
		m.ID, m.To, m.Subject, m.Text, ms(m.CreatedAt)); err != nil {
		return fmt.Errorf("wallet: insert e-mail: %w", err)
	}
	if _, err := tx.ExecContext(ctx,
		`DELETE FROM email_outbox WHERE address = $1 AND id <=
		   (SELECT id FROM email_outbox WHERE address = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)`, m.To, keep); err != nil {
		return fmt.Errorf("wallet: trim e-mail outbox: %w", err)
	}
	return nil
}

// challenge returns a live challenge's account and code hash.
func (r *repo) challenge(ctx context.Context, id string, now time.Time) (string, string, error) {
	var (
		accountID, codeHash     string
		attempts, expires, used int64
	)
	err := r.db.DB.QueryRowContext(ctx,
		`SELECT account_id, code_hash, attempts, expires_ms, used_ms FROM portal_challenges WHERE id = $1`, id).
		Scan(&accountID, &codeHash, &attempts, &expires, &used)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", "", mipay.Errorf(mipay.EUNAUTHORIZED, "the sign-in expired: enter your password again")
	case err != nil:
		return "", "", fmt.Errorf("wallet: read challenge: %w", err)
	case used != 0 || expires <= ms(now):
		return "", "", mipay.Errorf(mipay.EUNAUTHORIZED, "the sign-in expired: enter your password again")
	case attempts >= MaxChallengeAttempts:
		return "", "", mipay.Errorf(mipay.ELOCKED, "too many wrong codes: enter your password again for a new code")
	}
	return accountID, codeHash, nil
}

// challengeFailed counts a wrong code and returns the attempts left.
func (r *repo) challengeFailed(ctx context.Context, id string) (int, error) {
	var attempts int
	err := r.write(ctx, func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx,
			`UPDATE portal_challenges SET attempts = attempts + 1 WHERE id = $1 RETURNING attempts`, id).Scan(&attempts)
	})
	if err != nil {
		return 0, fmt.Errorf("wallet: count challenge failure: %w", err)
	}
	return MaxChallengeAttempts - attempts, nil
}

// useChallenge spends a challenge once: a second use of the same answer
// (a replayed form) finds it used.
func (r *repo) useChallenge(ctx context.Context, id string, now time.Time) error {
	return r.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx,
			`UPDATE portal_challenges SET used_ms = $1 WHERE id = $2 AND used_ms = 0 AND attempts < $3`,
			ms(now), id, MaxChallengeAttempts)
		if err != nil {
			return fmt.Errorf("wallet: use challenge: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return mipay.Errorf(mipay.EUNAUTHORIZED, "the sign-in expired: enter your password again")
		}
		return nil
	})
}

func (r *repo) emails(ctx context.Context, address string, after int64, limit int) ([]Email, error) {
	rows, err := r.db.DB.QueryContext(ctx,
		`SELECT id, address, subject, body, created_ms FROM email_outbox
		 WHERE address = $1 AND id > $2 ORDER BY id LIMIT $3`, address, after, limit)
	if err != nil {
		return nil, fmt.Errorf("wallet: read e-mail outbox: %w", err)
	}
	defer rows.Close()
	out := []Email{}
	for rows.Next() {
		var (
			m       Email
			created int64
		)
		if err := rows.Scan(&m.ID, &m.To, &m.Subject, &m.Text, &created); err != nil {
			return nil, fmt.Errorf("wallet: read e-mail outbox: %w", err)
		}
		m.CreatedAt = fromMS(created)
		out = append(out, m)
	}
	return out, rows.Err()
}
