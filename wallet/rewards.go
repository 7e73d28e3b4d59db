package wallet

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/httpx"
)

// Rewards (issue 8): per card, the bank offers it qualifies for now and its
// points balance; per transaction, the points it earned.
//
// Points come from the issuer's answers (see migrations/0050_rewards.sql;
// since 0070 a transaction's points are on its row):
// the wallet records them from transaction.authorized. Offers come from the
// promotions engine's public query, asked with what the wallet knows of the
// card (issuer, card type, product, channel: a Mi Pay token), never a PAN.

// DefaultOffersTimeout bounds one offers query.
const DefaultOffersTimeout = 3 * time.Second

// maxEventPoints bounds points believed from an event (12 digits, as DE124).
const maxEventPoints = 999_999_999_999

// Offers answers which bank offers a card qualifies for now.
type Offers interface {
	Offers(ctx context.Context, q OfferQuery) ([]Offer, error)
}

// OfferQuery is a card as the wallet knows it.
type OfferQuery struct {
	IssuerID, CardType, Product string
}

// OfferBenefit is what an offer gives (the engine's benefit).
type OfferBenefit struct {
	Kind        string `json:"kind"` // fixed, percent, random, points
	AmountMinor int64  `json:"amountMinor,omitempty"`
	PercentBP   int64  `json:"percentBp,omitempty"`
	CapMinor    int64  `json:"capMinor,omitempty"`
	MinMinor    int64  `json:"minMinor,omitempty"`
	MaxMinor    int64  `json:"maxMinor,omitempty"`
	Multiplier  int64  `json:"multiplier,omitempty"`
}

// Offer is a bank offer as the phone shows it.
type Offer struct {
	CampaignID     string       `json:"campaignId"`
	BankName       string       `json:"bankName"`
	Name           string       `json:"name"`
	Benefit        OfferBenefit `json:"benefit"`
	MinAmountMinor int64        `json:"minAmountMinor,omitempty"`
	MCCs           []string     `json:"mccs,omitempty"`
	MerchantIDs    []string     `json:"merchantIds,omitempty"`
	Cities         []string     `json:"cities,omitempty"`
	Countries      []string     `json:"countries,omitempty"`
	FirstPayment   bool         `json:"firstPaymentOnly,omitempty"`
	Ends           time.Time    `json:"ends"`
	// Text is one line for the phone: "10.00 CNY off from 50.00 CNY".
	Text string `json:"text"`
}

// HTTPOffers asks the promotions engine's GET /v1/promo/offers (served on
// the switch's HTTP listener). Base is read at each call (the switch may
// start after the wallet).
type HTTPOffers struct {
	Base    func() string
	Timeout time.Duration
}

// Offers implements Offers.
func (o *HTTPOffers) Offers(ctx context.Context, q OfferQuery) ([]Offer, error) {
	base := ""
	if o.Base != nil {
		base = o.Base()
	}
	if base == "" {
		return nil, mipay.Errorf(mipay.EUNAVAILABLE, "no promotions engine is configured")
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = DefaultOffersTimeout
	}
	v := url.Values{"issuerId": {q.IssuerID}, "channel": {"mipay"}}
	if q.CardType != "" {
		v.Set("cardType", q.CardType)
	}
	if q.Product != "" {
		v.Set("product", q.Product)
	}
	c := httpx.Client{Base: base, HTTP: &http.Client{Timeout: timeout}}
	var out struct {
		Offers []Offer `json:"offers"`
	}
	if err := c.Do(ctx, http.MethodGet, "/v1/promo/offers?"+v.Encode(), nil, &out); err != nil {
		return nil, fmt.Errorf("wallet: offers: %w", err)
	}
	for i := range out.Offers {
		out.Offers[i].Text = offerText(&out.Offers[i])
	}
	return out.Offers, nil
}

// offerText words an offer's benefit for the phone.
func offerText(o *Offer) string {
	b := o.Benefit
	var s string
	switch b.Kind {
	case "fixed":
		s = money(b.AmountMinor) + " CNY off"
	case "percent":
		s = fmt.Sprintf("%d.%02d%% off, up to %s CNY", b.PercentBP/100, b.PercentBP%100, money(b.CapMinor))
	case "random":
		s = fmt.Sprintf("%s to %s CNY off", money(b.MinMinor), money(b.MaxMinor))
	case "points":
		s = fmt.Sprintf("%d× points", b.Multiplier)
	default:
		s = "offer"
	}
	if o.MinAmountMinor > 0 {
		s += " from " + money(o.MinAmountMinor) + " CNY"
	}
	return s
}

func money(minor int64) string { return fmt.Sprintf("%d.%02d", minor/100, minor%100) }

// CardPoints is a card's points balance as of its newest approval.
type CardPoints struct {
	Balance int64     `json:"balance"`
	AsOf    time.Time `json:"asOf"`
}

