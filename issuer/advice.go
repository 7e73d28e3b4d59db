package issuer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/store"
)

// Stand-in advices (0120/0220, repeated as 0121/0221). When the issuer did
// not answer in time the network approved in its stead and then tells it so
// with an advice. An advice is not a request: the network's approval
// stands, so the issuer posts it — records the authorization with the
// network's approval code (DE38, "S" and five digits) and places the hold —
// without the checks of a request: over the balance, over a limit or the
// velocity, it is held all the same (the card's available balance may go
// below zero; CheckLedger allows that only as far as open advised approvals
// explain it). The answer is 0130/0230, DE39 00 once the posting is
// durable. An advice with DE124 (the stand-in approval of a payment the
// network applied a bank campaign to: the network sends the original's
// DE124 again) is posted as a request with it is: the discounted hold, the
// discount booked to marketing and the points (adviceAmount,
// writePromotions), once per identity like the rest of the posting.
//
// Advices are idempotent by the original's identity (DE90's acquirer, STAN
// and DE7 with DE41, the identity of duplicates and reversals), so one
// stand-in approval holds once whatever arrived before:
//   - nothing: the approval is posted (a late original then finds it and
//     is answered as its duplicate, holding nothing);
//   - the advice itself (a repeat after a lost 0130), or the original,
//     processed late and approved: acknowledged, nothing posted again (the
//     issuer's record keeps its own approval code);
//   - the original, processed late and declined: the network's decision
//     stands. The declined record becomes the approval (response code 00,
//     the network's code, MTI of the advice) and the hold is placed in one
//     write, so the issuer's answer (00) and its ledger agree: one approval,
//     one hold. A decline is not kept beside an approval for the same
//     identity because holds = approvals − reversals counts records;
//   - a reversal of the original (it overtook the advice): the payment was
//     approved and reversed, so nothing may be held. An early reversal
//     (original unknown) makes the advice a declined record as for an
//     original arriving after its reversal (authorizeReversedEarly); a
//     reversal of a declined original is recorded (Reverse), and the
//     conversion above does not happen when one is stored. Either way the
//     advice is acknowledged (00): there is nothing more to post.
//   - another transaction under the same identity (other card or amount):
//     94, and the network stops advising.

// adviceMTIs maps each advice MTI to the advice it repeats or is, and the
// MTI of its answer.
var adviceMTIs = map[string][2]string{
	iso8583.MTIAuthAdvice:            {iso8583.MTIAuthAdvice, iso8583.MTIAuthAdviceResponse},
	iso8583.MTIAuthAdviceRepeat:      {iso8583.MTIAuthAdvice, iso8583.MTIAuthAdviceResponse},
	iso8583.MTIFinancialAdvice:       {iso8583.MTIFinancialAdvice, iso8583.MTIFinancialAdviceResponse},
	iso8583.MTIFinancialAdviceRepeat: {iso8583.MTIFinancialAdvice, iso8583.MTIFinancialAdviceResponse},
}

func (h *Host) isoAdvise(ctx context.Context, m *iso8583.Message) *iso8583.Message {
	mtis := adviceMTIs[m.MTI()]
	resp := m.Response(append(authEchoFields, iso8583.FieldOriginalData)...)
	resp.SetMTI(mtis[1])
	req, ok := authRequestOf(m)
	req.MTI = mtis[0]
	if ok && m.Has(iso8583.FieldOriginalData) {
		od, err := iso8583.ParseOriginalData(m.String(iso8583.FieldOriginalData))
		if err != nil {
			ok = false
		} else {
			// The original's identity, not the advice's own DE7.
			req.STAN, req.Transmission, req.Acquirer = od.STAN, od.TransmissionTime, od.AcquirerID
		}
	}
	var res AuthResult
	switch {
	case !ok:
		res.Code = RCFormatError
	case m.String(iso8583.FieldResponseCode) != string(RCApproved):
		// The advice of a decline: nothing to hold, nothing to record.
		res.Code = RCApproved
	default:
		res = h.Advise(ctx, req, m.String(iso8583.FieldAuthCode))
	}
	if res.AuthCode != "" {
		resp.SetString(iso8583.FieldAuthCode, res.AuthCode)
	}
	resp.SetString(iso8583.FieldResponseCode, string(res.Code))
	return resp
}

