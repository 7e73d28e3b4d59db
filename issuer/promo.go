package issuer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/mipay-oss/mipay/iso8583"
)

// Bank promotions (issue 8). The switch applies a bank's campaign and sends
// DE124: the original amount (= DE4), the discount and the points
// multiplier. The issuer then
//   - holds the discounted amount on the card (what the cardholder pays),
//   - books the discount to the bank's marketing account against a promotion
//     payable (the merchant is paid in full at settlement: held + payable),
//   - credits the card's points account: whole CNY paid × PointsPerCNY ×
//     multiplier, against the bank's points-issued account.
//
// Every approval earns points (multiplier 1 without a campaign). A reversal
// takes the discount booking and the points back with the hold, in the same
// transaction. All entries are double-entry: postings sum to zero.

// DefaultPointsPerCNY is how many points one whole CNY paid earns.
const DefaultPointsPerCNY = 1

// Posting kinds of promotions and points.
const (
	kindPromo       = "PROMO"
	kindPromoRev    = "PROMO_REVERSAL"
	kindPoints      = "POINTS"
	kindPointsRev   = "POINTS_REVERSAL"
	promoEntryPfx   = "promo/"
	pointsEntryPfx  = "points/"
	maxMultiplier   = 100
	promoChunkRows  = 16 // posting rows per multi-row INSERT
	promoPostingCol = 8
)

func marketingAccount(issuerID string) string    { return "bank/" + issuerID + "/marketing" }
func promoPayableAccount(issuerID string) string { return "bank/" + issuerID + "/promotion-payable" }
func pointsIssuedAccount(issuerID string) string { return "bank/" + issuerID + "/points-issued" }
func pointsAccount(cardID string) string         { return "points/" + cardID }

// Promotion is DE124 as the issuer uses it.
type Promotion struct {
	OriginalMinor int64
	DiscountMinor int64
	CampaignID    string
	Multiplier    int64
}

// parsePromotion reads DE124; ok is false when it is malformed.
func parsePromotion(m *iso8583.Message) (p *Promotion, ok bool) {
	if !m.Has(iso8583.FieldPromotion) {
		return nil, true
	}
	f, err := iso8583.ParsePromotion(m.String(iso8583.FieldPromotion))
	if err != nil {
		return nil, false
	}
	p = &Promotion{CampaignID: f.CampaignID, Multiplier: 1}
	if p.OriginalMinor, err = iso8583.ParseAmount(f.OriginalAmount); err != nil {
		return nil, false
	}
	if p.DiscountMinor, err = iso8583.ParseAmount(f.DiscountAmount); err != nil {
		return nil, false
	}
	if f.Points != "" {
		if p.Multiplier, err = strconv.ParseInt(f.Points, 10, 64); err != nil || p.Multiplier < 1 || p.Multiplier > maxMultiplier {
			return nil, false
		}
	}
	return p, true
}

// discounted returns what the cardholder is held for: amount less the
// promotion's discount. A promotion that does not fit the message (another
// original amount, a converted payment, a discount not below the amount) is
// a format error: the network never sends one.
func discounted(req *AuthRequest, amount int64) (int64, ResponseCode) {
	p := req.Promotion
	if p == nil {
		return amount, RCApproved
	}
	if p.OriginalMinor != req.AmountMinor || req.BillingCurrency != "" || p.DiscountMinor < 0 || p.DiscountMinor >= amount {
		return amount, RCFormatError
	}
	return amount - p.DiscountMinor, RCApproved
}

// pointsFor is what a payment of paidMinor fen earns.
func pointsFor(paidMinor, multiplier int64) int64 {
	if multiplier < 1 {
		multiplier = 1
	}
	return paidMinor / 100 * DefaultPointsPerCNY * multiplier
}

