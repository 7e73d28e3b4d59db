package wallet

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"sync"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/store"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the wallet's schema migrations (for store.Open).
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the embedded directory is fixed at build time
	}
	return sub
}

// repo is the wallet's SQL. Reads go to db.DB; writes go through write
// (the group-commit writer when there is one, else a transaction).
type repo struct {
	db     *store.DB
	write  func(ctx context.Context, fn func(tx *sql.Tx) error) error
	tokens tokenCards
	feeds  feedCounts // notifications appended per feed since its prune (feed.go)
}

func newRepo(db *store.DB, write func(ctx context.Context, fn func(tx *sql.Tx) error) error) *repo {
	if write == nil {
		write = db.Tx
	}
	return &repo{db: db, write: write, tokens: tokenCards{m: map[string]tokenCard{}}}
}

// tokenCard is what a transaction event needs of the card holding its
// token. A token belongs to one card of one device for its whole life and
// its last 4 never change, so these are cached without expiry; a card's
// state and the rest are always read from the store.
type tokenCard struct{ cardID, deviceID, tokenLast4 string }

// maxTokenCards bounds the cache (it is emptied when full).
const maxTokenCards = 1 << 17

type tokenCards struct {
	mu sync.Mutex
	m  map[string]tokenCard
}

func (c *tokenCards) get(ref string) (tokenCard, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.m[ref]
	return t, ok
}

func (c *tokenCards) put(ref string, t tokenCard) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxTokenCards {
		clear(c.m)
	}
	c.m[ref] = t
}

// tokenCard finds the card holding a token (ENOTFOUND when none).
func (r *repo) tokenCard(ctx context.Context, tokenRef string) (tokenCard, error) {
	if t, ok := r.tokens.get(tokenRef); ok {
		return t, nil
	}
	c, err := r.cardByTokenRef(ctx, tokenRef)
	if err != nil {
		return tokenCard{}, err
	}
	t := tokenCard{cardID: c.ID, deviceID: c.DeviceID, tokenLast4: c.TokenLast4}
	r.tokens.put(tokenRef, t)
	return t, nil
}

// errNoRows reports a missing row as the domain's not-found.
func notFound(err error, what string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return mipay.Errorf(mipay.ENOTFOUND, "%s not found", what)
	}
	return fmt.Errorf("wallet: read %s: %w", what, err)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// --- accounts ---

