package network

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/mipay-oss/mipay/hsm"
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

// Advice states (issuer_advices.done).
const (
	advicePending = 0
	adviceAcked   = 1
	adviceRefused = 2
)

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
// original's key (a sealed PAN moved to another row does not open).
func (s *Switch) sealAdvicePAN(ctx context.Context, rec *authRecord) (string, error) {
	if rec.TokenRef != "" || rec.pan == "" {
		return "", nil // a token's PAN is asked of the TSP when the advice is sent
	}
	if s.cfg.PANSealer == nil {
		return "", errors.New("network: no PAN sealer configured: a plain card's stand-in advice cannot keep its PAN")
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
	if s.cfg.PANSealer == nil {
		return "", errors.New("no PAN sealer configured")
	}
	sealed, err := hex.DecodeString(o.pan)
	if err != nil {
		return "", fmt.Errorf("sealed PAN: %w", err)
	}
	pan, err := s.cfg.PANSealer.Open(ctx, AdvicePANKey, sealed, []byte(o.origKey))
	if err != nil {
		return "", fmt.Errorf("open the advice's PAN: %w", err)
	}
	return string(pan), nil
}

// insertAdvice queues the advice of the stand-in approval rec (in the
// write that records rec), with sealedPAN for a plain card (sealAdvicePAN).
func insertAdvice(ctx context.Context, tx *sql.Tx, rec *authRecord, sealedPAN string, now time.Time) error {
	id := make([]byte, 12)
	_, _ = rand.Read(id)
	_, err := tx.ExecContext(ctx, `INSERT INTO issuer_advices (id, orig_key, mti, pan, attempts, done, last_error,
		created_at, updated_at) VALUES ($1,$2,$3,$4,0,0,'',$5,$5) ON CONFLICT (orig_key) DO NOTHING`,
		hex.EncodeToString(id), rec.Key, adviceMTI(rec.MTI, false), sealedPAN, now.UnixMilli())
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
	id, origKey, mti, pan string
	attempts              int
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
	owed, err := queryOwed(ctx, s.db, `SELECT id, orig_key, mti, pan, attempts FROM issuer_advices
		WHERE done = 0 ORDER BY updated_at, created_at LIMIT `+fmt.Sprint(maxAdviceBatch), func(rows *sql.Rows, o *owedAdvice) error {
		return rows.Scan(&o.id, &o.origKey, &o.mti, &o.pan, &o.attempts)
	})
	if err != nil {
		return false, err
	}
	pending, settled := false, false
	var uerrs []error
	for _, o := range owed {
		state, sent, err := s.sendAdvice(ctx, o)
		msg := ""
		switch {
		case err != nil:
			pending = true
			msg = err.Error()
			s.log.Warn("issuer advice not acknowledged yet", "sent", o.attempts+boolInt(sent), "err", err)
		case state == adviceRefused:
			msg = "issuer refused the advice"
			s.log.Error("issuer refused a stand-in advice; its ledger lacks this approval", "orig", transactionID(o.origKey))
		}
		if state != advicePending {
			settled = true
		}
		pan := o.pan
		if state != advicePending {
			pan = ""
		}
		// attempts counts the advices handed to the issuer's link: the next
		// one is a repeat (0121/0221) only once one was.
		_, uerr := s.db.DB.ExecContext(ctx, `UPDATE issuer_advices SET attempts = attempts + $1, done = $2, last_error = $3,
			pan = $4, updated_at = $5 WHERE id = $6 AND done = 0`, boolInt(sent), state, msg, pan, s.now().UnixMilli(), o.id)
		if uerr != nil {
			// This row is tried again next pass; the others go on.
			pending = true
			uerrs = append(uerrs, fmt.Errorf("record advice %s: %w", o.id, uerr))
		}
	}
	if settled {
		// Reversals of these approvals were held back until now.
		s.kick(s.wake)
	}
	return pending || len(owed) == maxAdviceBatch, errors.Join(uerrs...)
}

// sendAdvice builds the advice of a stand-in approval and sends it. It
// returns adviceAcked or adviceRefused once the issuer answered for good,
// or an error to retry (no answer, 91, 96). sent says whether the advice
// was handed to the issuer's link: an error before that (original not
// read, no link, no PAN) sent nothing the issuer may have got, so the next
// advice is not a repeat.
func (s *Switch) sendAdvice(ctx context.Context, o owedAdvice) (state int, sent bool, err error) {
	m, link, err := s.buildAdvice(ctx, o)
	if err != nil {
		return advicePending, false, err
	}
	answer, err := link.Send(ctx, m)
	if err != nil {
		return advicePending, true, err
	}
	switch rc := answer.String(39); rc {
	case RCApproved:
		return adviceAcked, true, nil
	case RCIssuerUnavailable, RCSystemError, "":
		return advicePending, true, fmt.Errorf("issuer answered %q", rc)
	default:
		// The issuer read the advice and will not post it (unknown card,
		// malformed, another transaction under this identity): repeating
		// it changes nothing.
		return adviceRefused, true, nil
	}
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
	if err != nil {
		return nil, nil, fmt.Errorf("original: %w", err)
	}
	if rate != "" {
		// The original's billing amount and rate: the issuer holds what the
		// stand-in approved.
		rt, err := ParseDE10(rate)
		if err != nil {
			return nil, nil, fmt.Errorf("original's rate: %w", err)
		}
		r.Bill = &billing{Country: r.Country, AmountMinor: billMinor, Rate: rt}
	}
	link, ok := s.cfg.Issuers(r.IssuerID)
	if !ok {
		return nil, nil, fmt.Errorf("no link to issuer %s", r.IssuerID)
	}
	var pan string
	if r.TokenRef != "" {
		if pan, _, err = s.cfg.Tokens.Detokenize(ctx, r.TokenRef, s.cfg.NodeID, "advice"); err != nil {
			return nil, nil, err
		}
	} else if pan, err = s.openAdvicePAN(ctx, o); err != nil {
		return nil, nil, err
	}
	if pan == "" {
		return nil, nil, fmt.Errorf("advice of %s without a PAN", transactionID(o.origKey))
	}
	amount, err := iso8583.FormatAmount(r.AmountMinor)
	if err != nil {
		return nil, nil, err
	}
	de90, err := iso8583.OriginalData{MTI: r.MTI, STAN: r.STAN, TransmissionTime: r.TxTime, AcquirerID: r.Acquirer}.Format()
	if err != nil {
		return nil, nil, err
	}
	m := &iso8583.Message{}
	m.SetMTI(adviceMTI(r.MTI, o.attempts > 0))
	m.SetString(2, pan)
	m.SetString(3, r.Processing)
	m.SetString(4, amount)
	m.SetString(7, s.now().UTC().Format("0102150405"))
	m.SetString(11, r.STAN)
	if r.Country != "" {
		m.SetString(19, r.Country)
	}
	m.SetString(32, r.Acquirer)
	m.SetString(37, r.RRN)
	m.SetString(38, r.AuthCode)
	m.SetString(39, RCApproved)
	m.SetString(41, r.Terminal)
	if r.Merchant != "" {
		m.SetString(43, r.Merchant)
	}
	m.SetString(49, r.Currency)
	if r.Bill.converted() {
		if err := setBilling(m, r.Bill); err != nil {
			return nil, nil, err
		}
	}
	m.SetString(90, de90)
	return m, link, nil
}
