package network

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/config"
)

// Currency conversion in the switch.
//
// A rate is CNY per one major unit of the transaction currency, held in
// ISO 8583 DE10 form: eight digits, the first the number of decimals, the
// other seven the rate's digits ("70471200" is 0.0471200). The billing
// amount in fen is
//
//	DE6 = round_half_up(DE4 × rate × 10^2 / 10^minorUnits(DE49))
//
// computed exactly with 128-bit integers (no float): half a fen or more
// rounds up, less rounds down. Reversals reuse the DE6 and DE10 recorded
// with the original authorization, never the rate of the day.

// Rate is an exchange rate in DE10 form: Mantissa / 10^Decimals.
type Rate struct {
	Decimals uint8  // 0–9
	Mantissa uint32 // 0–9999999
}

// Limits of a rate.
const (
	maxRateDecimals = 9
	maxRateMantissa = 9_999_999
	// MaxAmountMinor is the largest DE4/DE6 (12 digits).
	MaxAmountMinor = 999_999_999_999
)

// Errors of conversion. The switch maps each to DE39 (see codes.go).
var (
	ErrUnknownCurrency = errors.New("unknown currency")
	ErrNoRate          = errors.New("no exchange rate in effect")
	ErrRateStale       = errors.New("exchange rate older than the maximum age")
	ErrAmountRange     = errors.New("billing amount out of range")
)

// ParseRate reads a decimal rate ("0.04712", "23.125") into DE10 form. It
// refuses a rate that DE10 cannot hold exactly (more than 7 significant
// digits, or a zero rate): a rate is never silently rounded.
func ParseRate(s string) (Rate, error) {
	if len(s) == 0 || len(s) > 24 {
		return Rate{}, fmt.Errorf("rate %q: want a decimal such as \"0.04712\"", s)
	}
	intPart, frac, _ := strings.Cut(s, ".")
	digits := strings.TrimLeft(intPart+frac, "0")
	decimals := len(frac)
	// Trailing zeros of the fraction carry no value: drop them first.
	for decimals > 0 && strings.HasSuffix(digits, "0") {
		digits, decimals = digits[:len(digits)-1], decimals-1
	}
	if strings.Trim(intPart+frac, "0123456789") != "" || intPart+frac == "" {
		return Rate{}, fmt.Errorf("rate %q: want a decimal such as \"0.04712\"", s)
	}
	if digits == "" {
		return Rate{}, fmt.Errorf("rate %q: must be positive", s)
	}
	// Use the most decimals DE10 allows so the mantissa keeps its digits.
	for len(digits) < 7 && decimals < maxRateDecimals {
		digits += "0"
		decimals++
	}
	if len(digits) > 7 || decimals > maxRateDecimals {
		return Rate{}, fmt.Errorf("rate %q: more precision than DE10 holds (7 significant digits, 9 decimals)", s)
	}
	var m uint32
	for i := 0; i < len(digits); i++ {
		m = m*10 + uint32(digits[i]-'0')
	}
	return Rate{Decimals: uint8(decimals), Mantissa: m}, nil
}

// ParseDE10 reads a DE10 field.
func ParseDE10(s string) (Rate, error) {
	if len(s) != 8 || strings.Trim(s, "0123456789") != "" {
		return Rate{}, fmt.Errorf("DE10 %q: want 8 digits", s)
	}
	var m uint32
	for i := 1; i < 8; i++ {
		m = m*10 + uint32(s[i]-'0')
	}
	if m == 0 {
		return Rate{}, fmt.Errorf("DE10 %q: zero rate", s)
	}
	return Rate{Decimals: s[0] - '0', Mantissa: m}, nil
}

// DE10 is the rate as ISO 8583 field 10.
func (r Rate) DE10() string {
	return fmt.Sprintf("%d%07d", r.Decimals, r.Mantissa)
}

