package promo

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/store"
)

// Party is the store name of the promotions engine (its own SQLite file or
// PostgreSQL schema), opened by the process that runs the switch.
const Party = "promo"

// Engine defaults.
const (
	// DefaultMaxCandidates bounds the eligible campaigns tried, best first,
	// for one payment before it goes without (the others were exhausted).
	DefaultMaxCandidates = 4
	// DefaultRefreshInterval is how often Run reloads campaigns that other
	// nodes (or the issuer API) changed.
	DefaultRefreshInterval = 5 * time.Second
	maxKeyBytes            = 64
	// DefaultConfirmTimeout bounds one confirmation (the switch waits for
	// it before answering an approval).
	DefaultConfirmTimeout = 30 * time.Second
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations is the engine's schema.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the embed pattern above guarantees the directory
	}
	return sub
}

// PaymentContext is what the switch knows of a payment after de-tokenization.
// It carries no PAN: the BIN and an opaque card key (the PAR, or a digest)
// are enough.
type PaymentContext struct {
	// TxID identifies the payment; it becomes the reservation id, so a
	// retried Reserve of the same payment returns the same reservation.
	TxID        string
	IssuerID    string
	CardType    string // Debit or Credit
	BIN         string // the first 6–MaxBINDigits digits of the PAN
	Product     string
	Token       bool   // presented as a Mi Pay token
	CardKey     string // same for every payment of the card
	AccountKey  string // the Mi account, "" when unknown
	MCC         string
	MerchantID  string
	Country     string // ISO 3166 numeric (DE19)
	City        string
	AmountMinor int64 // what the cardholder would be billed, CNY fen
	// FirstPayment: the card's first payment since it was bound.
	FirstPayment bool
	Time         time.Time
}

// Reservation is a campaign applied to one payment.
type Reservation struct {
	ID               string
	CampaignID       string
	IssuerID         string
	BankName         string
	OriginalMinor    int64
	DiscountMinor    int64 // 0 for a points campaign
	PointsMultiplier int64 // 1 when the campaign gives no extra points
}

// PayMinor is what the cardholder pays.
func (r Reservation) PayMinor() int64 { return r.OriginalMinor - r.DiscountMinor }

// Config is what an Engine needs.
type Config struct {
	DB     *store.DB
	Writer store.WriterConfig
	Now    func() time.Time
	Log    *slog.Logger
	// MaxActiveCampaigns bounds the campaigns loaded for evaluation
	// (DefaultMaxActiveCampaigns).
	MaxActiveCampaigns int
}

// Engine evaluates campaigns and keeps their budgets.
type Engine struct {
	db  *store.DB
	w   *store.Writer
	now func() time.Time
	log *slog.Logger
	max int

	mu        sync.RWMutex
	campaigns map[string]*compiled   // every campaign not ended
	index     map[string][]*compiled // by indexKey: evaluation looks at two buckets, not every campaign
}

// indexKey buckets campaigns by eligible issuer and MCC ("*": any MCC), so a
// payment is checked against the campaigns of its issuer and merchant
// category only, however many campaigns there are.
func indexKey(issuerID, mcc string) string { return issuerID + "|" + mcc }

// buildIndex is called with mu held for writing.
func (e *Engine) buildIndex() {
	idx := make(map[string][]*compiled, len(e.campaigns))
	for _, cc := range e.campaigns {
		for iss := range cc.issuers {
			if cc.mccs == nil {
				idx[indexKey(iss, "*")] = append(idx[indexKey(iss, "*")], cc)
				continue
			}
			for m := range cc.mccs {
				idx[indexKey(iss, m)] = append(idx[indexKey(iss, m)], cc)
			}
		}
	}
	e.index = idx
}

// compiled is a campaign ready for evaluation.
type compiled struct {
	c         Campaign
	loc       *time.Location
	issuers   map[string]bool
	mccs      map[string]bool
	merchants map[string]bool
	countries map[string]bool
	cities    map[string]bool
	products  map[string]bool
}

func compile(c Campaign) (*compiled, error) {
	loc, err := c.Window.location()
	if err != nil {
		return nil, err
	}
	iss := c.Eligibility.IssuerIDs
	if len(iss) == 0 {
		iss = []string{c.IssuerID}
	}
	return &compiled{c: c, loc: loc, issuers: set(iss, false), mccs: set(c.Eligibility.MCCs, false),
		merchants: set(c.Eligibility.MerchantIDs, false), countries: set(c.Eligibility.Countries, false),
		cities: set(c.Eligibility.Cities, true), products: set(c.Eligibility.Products, false)}, nil
}

