package network

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/hsm"
	"github.com/mipay-oss/mipay/httpx"
	"github.com/mipay-oss/mipay/iso8583"
)

// Stand-in advices. When the switch approves in an issuer's stead (noAnswer),
// the issuer must still learn of the approval, or its ledger has no hold for
// a payment the acquirer was told is approved. finishWith queues an advice in
// the same write that records the stand-in approval; adviceLoop sends it as
// 0120 (for a 0100) or 0220 (for a 0200), as 0121/0221 on every retry, with
// backoff, until the issuer acknowledges it (0130/0230, DE39 00). The queue
// is a table, so an advice survives a restart; a row changes from pending
// exactly once (done = 0 guard), so several nodes may send it and the
// issuer's advice handling (idempotent by the original's identity) holds
// once.
//
// The advice names its original as a reversal does: DE90 (MTI, STAN, DE7,
// acquirer) with DE41 and DE37; its own DE7 is the time it is sent. DE38 is
// the stand-in approval code the acquirer got, DE39 00.
//
// A reversal of a stand-in approval is held back (forwardReversals) while
// its advice is pending, so this switch tells the issuer of the approval
// before it releases it; the issuer copes with the opposite order anyway
// (an advice after the reversal of its original holds nothing).
//
// A stand-in approval with a bank promotion keeps the campaign's budget
// (promo.go), so its advice carries the DE124 the original request carried
// to the issuer, stored with the queued advice (every advice, after a
// restart too, carries the same bytes): the issuer then holds the
// discounted amount and books the discount as for a request.
//
// An advice ends in one of three ways, each recorded on its row and counted
// (advice_metrics.go): acknowledged; refused (the issuer answered another
// final DE39, kept in issuer_rc: it read the advice and will not post it,
// so repeating it changes nothing); or failed: it could not be built
// AdviceBuildAttempts times in a row for a reason that is the advice's own
// (a sealed PAN the HSM cannot open, a token gone from the vault, the
// original gone), not a dependency that is down. A real switch does not
// retry such an advice forever, nor let it hold back its approval's
// reversal forever: the reversal goes (the issuer answers 25 for an
// approval it never heard of, or releases one it approved late), and the
// approval the issuer never posted is for operators to settle with the
// bank (UnsettledAdvices lists both kinds, with their reason).

// Advice states (issuer_advices.done).
const (
	advicePending = 0
	adviceAcked   = 1
	adviceRefused = 2
	adviceFailed  = 3
)

// DefaultAdviceBuildAttempts is how many times in a row an advice may fail
// to be built (for a reason of its own) before it is marked failed. With
// the queue's backoff (ReversalRetry doubling up to a minute) that is a few
// seconds to minutes; a dependency that is down (issuer link, store, TSP or
// HSM unavailable) does not count.
const DefaultAdviceBuildAttempts = 6

// adviceMTI is the advice of an original request's MTI, repeated or not.
func adviceMTI(orig string, repeat bool) string {
	switch {
	case orig == iso8583.MTIAuthRequest && repeat:
		return iso8583.MTIAuthAdviceRepeat
	case orig == iso8583.MTIAuthRequest:
		return iso8583.MTIAuthAdvice
	case repeat:
		return iso8583.MTIFinancialAdviceRepeat
	default:
		return iso8583.MTIFinancialAdvice
	}
}

// PANSealer seals the PAN of a plain card while its advice is pending: the
// HSM (hsm.HSM satisfies it) under key AdvicePANKey. A PAN is never stored
// in the clear (DESIGN: the PAN is encrypted in the vault and masked
// everywhere else); a token's PAN is not stored at all.
type PANSealer interface {
	Seal(ctx context.Context, h hsm.Handle, plaintext, aad []byte) ([]byte, error)
	Open(ctx context.Context, h hsm.Handle, sealed, aad []byte) ([]byte, error)
}

// AdvicePANKey is the HSM key (AES-256) sealing plain-card PANs of pending
// advices.
const AdvicePANKey hsm.Handle = "network/advice-pan"

// sealAdvicePAN seals a plain card's PAN for its advice row, bound to the
// original's key (a sealed PAN moved to another row does not open). New
// requires the sealer.
func (s *Switch) sealAdvicePAN(ctx context.Context, rec *authRecord) (string, error) {
	if rec.TokenRef != "" || rec.pan == "" {
		return "", nil // a token's PAN is asked of the TSP when the advice is sent
	}
	sealed, err := s.cfg.PANSealer.Seal(ctx, AdvicePANKey, []byte(rec.pan), []byte(rec.Key))
	if err != nil {
		return "", fmt.Errorf("network: seal the advice's PAN: %w", err)
	}
	return hex.EncodeToString(sealed), nil
}