// String is the rate as a decimal ("0.0471200").
func (r Rate) String() string {
	s := fmt.Sprintf("%0*d", int(r.Decimals)+1, r.Mantissa)
	if r.Decimals == 0 {
		return s
	}
	return s[:len(s)-int(r.Decimals)] + "." + s[len(s)-int(r.Decimals):]
}

var pow10 = [...]uint64{1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14}

// Convert converts amountMinor of a currency with minorUnits decimals into
// CNY fen at rate, rounding half up (see the package comment).
func Convert(amountMinor int64, minorUnits int, r Rate) (int64, error) {
	if amountMinor < 0 || amountMinor > MaxAmountMinor || minorUnits < 0 || minorUnits > 4 ||
		r.Decimals > maxRateDecimals || r.Mantissa == 0 || r.Mantissa > maxRateMantissa {
		return 0, ErrAmountRange
	}
	const fenDigits = 2
	hi, lo := bits.Mul64(uint64(amountMinor), uint64(r.Mantissa))
	exp := minorUnits + int(r.Decimals) - fenDigits // divide by 10^exp
	if exp < 0 {
		// Fewer source decimals than fen: scale up (amount < 10^12,
		// mantissa < 10^7, factor ≤ 100: the product stays under 2^128).
		k := pow10[-exp]
		h2, l2 := bits.Mul64(lo, k)
		hi = hi*k + h2
		lo = l2
		exp = 0
	}
	den := pow10[exp]
	if hi >= den {
		return 0, ErrAmountRange
	}
	q, rem := bits.Div64(hi, lo, den)
	if rem >= den-rem { // rem ≥ den/2 without overflow: half up
		q++
	}
	if q > MaxAmountMinor {
		return 0, ErrAmountRange
	}
	return int64(q), nil
}

// RateVersion is one version of the rate table, by ISO 4217 numeric code.
type RateVersion struct {
	Version       int64
	EffectiveFrom time.Time
	Rates         map[string]Rate // numeric currency → rate to CNY
	Created       time.Time
}

// DefaultRateMaxAge is how old the rate table in effect may be before the
// switch stops converting with it.
const DefaultRateMaxAge = 48 * time.Hour

// maxRateVersions bounds the versions kept in memory (and answered by GET):
// older ones stay in the store.
const maxRateVersions = 64

// RateTable is the effective-dated, versioned table of rates to CNY. Lookups
// take the version with the latest EffectiveFrom not after the transaction
// time: a version effective in the future is never used.
type RateTable struct {
	maxAge time.Duration
	mu     sync.RWMutex
	vs     []RateVersion // by EffectiveFrom, then Version
}

// NewRateTable is an empty table; maxAge ≤ 0 takes DefaultRateMaxAge.
func NewRateTable(maxAge time.Duration) *RateTable {
	if maxAge <= 0 {
		maxAge = DefaultRateMaxAge
	}
	return &RateTable{maxAge: maxAge}
}

// RateVersionOf validates a configured rate set into a version: every code
// an ISO 4217 currency of the table other than CNY, every rate one DE10
// holds.
func RateVersionOf(rs config.RateSet) (RateVersion, error) {
	if rs.Version <= 0 {
		return RateVersion{}, mipay.Errorf(mipay.EINVALID, "version must be positive")
	}
	if len(rs.Rates) == 0 || len(rs.Rates) > 512 {
		return RateVersion{}, mipay.Errorf(mipay.EINVALID, "rates: 1–512 currencies")
	}
	v := RateVersion{Version: rs.Version, EffectiveFrom: rs.EffectiveFrom.UTC(), Rates: make(map[string]Rate, len(rs.Rates))}
	for code, s := range rs.Rates {
		c, ok := config.CurrencyByCode(code)
		if !ok || c.Numeric == config.BillingCurrency {
			return RateVersion{}, mipay.Errorf(mipay.EINVALID, "rates: %q is not a foreign ISO 4217 currency the network knows", code)
		}
		r, err := ParseRate(s)
		if err != nil {
			return RateVersion{}, mipay.WrapError(mipay.EINVALID, err, "rates: %s: %v", code, err)
		}
		v.Rates[c.Numeric] = r
	}
	return v, nil
}