func set(xs []string, fold bool) map[string]bool {
	if len(xs) == 0 {
		return nil
	}
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		if fold {
			x = strings.ToLower(strings.TrimSpace(x))
		}
		m[x] = true
	}
	return m
}

// Open starts an engine over its store (opened with Migrations()).
func Open(ctx context.Context, cfg Config) (*Engine, error) {
	if cfg.DB == nil {
		return nil, errors.New("promo: DB is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxActiveCampaigns <= 0 {
		cfg.MaxActiveCampaigns = DefaultMaxActiveCampaigns
	}
	e := &Engine{db: cfg.DB, now: cfg.Now, log: cfg.Log, max: cfg.MaxActiveCampaigns, campaigns: map[string]*compiled{}}
	if err := e.Refresh(ctx); err != nil {
		return nil, err
	}
	e.w = store.NewWriter(cfg.DB, cfg.Writer)
	return e, nil
}

// Close stops the writer (not the store).
func (e *Engine) Close() error {
	return e.w.Close()
}

// Run reloads campaigns every interval until ctx ends, so a pause or a new
// campaign made on another node applies here too. (A pause applies at once
// to budgets anyway: reservations require the stored status to be active.)
func (e *Engine) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultRefreshInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := e.Refresh(ctx); err != nil && ctx.Err() == nil {
				e.log.WarnContext(ctx, "promo: reload campaigns", "err", err)
			}
		}
	}
}

// Refresh reloads the campaigns that are not ended from the store.
func (e *Engine) Refresh(ctx context.Context) error {
	rows, err := e.db.DB.QueryContext(ctx,
		`SELECT definition, status FROM campaigns WHERE status <> $1 ORDER BY id LIMIT $2`, string(StatusEnded), e.max+1)
	if err != nil {
		return fmt.Errorf("promo: load campaigns: %w", err)
	}
	defer rows.Close()
	m := map[string]*compiled{}
	for rows.Next() {
		var def, status string
		if err := rows.Scan(&def, &status); err != nil {
			return fmt.Errorf("promo: load campaigns: %w", err)
		}
		if len(m) >= e.max {
			e.log.WarnContext(ctx, "promo: more campaigns than the engine evaluates", "max", e.max)
			break
		}
		var c Campaign
		if err := json.Unmarshal([]byte(def), &c); err != nil {
			return fmt.Errorf("promo: campaign definition: %w", err)
		}
		c.Status = Status(status)
		cc, err := compile(c)
		if err != nil {
			return err
		}
		m[c.ID] = cc
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("promo: load campaigns: %w", err)
	}
	e.mu.Lock()
	e.campaigns = m
	e.buildIndex()
	e.mu.Unlock()
	return nil
}

// eligible reports whether p qualifies for the campaign now (limits and
// budget aside: those are the store's to decide).
func (cc *compiled) eligible(p *PaymentContext) bool {
	c, el := &cc.c, &cc.c.Eligibility
	if c.Status != StatusActive || !cc.issuers[p.IssuerID] {
		return false
	}
	if el.CardType != "" && !strings.EqualFold(el.CardType, p.CardType) {
		return false
	}
	if el.Channel == ChannelMiPay && !p.Token {
		return false
	}
	if el.FirstPaymentOnly && !p.FirstPayment {
		return false
	}
	if p.AmountMinor < el.MinAmountMinor {
		return false
	}
	if cc.mccs != nil && !cc.mccs[p.MCC] || cc.merchants != nil && !cc.merchants[p.MerchantID] ||
		cc.countries != nil && !cc.countries[p.Country] || cc.products != nil && !cc.products[p.Product] {
		return false
	}
	if cc.cities != nil && !cc.cities[strings.ToLower(strings.TrimSpace(p.City))] {
		return false
	}
	if len(el.BINRanges) > 0 && !inRanges(el.BINRanges, p.BIN) {
		return false
	}
	if c.Benefit.Kind != BenefitPoints && c.Benefit.maxDiscount(p.AmountMinor) <= 0 {
		return false
	}
	return c.Window.open(p.Time, cc.loc)
}

func inRanges(rs []BINRange, bin string) bool {
	for _, r := range rs {
		if len(bin) < len(r.Low) {
			continue
		}
		b := bin[:len(r.Low)]
		if b >= r.Low && b <= r.High {
			return true
		}
	}
	return false
}

