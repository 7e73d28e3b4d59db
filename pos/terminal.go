package pos

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/nfc"
	"github.com/mipay-oss/mipay/store"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations is the terminal store's schema.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err)
	}
	return sub
}

// Defaults of a terminal.
const (
	DefaultTerminalID   = "MIPOS001"
	DefaultMerchantID   = "898110153990001"
	DefaultMerchantName = "MI HOME"
	DefaultCity         = "BEIJING"
	DefaultCountry      = "156"
	DefaultMCC          = "5411"
	DefaultAcquirerID   = "48020000"
	// DefaultTapTimeout is how long the terminal waits for a phone.
	DefaultTapTimeout = 60 * time.Second
	// DefaultMaxTaps bounds the taps of one transaction ("See phone", tap again).
	DefaultMaxTaps = 3
	// DefaultReversalAttempts bounds how often a reversal is sent right away;
	// later charges retry what is still owed.
	DefaultReversalAttempts = 3
)

// TerminalConfig identifies the terminal and its merchant.
type TerminalConfig struct {
	ID           string // DE41, 8 characters
	MerchantID   string // DE42, 15 characters
	MerchantName string // DE43 name, up to 25
	City         string // DE43 city, up to 13
	Country      string // DE19 / 9F1A, ISO 3166 numeric ("156")
	MCC          string // DE18
	AcquirerID   string // DE32
}

func (c *TerminalConfig) defaults() {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&c.ID, DefaultTerminalID)
	def(&c.MerchantID, DefaultMerchantID)
	def(&c.MerchantName, DefaultMerchantName)
	def(&c.City, DefaultCity)
	def(&c.Country, DefaultCountry)
	def(&c.MCC, DefaultMCC)
	def(&c.AcquirerID, DefaultAcquirerID)
}

func (c *TerminalConfig) validate() error {
	switch {
	case len(c.ID) != 8:
		return mipay.Errorf(mipay.EINVALID, "terminal id %q must be 8 characters", c.ID)
	case len(c.MerchantID) != 15:
		return mipay.Errorf(mipay.EINVALID, "merchant id %q must be 15 characters", c.MerchantID)
	case len(c.MerchantName) > 25 || len(c.City) > 13:
		return mipay.Errorf(mipay.EINVALID, "merchant name is at most 25 characters and city at most 13")
	case len(c.Country) != 3 || len(c.MCC) != 4:
		return mipay.Errorf(mipay.EINVALID, "country must be 3 digits and MCC 4")
	}
	return nil
}

// de43 is the merchant name and location: name 25, city 13, country 2.
func (c *TerminalConfig) de43() string {
	cc := "CN"
	if c.Country != "156" {
		cc = "  "
	}
	return fmt.Sprintf("%-25s%-13s%s", strings.ToUpper(c.MerchantName), strings.ToUpper(c.City), cc)
}

// FinancialRequest is the 0200 this terminal sends for a contactless card
// read (entry mode 072, the chip data in DE55): every field but the
// transmission identity — DE7, DE11, DE12, DE13, DE37 — which the sender
// stamps when the message leaves. Load generators and tests build their
// messages here too, so there is one layout of the acquirer's 0200.
func (c TerminalConfig) FinancialRequest(read *Read, amountMinor int64, currency string) (*iso8583.Message, error) {
	c.defaults()
	amount, err := iso8583.FormatAmount(amountMinor)
	if err != nil {
		return nil, mipay.WrapError(mipay.EINVALID, err, "amount out of range")
	}
	m := &iso8583.Message{}
	m.SetMTI(iso8583.MTIFinancialRequest)
	m.SetString(2, read.Token)
	m.SetString(3, "000000")
	m.SetString(4, amount)
	m.SetString(14, read.Expiry)
	m.SetString(18, c.MCC)
	m.SetString(19, c.Country)
	m.SetString(22, "072")
	m.SetString(23, "0"+read.PSN)
	m.SetString(25, "00")
	m.SetString(32, c.AcquirerID)
	m.SetString(35, read.Track2)
	m.SetString(41, c.ID)
	m.SetString(42, c.MerchantID)
	m.SetString(43, c.de43())
	m.SetString(49, currency)
	m.Set(55, read.ICC)
	return m, nil
}

