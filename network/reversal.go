package network

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mipay-oss/mipay/events"
	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/store"
)

// reverse handles a reversal from an acquirer (0400, or a 0420 advice): the
// original is found by DE90; an approval not yet reversed is marked
// reversed and its reversal queued for the issuer in one durable write, so
// the hold is released exactly once however often the acquirer repeats.
func (s *Switch) reverse(ctx context.Context, req *iso8583.Message, key string) (*iso8583.Message, error) {
	resp := req.Response(2, 3, 4, 7, 11, 32, 37, 41, 42, 49, 90)
	rec := &authRecord{Key: key, MTI: req.MTI(), Processing: req.String(3), Currency: req.String(49),
		STAN: req.String(11), RRN: req.String(37), TxTime: req.String(7), Acquirer: req.String(32),
		Terminal: req.String(41), Merchant: req.String(43)}
	if pan := req.String(2); len(pan) >= 4 {
		rec.TokenLast4 = pan[len(pan)-4:]
	}
	orig, err := iso8583.ParseOriginalData(req.String(90))
	if err != nil {
		resp.SetString(39, RCFormatError)
		return s.finish(ctx, resp, rec, nil)
	}
	origKey := trimZeros(orig.AcquirerID, req.String(32)) + "|" + req.String(41) + "|" + orig.STAN + "|" + req.String(37) + "|" + orig.TransmissionTime + "|" + orig.MTI[:2]
	var approved bool
	var reversedNow bool
	err = s.w.Write(ctx, func(tx *sql.Tx) error {
		var rc string
		var reversed int
		err := tx.QueryRowContext(ctx, `SELECT rc, reversed, token_ref, issuer_id FROM auths WHERE dup_key = $1`, origKey).
			Scan(&rc, &reversed, &rec.TokenRef, &rec.IssuerID)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		approved = rc == RCApproved
		if !approved || reversed != 0 {
			return nil
		}
		res, err := tx.ExecContext(ctx, `UPDATE auths SET reversed = 1 WHERE dup_key = $1 AND reversed = 0`, origKey)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			reversedNow = true
			return insertReversal(ctx, tx, origKey, req.MTI(), "acquirer reversal", s.now())
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("network: reversal: %w", err)
	}
	switch {
	case rec.IssuerID == "" && !approved:
		resp.SetString(39, RCOriginalNotFound)
	default:
		// Declined originals need nothing released; repeated reversals are
		// answered as the first was.
		resp.SetString(39, RCApproved)
	}
	if reversedNow {
		s.releasePromotion(ctx, transactionID(origKey))
		s.kick(s.wake)
	}
	return s.finish(ctx, resp, rec, nil)
}

// trimZeros gives DE90's zero-filled acquirer id back the form DE32 had.
func trimZeros(padded, de32 string) string {
	for len(padded) > len(de32) && padded[0] == '0' {
		padded = padded[1:]
	}
	return padded
}

// reversalLoop forwards owed reversals to issuers until each is
// acknowledged, retrying with backoff. The issuer's reversal handling is
// idempotent, so a retry after a lost answer releases nothing twice.
func (s *Switch) reversalLoop() {
	s.storeAndForward("reversal", s.wake, s.forwardReversals)
}

// storeAndForward runs pass (one pass over a store-and-forward queue, which
// reports whether some entries remain owed) when woken, and again after
// ReversalRetry doubling up to a minute while entries remain owed or the
// pass failed; an hour apart otherwise (the backstop should a wake-up be
// missed).
func (s *Switch) storeAndForward(what string, wake <-chan struct{}, pass func() (bool, error)) {
	defer s.wg.Done()
	delay := s.cfg.ReversalRetry
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-wake:
		case <-timer.C:
		}
		pending, err := pass()
		if err != nil {
			s.log.Error(what+" forwarding failed", "err", err)
		}
		if pending || err != nil {
			timer.Reset(delay)
			delay = min(2*delay, time.Minute)
		} else {
			delay = s.cfg.ReversalRetry
			timer.Reset(time.Hour)
		}
	}
}

// queryOwed reads the entries a store-and-forward queue owes (query's
// rows, each read by scan).
func queryOwed[T any](ctx context.Context, db *store.DB, query string, scan func(*sql.Rows, *T) error) ([]T, error) {
	rows, err := db.DB.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var owed []T
	for rows.Next() {
		var o T
		if err := scan(rows, &o); err != nil {
			return nil, err
		}
		owed = append(owed, o)
	}
	return owed, rows.Err()
}

// maxReversalBatch bounds the reversals forwarded per pass.
const maxReversalBatch = 256

type owedReversal struct {
	id, origKey, mti, reason string
	attempts                 int
}

