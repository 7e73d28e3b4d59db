package issuer

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/mipay-oss/mipay/config"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the issuer store's schema migrations.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the embedded directory exists: a build error, not a runtime one
	}
	return sub
}

// Ledger account names.
func availableAccount(cardID string) string { return "card/" + cardID + "/available" }
func heldAccount(cardID string) string      { return "card/" + cardID + "/held" }
func fundingAccount(is *config.Issuer) string {
	if is.CardType == config.Credit {
		return "bank/" + is.ID + "/credit-lines"
	}
	return "bank/" + is.ID + "/deposits"
}

// Posting kinds.
const (
	kindOpen    = "OPEN"
	kindHold    = "HOLD"
	kindRelease = "RELEASE"
)

// The hot-path statements.
const (
	sqlInsertPair = `INSERT INTO postings (entry_id, leg, issuer_id, account, amount_minor, kind, auth_id, created_ms)
		VALUES ($1, 1, $2, $3, $4, $5, $6, $7), ($1, 2, $2, $8, $9, $5, $6, $7)`
	sqlMarkReversed = `UPDATE authorizations SET reversed = 1, reversed_ms = $2 WHERE id = $1 AND reversed = 0 AND approved = 1`
	sqlInsertRev    = `INSERT INTO reversals (id, issuer_id, mti, orig_ident, orig_alt, auth_id, released, created_ms)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`
)

// postPair posts a two-leg journal entry: amount to a, -amount to b. (The
// store caches prepared statements per connection, so plain Exec with a
// constant SQL text is parsed once.)
func postPair(ctx context.Context, tx *sql.Tx, entryID, issuerID, kind, authID string, a, b string, amount, ms int64) error {
	var auth any
	if authID != "" {
		auth = authID
	}
	_, err := tx.ExecContext(ctx, sqlInsertPair, entryID, issuerID, a, amount, kind, auth, ms, b, -amount)
	return err
}