// Terminal is a QuickPass POS terminal with its acquirer link.
type Terminal struct {
	cfg    TerminalConfig
	db     *store.DB
	link   Link
	kernel Kernel
	now    func() time.Time

	mu       sync.Mutex
	counters map[string]*counter
}

// Link is the terminal's connection to the network (an iso8583.Client).
type Link interface {
	Send(ctx context.Context, req *iso8583.Message) (*iso8583.Message, error)
}

// OpenTerminal opens the terminal's store (its counters and history).
func OpenTerminal(ctx context.Context, cfg TerminalConfig, sc store.Config, link Link) (*Terminal, error) {
	cfg.defaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	db, err := store.Open(ctx, sc, "pos_"+strings.ToLower(cfg.ID), Migrations())
	if err != nil {
		return nil, err
	}
	country, err := CurrencyBCD(cfg.Country)
	if err != nil {
		db.Close()
		return nil, err
	}
	k := Kernel{Profile: DefaultTerminalProfile()}
	k.Profile.Country = country
	copy(k.Profile.IFDSerial[:], cfg.ID)
	return &Terminal{cfg: cfg, db: db, link: link, kernel: k, now: time.Now, counters: map[string]*counter{}}, nil
}

// Close closes the terminal's store.
func (t *Terminal) Close() error { return t.db.Close() }

// Charge is one sale.
type Charge struct {
	AmountMinor int64
	Currency    string // ISO 4217 numeric, "156"
	// Status receives what the terminal shows ("Present phone", "See
	// phone", "Processing") as it happens; may be nil.
	Status func(string)
}

// Receipt is the outcome of a charge. It carries the token's last 4 only.
type Receipt struct {
	Outcome      string    `json:"outcome"` // APPROVED, DECLINED, SEE_PHONE, TRY_AGAIN
	AmountMinor  int64     `json:"amountMinor"`
	Currency     string    `json:"currency"`
	TokenLast4   string    `json:"tokenLast4,omitempty"`
	ResponseCode string    `json:"responseCode,omitempty"`
	Response     string    `json:"response,omitempty"`
	AuthCode     string    `json:"authCode,omitempty"`
	STAN         string    `json:"stan,omitempty"`
	RRN          string    `json:"rrn,omitempty"`
	Terminal     string    `json:"terminal"`
	Merchant     string    `json:"merchant"`
	Time         time.Time `json:"time"`
	ARPCPresent  bool      `json:"arpcPresent"`
	Reversed     bool      `json:"reversed,omitempty"`
	Taps         int       `json:"taps"`
	// Paying abroad: what the cardholder is billed (DE6, DE51) and at
	// which rate (DE10, as a decimal: CNY per major unit).
	BillingAmountMinor int64  `json:"billingAmountMinor,omitempty"`
	BillingCurrency    string `json:"billingCurrency,omitempty"`
	ConversionRate     string `json:"conversionRate,omitempty"`
	// A bank promotion (DE124 in an approval, issue 8): the cardholder
	// saved DiscountMinor (paid AmountMinor - DiscountMinor) under the
	// campaign; the merchant is still paid AmountMinor. Not kept in History.
	DiscountMinor int64  `json:"discountMinor,omitempty"`
	CampaignID    string `json:"campaignId,omitempty"`
}

