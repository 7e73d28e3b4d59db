package transit

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/emv"
	"github.com/mipay-oss/mipay/httpx"
	"github.com/mipay-oss/mipay/iso8583"
)

// InAppPayment is what the phone's SE made for an in-app purchase (the JSON
// of se.InAppCryptogram): the token, its card data and DE55.
type InAppPayment struct {
	DPAN   string `json:"dpan"`
	PSN    int    `json:"psn"`
	Expiry string `json:"expiry"`
	Track2 string `json:"track2"`
	ATC    uint16 `json:"atc"`
	ICC    []byte `json:"icc"`
	Entry  string `json:"posEntryMode"`
}

// Purchase is one payment the agency asks its acquirer for.
type Purchase struct {
	ID          string
	City        string
	AmountMinor int64
	Card        InAppPayment
	STAN, RRN   string
	DE7         string // transmission date and time MMDDhhmmss
	Time        time.Time
}

// PurchaseResult is the network's answer.
type PurchaseResult struct {
	Approved     bool
	ResponseCode string
	AuthCode     string
}

// Acquirer sends the agency's in-app purchases to the network. Purchase
// returns an error when no answer came (the outcome is unknown: the caller
// reverses); Reverse sends the 0400 for a purchase and returns nil once the
// network acknowledged it.
type Acquirer interface {
	Purchase(ctx context.Context, p Purchase) (PurchaseResult, error)
	Reverse(ctx context.Context, p Purchase) error
}

// Link is an ISO 8583 connection to the network's acquirer port (an
// *iso8583.Client).
type Link interface {
	Send(ctx context.Context, req *iso8583.Message) (*iso8583.Message, error)
}

// ISO8583Acquirer is the agency as an in-app merchant on the network: 0200
// with POS entry mode 091 (in-app, chip cryptogram) and DE55 from the SE,
// 0400 to reverse.
type ISO8583Acquirer struct {
	Link       Link
	AcquirerID string // DE32; default "48029999"
	stan       atomic.Uint32
}

// Merchant data of the agencies (DE18, DE41, DE42, DE43).
const (
	transitMCC        = "4111" // local commuter transport
	defaultAcquirerID = "48029999"
)

func merchantFields(city string) (terminal, merchant, de43 string) {
	c := strings.ToUpper(city)
	terminal = fmt.Sprintf("%-8s", "TRN"+c+"01")[:8]
	merchant = fmt.Sprintf("%-15s", "8981"+c+"TRANSIT")[:15]
	de43 = fmt.Sprintf("%-25s%-13s%s", c+" TRANSIT CARD", c, "CN")
	return
}

func (a *ISO8583Acquirer) message(p Purchase) (*iso8583.Message, error) {
	amount, err := iso8583.FormatAmount(p.AmountMinor)
	if err != nil {
		return nil, mipay.WrapError(mipay.EINVALID, err, "amount out of range")
	}
	term, merch, de43 := merchantFields(p.City)
	acq := a.AcquirerID
	if acq == "" {
		acq = defaultAcquirerID
	}
	t := p.Time.UTC()
	m := &iso8583.Message{}
	m.SetMTI(iso8583.MTIFinancialRequest)
	m.SetString(2, p.Card.DPAN)
	m.SetString(3, "000000")
	m.SetString(4, amount)
	m.SetString(7, p.DE7)
	m.SetString(11, p.STAN)
	m.SetString(12, t.Format("150405"))
	m.SetString(13, t.Format("0102"))
	if p.Card.Expiry != "" {
		m.SetString(14, p.Card.Expiry)
	}
	m.SetString(18, transitMCC)
	m.SetString(19, "156")
	entry := p.Card.Entry
	if entry == "" {
		entry = "091"
	}
	m.SetString(22, entry)
	m.SetString(23, fmt.Sprintf("%03d", p.Card.PSN))
	m.SetString(25, "00")
	m.SetString(32, acq)
	if p.Card.Track2 != "" {
		m.SetString(35, strings.ToUpper(strings.TrimRight(p.Card.Track2, "fF")))
	}
	m.SetString(37, p.RRN)
	m.SetString(41, term)
	m.SetString(42, merch)
	m.SetString(43, de43)
	m.SetString(49, "156")
	m.Set(55, p.Card.ICC)
	return m, nil
}

