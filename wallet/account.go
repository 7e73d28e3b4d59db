package wallet

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mipay-oss/mipay"
	"golang.org/x/crypto/argon2"
)

// Input bounds of account fields.
const (
	minPasswordBytes = 8
	maxPasswordBytes = 128 // argon2 input is bounded before hashing
	minPhoneDigits   = 6
	maxPhoneDigits   = 20
	maxEmailBytes    = 254
	maxLoginBytes    = maxEmailBytes
	sessionTokenLen  = 32 // bytes of randomness in a bearer token (256 bits)
	maxTokenBytes    = 128
	recoveryCodeLen  = 10 // bytes of randomness in a recovery code (80 bits)
)

// Argon2Params are the argon2id parameters of password hashes. New hashes
// use the configured ones; verification reads them from each stored hash.
type Argon2Params struct {
	TimeCost  uint32
	MemoryKiB uint32
	Threads   uint8
}

// DefaultArgon2 follows OWASP's argon2id recommendation (19 MiB, 2 passes).
var DefaultArgon2 = Argon2Params{TimeCost: 2, MemoryKiB: 19 * 1024, Threads: 1}

const (
	argon2SaltLen = 16
	argon2KeyLen  = 32
	// Bounds on parameters read back from a stored hash.
	maxArgon2MemoryKiB = 1 << 20
	maxArgon2TimeCost  = 16
)

// hashPassword returns the PHC string of password under p.
func (s *Service) hashPassword(ctx context.Context, password string, p Argon2Params) (string, error) {
	salt := make([]byte, argon2SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("wallet: salt: %w", err)
	}
	if err := s.acquireHash(ctx); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(password), salt, p.TimeCost, p.MemoryKiB, p.Threads, argon2KeyLen)
	s.releaseHash()
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.MemoryKiB, p.TimeCost, p.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// checkPassword reports whether password matches the PHC string encoded.
func (s *Service) checkPassword(ctx context.Context, encoded, password string) (bool, error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, fmt.Errorf("wallet: stored password hash is not argon2id")
	}
	var (
		version int
		p       Argon2Params
	)
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, fmt.Errorf("wallet: stored password hash has version %q", parts[2])
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.MemoryKiB, &p.TimeCost, &p.Threads); err != nil ||
		p.MemoryKiB == 0 || p.MemoryKiB > maxArgon2MemoryKiB || p.TimeCost == 0 || p.TimeCost > maxArgon2TimeCost || p.Threads == 0 {
		return false, fmt.Errorf("wallet: stored password hash has parameters %q", parts[3])
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 || len(want) > 64 {
		return false, fmt.Errorf("wallet: stored password hash is malformed")
	}
	if err := s.acquireHash(ctx); err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(password), salt, p.TimeCost, p.MemoryKiB, p.Threads, uint32(len(want)))
	s.releaseHash()
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// acquireHash bounds argon2 runs in flight (each holds MemoryKiB).
func (s *Service) acquireHash(ctx context.Context) error {
	select {
	case s.hashSem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return mipay.WrapError(mipay.ETIMEOUT, ctx.Err(), "the server is busy, try again")
	}
}

func (s *Service) releaseHash() { <-s.hashSem }

// normalizePhone keeps digits (and a leading +), dropping spaces and dashes.
func normalizePhone(raw string) (string, error) {
	var b strings.Builder
	digits := 0
	for i, r := range strings.TrimSpace(raw) {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
			digits++
		case r == '+' && i == 0:
			b.WriteRune(r)
		case r == ' ' || r == '-':
		default:
			return "", mipay.Errorf(mipay.EINVALID, "phone must hold only digits, spaces, dashes and a leading +")
		}
		if digits > maxPhoneDigits {
			return "", mipay.Errorf(mipay.EINVALID, "phone must have %d to %d digits", minPhoneDigits, maxPhoneDigits)
		}
	}
	if digits < minPhoneDigits {
		return "", mipay.Errorf(mipay.EINVALID, "phone must have %d to %d digits", minPhoneDigits, maxPhoneDigits)
	}
	return b.String(), nil
}