func (r *repo) insertAccount(ctx context.Context, a *Account, passwordHash string, recoveryHashes []string) error {
	return r.write(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx,
			`SELECT COUNT(*) FROM accounts WHERE phone = $1 OR email = $2`, a.Phone, a.Email).Scan(&n); err != nil {
			return fmt.Errorf("wallet: check account: %w", err)
		}
		if n > 0 {
			return mipay.Errorf(mipay.ECONFLICT, "an account with this phone number or e-mail already exists")
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO accounts (id, phone, email, password_hash, created_ms) VALUES ($1, $2, $3, $4, $5)`,
			a.ID, a.Phone, a.Email, passwordHash, ms(a.Created)); err != nil {
			if store.IsConflict(err) { // a concurrent registration won
				return mipay.Errorf(mipay.ECONFLICT, "an account with this phone number or e-mail already exists")
			}
			return fmt.Errorf("wallet: insert account: %w", err)
		}
		for _, h := range recoveryHashes {
			if _, err := tx.ExecContext(ctx,
				`INSERT INTO recovery_codes (account_id, code_hash) VALUES ($1, $2)`, a.ID, h); err != nil {
				return fmt.Errorf("wallet: insert recovery code: %w", err)
			}
		}
		return nil
	})
}

// accountByLogin finds an account by normalized phone or e-mail.
func (r *repo) accountByLogin(ctx context.Context, login string) (*Account, string, error) {
	var (
		a       Account
		hash    string
		created int64
	)
	err := r.db.DB.QueryRowContext(ctx,
		`SELECT id, phone, email, password_hash, created_ms FROM accounts WHERE phone = $1 OR email = $1`,
		login).Scan(&a.ID, &a.Phone, &a.Email, &hash, &created)
	if err != nil {
		return nil, "", notFound(err, "account")
	}
	a.Created = fromMS(created)
	return &a, hash, nil
}

func (r *repo) account(ctx context.Context, id string) (*Account, error) {
	var (
		a       Account
		created int64
	)
	err := r.db.DB.QueryRowContext(ctx,
		`SELECT id, phone, email, created_ms FROM accounts WHERE id = $1`, id).
		Scan(&a.ID, &a.Phone, &a.Email, &created)
	if err != nil {
		return nil, notFound(err, "account")
	}
	a.Created = fromMS(created)
	return &a, nil
}

// useRecoveryCode spends one unused code; false when there is none.
func (r *repo) useRecoveryCode(ctx context.Context, accountID, codeHash string, now time.Time) (bool, error) {
	var used bool
	err := r.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx,
			`UPDATE recovery_codes SET used_ms = $3 WHERE account_id = $1 AND code_hash = $2 AND used_ms = 0`,
			accountID, codeHash, ms(now))
		if err != nil {
			return fmt.Errorf("wallet: use recovery code: %w", err)
		}
		n, err := res.RowsAffected()
		used = n == 1
		return err
	})
	return used, err
}

// --- sign-in failures ---

// signInLock reports until when login is locked (zero when it is not).
func (r *repo) signInLock(ctx context.Context, loginHash string, now time.Time) (time.Time, error) {
	var until int64
	err := r.db.DB.QueryRowContext(ctx,
		`SELECT locked_until_ms FROM signin_failures WHERE login_hash = $1`, loginHash).Scan(&until)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("wallet: read sign-in failures: %w", err)
	}
	if until > ms(now) {
		return fromMS(until), nil
	}
	return time.Time{}, nil
}

// recordSignInFailure counts a failure and locks the login when it reaches
// max within window; it returns the lock's end (zero when not locked).
func (r *repo) recordSignInFailure(ctx context.Context, loginHash string, now time.Time, max int, window, lockout time.Duration) (time.Time, error) {
	var lockedUntil time.Time
	err := r.write(ctx, func(tx *sql.Tx) error {
		var failures int
		var first, until int64
		err := tx.QueryRowContext(ctx,
			`SELECT failures, first_ms, locked_until_ms FROM signin_failures WHERE login_hash = $1`, loginHash).
			Scan(&failures, &first, &until)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return fmt.Errorf("wallet: read sign-in failures: %w", err)
		}
		// Forget other logins whose window passed and that are not locked,
		// so failed sign-ins with made-up logins cannot grow the table.
		if _, err := tx.ExecContext(ctx,
			`DELETE FROM signin_failures WHERE login_hash <> $1 AND first_ms < $2 AND locked_until_ms < $3`,
			loginHash, ms(now.Add(-window)), ms(now)); err != nil {
			return fmt.Errorf("wallet: prune sign-in failures: %w", err)
		}
		// A new window starts after the old one passed or a lock ended.
		if first == 0 || ms(now)-first > window.Milliseconds() || (until != 0 && until <= ms(now)) {
			failures, first, until = 0, ms(now), 0
		}
		failures++
		if failures >= max {
			until = ms(now.Add(lockout))
			lockedUntil = fromMS(until)
		}
		_, err = tx.ExecContext(ctx,
			`INSERT INTO signin_failures (login_hash, failures, first_ms, locked_until_ms) VALUES ($1, $2, $3, $4)
			 ON CONFLICT (login_hash) DO UPDATE SET failures = $2, first_ms = $3, locked_until_ms = $4`,
			loginHash, failures, first, until)
		if err != nil {
			return fmt.Errorf("wallet: record sign-in failure: %w", err)
		}
		return nil
	})
	return lockedUntil, err
}

func (r *repo) clearSignInFailures(ctx context.Context, loginHash string) error {
	return r.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM signin_failures WHERE login_hash = $1`, loginHash)
		if err != nil {
			return fmt.Errorf("wallet: clear sign-in failures: %w", err)
		}
		return nil
	})
}

// --- sessions ---

// insertSession stores a new session, forgetting the account's expired and
// revoked ones and, beyond maxLive, its oldest live ones.
func (r *repo) insertSession(ctx context.Context, tokenHash, accountID string, now, expires time.Time, maxLive int) error {
	return r.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx,
			`DELETE FROM sessions WHERE account_id = $1 AND (expires_ms <= $2 OR revoked_ms <> 0)`, accountID, ms(now)); err != nil {
			return fmt.Errorf("wallet: prune sessions: %w", err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf(
			`DELETE FROM sessions WHERE account_id = $1 AND token_hash NOT IN (
			    SELECT token_hash FROM sessions WHERE account_id = $1 ORDER BY created_ms DESC, token_hash LIMIT %d)`,
			maxLive-1), accountID); err != nil {
			return fmt.Errorf("wallet: prune sessions: %w", err)
		}
		_, err := tx.ExecContext(ctx,
			`INSERT INTO sessions (token_hash, account_id, created_ms, expires_ms) VALUES ($1, $2, $3, $4)`,
			tokenHash, accountID, ms(now), ms(expires))
		if err != nil {
			return fmt.Errorf("wallet: insert session: %w", err)
		}
		return nil
	})
}

// session returns the account of a live session.
func (r *repo) session(ctx context.Context, tokenHash string, now time.Time) (string, time.Time, error) {
	var (
		accountID        string
		expires, revoked int64
	)
	err := r.db.DB.QueryRowContext(ctx,
		`SELECT account_id, expires_ms, revoked_ms FROM sessions WHERE token_hash = $1`, tokenHash).
		Scan(&accountID, &expires, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return "", time.Time{}, mipay.Errorf(mipay.EUNAUTHORIZED, "the session is not valid: sign in again")
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("wallet: read session: %w", err)
	}
	if revoked != 0 {
		return "", time.Time{}, mipay.Errorf(mipay.EUNAUTHORIZED, "the session was signed out: sign in again")
	}
	if expires <= ms(now) {
		return "", time.Time{}, mipay.Errorf(mipay.EUNAUTHORIZED, "the session has expired: sign in again")
	}
	return accountID, fromMS(expires), nil
}