// Purchase implements Acquirer.
func (a *ISO8583Acquirer) Purchase(ctx context.Context, p Purchase) (PurchaseResult, error) {
	m, err := a.message(p)
	if err != nil {
		return PurchaseResult{}, err
	}
	resp, err := a.Link.Send(ctx, m)
	if err != nil {
		return PurchaseResult{}, err
	}
	rc := resp.String(39)
	return PurchaseResult{Approved: rc == "00", ResponseCode: rc, AuthCode: resp.String(38)}, nil
}

// Reverse implements Acquirer.
func (a *ISO8583Acquirer) Reverse(ctx context.Context, p Purchase) error {
	orig, err := a.message(p)
	if err != nil {
		return err
	}
	de90, err := iso8583.OriginalData{MTI: iso8583.MTIFinancialRequest, STAN: p.STAN, TransmissionTime: p.DE7, AcquirerID: orig.String(32)}.Format()
	if err != nil {
		return err
	}
	m := orig.Clone()
	m.SetMTI(iso8583.MTIReversalRequest)
	m.Unset(35)
	m.Unset(55)
	m.SetString(7, time.Now().UTC().Format("0102150405"))
	m.SetString(11, iso8583.FormatSTAN(a.stan.Add(1)%999999+1))
	m.SetString(39, "17") // customer cancellation: the load was not made
	m.SetString(90, de90)
	resp, err := a.Link.Send(ctx, m)
	if err != nil {
		return err
	}
	if rc := resp.String(39); rc != "00" && rc != "25" { // 25: original not found, nothing to undo
		return fmt.Errorf("transit: reversal answered %s", rc)
	}
	return nil
}

// pay runs one in-app purchase exactly once: the payment row is durable
// before the 0200 leaves; no answer means a reversal (retried later when it
// does not get through either). It returns the payment id when approved.
func (s *Service) pay(ctx context.Context, id, city, purpose string, amount int64, card InAppPayment) (string, error) {
	if s.acq == nil {
		return "", mipay.Errorf(mipay.EUNAVAILABLE, "payments are not available (no network link)")
	}
	if err := checkPayment(card, amount); err != nil {
		return "", err
	}
	stan, err := s.nextCounter(ctx, "stan", 999999)
	if err != nil {
		return "", err
	}
	now := s.now().UTC()
	p := Purchase{ID: id, City: city, AmountMinor: amount, Card: card, Time: now,
		STAN: iso8583.FormatSTAN(uint32(stan)), DE7: now.Format("0102150405"),
		RRN: fmt.Sprintf("%d%03d%08d", now.Year()%10, now.YearDay(), stan%100000000)}
	ms := s.nowMS()
	if err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO transit_payments (id, city, purpose, amount_minor, token, stan, rrn, de7, state, created, updated)
			VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$10)`, p.ID, city, purpose, amount, card.DPAN, p.STAN, p.RRN, p.DE7, PayPending, ms)
		return err
	}); err != nil {
		return "", fmt.Errorf("transit: record payment: %w", err)
	}
	res, err := s.acq.Purchase(ctx, p)
	if err != nil {
		s.log.Warn("no answer to an in-app payment; reversing", "payment", p.ID, "err", err)
		s.reverse(context.WithoutCancel(ctx), p)
		return "", mipay.WrapError(mipay.EUNAVAILABLE, err, "the payment did not go through; nothing was charged")
	}
	state := PayDeclined
	if res.Approved {
		state = PayApproved
	}
	if err := s.setPayment(ctx, p.ID, state, res.ResponseCode, res.AuthCode); err != nil {
		if res.Approved {
			s.reverse(context.WithoutCancel(ctx), p)
		}
		return "", err
	}
	if !res.Approved {
		return "", mipay.Errorf(mipay.EDECLINED, "the bank declined the payment (response %s)", res.ResponseCode)
	}
	return p.ID, nil
}

// checkPayment makes sure DE55 is for the amount charged (the cryptogram
// covers 9F02; a mismatch would be declined anyway, but not so clearly).
func checkPayment(card InAppPayment, amount int64) error {
	if len(card.DPAN) < 13 || len(card.DPAN) > 19 || len(card.ICC) == 0 || len(card.ICC) > 512 {
		return mipay.Errorf(mipay.EINVALID, "payment: token and ICC data are required")
	}
	tlvs, err := emv.DecodeTLV(card.ICC)
	if err != nil {
		return mipay.Errorf(mipay.EINVALID, "payment: ICC data is not BER-TLV")
	}
	a, ok := emv.FindTag(tlvs, 0x9F02)
	if !ok || hex.EncodeToString(a.Value) != fmt.Sprintf("%012d", amount) {
		return mipay.Errorf(mipay.EINVALID, "payment: the cryptogram is not for %d.%02d CNY", amount/100, amount%100)
	}
	return nil
}

func (s *Service) setPayment(ctx context.Context, id, state, rc, auth string) error {
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE transit_payments SET state = $2, response = $3, auth_code = $4, updated = $5 WHERE id = $1`,
			id, state, rc, auth, s.nowMS())
		return err
	})
}