// normalizeEmail lower-cases and checks the shape local@domain.tld.
func normalizeEmail(raw string) (string, error) {
	e := strings.ToLower(strings.TrimSpace(raw))
	if e == "" || len(e) > maxEmailBytes || !utf8.ValidString(e) {
		return "", mipay.Errorf(mipay.EINVALID, "email must be an address of at most %d bytes", maxEmailBytes)
	}
	local, domain, ok := strings.Cut(e, "@")
	if !ok || local == "" || strings.Contains(domain, "@") || !strings.Contains(domain, ".") ||
		strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") || strings.ContainsAny(e, " \t\r\n<>\"") {
		return "", mipay.Errorf(mipay.EINVALID, "email must look like name@example.com")
	}
	return e, nil
}

func checkPasswordInput(pw string) error {
	if len(pw) < minPasswordBytes || len(pw) > maxPasswordBytes || !utf8.ValidString(pw) {
		return mipay.Errorf(mipay.EINVALID, "password must be %d to %d bytes of text", minPasswordBytes, maxPasswordBytes)
	}
	return nil
}

// normalizeLogin turns a phone number or e-mail into the stored form.
func normalizeLogin(login string) (string, error) {
	login = strings.TrimSpace(login)
	if login == "" || len(login) > maxLoginBytes {
		return "", mipay.Errorf(mipay.EINVALID, "login must be your phone number or e-mail")
	}
	if strings.Contains(login, "@") {
		return normalizeEmail(login)
	}
	return normalizePhone(login)
}

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// newRecoveryCode returns a code such as ABCD-EFGH-IJKL-MNOP (80 bits).
func newRecoveryCode() (string, error) {
	b := make([]byte, recoveryCodeLen)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("wallet: recovery code: %w", err)
	}
	s := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b) // 16 characters
	return s[0:4] + "-" + s[4:8] + "-" + s[8:12] + "-" + s[12:16], nil
}

// normalizeRecoveryCode drops dashes and spaces and upper-cases.
func normalizeRecoveryCode(code string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '-' || r == ' ':
			return -1
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		}
		return r
	}, code)
}

// Register creates a Mi account. The recovery codes are returned this once;
// only their hashes are kept.
func (s *Service) Register(ctx context.Context, phone, email, password string) (*Account, []string, error) {
	p, err := normalizePhone(phone)
	if err != nil {
		return nil, nil, err
	}
	e, err := normalizeEmail(email)
	if err != nil {
		return nil, nil, err
	}
	if err := checkPasswordInput(password); err != nil {
		return nil, nil, err
	}
	hash, err := s.hashPassword(ctx, password, s.cfg.Argon2)
	if err != nil {
		return nil, nil, err
	}
	codes := make([]string, s.cfg.RecoveryCodes)
	hashes := make([]string, len(codes))
	for i := range codes {
		if codes[i], err = newRecoveryCode(); err != nil {
			return nil, nil, err
		}
		hashes[i] = sha256Hex(normalizeRecoveryCode(codes[i]))
	}
	a := &Account{ID: newID("acc"), Phone: p, Email: e, Created: s.now()}
	if err := s.repo.insertAccount(ctx, a, hash, hashes); err != nil {
		return nil, nil, err
	}
	return a, codes, nil
}

// Authenticate checks login (phone or e-mail) and password, with the
// lockout: after MaxSignInFailures failures within SignInFailureWindow the
// login is refused (ELOCKED, saying until when) for SignInLockout, even
// with the right password. The portal signs in through it too.
//
// client names who is asking (the HTTP layer passes the remote address):
// failures per client are also rate-limited (ELIMIT).
func (s *Service) Authenticate(ctx context.Context, client, login, password string) (*Account, error) {
	if err := s.clientFails.check(client, s.now()); err != nil {
		return nil, err
	}
	l, err := normalizeLogin(login)
	if err != nil {
		return nil, err
	}
	if len(password) > maxPasswordBytes {
		return nil, mipay.Errorf(mipay.EINVALID, "password must be %d to %d bytes of text", minPasswordBytes, maxPasswordBytes)
	}
	now := s.now()
	a, hash, err := s.repo.accountByLogin(ctx, l)
	found := err == nil
	if err != nil && mipay.ErrorCode(err) != mipay.ENOTFOUND {
		return nil, err
	}
	// Failures count per account (whichever login names it), or per login
	// for logins without an account, so those lock the same way.
	lockKey := sha256Hex("login:" + l)
	if found {
		lockKey = sha256Hex("account:" + a.ID)
	}
	if until, err := s.repo.signInLock(ctx, lockKey, now); err != nil {
		return nil, err
	} else if !until.IsZero() {
		return nil, lockedError(until, now)
	}
	ok := false
	if found {
		if ok, err = s.checkPassword(ctx, hash, password); err != nil {
			return nil, err
		}
	} else if _, err := s.hashPassword(ctx, password, s.cfg.Argon2); err != nil {
		// Spend the same time as a real check so timing does not tell which
		// logins exist.
		return nil, err
	}
	if !ok {
		s.clientFails.fail(client, now)
		until, err := s.repo.recordSignInFailure(ctx, lockKey, now, s.cfg.MaxSignInFailures, s.cfg.SignInFailureWindow, s.cfg.SignInLockout)
		if err != nil {
			return nil, err
		}
		if !until.IsZero() {
			return nil, lockedError(until, now)
		}
		return nil, mipay.Errorf(mipay.EUNAUTHORIZED, "wrong login or password")
	}
	if err := s.repo.clearSignInFailures(ctx, lockKey); err != nil {
		return nil, err
	}
	return a, nil
}

