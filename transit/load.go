package transit

import (
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/emv"
	"github.com/mipay-oss/mipay/hsm"
)

// The load host. A top-up is exactly once:
//
//  1. StartLoad: the load row (PAYING) is durable, then the in-app payment;
//     approved → PAID, declined → DECLINED, no answer → reversed.
//  2. AuthorizeLoad with the card's INITIALIZE FOR LOAD answer: the first
//     call binds the load to the card's online serial; MAC1 is checked in
//     the HSM and MAC2 answered (MAC2_SENT). A retry after a cut comes with
//     a fresh INITIALIZE FOR LOAD: the same serial means the card did not
//     apply it (a new MAC2 for the new session; the old one is dead, since
//     the session key hangs on the card's random); serial+1 means it did.
//  3. ConfirmLoad with the card's TAC (from CREDIT FOR LOAD, or GET
//     TRANSACTION PROOF after a cut): verified in the HSM → LOADED, and the
//     card's shadow balance grows.
//  4. CancelLoad: refunds (0400) a load the card provably did not apply:
//     PAID (no MAC2 ever left), or MAC2_SENT with a fresh INITIALIZE FOR
//     LOAD still at the bound serial (so no MAC2 can be used any more).
//     The sweeper refunds PAYING/PAID loads the phone abandoned.
//
// So the money charged equals the money loaded for every cut: a load is
// either LOADED (paid, applied once: the serial binds it) or REFUNDED.

// LoadRequest asks for a top-up of a card.
type LoadRequest struct {
	CardNumber  string       `json:"cardNumber"`
	AmountMinor int64        `json:"amountMinor"`
	RequestID   string       `json:"requestId"` // the app's idempotency key
	Payment     InAppPayment `json:"payment"`
}

// AuthorizeResult is the load host's answer to INITIALIZE FOR LOAD.
type AuthorizeResult struct {
	// Applied: the card already applied this load (its online serial moved
	// on): send the TAC from GET TRANSACTION PROOF to ConfirmLoad.
	Applied bool   `json:"applied"`
	MAC2    string `json:"mac2,omitempty"` // 4 bytes hex, for CREDIT FOR LOAD
	Date    string `json:"date,omitempty"` // YYYYMMDD
	Time    string `json:"time,omitempty"` // hhmmss
	Load    *Load  `json:"load"`
}

const loadColumns = `id, request_id, city, card_number, kind, amount_minor, state, payment_id, online_serial, balance_before,
	terminal, tx_date, tx_time, card_random, created, updated`

func scanLoad(r scanner) (*Load, error) {
	var l Load
	var c, u int64
	if err := r.Scan(&l.ID, &l.RequestID, &l.City, &l.CardNumber, &l.Kind, &l.AmountMinor, &l.State, &l.PaymentID, &l.OnlineSerial,
		&l.BalanceBefore, &l.Terminal, &l.Date, &l.Time, &l.random, &c, &u); err != nil {
		return nil, err
	}
	l.Created, l.Updated = time.UnixMilli(c), time.UnixMilli(u)
	return &l, nil
}

func insertLoad(ctx context.Context, tx *sql.Tx, l *Load, now int64) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO transit_loads (id, request_id, city, card_number, kind, amount_minor, state, payment_id, terminal, created, updated)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$10)`, l.ID, l.RequestID, l.City, l.CardNumber, l.Kind, l.AmountMinor, l.State, l.PaymentID, l.Terminal, now)
	return err
}

// GetLoad returns a load.
func (s *Service) GetLoad(ctx context.Context, id string) (*Load, error) {
	l, err := scanLoad(s.db.DB.QueryRowContext(ctx, `SELECT `+loadColumns+` FROM transit_loads WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, mipay.Errorf(mipay.ENOTFOUND, "no load %s", id)
	}
	return l, err
}

func (s *Service) openLoad(ctx context.Context, number string) (*Load, error) {
	l, err := scanLoad(s.db.DB.QueryRowContext(ctx, `SELECT `+loadColumns+` FROM transit_loads WHERE card_number = $1 AND state IN ($2,$3,$4)`,
		number, LoadPaying, LoadPaid, LoadMAC2Sent))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return l, err
}