// Advise posts the network's stand-in approval of req (its identity is the
// original's) with the network's approval code; see the comment above for
// each case. RCApproved means the issuer's ledger now agrees with the
// network: the approval holds once, or was reversed and holds nothing.
func (h *Host) Advise(ctx context.Context, req AuthRequest, authCode string) AuthResult {
	ident := identOf(req.Acquirer, req.Terminal, req.STAN, req.Transmission)
	alt := altOf(req.Terminal, req.STAN, req.RRN, req.Transmission)
	acct := h.cardByPAN(ctx, req.PAN)
	fp := fingerprintOf(req, acct)
	for attempt := 0; ; attempt++ {
		if err := h.indexStored(ctx, ident); err != nil {
			h.log.Error("advice: find original", "err", err)
			return AuthResult{Code: RCSystemError}
		}
		rec, prev := h.claim(ident, alt, fp)
		if prev == nil {
			return h.adviseNew(ctx, req, rec, acct, authCode)
		}
		<-prev.done
		switch {
		case prev.failed && attempt < DefaultDuplicateRetries:
			continue
		case prev.failed:
			return AuthResult{Code: RCSystemError}
		case prev.early:
			// Reversed before the issuer heard of it: recorded as declined,
			// no hold; the advice is acknowledged.
			res := h.authorizeReversedEarly(ctx, req, prev, acct, ident, alt, fp)
			if res.Code == RCDoNotHonor {
				res.Code = RCApproved
			}
			return res
		case prev.fingerprint != fp:
			return AuthResult{Code: RCDuplicate}
		case prev.approved:
			return AuthResult{Code: RCApproved, AuthCode: prev.authCode, AuthID: prev.id, Duplicate: true}
		default:
			res, retry := h.adviseDeclined(ctx, req, prev, authCode)
			if retry && attempt < DefaultDuplicateRetries {
				continue
			}
			return res
		}
	}
}

// indexStored puts the stored authorization of ident back in the duplicate
// index when it is not there (evicted by newer ones, or older than what a
// restart loads), so that Advise decides on it as on a recent one. Without
// it adviseNew's write would find the identity taken and answer the stored
// original's code: a late decline's 51, which the network reads as a
// refusal, so the stand-in approval would never be held.
func (h *Host) indexStored(ctx context.Context, ident string) error {
	h.dedup.mu.Lock()
	cur := h.dedup.byIdent[ident]
	h.dedup.mu.Unlock()
	if cur != nil {
		return nil
	}
	stored, err := h.findStored(ctx, ident)
	if err != nil || stored == nil {
		return err
	}
	h.dedup.mu.Lock()
	if h.dedup.byIdent[ident] == nil {
		h.dedup.put(stored)
	}
	h.dedup.mu.Unlock()
	return nil
}

// adviceAmount is what an advised approval holds: the billing amount (or
// DE4), the bank's cross-border fee, less a promotion's discount.
func adviceAmount(req *AuthRequest, acct *account) (amount, fee int64, code ResponseCode) {
	if len(req.STAN) == 0 || len(req.Terminal) == 0 || len(req.Transmission) == 0 || len(req.ProcessingCode) != 6 {
		return 0, 0, RCFormatError
	}
	if acct == nil {
		return 0, 0, RCInvalidCard
	}
	amount = req.AmountMinor
	if req.BillingCurrency != "" {
		amount = req.BillingAmountMinor
	}
	if amount <= 0 {
		return 0, 0, RCInvalidAmount
	}
	fee = crossBorderFee(acct.bank, amount, req.Country)
	amount, code = discounted(req, amount+fee)
	return amount, fee, code
}

// post takes amount from available into held whatever the balance and
// limits say (an advised approval), counting it towards the day and the
// hour like any approval. unreserve undoes it.
func (a *account) post(amount, day, nowMS int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.day != day {
		a.day, a.daySpent = day, 0
	}
	a.takeLocked(amount, nowMS)
}

// adviseNew posts an advice whose original the issuer never saw, through
// the authorization writer (its row, hold, fee and points in one write).
func (h *Host) adviseNew(ctx context.Context, req AuthRequest, rec *authRecord, acct *account, authCode string) AuthResult {
	now := h.now()
	rec.id = h.ids.next(authIDPrefix, now)
	rec.acct = acct
	rec.day = dayOf(now)
	if acct != nil {
		rec.cardID, rec.issuerID = acct.card.ID, acct.bank.ID
	} else if is, ok := h.ref.IssuerByPAN(req.PAN); ok {
		rec.issuerID = is.ID
	}
	amount, fee, code := adviceAmount(&req, acct)
	rec.amount, rec.code = amount, code
	if code == RCApproved {
		rec.fee = fee
		rec.approved = true
		rec.authCode = authCode
		if rec.authCode == "" {
			rec.authCode = newAuthCode()
		}
		acct.post(amount, rec.day, now.UnixMilli())
	}
	// A refused advice is recorded too, so a repeat gets the same answer.
	res, ok := h.commitAuth(ctx, &req, rec, acct, amount, now, "advice")
	if ok && rec.approved {
		acct.earnPoints(&req, rec.amount)
	}
	return res
}