func (r *repo) revokeSession(ctx context.Context, tokenHash string, now time.Time) error {
	return r.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx,
			`UPDATE sessions SET revoked_ms = $2 WHERE token_hash = $1 AND revoked_ms = 0`, tokenHash, ms(now))
		if err != nil {
			return fmt.Errorf("wallet: revoke session: %w", err)
		}
		return nil
	})
}

// revokeAccountSessions signs an account out everywhere.
func (r *repo) revokeAccountSessions(ctx context.Context, accountID string, now time.Time) error {
	return r.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx,
			`UPDATE sessions SET revoked_ms = $2 WHERE account_id = $1 AND revoked_ms = 0`, accountID, ms(now))
		if err != nil {
			return fmt.Errorf("wallet: revoke sessions: %w", err)
		}
		return nil
	})
}

// --- devices ---

const deviceColumns = `id, account_id, model, se_id, se_public_key, fingerprint_enrolled, default_card_id, created_ms, last_seen_ms`

func scanDevice(row interface{ Scan(...any) error }) (*Device, error) {
	var (
		d                 Device
		fp                int
		created, lastSeen int64
	)
	if err := row.Scan(&d.ID, &d.AccountID, &d.Model, &d.SEID, &d.SEPublicKey, &fp, &d.DefaultCardID, &created, &lastSeen); err != nil {
		return nil, err
	}
	d.FingerprintEnrolled = fp != 0
	d.Created, d.LastSeen = fromMS(created), fromMS(lastSeen)
	return &d, nil
}

// insertDevice registers d, or returns the device already registered with the
// same SE id and key to the same account (a phone registering again).
func (r *repo) insertDevice(ctx context.Context, d *Device) (*Device, error) {
	var out *Device
	err := r.write(ctx, func(tx *sql.Tx) error {
		existing, err := scanDevice(tx.QueryRowContext(ctx,
			`SELECT `+deviceColumns+` FROM devices WHERE se_id = $1`, d.SEID))
		switch {
		case err == nil:
			if existing.AccountID != d.AccountID || string(existing.SEPublicKey) != string(d.SEPublicKey) {
				return mipay.Errorf(mipay.ECONFLICT, "this secure element is already registered to another device or account")
			}
			if _, err := tx.ExecContext(ctx,
				`UPDATE devices SET model = $2, fingerprint_enrolled = $3 WHERE id = $1`,
				existing.ID, d.Model, b2i(d.FingerprintEnrolled)); err != nil {
				return fmt.Errorf("wallet: update device: %w", err)
			}
			existing.Model, existing.FingerprintEnrolled = d.Model, d.FingerprintEnrolled
			out = existing
			return nil
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("wallet: read device: %w", err)
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM devices WHERE account_id = $1`, d.AccountID).Scan(&n); err != nil {
			return fmt.Errorf("wallet: count devices: %w", err)
		}
		if n >= MaxDevicesPerAccount {
			return mipay.Errorf(mipay.ELIMIT, "an account can have at most %d devices", MaxDevicesPerAccount)
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO devices (id, account_id, model, se_id, se_public_key, fingerprint_enrolled, created_ms)
			 VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			d.ID, d.AccountID, d.Model, d.SEID, d.SEPublicKey, b2i(d.FingerprintEnrolled), ms(d.Created)); err != nil {
			if store.IsConflict(err) { // a concurrent registration of the same SE won
				return mipay.Errorf(mipay.ECONFLICT, "this secure element is already registered; try again")
			}
			return fmt.Errorf("wallet: insert device: %w", err)
		}
		out = d
		return nil
	})
	return out, err
}

// device returns an account's device; another account's is not found.
func (r *repo) device(ctx context.Context, accountID, id string) (*Device, error) {
	d, err := scanDevice(r.db.DB.QueryRowContext(ctx,
		`SELECT `+deviceColumns+` FROM devices WHERE id = $1 AND account_id = $2`, id, accountID))
	if err != nil {
		return nil, notFound(err, "device")
	}
	return d, nil
}

func (r *repo) devices(ctx context.Context, accountID string) ([]Device, error) {
	rows, err := r.db.DB.QueryContext(ctx,
		`SELECT `+deviceColumns+` FROM devices WHERE account_id = $1 ORDER BY created_ms, id`, accountID)
	if err != nil {
		return nil, fmt.Errorf("wallet: list devices: %w", err)
	}
	defer rows.Close()
	out := []Device{}
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, fmt.Errorf("wallet: list devices: %w", err)
		}
		out = append(out, *d)
	}
	return out, rows.Err()
}

func (r *repo) setFingerprint(ctx context.Context, accountID, id string, enrolled bool) error {
	return r.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx,
			`UPDATE devices SET fingerprint_enrolled = $3 WHERE id = $1 AND account_id = $2`, id, accountID, b2i(enrolled))
		if err != nil {
			return fmt.Errorf("wallet: set fingerprint: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return mipay.Errorf(mipay.ENOTFOUND, "device not found")
		}
		return nil
	})
}

func (r *repo) touchDevice(ctx context.Context, id string, now time.Time) error {
	return r.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE devices SET last_seen_ms = $2 WHERE id = $1`, id, ms(now))
		if err != nil {
			return fmt.Errorf("wallet: touch device: %w", err)
		}
		return nil
	})
}