// maxDiscount is the most the benefit takes off amount, leaving the
// cardholder at least one fen to pay (a zero-amount authorization is a
// different message).
func (b Benefit) maxDiscount(amount int64) int64 {
	var d int64
	switch b.Kind {
	case BenefitFixed:
		d = b.AmountMinor
	case BenefitPercent:
		d = min(amount*b.PercentBP/10000, b.CapMinor)
	case BenefitRandom:
		d = b.MaxMinor
	}
	return max(0, min(d, amount-1))
}

// rank orders candidates: the documented priority. A payment gets one
// campaign: (1) the highest Priority the bank gave; (2) then the largest
// discount for this amount (a random benefit counts at its midpoint); (3)
// then the largest points multiplier; (4) then the campaign ending first
// (use it before it lapses); (5) then the id, so every node picks alike.
func rank(a, b *compiled, amount int64) int {
	if a.c.Priority != b.c.Priority {
		return b.c.Priority - a.c.Priority
	}
	if da, db := a.c.Benefit.expected(amount), b.c.Benefit.expected(amount); da != db {
		if da > db {
			return -1
		}
		return 1
	}
	if a.c.Benefit.Multiplier != b.c.Benefit.Multiplier {
		if a.c.Benefit.Multiplier > b.c.Benefit.Multiplier {
			return -1
		}
		return 1
	}
	if c := a.c.Window.End.Compare(b.c.Window.End); c != 0 {
		return c
	}
	return strings.Compare(a.c.ID, b.c.ID)
}

func (b Benefit) expected(amount int64) int64 {
	if b.Kind == BenefitRandom {
		return min((b.MinMinor+b.MaxMinor)/2, amount-1)
	}
	return b.maxDiscount(amount)
}

// Candidates lists the campaigns p qualifies for now, best first (limits
// and budgets not checked): what Reserve tries, and the wallet's offers.
func (e *Engine) Candidates(p PaymentContext) []Campaign {
	if p.Time.IsZero() {
		p.Time = e.now()
	}
	cs := e.candidates(&p)
	out := make([]Campaign, len(cs))
	for i, cc := range cs {
		out[i] = cc.c
	}
	return out
}

func (e *Engine) candidates(p *PaymentContext) []*compiled {
	e.mu.RLock()
	var cs []*compiled
	for _, bucket := range [2][]*compiled{e.index[indexKey(p.IssuerID, "*")], e.index[indexKey(p.IssuerID, p.MCC)]} {
		for _, cc := range bucket {
			if cc.eligible(p) {
				cs = append(cs, cc)
			}
		}
	}
	e.mu.RUnlock()
	slices.SortFunc(cs, func(a, b *compiled) int { return rank(a, b, p.AmountMinor) })
	return cs
}

var errNotGranted = errors.New("promo: not granted")

func checkPayment(p *PaymentContext) error {
	switch {
	case p.TxID == "" || len(p.TxID) > maxKeyBytes:
		return invalid("payment: txId is required (at most %d bytes)", maxKeyBytes)
	case p.CardKey == "" || len(p.CardKey) > maxKeyBytes || len(p.AccountKey) > maxKeyBytes:
		return invalid("payment: cardKey is required (at most %d bytes)", maxKeyBytes)
	case len(p.BIN) > MaxBINDigits:
		return invalid("payment: bin is at most %d digits", MaxBINDigits)
	case p.AmountMinor <= 0 || p.AmountMinor > MaxAmountMinor:
		return invalid("payment: amount out of range")
	}
	return nil
}