// ChargeOnReader waits for phones at the reader and charges: a phone that
// answers "See phone" is asked to tap again (up to DefaultMaxTaps).
func (t *Terminal) ChargeOnReader(ctx context.Context, r *nfc.Reader, c Charge) (*Receipt, error) {
	status := c.Status
	if status == nil {
		status = func(string) {}
	}
	rec := &Receipt{AmountMinor: c.AmountMinor, Currency: c.Currency, Terminal: t.cfg.ID, Merchant: t.cfg.MerchantName}
	if _, ok := config.CurrencyByNumeric(c.Currency); !ok {
		return rec, mipay.Errorf(mipay.EINVALID, "unknown currency %s: not an ISO 4217 numeric code the network knows", c.Currency)
	}
	for rec.Taps < DefaultMaxTaps {
		status(fmt.Sprintf("Present phone: %s", formatAmount(c.AmountMinor, c.Currency)))
		wctx, cancel := context.WithTimeout(ctx, DefaultTapTimeout)
		sess, err := r.Wait(wctx)
		cancel()
		if err != nil {
			return rec, fmt.Errorf("pos: no phone presented: %w", err)
		}
		rec.Taps++
		read, rerr := t.readCard(ctx, sess, c)
		sess.Close()
		if rerr != nil && read == nil {
			return rec, rerr
		}
		switch read.Outcome {
		case OutcomeSeePhone:
			rec.Outcome = OutcomeSeePhone
			status("See phone: approve on the phone, then tap again")
			continue
		case OutcomeTryAgain:
			rec.Outcome = OutcomeTryAgain
			status("Try again: hold the phone still")
			continue
		case OutcomeOnline:
			status("Processing")
			return t.authorize(ctx, read, c, rec)
		default:
			rec.Outcome = OutcomeDeclined
			return rec, rerr
		}
	}
	return rec, nil
}

func (t *Terminal) readCard(ctx context.Context, sess CardSession, c Charge) (*Read, error) {
	cur, err := CurrencyBCD(c.Currency)
	if err != nil {
		return nil, err
	}
	ttc, err := t.next(ctx, "ttc", 1, 99999999)
	if err != nil {
		return nil, err
	}
	return t.kernel.ReadCard(ctx, sess, Txn{AmountMinor: c.AmountMinor, Currency: cur, Time: t.now(), TTC: uint32(ttc)})
}

// counterBlock is how many values of a counter the terminal reserves with
// one durable write. Counters only need to move forward: after a crash the
// unused rest of a block is skipped, never reused. One fsync per block
// instead of three per sale keeps a tap short.
const counterBlock = 64

// counter is a reserved block of one counter: next is handed out, limit is
// what the store says (the first value not reserved).
type counter struct {
	next, limit int64
}

// next returns a counter's next value (1..max, then 1 again), reserving a
// new block durably when the current one is used up.
func (t *Terminal) next(ctx context.Context, name string, min, max int64) (int64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.counters[name]
	if c == nil || c.next >= c.limit {
		nc, err := t.reserve(ctx, name)
		if err != nil {
			return 0, err
		}
		c = nc
		t.counters[name] = c
	}
	v := c.next%max + 1 // stored values grow without bound; the wire value wraps
	c.next++
	if v < min {
		v = min
	}
	return v, nil
}

// reserve durably moves a counter's stored limit one block ahead.
func (t *Terminal) reserve(ctx context.Context, name string) (*counter, error) {
	var from int64
	err := t.db.Tx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT value FROM counters WHERE name = $1`, name).Scan(&from)
		if errors.Is(err, sql.ErrNoRows) {
			from = 0
			_, err = tx.ExecContext(ctx, `INSERT INTO counters (name, value) VALUES ($1, $2)`, name, counterBlock)
			return err
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE counters SET value = $1 WHERE name = $2`, from+counterBlock, name)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &counter{next: from, limit: from + counterBlock}, nil
}