// forwardReversals sends each pending reversal once; it reports whether some
// remain pending.
func (s *Switch) forwardReversals() (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A stand-in approval's reversal waits for its advice (advice.go): the
	// issuer is told of the approval before it is asked to release it.
	// Least recently tried first (a failed try sets updated_at): the
	// reversals of an issuer that stays down go behind the others instead
	// of filling every batch.
	owed, err := queryOwed(ctx, s.db, `SELECT id, orig_key, mti, reason, attempts FROM issuer_reversals
		WHERE done = 0 AND orig_key NOT IN (SELECT orig_key FROM issuer_advices WHERE done = 0)
		ORDER BY updated_at, created_at LIMIT `+fmt.Sprint(maxReversalBatch), func(rows *sql.Rows, o *owedReversal) error {
		return rows.Scan(&o.id, &o.origKey, &o.mti, &o.reason, &o.attempts)
	})
	if err != nil {
		return false, err
	}
	pending := false
	published := false
	var uerrs []error
	for _, o := range owed {
		ev, err := s.sendReversal(ctx, o)
		done := err == nil
		msg := ""
		if err != nil {
			pending = true
			msg = err.Error()
			s.log.Warn("issuer reversal not acknowledged yet", "attempt", o.attempts+1, "err", err)
		}
		uerr := s.db.Tx(ctx, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, `UPDATE issuer_reversals SET attempts = attempts + 1, done = $1, last_error = $2,
				updated_at = $3 WHERE id = $4 AND done = 0`, boolInt(done), msg, s.now().UnixMilli(), o.id)
			if err != nil {
				return err
			}
			// The event goes with the row's one change to done (another
			// node may have forwarded it too): once per reversed approval.
			if n, _ := res.RowsAffected(); n == 1 && done && ev != nil {
				published = true
				return insertOutbox(ctx, tx, ev)
			}
			return nil
		})
		if uerr != nil {
			// This row is tried again next pass; the others go on.
			pending = true
			uerrs = append(uerrs, fmt.Errorf("record reversal %s: %w", o.id, uerr))
		}
	}
	if published {
		s.kick(s.outboxCh)
	}
	return pending || len(owed) == maxReversalBatch, errors.Join(uerrs...)
}

// sendReversal builds the issuer's reversal of an original and sends it.
// Once the issuer acknowledged the reversal of a tokenized approval the
// acquirer reversed, it returns the transaction.reversed event to record.
func (s *Switch) sendReversal(ctx context.Context, o owedReversal) (*outboxEvent, error) {
	var r authRecord
	var billMinor int64
	var rate string
	var reversed int
	err := s.db.DB.QueryRowContext(ctx, `SELECT mti, token_ref, token_last4, issuer_id, processing, amount_minor, currency, stan, rrn,
		tx_time, acquirer, terminal, merchant, country, billing_minor, billing_rate, rc, reversed FROM auths WHERE dup_key = $1`, o.origKey).Scan(&r.MTI, &r.TokenRef,
		&r.TokenLast4, &r.IssuerID, &r.Processing, &r.AmountMinor, &r.Currency, &r.STAN, &r.RRN, &r.TxTime, &r.Acquirer, &r.Terminal, &r.Merchant,
		&r.Country, &billMinor, &rate, &r.RC, &reversed)
	if err != nil {
		return nil, fmt.Errorf("original: %w", err)
	}
	answer, err := s.sendReversalOf(ctx, o, &r, billMinor, rate)
	if err != nil {
		return nil, err
	}
	// Only an approval the wallet was told of (tokenized, approved) and that
	// the acquirer reversed (reverse sets reversed): a late issuer answer the
	// switch reverses itself was never shown to the wallet as approved.
	if r.TokenRef == "" || r.RC != RCApproved || reversed == 0 {
		return nil, nil
	}
	return reversalEvent(o.origKey, &r, answer, s.now())
}

// sendReversalOf sends the issuer's reversal of the original r and returns
// its acknowledgement.
func (s *Switch) sendReversalOf(ctx context.Context, o owedReversal, r *authRecord, billMinor int64, rate string) (*iso8583.Message, error) {
	// The original's billing amount and rate, not today's: the issuer
	// releases exactly what it held.
	err := setOriginalBilling(r, billMinor, rate)
	if err != nil {
		return nil, err
	}
	link, ok := s.cfg.Issuers(r.IssuerID)
	if !ok {
		return nil, fmt.Errorf("no link to issuer %s", r.IssuerID)
	}
	pan := ""
	if r.TokenRef != "" {
		if pan, _, err = s.cfg.Tokens.Detokenize(ctx, r.TokenRef, s.cfg.NodeID, "reversal"); err != nil {
			return nil, err
		}
	}
	m := &iso8583.Message{}
	m.SetMTI(o.mti)
	if pan != "" {
		m.SetString(2, pan)
	}
	if err := s.setOriginal(m, r); err != nil {
		return nil, err
	}
	m.SetString(39, map[bool]string{true: "68", false: "17"}[o.mti == iso8583.MTIReversalAdvice])
	answer, err := link.Send(ctx, m)
	if err != nil {
		return nil, err
	}
	switch rc := answer.String(39); rc {
	case RCApproved, RCOriginalNotFound:
		// 25: the issuer never approved it (the late answer was a decline, or
		// the request never arrived): nothing to release.
		return answer, nil
	default:
		return nil, fmt.Errorf("issuer answered %s", rc)
	}
}