// --- cards ---

const cardColumns = `c.id, c.device_id, c.account_id, c.token_ref, c.par, c.pan_last4, c.token_last4, c.token_expiry,
	c.issuer_id, c.bank, c.product, c.art, c.card_type, c.state, c.provisioned, c.created_ms, c.updated_ms,
	CASE WHEN d.default_card_id = c.id THEN 1 ELSE 0 END`

func scanCard(row interface{ Scan(...any) error }) (*Card, error) {
	var (
		c                Card
		prov, def        int
		created, updated int64
	)
	if err := row.Scan(&c.ID, &c.DeviceID, &c.AccountID, &c.TokenRef, &c.PAR, &c.PANLast4, &c.TokenLast4, &c.TokenExpiry,
		&c.IssuerID, &c.Bank, &c.Product, &c.Art, &c.CardType, &c.State, &prov, &created, &updated, &def); err != nil {
		return nil, err
	}
	c.Provisioned, c.Default = prov != 0, def != 0
	c.Created, c.Updated = fromMS(created), fromMS(updated)
	return &c, nil
}

// reserveCard inserts a PENDING card when the device (the account's, with a
// fingerprint enrolled) has room for one more card.
func (r *repo) reserveCard(ctx context.Context, c *Card, maxCards int, pendingTTL time.Duration) error {
	return r.write(ctx, func(tx *sql.Tx) error {
		// Bumping the row first locks it on PostgreSQL so two bindings on the
		// same device cannot both see room for the 8th card.
		var fp int
		err := tx.QueryRowContext(ctx,
			`UPDATE devices SET notify_seq = notify_seq WHERE id = $1 AND account_id = $2 RETURNING fingerprint_enrolled`,
			c.DeviceID, c.AccountID).Scan(&fp)
		if err != nil {
			return notFound(err, "device")
		}
		if fp == 0 {
			return mipay.Errorf(mipay.EFORBIDDEN, "enroll a fingerprint on this device before adding a card")
		}
		// Reservations older than pendingTTL belong to requests that died
		// (a crashed node): they no longer hold a slot.
		if _, err := tx.ExecContext(ctx,
			`DELETE FROM cards WHERE device_id = $1 AND state = $2 AND created_ms <= $3`,
			c.DeviceID, StatePending, ms(c.Created.Add(-pendingTTL))); err != nil {
			return fmt.Errorf("wallet: drop stale reservations: %w", err)
		}
		var n int
		if err := tx.QueryRowContext(ctx,
			`SELECT COUNT(*) FROM cards WHERE device_id = $1 AND state <> $2`,
			c.DeviceID, StateDeactivated).Scan(&n); err != nil {
			return fmt.Errorf("wallet: count cards: %w", err)
		}
		if n >= maxCards {
			return mipay.Errorf(mipay.ELIMIT, "this device already holds %d cards, the most it can: remove one to add another", maxCards)
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO cards (id, device_id, account_id, state, created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $5)`,
			c.ID, c.DeviceID, c.AccountID, StatePending, ms(c.Created)); err != nil {
			return fmt.Errorf("wallet: reserve card: %w", err)
		}
		return nil
	})
}

// dropPendingCard removes a reservation the TSP did not turn into a token.
func (r *repo) dropPendingCard(ctx context.Context, id string) error {
	return r.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM cards WHERE id = $1 AND state = $2`, id, StatePending)
		if err != nil {
			return fmt.Errorf("wallet: drop pending card: %w", err)
		}
		return nil
	})
}