// openAdvicePAN opens what sealAdvicePAN stored.
func (s *Switch) openAdvicePAN(ctx context.Context, o owedAdvice) (string, error) {
	if o.pan == "" {
		return "", nil
	}
	sealed, err := hex.DecodeString(o.pan)
	if err != nil {
		return "", ownBuildError{fmt.Errorf("sealed PAN: %w", err)}
	}
	pan, err := s.cfg.PANSealer.Open(ctx, AdvicePANKey, sealed, []byte(o.origKey))
	if err != nil {
		err = fmt.Errorf("open the advice's PAN: %w", err)
		switch mipay.ErrorCode(err) {
		case mipay.EINVALID, mipay.ENOTFOUND:
			// The HSM rejects this sealed PAN (it does not authenticate) or
			// has no key for it: opening it again fails the same way. Any
			// other failure (a keystore it cannot read, an HSM that is down)
			// is the HSM's, not this advice's.
			err = ownBuildError{err}
		}
		return "", err
	}
	return string(pan), nil
}

// insertAdvice queues the advice of the stand-in approval rec (in the
// write that records rec), with sealedPAN for a plain card (sealAdvicePAN).
// The advice keeps the DE124 the original carried to the issuer
// (rec.promoField, "" for none).
func insertAdvice(ctx context.Context, tx *sql.Tx, rec *authRecord, sealedPAN string, now time.Time) error {
	id := make([]byte, 12)
	_, _ = rand.Read(id)
	_, err := tx.ExecContext(ctx, `INSERT INTO issuer_advices (id, orig_key, mti, pan, attempts, done, last_error,
		created_at, updated_at, promotion) VALUES ($1,$2,$3,$4,0,0,'',$5,$5,$6) ON CONFLICT (orig_key) DO NOTHING`,
		hex.EncodeToString(id), rec.Key, adviceMTI(rec.MTI, false), sealedPAN, now.UnixMilli(), rec.promoField)
	if err != nil {
		return fmt.Errorf("network: queue advice: %w", err)
	}
	return nil
}

// adviceLoop sends owed advices until each is acknowledged, retrying with
// the reversal queue's backoff (ReversalRetry, doubling up to a minute).
func (s *Switch) adviceLoop() {
	s.storeAndForward("advice", s.adviceWake, s.forwardAdvices)
}

// maxAdviceBatch bounds the advices sent per pass.
const maxAdviceBatch = 256

type owedAdvice struct {
	id, origKey, mti, pan, promotion string
	attempts, buildFailures          int
}

// adviceResult is what one try of an advice came to.
type adviceResult struct {
	state int
	// sent: the advice was handed to the issuer's link (the next one is a
	// repeat; counted in attempts before the send). built: it was built
	// (its run of build failures ends). skipped: another node sent or ended
	// it since it was read; nothing to record.
	sent, built, skipped bool
	rc                   string // the issuer's DE39, when it answered
	err                  error  // why it is still pending, or why it failed
}

// forwardAdvices sends each pending advice once; it reports whether some
// remain pending.
func (s *Switch) forwardAdvices() (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Least recently tried first: a failed try sets updated_at, so the
	// advices of an issuer that stays down go behind the others instead of
	// filling every batch (by created_at alone, a batch's worth of them
	// kept everything queued after them from ever being sent).
	owed, err := queryOwed(ctx, s.db, `SELECT id, orig_key, mti, pan, promotion, attempts, build_failures FROM issuer_advices
		WHERE done = 0 ORDER BY updated_at, created_at LIMIT `+fmt.Sprint(maxAdviceBatch), func(rows *sql.Rows, o *owedAdvice) error {
		return rows.Scan(&o.id, &o.origKey, &o.mti, &o.pan, &o.promotion, &o.attempts, &o.buildFailures)
	})
	if err != nil {
		return false, err
	}
	pending, settled := false, false
	var uerrs []error
	for _, o := range owed {
		r := s.tryAdvice(ctx, o)
		if r.skipped {
			pending = true // its sender records it; looked at again next pass
			continue
		}
		ended, uerr := s.recordAdvice(ctx, o, &r)
		if r.state == advicePending {
			pending = true
		}
		if uerr != nil {
			// This row is tried again next pass; the others go on.
			pending = true
			uerrs = append(uerrs, fmt.Errorf("record advice %s: %w", o.id, uerr))
			continue
		}
		if r.state != advicePending {
			// Settled here or, meanwhile, by another node: either way the
			// reversal it held back may go now.
			settled = true
		}
		if ended {
			s.adviceMetrics.settle(r.state) // counted once, by the node that ended it
		}
	}
	if settled {
		// Reversals of these approvals were held back until now.
		s.kick(s.wake)
	}
	return pending || len(owed) == maxAdviceBatch, errors.Join(uerrs...)
}