// errReversedDecline: the declined original an advice would turn into an
// approval was reversed meanwhile.
var errReversedDecline = errors.New("issuer: declined original already reversed")

// adviseDeclined turns the declined record prev into the network's
// approval and places its hold in one write. A new record replaces prev in
// the index while the write is in flight (records do not change once
// done), so a reversal or duplicate waits for it. retry: prev was no longer
// the record of its identity; look again.
func (h *Host) adviseDeclined(ctx context.Context, req AuthRequest, prev *authRecord, authCode string) (AuthResult, bool) {
	acct := prev.acct
	amount, fee, code := adviceAmount(&req, acct)
	if code != RCApproved {
		return AuthResult{Code: code, AuthID: prev.id}, false
	}
	now := h.now()
	rec := &authRecord{id: prev.id, issuerID: prev.issuerID, cardID: prev.cardID, ident: prev.ident, alt: prev.alt,
		fingerprint: prev.fingerprint, code: RCApproved, authCode: authCode, approved: true, amount: amount, fee: fee,
		day: dayOf(now), acct: acct, done: make(chan struct{})}
	if rec.authCode == "" {
		rec.authCode = newAuthCode()
	}
	h.dedup.mu.Lock()
	if h.dedup.byIdent[prev.ident] != prev {
		h.dedup.mu.Unlock()
		return AuthResult{}, true
	}
	h.dedup.remove(prev)
	h.dedup.put(rec)
	h.dedup.mu.Unlock()
	restore := func() {
		rec.failed = true
		h.dedup.mu.Lock()
		h.dedup.remove(rec)
		if h.dedup.byIdent[prev.ident] == nil {
			h.dedup.put(prev)
		}
		h.dedup.mu.Unlock()
		close(rec.done)
	}

	acct.post(amount, rec.day, now.UnixMilli())
	job := &authJob{req: &req, rec: rec, ms: now.UnixMilli()}
	err := h.w.Write(ctx, func(tx *sql.Tx) error {
		ctx := context.Background() // see writeAuthRows
		// Not when a reversal of the declined original is stored (Reverse
		// records one): that payment was approved and reversed.
		res, err := tx.ExecContext(ctx, `UPDATE authorizations SET approved = 1, response_code = $2, auth_code = $3,
			amount_minor = $4, day = $5, mti = $6 WHERE id = $1 AND approved = 0
			AND NOT EXISTS (SELECT 1 FROM reversals WHERE auth_id = $1)`,
			rec.id, string(RCApproved), rec.authCode, amount, rec.day, req.MTI)
		if err != nil {
			return fmt.Errorf("advice: approve declined original: %w", err)
		}
		if n, err := res.RowsAffected(); err == nil && n == 0 {
			return errReversedDecline
		}
		return h.sql.bookApprovals(ctx, tx, []*authJob{job})
	})
	if err != nil {
		acct.unreserve(amount, rec.day, now.UnixMilli())
		restore()
		switch {
		case errors.Is(err, errReversedDecline):
			return AuthResult{Code: RCApproved, AuthID: prev.id}, false
		case errors.Is(err, store.ErrWriterClosed):
			return AuthResult{Code: RCIssuerUnavailable}, false
		}
		h.log.Error("advice not stored", "issuer", rec.issuerID, "err", err)
		return AuthResult{Code: RCSystemError}, false
	}
	close(rec.done)
	acct.earnPoints(&req, amount)
	return AuthResult{Code: RCApproved, AuthCode: rec.authCode, AuthID: rec.id}, false
}

// reverseDeclined records the reversal of a declined original (nothing to
// release): an advice of the network's stand-in approval arriving later
// must find that the payment was reversed. retry: an advice turned the
// original into an approval meanwhile, so the reversal must release it.
func (h *Host) reverseDeclined(ctx context.Context, req ReversalRequest, orig *authRecord) (ReversalResult, bool) {
	err := h.w.Write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, sqlInsertRev, newID("rev_"), orig.issuerID, req.MTI, orig.ident, orig.alt, orig.id, 0, h.now().UnixMilli())
		return err
	})
	if err != nil {
		if errors.Is(err, store.ErrWriterClosed) {
			return ReversalResult{Code: RCIssuerUnavailable}, false
		}
		h.log.Error("reversal of a declined original not stored", "issuer", orig.issuerID, "err", err)
		return ReversalResult{Code: RCSystemError}, false
	}
	h.dedup.mu.Lock()
	cur := h.dedup.byIdent[orig.ident]
	h.dedup.mu.Unlock()
	if cur != nil && cur != orig {
		return ReversalResult{}, true
	}
	return ReversalResult{Code: RCApproved, AuthID: orig.id}, false
}