// add puts a version in the table; its number must be new.
func (t *RateTable) add(v RateVersion) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, o := range t.vs {
		if o.Version == v.Version {
			return mipay.Errorf(mipay.ECONFLICT, "rate table version %d exists", v.Version)
		}
	}
	t.vs = append(t.vs, v)
	sort.Slice(t.vs, func(i, j int) bool {
		if !t.vs[i].EffectiveFrom.Equal(t.vs[j].EffectiveFrom) {
			return t.vs[i].EffectiveFrom.Before(t.vs[j].EffectiveFrom)
		}
		return t.vs[i].Version < t.vs[j].Version
	})
	if len(t.vs) > maxRateVersions {
		t.vs = append([]RateVersion(nil), t.vs[len(t.vs)-maxRateVersions:]...)
	}
	return nil
}

// Lookup returns the rate of a currency (ISO 4217 numeric) in effect at
// at, and the version it comes from.
func (t *RateTable) Lookup(currency string, at time.Time) (Rate, int64, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for i := len(t.vs) - 1; i >= 0; i-- {
		v := &t.vs[i]
		if v.EffectiveFrom.After(at) {
			continue // from the future
		}
		if at.Sub(v.EffectiveFrom) > t.maxAge {
			return Rate{}, v.Version, fmt.Errorf("%w: version %d effective %s", ErrRateStale, v.Version, v.EffectiveFrom.Format(time.RFC3339))
		}
		r, ok := v.Rates[currency]
		if !ok {
			return Rate{}, v.Version, fmt.Errorf("%w for currency %s (version %d)", ErrNoRate, currency, v.Version)
		}
		return r, v.Version, nil
	}
	return Rate{}, 0, fmt.Errorf("%w: no version effective yet", ErrNoRate)
}

// Versions returns the versions held, oldest first.
func (t *RateTable) Versions() []RateVersion {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return append([]RateVersion(nil), t.vs...)
}

func (t *RateTable) latestVersion() int64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var n int64
	for _, v := range t.vs {
		n = max(n, v.Version)
	}
	return n
}

// rateSetOf is the wire and stored form of a version.
func rateSetOf(v RateVersion) config.RateSet {
	rs := config.RateSet{Version: v.Version, EffectiveFrom: v.EffectiveFrom, Rates: make(map[string]string, len(v.Rates))}
	for num, r := range v.Rates {
		c, _ := config.CurrencyByNumeric(num)
		rs.Rates[c.Code] = r.String()
	}
	return rs
}

// loadRates fills the table from the store; an empty store gets the
// embedded default, effective from now (a bootstrap table: operators post
// current rates through the admin API).
func (s *Switch) loadRates(ctx context.Context) error {
	n, err := s.readRates(ctx, `SELECT version, effective_from, rates, created_at FROM fx_rates
		ORDER BY effective_from DESC, version DESC LIMIT `+fmt.Sprint(maxRateVersions))
	if err != nil || n > 0 {
		return err
	}
	def, err := config.DefaultRates()
	if err != nil {
		return err
	}
	if def.EffectiveFrom.IsZero() || def.EffectiveFrom.Year() <= 1 {
		def.EffectiveFrom = s.now().UTC().Truncate(time.Millisecond)
	}
	_, err = s.PublishRates(ctx, def)
	if mipay.ErrorCode(err) == mipay.ECONFLICT {
		// Another switch node over the same store published it first.
		_, err = s.readRates(ctx, `SELECT version, effective_from, rates, created_at FROM fx_rates ORDER BY version`)
	}
	return err
}

// DefaultRateRefresh is how often a switch node reads versions other nodes
// published into the shared store.
const DefaultRateRefresh = 10 * time.Second

