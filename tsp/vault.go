package tsp

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/store"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the vault's migrations (for store.Open).
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the embed pattern guarantees the directory
	}
	return sub
}

// PartyName is the store name of the TSP (its SQLite file is tsp.db).
const PartyName = "tsp"

// Vault is the token vault's SQL. Binding and lifecycle writes go through a
// group-commit Writer when one is set (concurrent bindings share a commit),
// else DB.Tx; the authorization's ATC and de-tokenization log go through the
// Authorizer's own Writer.
type Vault struct {
	db *store.DB
	w  *store.Writer
}

// NewVault wraps an open TSP store (migrated with Migrations()).
func NewVault(db *store.DB) *Vault { return &Vault{db: db} }

// UseWriter makes the vault's writes go through w.
func (v *Vault) UseWriter(w *store.Writer) { v.w = w }

// write runs fn in a transaction: a Writer batch when set. fn must have no
// effects outside tx (DB.Tx may run it again).
func (v *Vault) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if v.w != nil {
		return v.w.Write(ctx, fn)
	}
	return v.db.Tx(ctx, fn)
}

var errNoToken = mipay.Errorf(mipay.ENOTFOUND, "no such token")

// tokenColumns are the columns scanToken reads, in order; last_atc lives in
// the narrow table token_atc (the authorization's hot update rewrites a
// small row there, not the wide token row).
const tokenColumns = `ref, pan_ref, dpan, par, pan_sealed, pan_hmac, pan_last4, pan_expiry, expiry, psn,
	issuer_id, card_type, product, state, suspended_by, device_id, se_id, se_public_key, device_model,
	requestor_id, entry_modes, key_index, assurance, decision_id, last_atc, provisioned_at, created_at, updated_at`

// tokenSelect selects tokenColumns; add a WHERE on t. tokenSelectNoATC
// selects them from tokens alone, with -1 for last_atc: for readers that do
// not use the ATC, one B-tree pair less to descend.
var tokenSelect, tokenSelectNoATC, tokenInsertColumns = func() (string, string, string) {
	var sel, selNoATC, ins []string
	for _, c := range strings.Split(tokenColumns, ",") {
		c = strings.TrimSpace(c)
		if c == "last_atc" {
			sel = append(sel, "a.last_atc")
			selNoATC = append(selNoATC, "-1")
			continue
		}
		sel = append(sel, "t."+c)
		selNoATC = append(selNoATC, "t."+c)
		ins = append(ins, c)
	}
	return "SELECT " + strings.Join(sel, ", ") + " FROM tokens t JOIN token_atc a ON a.ref = t.ref",
		"SELECT " + strings.Join(selNoATC, ", ") + " FROM tokens t",
		strings.Join(ins, ", ")
}()

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

// tokenRow is a Token plus the columns only the vault and service use.
type tokenRow struct {
	Token
	DecisionID string
}

func scanToken(sc interface{ Scan(...any) error }) (*tokenRow, error) {
	var (
		r                           tokenRow
		state, suspBy               string
		keyIdx                      int
		provAt, createdAt, updateAt int64
	)
	err := sc.Scan(&r.Ref, &r.PANRef, &r.DPAN, &r.PAR, &r.PANSealed, &r.PANHMAC, &r.PANLast4, &r.PANExpiry,
		&r.Expiry, &r.PSN, &r.IssuerID, &r.CardType, &r.Product, &state, &suspBy, &r.DeviceID, &r.SEID,
		&r.SEPublicKey, &r.DeviceModel, &r.RequestorID, &r.EntryModes, &keyIdx, &r.Assurance, &r.DecisionID,
		&r.LastATC, &provAt, &createdAt, &updateAt)
	if err != nil {
		return nil, err
	}
	r.State, r.SuspendedBy, r.KeyIndex = State(state), CausedBy(suspBy), byte(keyIdx)
	r.ProvisionedAt, r.CreatedAt, r.UpdatedAt = fromMS(provAt), fromMS(createdAt), fromMS(updateAt)
	r.Provisioned = provAt != 0
	return &r, nil
}