// tryAdvice sends o once and says what came of it, logging what operators
// must know (no PAN: errors name the transaction by its id).
func (s *Switch) tryAdvice(ctx context.Context, o owedAdvice) adviceResult {
	r := s.sendAdvice(ctx, o)
	txID := transactionID(o.origKey)
	switch {
	case r.state == adviceRefused:
		s.log.Error("issuer refused a stand-in advice; its ledger lacks this approval", "orig", txID, "rc", r.rc)
	case r.err != nil && !r.built && !transientBuildError(r.err):
		if o.buildFailures+1 >= s.cfg.AdviceBuildAttempts {
			r.state = adviceFailed // logged by recordAdvice, if it is the one that ends the row
			break
		}
		s.log.Warn("stand-in advice cannot be built", "orig", txID, "failures", o.buildFailures+1, "err", r.err)
	case r.err != nil:
		s.log.Warn("issuer advice not acknowledged yet", "orig", txID, "sent", o.attempts+boolInt(r.sent), "err", r.err)
	}
	return r
}

// recordAdvice records one try of o: its state (attempts, the advices
// handed to the issuer's link, was counted before the send: sendAdvice),
// its run of build failures, why it is not acknowledged, and
// the issuer's refusal code. A row leaves pending once (done = 0 guard:
// several nodes may try it); ended says this update was the one, and a
// sealed PAN is forgotten then. A failure is recorded only if no node
// tried the row since o was read; otherwise r becomes pending.
func (s *Switch) recordAdvice(ctx context.Context, o owedAdvice, r *adviceResult) (ended bool, err error) {
	if r.state == adviceFailed {
		// o's run of build failures is what this node read: had another node
		// tried the row since (built it, which ends the run, or sent it, and
		// the issuer may hold that advice), it is not failed on a count that
		// no longer holds. This failure then counts on the row as it is.
		res, err := s.db.DB.ExecContext(ctx, `UPDATE issuer_advices SET done = $1, last_error = $2, pan = '', updated_at = $3,
			build_failures = build_failures + 1 WHERE id = $4 AND done = 0 AND build_failures = $5 AND attempts = $6`,
			adviceFailed, "advice cannot be built: "+r.err.Error(), s.now().UnixMilli(), o.id, o.buildFailures, o.attempts)
		if err != nil {
			return false, err
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			if err == nil {
				s.log.Error("stand-in advice cannot be built; given up, its reversal goes on; the issuer's ledger lacks this approval",
					"orig", transactionID(o.origKey), "failures", o.buildFailures+1, "err", r.err)
			}
			return err == nil, err
		}
		s.log.Warn("stand-in advice not given up: another node tried it meanwhile", "orig", transactionID(o.origKey))
		r.state = advicePending
	}
	msg, rc := "", ""
	switch {
	case r.state == adviceRefused:
		rc = r.rc
		msg = "issuer refused the advice: DE39 " + r.rc
	case r.err != nil:
		msg = r.err.Error()
	}
	// Relative to the row, not to o: another node's try in between (a build
	// that ended the run, a failure of its own) is kept.
	failures := "build_failures"
	switch {
	case r.built:
		failures = "0"
	case r.err != nil && !transientBuildError(r.err):
		failures = "build_failures + 1"
	}
	pan := o.pan
	if r.state != advicePending {
		pan = ""
	}
	res, err := s.db.DB.ExecContext(ctx, `UPDATE issuer_advices SET done = $1, last_error = $2,
		pan = $3, updated_at = $4, build_failures = `+failures+`, issuer_rc = $5 WHERE id = $6 AND done = 0`,
		r.state, msg, pan, s.now().UnixMilli(), rc, o.id)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return err == nil && n == 1 && r.state != advicePending, err
}