// writePromotions posts, for approved jobs, the discount booking and the
// points, in the group's transaction (so with the hold, or not at all).
func writePromotions(ctx context.Context, tx *sql.Tx, jobs []*authJob) error {
	rows := make([][promoPostingCol]any, 0, 4*len(jobs))
	for _, j := range jobs {
		rec := j.rec
		mult := int64(1)
		if p := j.req.Promotion; p != nil {
			mult = p.Multiplier
			if p.DiscountMinor > 0 {
				e := promoEntryPfx + rec.id
				rows = append(rows,
					[promoPostingCol]any{e, 1, rec.issuerID, promoPayableAccount(rec.issuerID), p.DiscountMinor, rec.id, j.ms, kindPromo},
					[promoPostingCol]any{e, 2, rec.issuerID, marketingAccount(rec.issuerID), -p.DiscountMinor, rec.id, j.ms, kindPromo})
			}
		}
		if pts := pointsFor(rec.amount, mult); pts > 0 {
			e := pointsEntryPfx + rec.id
			rows = append(rows,
				[promoPostingCol]any{e, 1, rec.issuerID, pointsAccount(rec.cardID), pts, rec.id, j.ms, kindPoints},
				[promoPostingCol]any{e, 2, rec.issuerID, pointsIssuedAccount(rec.issuerID), -pts, rec.id, j.ms, kindPoints})
		}
	}
	return insertPostingRows(ctx, tx, rows)
}

// promoPostingSQL[n] inserts n posting rows (built once, not per write).
var promoPostingSQL = func() (q [promoChunkRows + 1]string) {
	for n := 1; n <= promoChunkRows; n++ {
		q[n] = `INSERT INTO postings (entry_id, leg, issuer_id, account, amount_minor, auth_id, created_ms, kind) VALUES ` +
			placeholders(n, promoPostingCol, "")
	}
	return q
}()

func insertPostingRows(ctx context.Context, tx *sql.Tx, rows [][promoPostingCol]any) error {
	for len(rows) > 0 {
		n := min(len(rows), promoChunkRows)
		args := make([]any, 0, n*promoPostingCol)
		for _, r := range rows[:n] {
			args = append(args, r[:]...)
		}
		if _, err := tx.ExecContext(ctx, promoPostingSQL[n], args...); err != nil {
			return fmt.Errorf("insert promotion postings: %w", err)
		}
		rows = rows[n:]
	}
	return nil
}

// reversePromotion takes an authorization's discount booking and points
// back: each of its PROMO/POINTS legs is posted again with the opposite
// sign. Looked up by entry id (the primary key), so no scan. It returns the
// points taken off the card's points account and the discount taken back
// from the bank's marketing account.
func reversePromotion(ctx context.Context, tx *sql.Tx, authID, cardID, issuerID string, ms int64) (points, discount int64, err error) {
	r, err := tx.QueryContext(ctx, `SELECT entry_id, leg, issuer_id, account, amount_minor, kind FROM postings
		WHERE entry_id IN ($1, $2) ORDER BY entry_id, leg`, promoEntryPfx+authID, pointsEntryPfx+authID)
	if err != nil {
		return 0, 0, fmt.Errorf("promotion of %s: %w", authID, err)
	}
	var rows [][promoPostingCol]any
	for r.Next() {
		var entry, issuerID, account, kind string
		var leg int
		var amount int64
		if err := r.Scan(&entry, &leg, &issuerID, &account, &amount, &kind); err != nil {
			r.Close()
			return 0, 0, err
		}
		if cardID != "" && account == pointsAccount(cardID) {
			points += amount
		}
		if account == marketingAccount(issuerID) {
			discount -= amount // the approval debited marketing by the discount
		}
		rk := kindPromoRev
		if kind == kindPoints {
			rk = kindPointsRev
		}
		rows = append(rows, [promoPostingCol]any{"rev-" + entry, leg, issuerID, account, -amount, authID, ms, rk})
	}
	r.Close()
	if err := r.Err(); err != nil {
		return 0, 0, err
	}
	return points, discount, insertPostingRows(ctx, tx, rows)
}

// earnPoints adds what an approval (already stored) earned to the card's
// points balance in memory and returns both: the points are in the ledger
// with the hold (writePromotions), memory follows it.
func (a *account) earnPoints(req *AuthRequest, paidMinor int64) (earned, balance int64) {
	mult := int64(1)
	if req.Promotion != nil {
		mult = req.Promotion.Multiplier
	}
	earned = pointsFor(paidMinor, mult)
	a.mu.Lock()
	a.points += earned
	balance = a.points
	a.mu.Unlock()
	return earned, balance
}

// takePoints follows a stored reversal's points in memory and returns the
// card's balance after it.
func (a *account) takePoints(n int64) int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.points -= n
	return a.points
}