// reverse sends the 0400 (a few tries); when it does not get through the
// payment stays REVERSAL_OWED and the sweeper retries.
func (s *Service) reverse(ctx context.Context, p Purchase) bool {
	var err error
	for range reversalAttempts {
		if err = s.acq.Reverse(ctx, p); err == nil {
			break
		}
	}
	state := PayReversed
	if err != nil {
		state = PayReversalOwed
		s.log.Warn("reversal not acknowledged; will retry", "payment", p.ID, "err", err)
	}
	if serr := s.setPayment(ctx, p.ID, state, "", ""); serr != nil {
		s.log.Error("recording a reversal", "payment", p.ID, "err", serr)
	}
	return err == nil
}

// refund reverses an approved payment by id.
func (s *Service) refund(ctx context.Context, paymentID string) bool {
	p, err := s.purchaseOf(ctx, paymentID)
	if err != nil {
		s.log.Error("refund: payment not found", "payment", paymentID, "err", err)
		return false
	}
	return s.reverse(ctx, p)
}

func (s *Service) purchaseOf(ctx context.Context, id string) (Purchase, error) {
	var p Purchase
	var created int64
	err := s.db.DB.QueryRowContext(ctx, `SELECT id, city, amount_minor, token, stan, rrn, de7, created FROM transit_payments WHERE id = $1`, id).
		Scan(&p.ID, &p.City, &p.AmountMinor, &p.Card.DPAN, &p.STAN, &p.RRN, &p.DE7, &created)
	p.Time = time.UnixMilli(created)
	return p, err
}

// PaymentTotals sums a city's payments by state (tests and operators:
// money charged = approved; refunded = reversed).
func (s *Service) PaymentTotals(ctx context.Context) (map[string]int64, error) {
	rows, err := s.db.DB.QueryContext(ctx, `SELECT state, CAST(SUM(amount_minor) AS BIGINT) FROM transit_payments GROUP BY state`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var st string
		var n int64
		if err := rows.Scan(&st, &n); err != nil {
			return nil, err
		}
		out[st] = n
	}
	return out, rows.Err()
}

// nextCounter increments a named counter (1..max, wrapping) durably.
func (s *Service) nextCounter(ctx context.Context, name string, maxValue int64) (int64, error) {
	var v int64
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT value FROM transit_counters WHERE name = $1`, name).Scan(&v)
		if errors.Is(err, sql.ErrNoRows) {
			v = 0
			if _, err := tx.ExecContext(ctx, `INSERT INTO transit_counters (name, value) VALUES ($1, 0)`, name); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
		v = v%maxValue + 1
		_, err = tx.ExecContext(ctx, `UPDATE transit_counters SET value = $2 WHERE name = $1`, name, v)
		return err
	})
	return v, err
}

// Device is a handset of the caller's Mi account. SEKeySHA256 is the
// SHA-256 (hex) of the SE public key the wallet verified against the SE
// vendor's certificate chain when the device was registered: the agency
// seals card keys only to that key.
type Device struct {
	ID          string `json:"id"`
	SEID        string `json:"seId"`
	SEKeySHA256 string `json:"seKeySha256"`
}

// Accounts says which devices the bearer of a wallet session owns.
type Accounts interface {
	Devices(ctx context.Context, bearer string) ([]Device, error)
}

// WalletAccounts asks the wallet (GET /v1/devices with the user's session).
type WalletAccounts struct{ Base string }

// Devices implements Accounts.
func (w WalletAccounts) Devices(ctx context.Context, bearer string) ([]Device, error) {
	if bearer == "" {
		return nil, mipay.Errorf(mipay.EUNAUTHORIZED, "sign in to your Mi account first")
	}
	c := httpx.Client{Base: w.Base, Token: bearer}
	var out struct {
		Devices []Device `json:"devices"`
	}
	if err := c.Do(ctx, "GET", "/v1/devices", nil, &out); err != nil {
		if mipay.ErrorCode(err) == mipay.EUNAUTHORIZED {
			return nil, err
		}
		return nil, mipay.WrapError(mipay.EUNAVAILABLE, err, "the Mi account service did not answer")
	}
	return out.Devices, nil
}