// sendAdvice builds the advice of a stand-in approval and sends it. Its
// state is adviceAcked or adviceRefused once the issuer answered for good;
// pending with err to retry otherwise (no answer, 91, 96, or not built).
func (s *Switch) sendAdvice(ctx context.Context, o owedAdvice) adviceResult {
	m, link, err := s.buildAdvice(ctx, o)
	if err != nil {
		return adviceResult{state: advicePending, err: err}
	}
	// Count the send durably before the advice leaves: a switch that dies
	// between the send and recordAdvice then sends the next one as a
	// repeat (0121/0221), which the issuer may have got, never as a second
	// first advice. A crash before the send makes the next one a repeat of
	// an advice never sent, which a repeat allows. The guard on attempts
	// also keeps another node that sent it since o was read from sending
	// it again under o's (stale) MTI.
	res, err := s.db.DB.ExecContext(ctx, `UPDATE issuer_advices SET attempts = attempts + 1, updated_at = $1
		WHERE id = $2 AND done = 0 AND attempts = $3`, s.now().UnixMilli(), o.id, o.attempts)
	if err != nil {
		return adviceResult{state: advicePending, built: true, err: fmt.Errorf("count the advice before sending: %w", err)}
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		if err != nil {
			return adviceResult{state: advicePending, built: true, err: fmt.Errorf("count the advice before sending: %w", err)}
		}
		return adviceResult{state: advicePending, skipped: true}
	}
	answer, err := link.Send(ctx, m)
	if err != nil {
		return adviceResult{state: advicePending, sent: true, built: true, err: err}
	}
	r := adviceResult{sent: true, built: true, rc: answer.String(39)}
	switch r.rc {
	case RCApproved:
		r.state = adviceAcked
	case RCIssuerUnavailable, RCSystemError, "":
		r.state, r.err = advicePending, fmt.Errorf("issuer answered %q", r.rc)
	default:
		// The issuer read the advice and will not post it (unknown card,
		// malformed, another transaction under this identity): repeating
		// it changes nothing.
		r.state = adviceRefused
	}
	return r
}

// ownBuildError marks a build failure that is the advice's own and would
// fail the same way forever (the original gone, a sealed PAN the HSM
// rejects, a token the vault no longer has, stored data that does not
// format): only these count towards AdviceBuildAttempts. buildAdvice marks
// them where it knows; every other failure (a store, TSP, HSM or issuer
// link that is down or slow, whatever error it reports) is retried without
// counting, so an outage never fails an advice.
type ownBuildError struct{ err error }

func (e ownBuildError) Error() string { return e.err.Error() }
func (e ownBuildError) Unwrap() error { return e.err }

// transientBuildError reports whether a build failure is not the advice's
// own (ownBuildError): retried without counting.
func transientBuildError(err error) bool {
	var own ownBuildError
	return !errors.As(err, &own)
}

// buildAdvice builds the advice of o (0120/0220, or 0121/0221 once one was
// sent) and finds its issuer's link.
func (s *Switch) buildAdvice(ctx context.Context, o owedAdvice) (*iso8583.Message, IssuerLink, error) {
	var r authRecord
	var billMinor int64
	var rate string
	err := s.db.DB.QueryRowContext(ctx, `SELECT mti, token_ref, issuer_id, processing, amount_minor, currency, stan, rrn,
		tx_time, acquirer, terminal, merchant, country, billing_minor, billing_rate, auth_code FROM auths WHERE dup_key = $1`,
		o.origKey).Scan(&r.MTI, &r.TokenRef, &r.IssuerID, &r.Processing, &r.AmountMinor, &r.Currency, &r.STAN, &r.RRN,
		&r.TxTime, &r.Acquirer, &r.Terminal, &r.Merchant, &r.Country, &billMinor, &rate, &r.AuthCode)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, ownBuildError{fmt.Errorf("original: %w", err)}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("original: %w", err)
	}
	// The original's billing amount and rate: the issuer holds what the
	// stand-in approved.
	if err := setOriginalBilling(&r, billMinor, rate); err != nil {
		return nil, nil, ownBuildError{err}
	}
	link, ok := s.cfg.Issuers(r.IssuerID)
	if !ok {
		return nil, nil, fmt.Errorf("no link to issuer %s", r.IssuerID)
	}
	var pan string
	if r.TokenRef != "" {
		if pan, _, err = s.cfg.Tokens.Detokenize(ctx, r.TokenRef, s.cfg.NodeID, "advice"); err != nil {
			if mipay.ErrorCode(err) == mipay.ENOTFOUND {
				err = ownBuildError{err} // the token is gone from the vault
			}
			return nil, nil, err
		}
	} else if pan, err = s.openAdvicePAN(ctx, o); err != nil {
		return nil, nil, err
	}
	if pan == "" {
		return nil, nil, ownBuildError{fmt.Errorf("advice of %s without a PAN", transactionID(o.origKey))}
	}
	m := &iso8583.Message{}
	m.SetMTI(adviceMTI(r.MTI, o.attempts > 0))
	m.SetString(2, pan)
	if err := s.setOriginal(m, &r); err != nil {
		return nil, nil, ownBuildError{err} // stored data that does not format
	}
	m.SetString(38, r.AuthCode)
	m.SetString(39, RCApproved)
	if r.Merchant != "" {
		m.SetString(43, r.Merchant)
	}
	if o.promotion != "" {
		// The DE124 the original carried: the discount the switch kept the
		// campaign's budget for.
		m.SetString(iso8583.FieldPromotion, o.promotion)
	}
	return m, link, nil
}