// CardRewards is GET /v1/cards/{id}/rewards.
type CardRewards struct {
	CardID string      `json:"cardId"`
	Points *CardPoints `json:"points"` // null until the card's first approval
	Offers []Offer     `json:"offers"`
	// OffersUnavailable: the promotions engine did not answer (the points
	// are still shown).
	OffersUnavailable bool `json:"offersUnavailable,omitempty"`
}

// CardRewards returns a card's points balance and the offers it qualifies
// for now. A card that is not the account's is not found.
func (s *Service) CardRewards(ctx context.Context, accountID, cardID string) (*CardRewards, error) {
	c, err := s.Card(ctx, accountID, cardID)
	if err != nil {
		return nil, err
	}
	out := &CardRewards{CardID: c.ID, Offers: []Offer{}}
	if out.Points, err = s.repo.cardPoints(ctx, c.ID); err != nil {
		return nil, err
	}
	if c.State != StateActive || s.cfg.Offers == nil {
		// A suspended or removed card pays nothing, so it qualifies for nothing.
		return out, nil
	}
	offers, err := s.cfg.Offers.Offers(ctx, OfferQuery{IssuerID: c.IssuerID, CardType: c.CardType, Product: c.Product})
	if err != nil {
		s.cfg.Log.WarnContext(ctx, "offers unavailable", "err", err)
		out.OffersUnavailable = true
		return out, nil
	}
	out.Offers = offers
	return out, nil
}

func (a *API) rewardRoutes() []route {
	return []route{{"GET", "/v1/cards/{id}/rewards", true, a.cardRewards}}
}

func (a *API) cardRewards(w http.ResponseWriter, r *http.Request, accountID string) error {
	out, err := a.s.CardRewards(r.Context(), accountID, r.PathValue("id"))
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

// EventPoints is the points part of transaction.authorized.
type EventPoints struct {
	Earned  int64 `json:"earned"`
	Balance int64 `json:"balance"`
}

// validPoints returns an approval's points when they are believable (an
// approval, within 12 digits), else nil.
func validPoints(e *TransactionEvent) *EventPoints {
	p := e.Points
	if !e.Approved || p == nil || p.Earned < 0 || p.Earned > maxEventPoints || p.Balance < -maxEventPoints || p.Balance > maxEventPoints {
		return nil
	}
	return p
}

// recordPointsTx records the points t earned, inside tx, once: on the
// transaction's row (with it when inserted, else on the stored row that has
// none yet), and then the card's points balance after it. A redelivered
// event records nothing twice.
func recordPointsTx(ctx context.Context, tx *sql.Tx, t *Transaction, pts *EventPoints, inserted bool) error {
	if !inserted {
		res, err := tx.ExecContext(ctx,
			`UPDATE transactions SET points_earned = $2, points_balance = $3 WHERE id = $1 AND points_earned IS NULL`,
			t.ID, pts.Earned, pts.Balance)
		if err != nil {
			return fmt.Errorf("wallet: record points: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil // a redelivery
		}
	}
	// The balance of the newest approval wins (events may arrive out of
	// order); ties go to the higher transaction id, so every replay agrees.
	_, err := tx.ExecContext(ctx, `INSERT INTO card_points (card_id, balance, as_of_ms, transaction_id) VALUES ($1, $2, $3, $4)
		ON CONFLICT (card_id) DO UPDATE SET balance = excluded.balance, as_of_ms = excluded.as_of_ms,
		transaction_id = excluded.transaction_id
		WHERE card_points.as_of_ms < excluded.as_of_ms
		   OR (card_points.as_of_ms = excluded.as_of_ms AND card_points.transaction_id < excluded.transaction_id)`,
		t.CardID, pts.Balance, ms(t.Time), t.ID)
	if err != nil {
		return fmt.Errorf("wallet: card points: %w", err)
	}
	return nil
}

func (r *repo) cardPoints(ctx context.Context, cardID string) (*CardPoints, error) {
	var p CardPoints
	var at int64
	err := r.db.DB.QueryRowContext(ctx, `SELECT balance, as_of_ms FROM card_points WHERE card_id = $1`, cardID).Scan(&p.Balance, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("wallet: card points: %w", err)
	}
	p.AsOf = fromMS(at)
	return &p, nil
}

// transactionIDsIn gives the ids of a page of transactions as the list of
// an IN (...) with its arguments, and each id's index in ts.
func transactionIDsIn(ts []Transaction) (idx map[string]int, in string, args []any) {
	idx = make(map[string]int, len(ts))
	args = make([]any, 0, len(ts))
	ph := make([]string, 0, len(ts))
	for i := range ts {
		idx[ts[i].ID] = i
		args = append(args, ts[i].ID)
		ph = append(ph, fmt.Sprintf("$%d", len(args)))
	}
	return idx, strings.Join(ph, ", "), args
}