// ownedLoad returns a load of one of the caller's cards.
func (s *Service) ownedLoad(ctx context.Context, bearer, id string) (*Load, *Card, error) {
	l, err := s.GetLoad(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	c, _, err := s.ownedCard(ctx, bearer, l.CardNumber)
	if err != nil {
		return nil, nil, mipay.Errorf(mipay.ENOTFOUND, "no load %s", id)
	}
	return l, c, nil
}

// PendingLoads lists the open loads of the caller's card (the app resumes
// them before anything else).
func (s *Service) PendingLoad(ctx context.Context, bearer, number string) (*Load, error) {
	if _, _, err := s.ownedCard(ctx, bearer, number); err != nil {
		return nil, err
	}
	return s.openLoad(ctx, number)
}

// StartLoad pays for a top-up (in-app payment) and opens the load.
func (s *Service) StartLoad(ctx context.Context, bearer string, req LoadRequest) (*Load, error) {
	c, _, err := s.ownedCard(ctx, bearer, req.CardNumber)
	if err != nil {
		return nil, err
	}
	city, err := s.City(c.City)
	if err != nil {
		return nil, err
	}
	if c.Status != CardActive {
		return nil, mipay.Errorf(mipay.ECONFLICT, "card %s is %s and cannot be topped up", c.CardNumber, c.Status)
	}
	if req.AmountMinor <= 0 || req.AmountMinor > MaxLoadMinor || req.AmountMinor > city.MaxBalanceMinor {
		return nil, mipay.Errorf(mipay.EINVALID, "a top-up is 0.01–%d.%02d CNY", min(MaxLoadMinor, city.MaxBalanceMinor)/100, min(MaxLoadMinor, city.MaxBalanceMinor)%100)
	}
	if req.RequestID == "" || len(req.RequestID) > 64 {
		return nil, mipay.Errorf(mipay.EINVALID, "requestId must be 1–64 characters")
	}
	if l, err := scanLoad(s.db.DB.QueryRowContext(ctx, `SELECT `+loadColumns+` FROM transit_loads WHERE card_number = $1 AND request_id = $2`,
		c.CardNumber, req.RequestID)); err == nil {
		return l, nil // the same request again
	} else if !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	if err := checkPayment(req.Payment, req.AmountMinor); err != nil {
		return nil, err
	}
	now := s.nowMS()
	l := &Load{ID: newID("ld_"), RequestID: req.RequestID, City: c.City, CardNumber: c.CardNumber, Kind: LoadTopUp,
		AmountMinor: req.AmountMinor, State: LoadPaying, PaymentID: newID("pay_"), OnlineSerial: -1, BalanceBefore: -1,
		Terminal: fmt.Sprintf("%X", s.LoadTerminal(c.City)), Created: time.UnixMilli(now), Updated: time.UnixMilli(now)}
	if err := s.db.Tx(ctx, func(tx *sql.Tx) error { return insertLoad(ctx, tx, l, now) }); err != nil {
		if isConflict(err) {
			open, _ := s.openLoad(ctx, c.CardNumber)
			if open != nil {
				return nil, mipay.Errorf(mipay.ECONFLICT, "top-up %s of this card is not finished yet", open.ID)
			}
		}
		return nil, err
	}
	if _, err := s.pay(ctx, l.PaymentID, c.City, PurposeLoad, req.AmountMinor, req.Payment); err != nil {
		if serr := s.setLoadState(context.WithoutCancel(ctx), l.ID, LoadPaying, LoadDeclined); serr != nil {
			s.log.Error("recording a declined load", "load", l.ID, "err", serr)
		}
		return nil, err
	}
	if err := s.setLoadState(ctx, l.ID, LoadPaying, LoadPaid); err != nil {
		return nil, err // the sweeper refunds the PAYING load
	}
	l.State = LoadPaid
	return l, nil
}

func (s *Service) setLoadState(ctx context.Context, id, from, to string) error {
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, `UPDATE transit_loads SET state = $3, updated = $4 WHERE id = $1 AND state = $2`, id, from, to, s.nowMS())
		if err != nil {
			return err
		}
		if n, _ := r.RowsAffected(); n != 1 {
			return mipay.Errorf(mipay.ECONFLICT, "load %s is no longer %s", id, from)
		}
		return nil
	})
}