// refreshRates adds the versions stored since this node last looked.
func (s *Switch) refreshRates(ctx context.Context) error {
	_, err := s.readRates(ctx, `SELECT version, effective_from, rates, created_at FROM fx_rates WHERE version > $1
		ORDER BY version LIMIT `+fmt.Sprint(maxRateVersions), s.rates.latestVersion())
	return err
}

func (s *Switch) rateRefreshLoop() {
	defer s.wg.Done()
	t := time.NewTicker(DefaultRateRefresh)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := s.refreshRates(ctx); err != nil {
			s.log.Warn("reading published exchange rates failed; will retry", "err", err)
		}
		cancel()
	}
}

// readRates adds the versions a query returns that the table lacks.
func (s *Switch) readRates(ctx context.Context, query string, args ...any) (int, error) {
	rows, err := s.db.DB.QueryContext(ctx, query, args...)
	if err != nil {
		return 0, fmt.Errorf("network: load rates: %w", err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var rs config.RateSet
		var eff, created int64
		var raw []byte
		if err := rows.Scan(&rs.Version, &eff, &raw, &created); err != nil {
			return n, err
		}
		if err := json.Unmarshal(raw, &rs.Rates); err != nil {
			return n, fmt.Errorf("network: stored rates v%d: %w", rs.Version, err)
		}
		rs.EffectiveFrom = time.UnixMilli(eff).UTC()
		v, err := RateVersionOf(rs)
		if err != nil {
			return n, fmt.Errorf("network: stored rates v%d: %w", rs.Version, err)
		}
		v.Created = time.UnixMilli(created).UTC()
		if err := s.rates.add(v); mipay.ErrorCode(err) == mipay.ECONFLICT {
			continue // already held
		} else if err != nil {
			return n, err
		}
		n++
	}
	return n, rows.Err()
}

// PublishRates adds a version of the rate table, durably first. Its
// version must be above every version known; it may be effective in the
// future (it is used from then on) but not more than maxRateBackdate in the
// past, so history cannot be rewritten.
func (s *Switch) PublishRates(ctx context.Context, rs config.RateSet) (RateVersion, error) {
	if rs.EffectiveFrom.IsZero() {
		rs.EffectiveFrom = s.now()
	}
	rs.EffectiveFrom = rs.EffectiveFrom.UTC().Truncate(time.Millisecond)
	v, err := RateVersionOf(rs)
	if err != nil {
		return v, err
	}
	if err := s.refreshRates(ctx); err != nil {
		return v, err // versions other nodes published must be known first
	}
	if latest := s.rates.latestVersion(); v.Version <= latest {
		return v, mipay.Errorf(mipay.ECONFLICT, "version %d is not above the latest version %d", v.Version, latest)
	}
	if s.now().Sub(v.EffectiveFrom) > maxRateBackdate {
		return v, mipay.Errorf(mipay.EINVALID, "effectiveFrom is more than %s in the past", maxRateBackdate)
	}
	v.Created = s.now().UTC()
	raw, err := json.Marshal(rateSetOf(v).Rates)
	if err != nil {
		return v, err
	}
	err = s.w.Write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO fx_rates (version, effective_from, rates, created_at) VALUES ($1,$2,$3,$4)`,
			v.Version, v.EffectiveFrom.UnixMilli(), raw, v.Created.UnixMilli())
		return err
	})
	if err != nil {
		return v, fmt.Errorf("network: store rates: %w", err)
	}
	if err := s.rates.add(v); err != nil {
		return v, err
	}
	s.log.Info("exchange rates published", "version", v.Version, "effective_from", v.EffectiveFrom, "currencies", len(v.Rates))
	return v, nil
}

// maxRateBackdate is how far in the past a new version may take effect.
const maxRateBackdate = 5 * time.Minute

// Rates is the switch's rate table.
func (s *Switch) Rates() *RateTable { return s.rates }