// authorize sends the 0200, checks the answer and its ARPC, and reverses
// when no answer came.
func (t *Terminal) authorize(ctx context.Context, read *Read, c Charge, rec *Receipt) (*Receipt, error) {
	stan, err := t.next(ctx, "stan", 1, 999999)
	if err != nil {
		return rec, err
	}
	seq, err := t.next(ctx, "rrn", 1, 99999999)
	if err != nil {
		return rec, err
	}
	now := t.now().UTC()
	rec.Time = now
	rec.STAN = iso8583.FormatSTAN(uint32(stan))
	// RRN: YDDD of the day and an 8-digit sequence (12 characters).
	rec.RRN = fmt.Sprintf("%d%03d%08d", now.Year()%10, now.YearDay(), seq)
	rec.TokenLast4 = read.Token[len(read.Token)-4:]
	m, err := t.cfg.FinancialRequest(read, c.AmountMinor, c.Currency)
	if err != nil {
		return rec, err
	}
	m.SetString(7, now.Format("0102150405"))
	m.SetString(11, rec.STAN)
	m.SetString(12, now.Format("150405"))
	m.SetString(13, now.Format("0102"))
	m.SetString(37, rec.RRN)
	if err := t.record(ctx, rec, "PENDING", ""); err != nil {
		return rec, err
	}
	resp, err := t.link.Send(ctx, m)
	if err != nil {
		rec.Outcome = OutcomeDeclined
		rec.Response = "no answer from the network"
		rec.Reversed = t.reverse(ctx, m) == nil
		state := "OWED"
		if rec.Reversed {
			state = "SENT"
		}
		return rec, t.record(ctx, rec, OutcomeDeclined, state)
	}
	rec.ResponseCode = resp.String(39)
	rec.AuthCode = resp.String(38)
	rec.ARPCPresent = arpcMatches(resp)
	rec.Outcome = OutcomeDeclined
	if rec.ResponseCode == "00" {
		rec.Outcome = OutcomeApproved
	}
	rec.Response = responseText(rec.ResponseCode)
	if resp.Has(6) {
		rec.BillingAmountMinor, _ = iso8583.ParseAmount(resp.String(6))
		rec.BillingCurrency = resp.String(51)
		rec.ConversionRate = rateDecimal(resp.String(10))
	}
	if rec.Outcome == OutcomeApproved && resp.Has(iso8583.FieldPromotion) {
		rec.DiscountMinor, rec.CampaignID = saving(resp.String(iso8583.FieldPromotion), c.AmountMinor)
	}
	return rec, t.record(ctx, rec, rec.Outcome, "")
}

// saving reads the cardholder's saving from an approval's DE124. A field
// that does not parse, is for another amount, or claims a saving that is not
// below the amount shows no saving: the receipt never shows more than the
// network granted.
func saving(de124 string, amountMinor int64) (int64, string) {
	p, err := iso8583.ParsePromotion(de124)
	if err != nil {
		return 0, ""
	}
	orig, err := iso8583.ParseAmount(p.OriginalAmount)
	if err != nil || orig != amountMinor {
		return 0, ""
	}
	disc, err := iso8583.ParseAmount(p.DiscountAmount)
	if err != nil || disc <= 0 || disc >= amountMinor {
		return 0, ""
	}
	return disc, p.CampaignID
}

// arpcMatches reports whether the answer's DE55 tag 91 carries an ARPC and
// the ARC equal to DE39. The terminal cannot verify the ARPC itself (the
// card's keys are in the phone, which has left the field in qPBOC); it checks
// that the issuer side answered for this cryptogram.
func arpcMatches(resp *iso8583.Message) bool {
	v, ok, err := iso8583.FindTLV(resp.Field(55), 0x91)
	return err == nil && ok && len(v) == 10 && string(v[8:]) == resp.String(39)
}

// reverse sends the 0400 for a request that got no answer.
func (t *Terminal) reverse(ctx context.Context, orig *iso8583.Message) error {
	de90, err := iso8583.OriginalData{MTI: orig.MTI(), STAN: orig.String(11), TransmissionTime: orig.String(7), AcquirerID: orig.String(32)}.Format()
	if err != nil {
		return err
	}
	stan, err := t.next(ctx, "stan", 1, 999999)
	if err != nil {
		return err
	}
	m := orig.Clone()
	m.SetMTI(iso8583.MTIReversalRequest)
	m.Unset(35)
	m.Unset(55)
	m.SetString(7, t.now().UTC().Format("0102150405"))
	m.SetString(11, iso8583.FormatSTAN(uint32(stan)))
	m.SetString(39, "68") // no answer received
	m.SetString(90, de90)
	var last error
	for i := 0; i < DefaultReversalAttempts; i++ {
		resp, err := t.link.Send(ctx, m)
		if err == nil && (resp.String(39) == "00" || resp.String(39) == "25") {
			return nil
		}
		last = err
	}
	if last == nil {
		last = errors.New("reversal not acknowledged")
	}
	return last
}