// Insert stores a new token and its first history entry. A DPAN that some
// token's PAN equals (dpanHMAC is the DPAN's lookup HMAC) returns errDPANIsPAN
// and a DPAN or reference collision errDPANTaken (the caller draws another).
// The "never a PAN" check runs in the insert's transaction, so no card
// tokenized concurrently can slip in between the check and the insert.
//
// The statements run without the caller's ctx: the modernc SQLite driver
// starts a goroutine per statement to watch a cancellable ctx, these
// statements are short, and the batch has its own deadline.
//
// accountRef, when not empty, is the token's account reference
// (account_ref.go), recorded in the same transaction: a token never exists
// without it, and it costs no commit of its own.
func (v *Vault) Insert(ctx context.Context, r *tokenRow, dpanHMAC []byte, first StateChange, accountRef string) error {
	err := v.write(ctx, func(tx *sql.Tx) error {
		var isPAN int
		err := tx.QueryRow(`SELECT COUNT(*) FROM tokens WHERE pan_hmac = $1`, dpanHMAC).Scan(&isPAN)
		if err != nil {
			return fmt.Errorf("PAN lookup: %w", err)
		}
		if isPAN > 0 {
			return errDPANIsPAN
		}
		_, err = tx.Exec(`INSERT INTO tokens (`+tokenInsertColumns+`, dpan_hmac)
			VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23,$24,$25,$26,$27,$28)`,
			r.Ref, r.PANRef, r.DPAN, r.PAR, r.PANSealed, r.PANHMAC, r.PANLast4, r.PANExpiry, r.Expiry, r.PSN,
			r.IssuerID, r.CardType, r.Product, string(r.State), string(r.SuspendedBy), r.DeviceID, r.SEID,
			r.SEPublicKey, r.DeviceModel, r.RequestorID, r.EntryModes, int(r.KeyIndex), r.Assurance, r.DecisionID,
			ms(r.ProvisionedAt), ms(r.CreatedAt), ms(r.UpdatedAt), dpanHMAC)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(`INSERT INTO token_atc (ref, last_atc) VALUES ($1, $2)`, r.Ref, r.LastATC); err != nil {
			return err
		}
		if accountRef != "" {
			if _, err := tx.Exec(`INSERT INTO token_accounts (ref, account_ref) VALUES ($1, $2)`, r.Ref, accountRef); err != nil {
				return err
			}
		}
		return insertHistory(context.Background(), tx, 1, first)
	})
	if errors.Is(err, errDPANIsPAN) {
		return err
	}
	if store.IsConflict(err) {
		return errDPANTaken
	}
	if err != nil {
		return fmt.Errorf("tsp: insert token: %w", err)
	}
	return nil
}

var (
	errDPANTaken = errors.New("tsp: DPAN or token reference already taken")
	errDPANIsPAN = errors.New("tsp: DPAN equals a PAN in the vault")
)

func insertHistory(ctx context.Context, tx *sql.Tx, seq int, c StateChange) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO token_state_history (token_ref, seq, from_state, to_state, caused_by, reason, at)
		VALUES ($1,$2,$3,$4,$5,$6,$7)`, c.TokenRef, seq, string(c.From), string(c.State), string(c.CausedBy), c.Reason, ms(c.Time))
	if err != nil {
		return fmt.Errorf("tsp: insert state history: %w", err)
	}
	return nil
}

// Get returns the token with this reference (ENOTFOUND when none).
//
// On SQLite the lookup by primary key (local, short) runs without ctx's
// cancellation once ctx is checked: the modernc driver would otherwise start
// a goroutine per query to watch ctx.
func (v *Vault) Get(ctx context.Context, ref string) (*tokenRow, error) {
	return v.get(ctx, tokenSelect, ref)
}

// GetNoATC is Get without the token's last ATC (LastATC is -1 whatever the
// token has accepted): for readers that never use it, such as the profile.
func (v *Vault) GetNoATC(ctx context.Context, ref string) (*tokenRow, error) {
	return v.get(ctx, tokenSelectNoATC, ref)
}

func (v *Vault) get(ctx context.Context, sel, ref string) (*tokenRow, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if v.db.Engine() == store.SQLite {
		ctx = context.WithoutCancel(ctx)
	}
	row := v.db.DB.QueryRowContext(ctx, sel+` WHERE t.ref = $1`, ref)
	r, err := scanToken(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNoToken
	}
	if err != nil {
		return nil, fmt.Errorf("tsp: get token: %w", err)
	}
	return r, nil
}

// ByDPAN returns the token with this DPAN (ENOTFOUND when none).
func (v *Vault) ByDPAN(ctx context.Context, dpan string) (*tokenRow, error) {
	row := v.db.DB.QueryRowContext(ctx, tokenSelect+` WHERE t.dpan = $1`, dpan)
	r, err := scanToken(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNoToken
	}
	if err != nil {
		return nil, fmt.Errorf("tsp: token by DPAN: %w", err)
	}
	return r, nil
}

// ChangeState moves a token from one state to another if it is still in
// from, and records the change. It returns ECONFLICT when another request
// changed the token first.
func (v *Vault) ChangeState(ctx context.Context, c StateChange, suspendedBy CausedBy, assurance string) error {
	return v.write(ctx, func(tx *sql.Tx) error {
		q := `UPDATE tokens SET state = $1, suspended_by = $2, updated_at = $3 WHERE ref = $4 AND state = $5`
		args := []any{string(c.State), string(suspendedBy), ms(c.Time), c.TokenRef, string(c.From)}
		if assurance != "" {
			q = `UPDATE tokens SET state = $1, suspended_by = $2, updated_at = $3, assurance = $6 WHERE ref = $4 AND state = $5`
			args = append(args, assurance)
		}
		res, err := tx.ExecContext(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("tsp: change state: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return &mipay.Error{Code: mipay.ECONFLICT, Reason: "CONCURRENT_CHANGE", Message: "this card was changed meanwhile; please try again"}
		}
		var seq int
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM token_state_history WHERE token_ref = $1`, c.TokenRef).Scan(&seq); err != nil {
			return fmt.Errorf("tsp: history seq: %w", err)
		}
		return insertHistory(ctx, tx, seq+1, c)
	})
}