// initForLoad is a parsed INITIALIZE FOR LOAD answer.
type initForLoad struct {
	balance uint32
	serial  uint16
	random  [4]byte
	mac1    [4]byte
}

func parseInitForLoad(b []byte) (initForLoad, error) {
	if len(b) != 16 {
		return initForLoad{}, mipay.Errorf(mipay.EINVALID, "INITIALIZE FOR LOAD answer must be 16 bytes")
	}
	return initForLoad{balance: binary.BigEndian.Uint32(b), serial: binary.BigEndian.Uint16(b[4:]),
		random: [4]byte(b[8:12]), mac1: [4]byte(b[12:16])}, nil
}

func (s *Service) loadTx(l *Load, date, tm string) (emv.EPurseTx, error) {
	tx := emv.EPurseTx{Amount: uint32(l.AmountMinor), Type: emv.EPurseTypeLoad}
	term, err := hex.DecodeString(l.Terminal)
	if err != nil || len(term) != 6 {
		return tx, fmt.Errorf("transit: load %s has a bad terminal", l.ID)
	}
	copy(tx.Terminal[:], term)
	if date != "" {
		d, err1 := hex.DecodeString(date)
		t, err2 := hex.DecodeString(tm)
		if err1 != nil || err2 != nil || len(d) != 4 || len(t) != 3 {
			return tx, fmt.Errorf("transit: load %s has a bad date", l.ID)
		}
		tx.Date, tx.Time = [4]byte(d), [3]byte(t)
	}
	return tx, nil
}

// checkMAC1 verifies the card's MAC1 (proof that the INITIALIZE answer is
// the genuine card's, now) and, when valid, returns MAC2 for the tx.
func (s *Service) checkMAC1(ctx context.Context, l *Load, in initForLoad, tx emv.EPurseTx) (hsm.EPurseLoadResult, error) {
	div, err := diversifier(l.CardNumber)
	if err != nil {
		return hsm.EPurseLoadResult{}, err
	}
	var serial [2]byte
	binary.BigEndian.PutUint16(serial[:], in.serial)
	r, err := s.hsm.EPurseLoad(ctx, CityKeys(l.City).DLK, hsm.EPurseLoadInput{Diversifier: div, Random: in.random,
		OnlineSerial: serial, Balance: in.balance, Tx: tx, MAC1: in.mac1})
	if err != nil {
		return r, err
	}
	if !r.Valid {
		return r, mipay.Errorf(mipay.EFORBIDDEN, "the card's MAC1 does not verify")
	}
	return r, nil
}

