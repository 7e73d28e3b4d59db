package promo

import (
	"context"
	"database/sql"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/mipay-oss/mipay"
)

// MaxListCampaigns bounds one List answer.
const MaxListCampaigns = 1000

// Create stores a new campaign after validating it; a bad definition stores
// nothing and says which field is wrong.
func (e *Engine) Create(ctx context.Context, c Campaign) (Campaign, error) {
	if err := c.Validate(); err != nil {
		return Campaign{}, err
	}
	if c.Status == StatusEnded {
		return Campaign{}, invalid("a new campaign cannot be ended")
	}
	err := e.db.Tx(ctx, func(tx *sql.Tx) error { return insertCampaign(ctx, tx, c, e.now().UnixMilli()) })
	if err != nil {
		return Campaign{}, err
	}
	return c, e.reload(c)
}

func insertCampaign(ctx context.Context, tx *sql.Tx, c Campaign, now int64) error {
	def, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("promo: encode campaign: %w", err)
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO campaigns (id, issuer_id, definition, status, budget_minor, budget_used,
		max_redemptions, redemptions, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 0, $6, 0, $7, $7)
		ON CONFLICT (id) DO NOTHING`, c.ID, c.IssuerID, string(def), string(c.Status), c.Limits.BudgetMinor, c.Limits.MaxRedemptions, now)
	if err != nil {
		return fmt.Errorf("promo: store campaign: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return mipay.Errorf(mipay.ECONFLICT, "promo: campaign %q already exists", c.ID)
	}
	return nil
}

// reload puts one campaign in the evaluation set (or takes it out).
func (e *Engine) reload(c Campaign) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	defer e.buildIndex()
	if c.Status == StatusEnded {
		delete(e.campaigns, c.ID)
		return nil
	}
	cc, err := compile(c)
	if err != nil {
		return err
	}
	e.campaigns[c.ID] = cc
	return nil
}

// SetStatus pauses, resumes or ends a campaign of issuerID ("" for any).
// Ended is final. Reservations made before a pause stay valid.
func (e *Engine) SetStatus(ctx context.Context, issuerID, id string, to Status) (Campaign, error) {
	switch to {
	case StatusActive, StatusPaused, StatusEnded:
	default:
		return Campaign{}, invalid("status %q is unknown", to)
	}
	var c Campaign
	err := e.db.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		if c, err = loadCampaign(ctx, tx, id, e.db.ForUpdate()); err != nil {
			return err
		}
		if issuerID != "" && c.IssuerID != issuerID {
			return ErrNotFound
		}
		if c.Status == StatusEnded && to != StatusEnded {
			return mipay.Errorf(mipay.ECONFLICT, "promo: campaign %q has ended", id)
		}
		c.Status = to
		def, err := json.Marshal(c)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE campaigns SET status = $1, definition = $2, updated_at = $3 WHERE id = $4`,
			string(to), string(def), e.now().UnixMilli(), id)
		return err
	})
	if err != nil {
		return Campaign{}, err
	}
	return c, e.reload(c)
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func loadCampaign(ctx context.Context, q queryer, id, suffix string) (Campaign, error) {
	var def, status string
	err := q.QueryRowContext(ctx, `SELECT definition, status FROM campaigns WHERE id = $1`+suffix, id).Scan(&def, &status)
	if errors.Is(err, sql.ErrNoRows) {
		return Campaign{}, ErrNotFound
	}
	if err != nil {
		return Campaign{}, fmt.Errorf("promo: load campaign: %w", err)
	}
	var c Campaign
	if err := json.Unmarshal([]byte(def), &c); err != nil {
		return Campaign{}, fmt.Errorf("promo: campaign definition: %w", err)
	}
	c.Status = Status(status)
	return c, nil
}

// Stats is what a bank sees of a campaign.
type Stats struct {
	CampaignID      string `json:"campaignId"`
	Status          Status `json:"status"`
	Redemptions     int64  `json:"redemptions"` // reserved or confirmed, not released
	Confirmed       int64  `json:"confirmed"`
	Released        int64  `json:"released"`
	BudgetMinor     int64  `json:"budgetMinor"`
	BudgetUsedMinor int64  `json:"budgetUsedMinor"`
}