func (t *Terminal) record(ctx context.Context, r *Receipt, outcome, reversal string) error {
	return t.db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO transactions (stan, rrn, tx_time, amount_minor, currency, token_last4,
			outcome, rc, auth_code, reversal, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)
			ON CONFLICT (rrn) DO UPDATE SET outcome = $7, rc = $8, auth_code = $9, reversal = $10`,
			r.STAN, r.RRN, r.Time.Format(time.RFC3339), r.AmountMinor, r.Currency, r.TokenLast4, outcome,
			r.ResponseCode, r.AuthCode, reversal, t.now().UnixMilli())
		return err
	})
}

// History lists the terminal's transactions, newest first (at most limit).
func (t *Terminal) History(ctx context.Context, limit int) ([]Receipt, error) {
	rows, err := t.db.DB.QueryContext(ctx, `SELECT stan, rrn, tx_time, amount_minor, currency, token_last4, outcome, rc,
		auth_code, reversal FROM transactions ORDER BY created_at DESC, rrn DESC LIMIT $1`, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Receipt
	for rows.Next() {
		var r Receipt
		var at, reversal string
		if err := rows.Scan(&r.STAN, &r.RRN, &at, &r.AmountMinor, &r.Currency, &r.TokenLast4, &r.Outcome,
			&r.ResponseCode, &r.AuthCode, &reversal); err != nil {
			return nil, err
		}
		r.Time, _ = time.Parse(time.RFC3339, at)
		r.Reversed = reversal == "SENT"
		r.Terminal, r.Merchant, r.Response = t.cfg.ID, t.cfg.MerchantName, responseText(r.ResponseCode)
		out = append(out, r)
	}
	return out, rows.Err()
}

// responseText is what the terminal shows for DE39.
func responseText(rc string) string {
	if s, ok := responseTexts[rc]; ok {
		return s
	}
	if rc == "" {
		return ""
	}
	return "declined (" + rc + ")"
}

var responseTexts = map[string]string{
	"00": "Approved", "05": "Declined by the bank", "12": "Invalid transaction", "14": "Card not recognised",
	"25": "Original not found", "30": "Format error", "51": "Insufficient funds", "54": "Card expired",
	"57": "Not permitted for this card", "61": "Amount limit exceeded", "62": "Card restricted",
	"65": "Verification required: approve on the phone", "91": "Bank unavailable, try later",
	"94": "Duplicate", "96": "System error",
}

// formatAmount renders minor units for the display with the currency's
// ISO 4217 exponent (JPY 1200, USD 12.34, KWD 12.345).
func formatAmount(minor int64, currency string) string {
	return FormatAmount(minor, currency)
}

// FormatAmount renders minor units of an ISO 4217 numeric currency with
// its exponent and alphabetic code ("1200 JPY", "12.345 KWD"); an unknown
// currency shows two decimals and the numeric code.
func FormatAmount(minor int64, currency string) string {
	exp, name := 2, currency
	if c, ok := config.CurrencyByNumeric(currency); ok {
		exp, name = c.MinorUnits, c.Code
	}
	if exp == 0 {
		return fmt.Sprintf("%d %s", minor, name)
	}
	div := int64(1)
	for range exp {
		div *= 10
	}
	return fmt.Sprintf("%d.%0*d %s", minor/div, exp, minor%div, name)
}

// rateDecimal shows a DE10 rate (first digit the decimals) as a decimal.
func rateDecimal(de10 string) string {
	if len(de10) != 8 || strings.Trim(de10, "0123456789") != "" {
		return ""
	}
	d := int(de10[0] - '0')
	digits := strings.TrimLeft(de10[1:], "0")
	if len(digits) <= d {
		digits = strings.Repeat("0", d-len(digits)+1) + digits
	}
	if d == 0 {
		return digits
	}
	return digits[:len(digits)-d] + "." + digits[len(digits)-d:]
}