// Reserve picks the best campaign p qualifies for and reserves its budget
// and counters in one durable write; ok is false when no campaign applies.
// Reserving the same TxID again returns the first reservation.
func (e *Engine) Reserve(ctx context.Context, p PaymentContext) (Reservation, bool, error) {
	if p.Time.IsZero() {
		p.Time = e.now()
	}
	if err := checkPayment(&p); err != nil {
		return Reservation{}, false, err
	}
	cs := e.candidates(&p)
	if len(cs) == 0 {
		return Reservation{}, false, nil
	}
	if len(cs) > DefaultMaxCandidates {
		cs = cs[:DefaultMaxCandidates]
	}
	// The draws are made before the write so a retried batch decides alike.
	draws := make([]int64, len(cs))
	for i, cc := range cs {
		draws[i] = cc.c.Benefit.draw(p.AmountMinor)
	}
	var (
		res Reservation
		ok  bool
	)
	err := e.w.Write(ctx, func(tx *sql.Tx) error {
		res, ok = Reservation{}, false
		r, found, err := e.existing(ctx, tx, p.TxID)
		if err != nil || found {
			res, ok = r, found
			return err
		}
		for i, cc := range cs {
			r, granted, err := e.tryReserve(ctx, tx, cc, &p, draws[i])
			if err != nil {
				return err
			}
			if granted {
				res, ok = r, true
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return Reservation{}, false, fmt.Errorf("promo: reserve: %w", err)
	}
	return res, ok, nil
}

// draw is the discount the benefit gives amount: random ones draw uniformly
// from their range; never above amount-1.
func (b Benefit) draw(amount int64) int64 {
	if b.Kind != BenefitRandom {
		return b.maxDiscount(amount)
	}
	var buf [8]byte
	_, _ = rand.Read(buf[:]) // crypto/rand never fails on supported systems
	span := uint64(b.MaxMinor - b.MinMinor + 1)
	d := b.MinMinor + int64(binary.BigEndian.Uint64(buf[:])%span)
	return max(0, min(d, amount-1))
}

func (e *Engine) existing(ctx context.Context, tx *sql.Tx, id string) (Reservation, bool, error) {
	var r Reservation
	err := tx.QueryRowContext(ctx, `SELECT campaign_id, original_minor, discount_minor, multiplier FROM reservations WHERE id = $1`, id).
		Scan(&r.CampaignID, &r.OriginalMinor, &r.DiscountMinor, &r.PointsMultiplier)
	if errors.Is(err, sql.ErrNoRows) {
		return r, false, nil
	}
	if err != nil {
		return r, false, err
	}
	r.ID = id
	e.mu.RLock()
	if cc := e.campaigns[r.CampaignID]; cc != nil {
		r.IssuerID, r.BankName = cc.c.IssuerID, cc.c.BankName
	}
	e.mu.RUnlock()
	return r, true, nil
}

// tryReserve takes one campaign's budget and counters inside a nested
// savepoint: every step is a conditional write, and when one finds its limit
// reached the savepoint is rolled back and the next candidate is tried.
func (e *Engine) tryReserve(ctx context.Context, tx *sql.Tx, cc *compiled, p *PaymentContext, discount int64) (Reservation, bool, error) {
	if _, err := tx.ExecContext(ctx, "SAVEPOINT promo"); err != nil {
		return Reservation{}, false, err
	}
	r, err := e.reserveSteps(ctx, tx, cc, p, discount)
	if errors.Is(err, errNotGranted) {
		if _, err := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT promo"); err != nil {
			return Reservation{}, false, err
		}
	}
	if _, rerr := tx.ExecContext(ctx, "RELEASE SAVEPOINT promo"); rerr != nil {
		return Reservation{}, false, rerr
	}
	if errors.Is(err, errNotGranted) {
		return Reservation{}, false, nil
	}
	return r, err == nil, err
}

func (e *Engine) reserveSteps(ctx context.Context, tx *sql.Tx, cc *compiled, p *PaymentContext, discount int64) (Reservation, error) {
	c := &cc.c
	now := e.now().UnixMilli()
	if c.Benefit.Kind == BenefitRandom {
		// A random reduction may be cut to what is left of the budget, but
		// never below its range.
		var left int64
		err := tx.QueryRowContext(ctx, `SELECT budget_minor - budget_used FROM campaigns WHERE id = $1 AND status = $2`+e.db.ForUpdate(),
			c.ID, string(StatusActive)).Scan(&left)
		if errors.Is(err, sql.ErrNoRows) {
			return Reservation{}, errNotGranted
		}
		if err != nil {
			return Reservation{}, err
		}
		if discount > left {
			discount = left
		}
		if discount < c.Benefit.MinMinor {
			return Reservation{}, errNotGranted
		}
	}
	res, err := tx.ExecContext(ctx, `UPDATE campaigns SET budget_used = budget_used + $1, redemptions = redemptions + 1, updated_at = $2
		WHERE id = $3 AND status = $4 AND (budget_minor = 0 OR budget_used + $1 <= budget_minor)
		AND (max_redemptions = 0 OR redemptions < max_redemptions)`, discount, now, c.ID, string(StatusActive))
	if err := oneRow(res, err); err != nil {
		return Reservation{}, err
	}
	period := p.Time.In(cc.loc).Format(time.DateOnly)
	for _, k := range counterKeys(c, p, period) {
		res, err := tx.ExecContext(ctx, `INSERT INTO counters (campaign_id, scope, subject, period, used) VALUES ($1, $2, $3, $4, 1)
			ON CONFLICT (campaign_id, scope, subject, period) DO UPDATE SET used = counters.used + 1 WHERE counters.used < $5`,
			c.ID, k.scope, k.subject, k.period, k.limit)
		if err := oneRow(res, err); err != nil {
			return Reservation{}, err
		}
	}
	mult := int64(1)
	if c.Benefit.Kind == BenefitPoints {
		mult = c.Benefit.Multiplier
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO reservations (id, campaign_id, card_key, account_key, period, original_minor,
		discount_minor, multiplier, state, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'reserved', $9, $9)`,
		p.TxID, c.ID, p.CardKey, p.AccountKey, period, p.AmountMinor, discount, mult, now); err != nil {
		return Reservation{}, err
	}
	return Reservation{ID: p.TxID, CampaignID: c.ID, IssuerID: c.IssuerID, BankName: c.BankName,
		OriginalMinor: p.AmountMinor, DiscountMinor: discount, PointsMultiplier: mult}, nil
}

// oneRow turns "no row changed" into errNotGranted.
func oneRow(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n != 1 {
		return errNotGranted
	}
	return nil
}

type counterKey struct {
	scope, subject, period string
	limit                  int64
}

// counterKeys are the counters a reservation takes (and a release gives
// back): only those the campaign limits.
func counterKeys(c *Campaign, p *PaymentContext, period string) []counterKey {
	return counterKeysFor(c, p.CardKey, p.AccountKey, period)
}

func counterKeysFor(c *Campaign, card, account, period string) []counterKey {
	var ks []counterKey
	if c.Limits.PerCardPerDay > 0 {
		ks = append(ks, counterKey{"card_day", card, period, c.Limits.PerCardPerDay})
	}
	if c.Limits.PerCard > 0 {
		ks = append(ks, counterKey{"card", card, "", c.Limits.PerCard})
	}
	if c.Limits.PerAccount > 0 && account != "" {
		ks = append(ks, counterKey{"account", account, "", c.Limits.PerAccount})
	}
	return ks
}

// Confirm marks a reservation used (the payment was approved). It reports
// whether this call moved it; confirming twice, or after a release, is not
// an error.
func (e *Engine) Confirm(ctx context.Context, id string) (bool, error) {
	var moved bool
	err := e.w.Write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE reservations SET state = 'confirmed', updated_at = $1 WHERE id = $2 AND state = 'reserved'`,
			e.now().UnixMilli(), id)
		moved = oneRow(res, err) == nil
		if err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("promo: confirm: %w", err)
	}
	return moved, nil
}

// Release gives a reservation's budget and counters back (decline, reversal,
// timeout). Only the call that moves it out of reserved/confirmed gives
// back: released reports whether this one did.
func (e *Engine) Release(ctx context.Context, id string) (released bool, err error) {
	err = e.w.Write(ctx, func(tx *sql.Tx) error {
		released = false
		res, err := tx.ExecContext(ctx, `UPDATE reservations SET state = 'released', updated_at = $1
			WHERE id = $2 AND state IN ('reserved', 'confirmed')`, e.now().UnixMilli(), id)
		if err := oneRow(res, err); err != nil {
			if errors.Is(err, errNotGranted) {
				return nil
			}
			return err
		}
		var (
			campaignID, card, account, period, def string
			discount                               int64
		)
		if err := tx.QueryRowContext(ctx, `SELECT r.campaign_id, r.card_key, r.account_key, r.period, r.discount_minor, c.definition
			FROM reservations r JOIN campaigns c ON c.id = r.campaign_id WHERE r.id = $1`, id).
			Scan(&campaignID, &card, &account, &period, &discount, &def); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE campaigns SET budget_used = budget_used - $1, redemptions = redemptions - 1, updated_at = $2
			WHERE id = $3`, discount, e.now().UnixMilli(), campaignID); err != nil {
			return err
		}
		var c Campaign
		if err := json.Unmarshal([]byte(def), &c); err != nil {
			return err
		}
		for _, k := range counterKeysFor(&c, card, account, period) {
			if _, err := tx.ExecContext(ctx, `UPDATE counters SET used = used - 1
				WHERE campaign_id = $1 AND scope = $2 AND subject = $3 AND period = $4 AND used > 0`,
				campaignID, k.scope, k.subject, k.period); err != nil {
				return err
			}
		}
		released = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("promo: release: %w", err)
	}
	return released, nil
}

// ErrNotFound is returned for an unknown campaign.
var ErrNotFound = mipay.Errorf(mipay.ENOTFOUND, "promo: no such campaign")