// UnsettledAdvice is a stand-in advice that ended without the issuer
// posting it: refused (the issuer's DE39 in IssuerRC) or failed (it could
// not be built; Reason says why). Either way the network approved a
// payment the issuer's ledger does not hold, for operators to settle with
// the bank. No PAN: the transaction is named by its id (as in
// transaction.authorized) and the acquirer's identity of the original.
type UnsettledAdvice struct {
	ID            string    `json:"id"`
	TransactionID string    `json:"transactionId"`
	IssuerID      string    `json:"issuerId"`
	STAN          string    `json:"stan"`
	RRN           string    `json:"rrn"`
	Terminal      string    `json:"terminal"`
	AmountMinor   int64     `json:"amountMinor"`
	Currency      string    `json:"currency"`
	State         string    `json:"state"`              // "refused" or "failed"
	IssuerRC      string    `json:"issuerRc,omitempty"` // refused: the issuer's DE39
	Reason        string    `json:"reason"`
	Attempts      int       `json:"attempts"` // advices handed to the issuer's link
	CreatedAt     time.Time `json:"createdAt"`
	UpdatedAt     time.Time `json:"updatedAt"` // when it ended
}

// MaxUnsettledAdvices bounds what UnsettledAdvices returns at once.
const MaxUnsettledAdvices = 1000

// UnsettledAdvices lists the refused and failed advices, most recently
// ended first, at most limit (1..MaxUnsettledAdvices) of them.
func (s *Switch) UnsettledAdvices(ctx context.Context, limit int) ([]UnsettledAdvice, error) {
	if limit < 1 || limit > MaxUnsettledAdvices {
		return nil, mipay.Errorf(mipay.EINVALID, "limit must be 1 to %d", MaxUnsettledAdvices)
	}
	rows, err := s.db.DB.QueryContext(ctx, `SELECT a.id, a.orig_key, a.done, a.issuer_rc, a.last_error, a.attempts,
		a.created_at, a.updated_at, COALESCE(o.issuer_id, ''), COALESCE(o.stan, ''), COALESCE(o.rrn, ''),
		COALESCE(o.terminal, ''), COALESCE(o.amount_minor, 0), COALESCE(o.currency, '')
		FROM issuer_advices a LEFT JOIN auths o ON o.dup_key = a.orig_key
		WHERE a.done IN ($1, $2) ORDER BY a.updated_at DESC, a.id LIMIT `+fmt.Sprint(limit), adviceRefused, adviceFailed)
	if err != nil {
		return nil, fmt.Errorf("network: unsettled advices: %w", err)
	}
	defer rows.Close()
	var out []UnsettledAdvice
	for rows.Next() {
		var u UnsettledAdvice
		var key string
		var done int
		var created, updated int64
		if err := rows.Scan(&u.ID, &key, &done, &u.IssuerRC, &u.Reason, &u.Attempts, &created, &updated, &u.IssuerID,
			&u.STAN, &u.RRN, &u.Terminal, &u.AmountMinor, &u.Currency); err != nil {
			return nil, fmt.Errorf("network: unsettled advices: %w", err)
		}
		u.TransactionID = transactionID(key)
		u.State = outcomeName(done) // refused or failed: the query's two states
		u.CreatedAt, u.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("network: unsettled advices: %w", err)
	}
	return out, nil
}

// DefaultUnsettledAdvicesShown is what GET /v1/admin/advices lists without
// a limit.
const DefaultUnsettledAdvicesShown = 100

// serveUnsettledAdvices is GET /v1/admin/advices[?limit=N]: the refused and
// failed stand-in advices, for an operator to settle with the issuer.
func (s *Switch) serveUnsettledAdvices(w http.ResponseWriter, r *http.Request) {
	limit := DefaultUnsettledAdvicesShown
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || len(v) > 4 {
			httpx.WriteError(w, r, mipay.Errorf(mipay.EINVALID, "limit must be a number from 1 to %d", MaxUnsettledAdvices))
			return
		}
		limit = n
	}
	list, err := s.UnsettledAdvices(r.Context(), limit)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if list == nil {
		list = []UnsettledAdvice{}
	}
	httpx.WriteJSON(w, http.StatusOK, struct {
		Advices []UnsettledAdvice `json:"advices"`
	}{list})
}