// completeCard stores the token the TSP created for a reserved card and makes
// it the device's default when the device has none (reported in c.Default).
func (r *repo) completeCard(ctx context.Context, c *Card) error {
	return r.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx,
			`UPDATE cards SET token_ref = $2, par = $3, pan_last4 = $4, token_last4 = $5, token_expiry = $6,
			 issuer_id = $7, bank = $8, product = $9, art = $10, card_type = $11, state = $12, updated_ms = $13,
			 state_ms = $13 WHERE id = $1`,
			c.ID, c.TokenRef, c.PAR, c.PANLast4, c.TokenLast4, c.TokenExpiry, c.IssuerID, c.Bank, c.Product, c.Art,
			c.CardType, c.State, ms(c.Updated)); err != nil {
			return fmt.Errorf("wallet: complete card: %w", err)
		}
		res, err := tx.ExecContext(ctx,
			`UPDATE devices SET default_card_id = $2 WHERE id = $1 AND default_card_id = ''`, c.DeviceID, c.ID)
		if err != nil {
			return fmt.Errorf("wallet: set default card: %w", err)
		}
		n, err := res.RowsAffected()
		c.Default = n == 1
		return err
	})
}

// card returns an account's card; another account's is not found. PENDING
// reservations are not cards yet.
func (r *repo) card(ctx context.Context, accountID, id string) (*Card, error) {
	c, err := scanCard(r.db.DB.QueryRowContext(ctx,
		`SELECT `+cardColumns+` FROM cards c JOIN devices d ON d.id = c.device_id
		 WHERE c.id = $1 AND c.account_id = $2 AND c.state <> $3`, id, accountID, StatePending))
	if err != nil {
		return nil, notFound(err, "card")
	}
	return c, nil
}

// cardsByTokenRef returns the card holding a token (one, in practice).
func (r *repo) cardByTokenRef(ctx context.Context, tokenRef string) (*Card, error) {
	c, err := scanCard(r.db.DB.QueryRowContext(ctx,
		`SELECT `+cardColumns+` FROM cards c JOIN devices d ON d.id = c.device_id
		 WHERE c.token_ref = $1 AND c.token_ref <> ''`, tokenRef))
	if err != nil {
		return nil, notFound(err, "card")
	}
	return c, nil
}

func (r *repo) cards(ctx context.Context, accountID, deviceID string, includeRemoved bool) ([]Card, error) {
	q := `SELECT ` + cardColumns + ` FROM cards c JOIN devices d ON d.id = c.device_id
		WHERE c.device_id = $1 AND c.account_id = $2 AND c.state <> $3`
	args := []any{deviceID, accountID, StatePending}
	if !includeRemoved {
		q += ` AND c.state <> $4`
		args = append(args, StateDeactivated)
	}
	rows, err := r.db.DB.QueryContext(ctx, q+` ORDER BY c.created_ms, c.id`, args...)
	if err != nil {
		return nil, fmt.Errorf("wallet: list cards: %w", err)
	}
	defer rows.Close()
	out := []Card{}
	for rows.Next() {
		c, err := scanCard(rows)
		if err != nil {
			return nil, fmt.Errorf("wallet: list cards: %w", err)
		}
		out = append(out, *c)
	}
	return out, rows.Err()
}

// setCardState records a token state decided at `at`. A state older than the
// card's current one is ignored (events may arrive out of order), and leaving
// DEACTIVATED is refused (a deleted token never comes back). It reports
// whether the state changed and the state before.
func (r *repo) setCardState(ctx context.Context, id, state string, at, now time.Time) (bool, error) {
	var changed bool
	err := r.write(ctx, func(tx *sql.Tx) error {
		var err error
		changed, err = setCardStateTx(ctx, tx, id, state, at, now)
		return err
	})
	return changed, err
}

// setCardStateTx is setCardState inside a transaction (lifecycle_batch.go
// records a whole device's changes in one).
func setCardStateTx(ctx context.Context, tx *sql.Tx, id, state string, at, now time.Time) (bool, error) {
	res, err := tx.ExecContext(ctx,
		`UPDATE cards SET state = $2, state_ms = $3, updated_ms = $4
		 WHERE id = $1 AND state <> $2 AND state <> $5 AND state <> $6 AND state_ms <= $3`,
		id, state, ms(at), ms(now), StateDeactivated, StatePending)
	if err != nil {
		return false, fmt.Errorf("wallet: set card state: %w", err)
	}
	n, err := res.RowsAffected()
	changed := n == 1
	if err != nil || !changed || state != StateDeactivated {
		return changed, err
	}
	// A removed card is nobody's default; the oldest remaining card is.
	_, err = tx.ExecContext(ctx,
		`UPDATE devices SET default_card_id = COALESCE((
		    SELECT c.id FROM cards c WHERE c.device_id = devices.id AND c.state IN ($2, $3, $4)
		    ORDER BY c.created_ms, c.id LIMIT 1), '')
		 WHERE default_card_id = $1`, id, StateActive, StateInactive, StateSuspended)
	if err != nil {
		return changed, fmt.Errorf("wallet: reassign default card: %w", err)
	}
	return changed, nil
}