func lockedError(until, now time.Time) error {
	wait := until.Sub(now).Round(time.Second)
	return &mipay.Error{
		Code: mipay.ELOCKED,
		Message: fmt.Sprintf("too many failed sign-ins: try again after %s (in %s)",
			until.UTC().Format(time.RFC3339), wait),
		Reason: until.UTC().Format(time.RFC3339),
	}
}

// SignIn authenticates and opens a bearer session.
func (s *Service) SignIn(ctx context.Context, client, login, password string) (*Session, error) {
	a, err := s.Authenticate(ctx, client, login, password)
	if err != nil {
		return nil, err
	}
	return s.NewSession(ctx, a.ID)
}

// NewSession opens a bearer session for an authenticated account. The token
// is random (256 bits); only its SHA-256 is stored.
func (s *Service) NewSession(ctx context.Context, accountID string) (*Session, error) {
	b := make([]byte, sessionTokenLen)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("wallet: session token: %w", err)
	}
	token := base64.RawURLEncoding.EncodeToString(b)
	now := s.now()
	expires := now.Add(s.cfg.SessionTTL)
	if err := s.repo.insertSession(ctx, sha256Hex(token), accountID, now, expires, MaxSessionsPerAccount); err != nil {
		return nil, err
	}
	return &Session{Token: token, AccountID: accountID, ExpiresAt: expires.UTC()}, nil
}

// SessionAccount returns the account of a live session token.
func (s *Service) SessionAccount(ctx context.Context, token string) (string, error) {
	if token == "" || len(token) > maxTokenBytes {
		return "", mipay.Errorf(mipay.EUNAUTHORIZED, "sign in first: send Authorization: Bearer <token>")
	}
	id, _, err := s.repo.session(ctx, sha256Hex(token), s.now())
	return id, err
}

// SignOut revokes a session token.
func (s *Service) SignOut(ctx context.Context, token string) error {
	if _, err := s.SessionAccount(ctx, token); err != nil {
		return err
	}
	return s.repo.revokeSession(ctx, sha256Hex(token), s.now())
}

// SignOutEverywhere revokes every session of an account (the portal does
// this when a phone is lost).
func (s *Service) SignOutEverywhere(ctx context.Context, accountID string) error {
	return s.repo.revokeAccountSessions(ctx, accountID, s.now())
}

// UseRecoveryCode spends one of the account's recovery codes (the portal's
// second factor). A code works once.
func (s *Service) UseRecoveryCode(ctx context.Context, accountID, code string) error {
	c := normalizeRecoveryCode(code)
	if len(c) == 0 || len(c) > 64 {
		return mipay.Errorf(mipay.EUNAUTHORIZED, "wrong or used recovery code")
	}
	ok, err := s.repo.useRecoveryCode(ctx, accountID, sha256Hex(c), s.now())
	if err != nil {
		return err
	}
	if !ok {
		return mipay.Errorf(mipay.EUNAUTHORIZED, "wrong or used recovery code")
	}
	return nil
}

// Account returns an account.
func (s *Service) Account(ctx context.Context, accountID string) (*Account, error) {
	return s.repo.account(ctx, accountID)
}