// Stats reports a campaign's use; issuerID "" for any bank.
func (e *Engine) Stats(ctx context.Context, issuerID, id string) (Stats, error) {
	s := Stats{CampaignID: id}
	var iss, status string
	err := e.db.DB.QueryRowContext(ctx, `SELECT issuer_id, status, budget_minor, budget_used, redemptions FROM campaigns WHERE id = $1`, id).
		Scan(&iss, &status, &s.BudgetMinor, &s.BudgetUsedMinor, &s.Redemptions)
	if errors.Is(err, sql.ErrNoRows) || err == nil && issuerID != "" && iss != issuerID {
		return Stats{}, ErrNotFound
	}
	if err != nil {
		return Stats{}, fmt.Errorf("promo: stats: %w", err)
	}
	s.Status = Status(status)
	rows, err := e.db.DB.QueryContext(ctx, `SELECT state, COUNT(*) FROM reservations WHERE campaign_id = $1 GROUP BY state`, id)
	if err != nil {
		return Stats{}, fmt.Errorf("promo: stats: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var st string
		var n int64
		if err := rows.Scan(&st, &n); err != nil {
			return Stats{}, fmt.Errorf("promo: stats: %w", err)
		}
		switch st {
		case "confirmed":
			s.Confirmed = n
		case "released":
			s.Released = n
		}
	}
	return s, rows.Err()
}

// List returns the campaigns of issuerID ("" for all), at most
// MaxListCampaigns, by id.
func (e *Engine) List(ctx context.Context, issuerID string) ([]Campaign, error) {
	rows, err := e.db.DB.QueryContext(ctx, `SELECT definition, status FROM campaigns WHERE ($1 = '' OR issuer_id = $1) ORDER BY id LIMIT $2`,
		issuerID, MaxListCampaigns)
	if err != nil {
		return nil, fmt.Errorf("promo: list: %w", err)
	}
	defer rows.Close()
	var out []Campaign
	for rows.Next() {
		var def, status string
		if err := rows.Scan(&def, &status); err != nil {
			return nil, fmt.Errorf("promo: list: %w", err)
		}
		var c Campaign
		if err := json.Unmarshal([]byte(def), &c); err != nil {
			return nil, fmt.Errorf("promo: campaign definition: %w", err)
		}
		c.Status = Status(status)
		out = append(out, c)
	}
	return out, rows.Err()
}

//go:embed defaults.json
var defaultCampaigns []byte

// DefaultsName names the embedded default campaign set in the seeded table.
const DefaultsName = "defaults-v1"

// DefaultCampaigns decodes the embedded default campaigns.
func DefaultCampaigns() ([]Campaign, error) {
	var cs []Campaign
	if err := json.Unmarshal(defaultCampaigns, &cs); err != nil {
		return nil, fmt.Errorf("promo: default campaigns: %w", err)
	}
	return cs, nil
}

// SeedDefaults stores the embedded default campaigns of several banks on the
// first start (once per store: a bank's later pause or end is kept). It
// reports whether this call seeded them.
func (e *Engine) SeedDefaults(ctx context.Context) (bool, error) {
	cs, err := DefaultCampaigns()
	if err != nil {
		return false, err
	}
	for i := range cs {
		if err := cs[i].Validate(); err != nil {
			return false, fmt.Errorf("promo: default campaign %q: %w", cs[i].ID, err)
		}
	}
	seeded := false
	err = e.db.Tx(ctx, func(tx *sql.Tx) error {
		seeded = false
		res, err := tx.ExecContext(ctx, `INSERT INTO seeded (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`,
			DefaultsName, e.now().UnixMilli())
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return nil
		}
		for _, c := range cs {
			if err := insertCampaign(ctx, tx, c, e.now().UnixMilli()); err != nil && mipay.ErrorCode(err) != mipay.ECONFLICT {
				return err
			}
		}
		seeded = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("promo: seed defaults: %w", err)
	}
	if seeded {
		return true, e.Refresh(ctx)
	}
	return false, nil
}