// setOriginalBilling gives r the billing amount and rate stored with it
// (none when rate is ""), for a message that names r as its original.
func setOriginalBilling(r *authRecord, billMinor int64, rate string) error {
	if rate == "" {
		return nil
	}
	rt, err := ParseDE10(rate)
	if err != nil {
		return fmt.Errorf("original's rate: %w", err)
	}
	r.Bill = &billing{Country: r.Country, AmountMinor: billMinor, Rate: rt}
	return nil
}

// setOriginal sets on m what a message about the original r (the issuer's
// reversal, a stand-in's advice) repeats of it: processing code, amount,
// STAN, country, acquirer, RRN, terminal, currency, billing and DE90
// naming it, with DE7 the time m is sent.
func (s *Switch) setOriginal(m *iso8583.Message, r *authRecord) error {
	amount, err := iso8583.FormatAmount(r.AmountMinor)
	if err != nil {
		return err
	}
	de90, err := iso8583.OriginalData{MTI: r.MTI, STAN: r.STAN, TransmissionTime: r.TxTime, AcquirerID: r.Acquirer}.Format()
	if err != nil {
		return err
	}
	m.SetString(3, r.Processing)
	m.SetString(4, amount)
	m.SetString(7, s.now().UTC().Format("0102150405"))
	m.SetString(11, r.STAN)
	if r.Country != "" {
		m.SetString(19, r.Country)
	}
	m.SetString(32, r.Acquirer)
	m.SetString(37, r.RRN)
	m.SetString(41, r.Terminal)
	m.SetString(49, r.Currency)
	if r.Bill.converted() {
		if err := setBilling(m, r.Bill); err != nil {
			return err
		}
	}
	m.SetString(90, de90)
	return nil
}

// outboxLoop publishes recorded events and deletes them once the bus has
// them (at-least-once; subscribers are idempotent by transaction id).
func (s *Switch) outboxLoop() {
	defer s.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-s.outboxCh:
		case <-tick.C:
		}
		if s.cfg.Bus == nil {
			continue
		}
		for {
			n, err := s.publishOutbox()
			if err != nil {
				s.log.Warn("publishing events failed; will retry", "err", err)
				break
			}
			if n < maxOutboxBatch {
				break
			}
		}
	}
}

const maxOutboxBatch = 512

// outboxOldest takes the oldest events through the index on created_at
// (migration 0005): after the bus was down for a while the outbox holds
// every event since, and without the index each pass read and sorted all
// of them to publish 512.
var outboxOldest = `SELECT id, subject, payload FROM outbox ORDER BY created_at LIMIT ` + fmt.Sprint(maxOutboxBatch)

type rawJSON []byte

func (r rawJSON) MarshalJSON() ([]byte, error) { return r, nil }

func (s *Switch) publishOutbox() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := s.db.DB.QueryContext(ctx, outboxOldest)
	if err != nil {
		return 0, err
	}
	var evs []outboxEvent
	for rows.Next() {
		var e outboxEvent
		if err := rows.Scan(&e.ID, &e.Subject, &e.Payload); err != nil {
			rows.Close()
			return 0, err
		}
		evs = append(evs, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	out := make([]events.Outgoing, len(evs))
	for i, e := range evs {
		out[i] = events.Outgoing{ID: e.ID, Subject: e.Subject, Data: rawJSON(e.Payload)}
	}
	ok, perr := s.cfg.Bus.PublishBatch(ctx, out)
	done := make([]string, 0, len(evs))
	for i, e := range evs {
		if i < len(ok) && ok[i] {
			done = append(done, e.ID)
		}
	}
	// Deleting through the writer shares the authorizations' commits: a
	// separate transaction would wait for SQLite's write lock behind them.
	if len(done) > 0 {
		err = s.w.Write(ctx, func(tx *sql.Tx) error { return deleteOutbox(ctx, tx, done) })
	}
	if perr != nil {
		return len(done), perr
	}
	return len(evs), err
}

// deleteOutbox deletes published events, outboxDeleteChunk ids per
// statement (one statement text, cached).
func deleteOutbox(ctx context.Context, tx *sql.Tx, ids []string) error {
	for len(ids) > 0 {
		n := min(len(ids), outboxDeleteChunk)
		q := outboxDeleteOne
		if n == outboxDeleteChunk {
			q = outboxDeleteMany
		} else {
			n = 1
		}
		args := make([]any, n)
		for i := range n {
			args[i] = ids[i]
		}
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("network: delete published events: %w", err)
		}
		ids = ids[n:]
	}
	return nil
}

const (
	outboxDeleteChunk = 32
	outboxDeleteOne   = `DELETE FROM outbox WHERE id = $1`
)

// outboxDeleteMany deletes outboxDeleteChunk ids ($1…$32).
var outboxDeleteMany = func() string {
	var b strings.Builder
	b.WriteString(`DELETE FROM outbox WHERE id IN (`)
	for i := range outboxDeleteChunk {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d", i+1)
	}
	b.WriteString(")")
	return b.String()
}()