func (r *repo) setProvisioned(ctx context.Context, id string, now time.Time) error {
	return r.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE cards SET provisioned = 1, updated_ms = $2 WHERE id = $1`, id, ms(now))
		if err != nil {
			return fmt.Errorf("wallet: set provisioned: %w", err)
		}
		return nil
	})
}

func (r *repo) setDefaultCard(ctx context.Context, accountID, deviceID, cardID string) error {
	return r.write(ctx, func(tx *sql.Tx) error {
		var state string
		err := tx.QueryRowContext(ctx,
			`SELECT state FROM cards WHERE id = $1 AND device_id = $2 AND account_id = $3`, cardID, deviceID, accountID).Scan(&state)
		if err != nil {
			return notFound(err, "card on this device")
		}
		if state == StateDeactivated || state == StatePending {
			return mipay.Errorf(mipay.ENOTFOUND, "card on this device not found")
		}
		if _, err := tx.ExecContext(ctx,
			`UPDATE devices SET default_card_id = $2 WHERE id = $1`, deviceID, cardID); err != nil {
			return fmt.Errorf("wallet: set default card: %w", err)
		}
		return nil
	})
}

// --- transactions and notifications ---

// insertTransaction records t (once: by its id) with its notification and,
// when pts is set, the points it earned, in one write; false when t was
// already there.
func (r *repo) insertTransaction(ctx context.Context, t *Transaction, pts *EventPoints, now time.Time, keep int) (bool, error) {
	body, err := encodeNotification(t)
	if err != nil {
		return false, err
	}
	var earned, balance sql.NullInt64
	if pts != nil {
		earned, balance = sql.NullInt64{Int64: pts.Earned, Valid: true}, sql.NullInt64{Int64: pts.Balance, Valid: true}
	}
	var inserted bool
	err = r.write(ctx, func(tx *sql.Tx) error {
		// The cheapest ctx still safe on the engine: on PostgreSQL a
		// statement can wait for the device's notify_seq row another
		// wallet node's write locked, and only the caller's ctx ends it.
		ctx := r.db.WriteContext(ctx)
		res, err := tx.ExecContext(ctx,
			`INSERT INTO transactions (id, card_id, device_id, amount_minor, currency, merchant_name, approved,
			 response_code, auth_code, stan, rrn, time_ms, received_ms, country, billing_minor, billing_currency, conversion_rate,
			 discount_minor, offer_bank, campaign_id, points_multiplier, points_earned, points_balance)
			 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)
			 ON CONFLICT (id) DO NOTHING`,
			t.ID, t.CardID, t.DeviceID, t.AmountMinor, t.Currency, t.MerchantName, b2i(t.Approved),
			t.ResponseCode, t.AuthCode, t.STAN, t.RRN, ms(t.Time), ms(now), t.Country, t.BillingAmountMinor,
			t.BillingCurrency, t.ConversionRate, t.DiscountMinor, t.OfferBank, t.CampaignID, t.PointsMultiplier,
			earned, balance)
		if err != nil {
			return fmt.Errorf("wallet: insert transaction: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("wallet: insert transaction: %w", err)
		}
		inserted = n == 1
		if pts != nil {
			// Points are recorded once: with the transaction, or on a
			// stored transaction that had none.
			if err := recordPointsTx(ctx, tx, t, pts, inserted); err != nil {
				return err
			}
		}
		if !inserted {
			return nil
		}
		return r.appendTx(ctx, tx, t.DeviceID, NotifyTransaction, body, now, keep)
	})
	return inserted, err
}

func (r *repo) notify(ctx context.Context, deviceID, kind string, payload any, now time.Time, keep int) error {
	return r.write(ctx, func(tx *sql.Tx) error {
		return r.notifyTx(ctx, tx, deviceID, kind, payload, now, keep)
	})
}

func (r *repo) transactions(ctx context.Context, cardID string, before time.Time, limit int) ([]Transaction, error) {
	q := `SELECT t.id, t.card_id, t.device_id, t.amount_minor, t.currency, t.merchant_name, t.approved, t.response_code,
		t.auth_code, t.stan, t.rrn, t.time_ms, c.token_last4, t.country, t.billing_minor, t.billing_currency,
		t.conversion_rate, t.discount_minor, t.offer_bank, t.campaign_id, t.points_multiplier, t.points_earned
		FROM transactions t JOIN cards c ON c.id = t.card_id
		WHERE t.card_id = $1`
	args := []any{cardID}
	if !before.IsZero() {
		q += ` AND t.time_ms < $2`
		args = append(args, ms(before))
	}
	q += fmt.Sprintf(` ORDER BY t.time_ms DESC, t.id DESC LIMIT %d`, limit)
	rows, err := r.db.DB.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("wallet: list transactions: %w", err)
	}
	defer rows.Close()
	out := []Transaction{}
	for rows.Next() {
		var (
			t        Transaction
			approved int
			at       int64
			earned   sql.NullInt64
		)
		if err := rows.Scan(&t.ID, &t.CardID, &t.DeviceID, &t.AmountMinor, &t.Currency, &t.MerchantName, &approved,
			&t.ResponseCode, &t.AuthCode, &t.STAN, &t.RRN, &at, &t.TokenLast4, &t.Country, &t.BillingAmountMinor,
			&t.BillingCurrency, &t.ConversionRate, &t.DiscountMinor, &t.OfferBank, &t.CampaignID,
			&t.PointsMultiplier, &earned); err != nil {
			return nil, fmt.Errorf("wallet: list transactions: %w", err)
		}
		t.Approved, t.Time = approved != 0, fromMS(at)
		if earned.Valid {
			t.PointsEarned = &earned.Int64
		}
		t.SavingText = savingText(t.OfferBank, t.DiscountMinor)
		out = append(out, t)
	}
	return out, rows.Err()
}

// notifications reads the device's feed after seq `after`: only its newest
// keep, which are all a feed held when every notification pruned it (it
// now holds about pruneStride more between prunes, see feed.go).
func (r *repo) notifications(ctx context.Context, deviceID string, after int64, limit, keep int) ([]Notification, error) {
	rows, err := r.db.DB.QueryContext(ctx,
		fmt.Sprintf(`SELECT seq, kind, payload, created_ms FROM notifications WHERE device_id = $1 AND seq > $2
		 AND seq > (SELECT COALESCE(MAX(seq), 0) FROM notifications WHERE device_id = $3) - $4
		 ORDER BY seq LIMIT %d`, limit), deviceID, after, deviceID, feedKeep(keep))
	if err != nil {
		return nil, fmt.Errorf("wallet: list notifications: %w", err)
	}
	defer rows.Close()
	out := []Notification{}
	for rows.Next() {
		var (
			n       Notification
			payload string
			at      int64
		)
		if err := rows.Scan(&n.Seq, &n.Kind, &payload, &at); err != nil {
			return nil, fmt.Errorf("wallet: list notifications: %w", err)
		}
		n.Payload, n.Time = json.RawMessage(payload), fromMS(at)
		out = append(out, n)
	}
	return out, rows.Err()
}

// --- Mi Cloud ---

func (r *repo) insertLocation(ctx context.Context, id, deviceID string, l *Location, keep int) error {
	return r.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO locations (id, device_id, latitude, longitude, accuracy_meters, time_ms, received_ms)
			 VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			id, deviceID, fmtFloat(l.Latitude), fmtFloat(l.Longitude), fmtFloat(l.AccuracyMeters),
			ms(l.Time), ms(l.ReceivedAt)); err != nil {
			return fmt.Errorf("wallet: insert location: %w", err)
		}
		// Keep the newest `keep` by report time.
		_, err := tx.ExecContext(ctx, fmt.Sprintf(
			`DELETE FROM locations WHERE device_id = $1 AND id NOT IN (
			    SELECT id FROM locations WHERE device_id = $1 ORDER BY time_ms DESC, id DESC LIMIT %d)`, keep), deviceID)
		if err != nil {
			return fmt.Errorf("wallet: prune locations: %w", err)
		}
		return nil
	})
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func (r *repo) locations(ctx context.Context, deviceID string, limit int) ([]Location, error) {
	rows, err := r.db.DB.QueryContext(ctx, fmt.Sprintf(
		`SELECT latitude, longitude, accuracy_meters, time_ms, received_ms FROM locations WHERE device_id = $1
		 ORDER BY time_ms DESC, id DESC LIMIT %d`, limit), deviceID)
	if err != nil {
		return nil, fmt.Errorf("wallet: list locations: %w", err)
	}
	defer rows.Close()
	out := []Location{}
	for rows.Next() {
		var (
			lat, lon, acc string
			at, recv      int64
		)
		if err := rows.Scan(&lat, &lon, &acc, &at, &recv); err != nil {
			return nil, fmt.Errorf("wallet: list locations: %w", err)
		}
		var l Location
		l.Latitude, _ = strconv.ParseFloat(lat, 64)
		l.Longitude, _ = strconv.ParseFloat(lon, 64)
		l.AccuracyMeters, _ = strconv.ParseFloat(acc, 64)
		l.Time, l.ReceivedAt = fromMS(at), fromMS(recv)
		out = append(out, l)
	}
	return out, rows.Err()
}

const commandColumns = `id, device_id, kind, state, result, created_ms, delivered_ms, done_ms`

func scanCommand(row interface{ Scan(...any) error }) (*Command, error) {
	var (
		c                         Command
		created, delivered, doneT int64
	)
	if err := row.Scan(&c.ID, &c.DeviceID, &c.Kind, &c.State, &c.Result, &created, &delivered, &doneT); err != nil {
		return nil, err
	}
	c.Created, c.DeliveredAt, c.DoneAt = fromMS(created), fromMS(delivered), fromMS(doneT)
	return &c, nil
}

// queueCommand queues c unless the device already has too many pending; a
// command of the same kind already pending is returned instead of a second.
func (r *repo) queueCommand(ctx context.Context, c *Command, keep int) (*Command, error) {
	out := c
	err := r.write(ctx, func(tx *sql.Tx) error {
		existing, err := scanCommand(tx.QueryRowContext(ctx,
			`SELECT `+commandColumns+` FROM commands WHERE device_id = $1 AND kind = $2 AND state = $3`,
			c.DeviceID, c.Kind, CommandPending))
		if err == nil {
			out = existing
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("wallet: read commands: %w", err)
		}
		var n int
		if err := tx.QueryRowContext(ctx,
			`SELECT COUNT(*) FROM commands WHERE device_id = $1 AND state = $2`, c.DeviceID, CommandPending).Scan(&n); err != nil {
			return fmt.Errorf("wallet: count commands: %w", err)
		}
		if n >= MaxPendingCommandsPerDevice {
			return mipay.Errorf(mipay.ELIMIT, "this device already has %d commands waiting", n)
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO commands (id, device_id, kind, state, created_ms) VALUES ($1, $2, $3, $4, $5)`,
			c.ID, c.DeviceID, c.Kind, c.State, ms(c.Created)); err != nil {
			return fmt.Errorf("wallet: insert command: %w", err)
		}
		// Keep the history of delivered and finished commands bounded.
		if _, err := tx.ExecContext(ctx, fmt.Sprintf(
			`DELETE FROM commands WHERE device_id = $1 AND state <> $2 AND id NOT IN (
			    SELECT id FROM commands WHERE device_id = $1 AND state <> $2
			    ORDER BY created_ms DESC, id DESC LIMIT %d)`, maxFinishedCommandsKept),
			c.DeviceID, CommandPending); err != nil {
			return fmt.Errorf("wallet: prune commands: %w", err)
		}
		return r.notifyTx(ctx, tx, c.DeviceID, NotifyCommand, c, c.Created, keep)
	})
	return out, err
}