// MarkProvisioned records that the device installed the profile of an ACTIVE
// token and returns the token as stored. A token that is not ACTIVE is
// returned unchanged (the caller refuses it); a repeat keeps the first time.
// The state is checked and the token read in the write's transaction: one
// statement pair on the writer's connection instead of a read-pool query
// before the write, and no suspension can slip in between.
func (v *Vault) MarkProvisioned(ctx context.Context, ref string, at time.Time) (*tokenRow, error) {
	var t *tokenRow
	err := v.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`UPDATE tokens SET provisioned_at = $1, updated_at = $1 WHERE ref = $2 AND provisioned_at = 0 AND state = $3`,
			ms(at), ref, string(StateActive))
		if err != nil {
			return fmt.Errorf("tsp: mark provisioned: %w", err)
		}
		t, err = scanToken(tx.QueryRow(tokenSelect+` WHERE t.ref = $1`, ref))
		if errors.Is(err, sql.ErrNoRows) {
			return errNoToken
		}
		if err != nil {
			return fmt.Errorf("tsp: get token: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// History returns a token's state changes, oldest first.
func (v *Vault) History(ctx context.Context, ref string) ([]StateChange, error) {
	rows, err := v.db.DB.QueryContext(ctx, `SELECT from_state, to_state, caused_by, reason, at FROM token_state_history
		WHERE token_ref = $1 ORDER BY seq`, ref)
	if err != nil {
		return nil, fmt.Errorf("tsp: history: %w", err)
	}
	defer rows.Close()
	var out []StateChange
	for rows.Next() {
		var (
			c          StateChange
			from, to   string
			by, reason string
			at         int64
		)
		if err := rows.Scan(&from, &to, &by, &reason, &at); err != nil {
			return nil, fmt.Errorf("tsp: history: %w", err)
		}
		c.TokenRef, c.From, c.State, c.CausedBy, c.Reason, c.Time = ref, State(from), State(to), CausedBy(by), reason, fromMS(at)
		out = append(out, c)
	}
	return out, rows.Err()
}

// detokenization is one de-tokenization log entry (no PAN).
type detokenization struct {
	ID        int64 // time-ordered, see logIDs
	TokenRef  string
	Requester string // who asked (the switch node)
	Purpose   string // e.g. "authorization"
	ATC       int
	At        time.Time
}

// DetokenizationCount returns how many de-tokenizations of a token are logged.
func (v *Vault) DetokenizationCount(ctx context.Context, ref string) (int, error) {
	var n int
	err := v.db.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM detokenization_log WHERE token_ref = $1`, ref).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("tsp: count de-tokenizations: %w", err)
	}
	return n, nil
}