// loadPoints reads every card's points balance from the ledger at start
// (memory is rebuilt from the store, like the money balances).
func (h *Host) loadPoints(ctx context.Context) error {
	rows, err := h.db.DB.QueryContext(ctx, `SELECT account, SUM(amount_minor) FROM postings
		WHERE account LIKE 'points/%' GROUP BY account`)
	if err != nil {
		return fmt.Errorf("load points: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var sum int64
		if err := rows.Scan(&name, &sum); err != nil {
			return fmt.Errorf("load points: %w", err)
		}
		if a := h.cards[strings.TrimPrefix(name, "points/")]; a != nil {
			a.points = sum
		}
	}
	return rows.Err()
}

// pointsField is the DE124 of an approval's answer: the request's promotion
// (when the network sent one) with the points earned and the new balance,
// which the network passes to the wallet (never to the acquirer).
func pointsField(m *iso8583.Message, res AuthResult) (string, error) {
	var f iso8583.Promotion
	if m.Has(iso8583.FieldPromotion) {
		var err error
		if f, err = iso8583.ParsePromotion(m.String(iso8583.FieldPromotion)); err != nil {
			return "", err
		}
	}
	f.PointsEarned = strconv.FormatInt(res.PointsEarned, 10)
	f.PointsBalance = strconv.FormatInt(res.PointsBalance, 10)
	return f.Encode()
}

// repeatedReversal answers a reversal of an original reversed before (the
// network retrying after a lost 0410) as the first was, from the ledger: the
// discount and points that reversal took back, and the card's balance now.
// Nothing is released again. Without the ledger's answer it still
// acknowledges (the hold is released), without points.
func (h *Host) repeatedReversal(ctx context.Context, orig *authRecord) ReversalResult {
	res := ReversalResult{Code: RCApproved, AuthID: orig.id}
	if orig.acct == nil || orig.cardID == "" {
		return res
	}
	var points, marketing, released int64
	err := h.db.DB.QueryRowContext(ctx, `SELECT COALESCE(SUM(CASE WHEN account = $3 THEN amount_minor ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN account = $4 THEN amount_minor ELSE 0 END), 0),
		(SELECT COUNT(*) FROM postings WHERE entry_id = $5) FROM postings WHERE entry_id IN ($1, $2)`,
		"rev-"+pointsEntryPfx+orig.id, "rev-"+promoEntryPfx+orig.id, pointsAccount(orig.cardID), marketingAccount(orig.issuerID),
		"release/"+orig.id).Scan(&points, &marketing, &released)
	if err != nil {
		h.log.ErrorContext(ctx, "repeated reversal: points taken back", "err", err)
		return res
	}
	if released == 0 {
		// The first reversal's write is still in flight (memory is marked
		// first): its points are not in the ledger yet, so none are told.
		return res
	}
	a := orig.acct
	a.mu.Lock()
	res.PointsBalance = a.points
	a.mu.Unlock()
	// The reversal legs carry the opposite signs of the approval's.
	res.Points, res.PointsTaken, res.DiscountMinor = true, -points, marketing
	return res
}

// reversalPointsField is the DE124 of a reversal's answer: the discount
// taken back (tag 02), the points taken back (05) and the card's balance
// after it (06), which the network passes to the wallet in
// transaction.reversed.
func reversalPointsField(res ReversalResult) (string, error) {
	f := iso8583.Promotion{PointsEarned: strconv.FormatInt(res.PointsTaken, 10),
		PointsBalance: strconv.FormatInt(res.PointsBalance, 10)}
	if res.DiscountMinor > 0 {
		d, err := iso8583.FormatAmount(res.DiscountMinor)
		if err != nil {
			return "", err
		}
		f.DiscountAmount = d
	}
	return f.Encode()
}

// PointsBalance is a card's points (0 for a card with none).
func (h *Host) PointsBalance(ctx context.Context, cardID string) (int64, error) {
	var n int64
	err := h.db.DB.QueryRowContext(ctx, `SELECT COALESCE(SUM(amount_minor), 0) FROM postings WHERE account = $1`, pointsAccount(cardID)).Scan(&n)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("issuer: points balance: %w", err)
	}
	return n, nil
}

// MarketingSpent is what the bank's promotions cost it so far, net of
// reversals (fen).
func (h *Host) MarketingSpent(ctx context.Context, issuerID string) (int64, error) {
	var n int64
	err := h.db.DB.QueryRowContext(ctx, `SELECT COALESCE(SUM(amount_minor), 0) FROM postings WHERE account = $1`, marketingAccount(issuerID)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("issuer: marketing spent: %w", err)
	}
	return -n, nil
}