// takeCommands marks the device's pending commands delivered and returns
// them (the device acts on them and reports each result).
func (r *repo) takeCommands(ctx context.Context, deviceID string, now time.Time) ([]Command, error) {
	out := []Command{}
	err := r.write(ctx, func(tx *sql.Tx) error {
		out = out[:0]
		rows, err := tx.QueryContext(ctx,
			`SELECT `+commandColumns+` FROM commands WHERE device_id = $1 AND state = $2 ORDER BY created_ms, id`,
			deviceID, CommandPending)
		if err != nil {
			return fmt.Errorf("wallet: read commands: %w", err)
		}
		for rows.Next() {
			c, err := scanCommand(rows)
			if err != nil {
				rows.Close()
				return fmt.Errorf("wallet: read commands: %w", err)
			}
			c.State, c.DeliveredAt = CommandDelivered, now
			out = append(out, *c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("wallet: read commands: %w", err)
		}
		_, err = tx.ExecContext(ctx,
			`UPDATE commands SET state = $3, delivered_ms = $4 WHERE device_id = $1 AND state = $2`,
			deviceID, CommandPending, CommandDelivered, ms(now))
		if err != nil {
			return fmt.Errorf("wallet: deliver commands: %w", err)
		}
		return nil
	})
	return out, err
}

func (r *repo) completeCommand(ctx context.Context, deviceID, id, state, result string, now time.Time) (*Command, error) {
	var out *Command
	err := r.write(ctx, func(tx *sql.Tx) error {
		c, err := scanCommand(tx.QueryRowContext(ctx,
			`SELECT `+commandColumns+` FROM commands WHERE id = $1 AND device_id = $2`, id, deviceID))
		if err != nil {
			return notFound(err, "command")
		}
		if c.State == CommandDone || c.State == CommandFailed {
			return mipay.Errorf(mipay.ECONFLICT, "this command was already completed")
		}
		if c.DeliveredAt.IsZero() {
			c.DeliveredAt = now
		}
		c.State, c.Result, c.DoneAt = state, result, now
		_, err = tx.ExecContext(ctx,
			`UPDATE commands SET state = $2, result = $3, done_ms = $4, delivered_ms = $5 WHERE id = $1`,
			id, state, result, ms(now), ms(c.DeliveredAt))
		if err != nil {
			return fmt.Errorf("wallet: complete command: %w", err)
		}
		out = c
		return nil
	})
	return out, err
}

func (r *repo) commands(ctx context.Context, deviceID string, limit int) ([]Command, error) {
	rows, err := r.db.DB.QueryContext(ctx, fmt.Sprintf(
		`SELECT `+commandColumns+` FROM commands WHERE device_id = $1 ORDER BY created_ms DESC, id DESC LIMIT %d`, limit), deviceID)
	if err != nil {
		return nil, fmt.Errorf("wallet: list commands: %w", err)
	}
	defer rows.Close()
	out := []Command{}
	for rows.Next() {
		c, err := scanCommand(rows)
		if err != nil {
			return nil, fmt.Errorf("wallet: list commands: %w", err)
		}
		out = append(out, *c)
	}
	return out, rows.Err()
}