// seed puts the reference data's demo cardholders into the store: each card
// with its opening entry (balance or credit line). Idempotent: card ids and
// opening entry ids derive from the PAN hash, so a second start inserts
// nothing, and a card that exists keeps its state (a restart never resets a
// balance).
func (h *Host) seed(ctx context.Context) error {
	now := h.now().UnixMilli()
	for i := range h.ref.Issuers {
		is := &h.ref.Issuers[i]
		type prepared struct {
			ch   *config.Cardholder
			hash []byte
			cvn2 []byte
		}
		cards := make([]prepared, 0, len(is.Cardholders))
		for j := range is.Cardholders {
			ch := &is.Cardholders[j]
			if !validPAN(ch.PAN) {
				return fmt.Errorf("issuer %s: demo card %s is not a valid PAN", is.ID, maskPAN(ch.PAN))
			}
			ph, err := h.hasher.HMAC(ctx, panHashInput(ch.PAN))
			if err != nil {
				return fmt.Errorf("issuer %s: hash card: %w", is.ID, err)
			}
			p := prepared{ch: ch, hash: ph}
			if ch.CVN2 != "" {
				if p.cvn2, err = h.hasher.HMAC(ctx, cvn2HashInput(cardIDOf(ph), ch.CVN2)); err != nil {
					return fmt.Errorf("issuer %s: hash CVN2: %w", is.ID, err)
				}
			}
			cards = append(cards, p)
		}
		err := h.db.Tx(ctx, func(tx *sql.Tx) error {
			for _, p := range cards {
				ch := p.ch
				id := cardIDOf(p.hash)
				status := ch.Status
				if status == "" {
					status = StatusActive
				}
				product := ch.Product
				if product == "" && len(is.Products) > 0 {
					product = is.Products[0].Code
				}
				var cvn2 any
				if p.cvn2 != nil {
					cvn2 = p.cvn2
				}
				res, err := tx.ExecContext(ctx, `INSERT INTO cards (id, issuer_id, pan_hash, pan_first6, pan_last4, pan_length,
					expiry, cvn2_hash, name, phone, card_type, product, status, psn, credit_limit_minor, created_ms)
					VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) ON CONFLICT DO NOTHING`,
					id, is.ID, p.hash, ch.PAN[:6], ch.PAN[len(ch.PAN)-4:], len(ch.PAN), ch.Expiry, cvn2, ch.Name, ch.Phone,
					is.CardType, product, status, ch.PSN, ch.CreditLimitMinor, now)
				if err != nil {
					return fmt.Errorf("insert card %s: %w", maskPAN(ch.PAN), err)
				}
				if n, _ := res.RowsAffected(); n == 0 {
					continue // seeded before
				}
				opening := ch.BalanceMinor
				if is.CardType == config.Credit {
					opening = ch.CreditLimitMinor
				}
				if err := postPair(ctx, tx, "open/"+id, is.ID, kindOpen, "", availableAccount(id), fundingAccount(is), opening, now); err != nil {
					return fmt.Errorf("opening entry of %s: %w", maskPAN(ch.PAN), err)
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("issuer %s: seed demo cardholders: %w", is.ID, err)
		}
	}
	return nil
}

// load builds the in-memory state from the store: cards and their ledger
// balances, today's spend and the last hour's approvals per card, and the
// recent authorizations for duplicate detection. The store is the truth;
// memory is rebuilt from it at every start.
func (h *Host) load(ctx context.Context) error {
	rows, err := h.db.DB.QueryContext(ctx, `SELECT id, issuer_id, pan_hash, pan_first6, pan_last4, pan_length, expiry,
		cvn2_hash, name, phone, card_type, product, status, psn, credit_limit_minor FROM cards`)
	if err != nil {
		return fmt.Errorf("load cards: %w", err)
	}
	for rows.Next() {
		c := &Card{}
		if err := rows.Scan(&c.ID, &c.IssuerID, &c.PANHash, &c.First6, &c.Last4, &c.PANLength, &c.Expiry,
			&c.CVN2Hash, &c.Name, &c.Phone, &c.CardType, &c.Product, &c.Status, &c.PSN, &c.CreditLimit); err != nil {
			rows.Close()
			return fmt.Errorf("load cards: %w", err)
		}
		bank, ok := h.banks[c.IssuerID]
		if !ok {
			continue // a programme no longer in the reference data: its cards are not served
		}
		a := &account{card: c, bank: bank, status: c.Status}
		h.cards[c.ID] = a
		h.byHash[string(c.PANHash)] = a
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load cards: %w", err)
	}

	// Balances from the ledger.
	rows, err = h.db.DB.QueryContext(ctx, `SELECT account, SUM(amount_minor) FROM postings
		WHERE account LIKE 'card/%' GROUP BY account`)
	if err != nil {
		return fmt.Errorf("load balances: %w", err)
	}
	for rows.Next() {
		var name string
		var sum int64
		if err := rows.Scan(&name, &sum); err != nil {
			rows.Close()
			return fmt.Errorf("load balances: %w", err)
		}
		id, part, ok := splitCardAccount(name)
		if a := h.cards[id]; ok && a != nil {
			if part == "available" {
				a.available = sum
			} else {
				a.held = sum
			}
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load balances: %w", err)
	}
	if err := h.loadPoints(ctx); err != nil {
		return err
	}

	now := h.now()
	today := dayOf(now)
	// Today's and the last hour's authorizations are a range of the
	// time-ordered ids (from a day and an hour ago, to be safe about the
	// CST day boundary); the conditions pick the rows that count.
	var maxID sql.NullString
	if err := h.db.DB.QueryRowContext(ctx, `SELECT MAX(id) FROM authorizations`).Scan(&maxID); err != nil {
		return fmt.Errorf("load last authorization id: %w", err)
	}
	h.ids.observe(authIDPrefix, maxID.String)
	rows, err = h.db.DB.QueryContext(ctx, `SELECT card_id, amount_minor, reversed, day, created_ms FROM authorizations
		WHERE id >= $1 AND approved = 1 ORDER BY id`, floorID(authIDPrefix, now.Add(-25*time.Hour)))
	if err != nil {
		return fmt.Errorf("load today's authorizations: %w", err)
	}
	for rows.Next() {
		var cardID sql.NullString
		var amount, reversed, day, ms int64
		if err := rows.Scan(&cardID, &amount, &reversed, &day, &ms); err != nil {
			rows.Close()
			return fmt.Errorf("load today's authorizations: %w", err)
		}
		a := h.cards[cardID.String]
		if a == nil {
			continue
		}
		if day == today && reversed == 0 {
			a.day = today
			a.daySpent += amount
		}
		if ms > now.Add(-time.Hour).UnixMilli() {
			a.recent = append(a.recent, ms)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load today's authorizations: %w", err)
	}
	for _, a := range h.cards {
		if a.day != today {
			a.day = today
		}
		if v := a.bank.Limits.VelocityPerHour; v > 0 && len(a.recent) > v {
			a.recent = a.recent[len(a.recent)-v:]
		}
	}
	return h.loadRecent(ctx)
}

// loadRecent fills the duplicate index with the newest authorizations and
// the reversals still waiting for their original.
func (h *Host) loadRecent(ctx context.Context) error {
	rows, err := h.db.DB.QueryContext(ctx, `SELECT id, issuer_id, card_id, ident, alt_ident, fingerprint, response_code,
		auth_code, approved, reversed, amount_minor, day FROM authorizations ORDER BY id DESC LIMIT $1`, h.dedup.max)
	if err != nil {
		return fmt.Errorf("load recent authorizations: %w", err)
	}
	var recs []*authRecord
	for rows.Next() {
		r, err := scanAuthRecord(rows)
		if err != nil {
			rows.Close()
			return fmt.Errorf("load recent authorizations: %w", err)
		}
		recs = append(recs, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load recent authorizations: %w", err)
	}
	for i := len(recs) - 1; i >= 0; i-- { // oldest first, so eviction order holds
		r := recs[i]
		r.acct = h.cards[r.cardID]
		h.dedup.put(r)
	}
	rows, err = h.db.DB.QueryContext(ctx, `SELECT issuer_id, orig_ident, orig_alt FROM reversals WHERE auth_id IS NULL`)
	if err != nil {
		return fmt.Errorf("load pending reversals: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		r := &authRecord{early: true, done: closedChan}
		if err := rows.Scan(&r.issuerID, &r.ident, &r.alt); err != nil {
			return fmt.Errorf("load pending reversals: %w", err)
		}
		h.dedup.put(r)
	}
	return rows.Err()
}

// scanAuthRecord reads the authorization columns loadRecent and findStored
// select.
func scanAuthRecord(row interface{ Scan(...any) error }) (*authRecord, error) {
	r := &authRecord{done: closedChan}
	var cardID sql.NullString
	var approved, reversed int64
	var code string
	if err := row.Scan(&r.id, &r.issuerID, &cardID, &r.ident, &r.alt, &r.fingerprint, &code, &r.authCode,
		&approved, &reversed, &r.amount, &r.day); err != nil {
		return nil, err
	}
	r.cardID = cardID.String
	r.code = ResponseCode(code)
	r.approved = approved == 1
	r.reversed = reversed == 1
	return r, nil
}

// findStored looks an authorization up in the store by identity.
func (h *Host) findStored(ctx context.Context, ident string) (*authRecord, error) {
	r, err := scanAuthRecord(h.db.DB.QueryRowContext(ctx, `SELECT id, issuer_id, card_id, ident, alt_ident, fingerprint,
		response_code, auth_code, approved, reversed, amount_minor, day FROM authorizations WHERE ident = $1`, ident))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("find authorization: %w", err)
	}
	r.acct = h.cards[r.cardID]
	return r, nil
}

// splitCardAccount splits "card/<id>/<part>".
func splitCardAccount(name string) (id, part string, ok bool) {
	const p = "card/"
	if len(name) <= len(p) || name[:len(p)] != p {
		return "", "", false
	}
	rest := name[len(p):]
	for i := len(rest) - 1; i >= 0; i-- {
		if rest[i] == '/' {
			return rest[:i], rest[i+1:], true
		}
	}
	return "", "", false
}