// AuthorizeLoad answers the card's INITIALIZE FOR LOAD with MAC2 (or says
// the card already applied the load).
func (s *Service) AuthorizeLoad(ctx context.Context, bearer, id string, init []byte) (*AuthorizeResult, error) {
	l, _, err := s.ownedLoad(ctx, bearer, id)
	if err != nil {
		return nil, err
	}
	in, err := parseInitForLoad(init)
	if err != nil {
		return nil, err
	}
	switch l.State {
	case LoadPaid, LoadMAC2Sent:
	case LoadLoaded:
		return &AuthorizeResult{Applied: true, Load: l}, nil
	default:
		return nil, mipay.Errorf(mipay.ECONFLICT, "load %s is %s", l.ID, l.State)
	}
	now := s.now().UTC()
	date, tm := now.Format("20060102"), now.Format("150405")
	random := hex.EncodeToString(in.random[:])
	if l.State == LoadMAC2Sent && int64(in.serial) == l.OnlineSerial && random == l.random {
		// The same card session asks again (its answer was lost): the same
		// MAC2, so whichever copy the card uses, the TAC matches.
		date, tm = l.Date, l.Time
	}
	tx, err := s.loadTx(l, date, tm)
	if err != nil {
		return nil, err
	}
	bound := l.OnlineSerial
	switch {
	case bound >= 0 && int64(in.serial) == bound+1 && l.State == LoadMAC2Sent:
		// The card applied it (and says so with a valid MAC1 over its state).
		if _, err := s.checkMAC1(ctx, l, in, tx); err != nil {
			return nil, err
		}
		return &AuthorizeResult{Applied: true, Load: l}, nil
	case bound >= 0 && int64(in.serial) != bound:
		return nil, mipay.Errorf(mipay.ECONFLICT, "the card's online serial %d does not match load %s (serial %d)", in.serial, l.ID, bound)
	}
	if int64(in.balance)+l.AmountMinor > s.cities[l.City].MaxBalanceMinor {
		return nil, mipay.Errorf(mipay.ELIMIT, "the card would hold more than the maximum balance: cancel this top-up")
	}
	r, err := s.checkMAC1(ctx, l, in, tx)
	if err != nil {
		return nil, err
	}
	err = s.db.Tx(ctx, func(dtx *sql.Tx) error {
		res, err := dtx.ExecContext(ctx, `UPDATE transit_loads SET state = $2, online_serial = $3, balance_before = $4, tx_date = $5, tx_time = $6, updated = $7,
			card_random = $10 WHERE id = $1 AND state IN ($8, $9) AND (online_serial = -1 OR online_serial = $3)`,
			l.ID, LoadMAC2Sent, int64(in.serial), int64(in.balance), date, tm, s.nowMS(), LoadPaid, LoadMAC2Sent, random)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return mipay.Errorf(mipay.ECONFLICT, "load %s changed meanwhile: try again", l.ID)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	l.State, l.OnlineSerial, l.BalanceBefore, l.Date, l.Time = LoadMAC2Sent, int64(in.serial), int64(in.balance), date, tm
	return &AuthorizeResult{MAC2: hex.EncodeToString(r.MAC2[:]), Date: date, Time: tm, Load: l}, nil
}

// ConfirmLoad takes the card's load TAC; a valid one settles the load.
func (s *Service) ConfirmLoad(ctx context.Context, bearer, id string, tac []byte) (*Load, error) {
	l, _, err := s.ownedLoad(ctx, bearer, id)
	if err != nil {
		return nil, err
	}
	if len(tac) != 4 {
		return nil, mipay.Errorf(mipay.EINVALID, "tac must be 4 bytes")
	}
	if l.State == LoadLoaded {
		return l, nil
	}
	if l.State != LoadMAC2Sent {
		return nil, mipay.Errorf(mipay.ECONFLICT, "load %s is %s", l.ID, l.State)
	}
	tx, err := s.loadTx(l, l.Date, l.Time)
	if err != nil {
		return nil, err
	}
	div, err := diversifier(l.CardNumber)
	if err != nil {
		return nil, err
	}
	var serial [2]byte
	binary.BigEndian.PutUint16(serial[:], uint16(l.OnlineSerial))
	ok, err := s.hsm.EPurseVerifyLoadTAC(ctx, CityKeys(l.City).DTK, div, uint32(l.BalanceBefore+l.AmountMinor), serial, tx, [4]byte(tac))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, mipay.Errorf(mipay.EFORBIDDEN, "the load TAC does not verify")
	}
	err = s.db.Tx(ctx, func(dtx *sql.Tx) error {
		res, err := dtx.ExecContext(ctx, `UPDATE transit_loads SET state = $2, tac = $3, updated = $4 WHERE id = $1 AND state = $5`,
			l.ID, LoadLoaded, hex.EncodeToString(tac), s.nowMS(), LoadMAC2Sent)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return nil // confirmed concurrently
		}
		_, err = dtx.ExecContext(ctx, `UPDATE transit_cards SET loaded_minor = loaded_minor + $2, updated = $3 WHERE card_number = $1`,
			l.CardNumber, l.AmountMinor, s.nowMS())
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.GetLoad(ctx, id)
}

// CancelLoad refunds a load the card provably did not apply. For a load
// whose MAC2 was sent, init must be a fresh INITIALIZE FOR LOAD answer
// still at the bound online serial.
func (s *Service) CancelLoad(ctx context.Context, bearer, id string, init []byte) (*Load, error) {
	l, _, err := s.ownedLoad(ctx, bearer, id)
	if err != nil {
		return nil, err
	}
	switch l.State {
	case LoadRefunded:
		return l, nil
	case LoadPaid:
	case LoadMAC2Sent:
		in, err := parseInitForLoad(init)
		if err != nil {
			return nil, mipay.Errorf(mipay.ECONFLICT, "MAC2 was sent for this top-up: cancelling needs the card's INITIALIZE FOR LOAD answer")
		}
		if int64(in.serial) != l.OnlineSerial {
			return nil, mipay.Errorf(mipay.ECONFLICT, "the card applied this top-up (its serial moved): confirm it instead")
		}
		tx, err := s.loadTx(l, "", "")
		if err != nil {
			return nil, err
		}
		if _, err := s.checkMAC1(ctx, l, in, tx); err != nil {
			return nil, err
		}
	default:
		return nil, mipay.Errorf(mipay.ECONFLICT, "load %s is %s", l.ID, l.State)
	}
	if l.Kind == LoadTransfer {
		return nil, mipay.Errorf(mipay.ECONFLICT, "a moved balance cannot be cancelled; load it again")
	}
	if err := s.refundLoad(ctx, l); err != nil {
		return nil, err
	}
	return s.GetLoad(ctx, id)
}

// refundLoad marks the load REFUNDED (first, so no MAC2 can be answered
// for it any more) and reverses its payment.
func (s *Service) refundLoad(ctx context.Context, l *Load) error {
	if l.Kind == LoadTransfer {
		return nil
	}
	if err := s.setLoadState(ctx, l.ID, l.State, LoadRefunded); err != nil {
		return err
	}
	if l.PaymentID != "" {
		var st string
		err := s.db.DB.QueryRowContext(ctx, `SELECT state FROM transit_payments WHERE id = $1`, l.PaymentID).Scan(&st)
		if err == nil && (st == PayApproved || st == PayPending) {
			s.refund(context.WithoutCancel(ctx), l.PaymentID)
		}
	}
	return nil
}

// Sweep refunds abandoned loads (PAYING or PAID for longer than the paid
// load timeout) and retries reversals the network did not acknowledge.
// The party runs it periodically.
func (s *Service) Sweep(ctx context.Context) error {
	cut := s.now().Add(-s.paidTO).UnixMilli()
	rows, err := s.db.DB.QueryContext(ctx, `SELECT `+loadColumns+` FROM transit_loads WHERE state IN ($1, $2) AND kind = $3 AND updated < $4 LIMIT 1000`,
		LoadPaying, LoadPaid, LoadTopUp, cut)
	if err != nil {
		return err
	}
	var stale []*Load
	for rows.Next() {
		l, err := scanLoad(rows)
		if err != nil {
			rows.Close()
			return err
		}
		stale = append(stale, l)
	}
	rows.Close()
	for _, l := range stale {
		if err := s.refundLoad(ctx, l); err != nil {
			s.log.Warn("refunding an abandoned load", "load", l.ID, "err", err)
		}
	}
	prows, err := s.db.DB.QueryContext(ctx, `SELECT id FROM transit_payments WHERE state = $1 LIMIT 1000`, PayReversalOwed)
	if err != nil {
		return err
	}
	var owed []string
	for prows.Next() {
		var id string
		if err := prows.Scan(&id); err != nil {
			prows.Close()
			return err
		}
		owed = append(owed, id)
	}
	prows.Close()
	for _, id := range owed {
		s.refund(ctx, id)
	}
	return nil
}

func isConflict(err error) bool {
	var me *mipay.Error
	if errors.As(err, &me) {
		return false
	}
	return storeIsConflict(err)
}
