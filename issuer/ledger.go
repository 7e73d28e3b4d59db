package issuer

import (
	"context"
	"fmt"
	"sort"

	"github.com/mipay-oss/mipay/store"
)

// LedgerReport is the result of CheckLedger.
type LedgerReport struct {
	OK          bool     `json:"ok"`
	PostingsSum int64    `json:"postingsSum"` // must be 0
	Entries     int64    `json:"entries"`
	Approvals   int64    `json:"approvals"` // approved authorizations
	Reversals   int64    `json:"reversals"` // approved authorizations reversed
	Holds       int64    `json:"holds"`     // HOLD entries
	Releases    int64    `json:"releases"`  // RELEASE entries
	OpenHolds   int64    `json:"openHolds"` // approvals - reversals
	HeldMinor   int64    `json:"heldMinor"` // sum of card held accounts
	Problems    []string `json:"problems,omitempty"`
}

// maxProblems bounds the problems a report lists.
const maxProblems = 50

// CheckLedger checks the ledger's invariants on the issuer store: all postings
// sum to zero; every journal entry sums to zero; one HOLD entry per approval
// and one RELEASE per reversal (holds = approvals − reversals open); each
// card's held account equals its approved, unreversed amounts; no card's
// available balance is negative (but for what open advised stand-in
// approvals hold, advice.go). Tests of any package can call it on the
// issuer's store.
func CheckLedger(ctx context.Context, db *store.DB) (LedgerReport, error) {
	r, _, err := checkLedger(ctx, db)
	return r, err
}

// cardBalancesQuery sums every card account (available and held).
const cardBalancesQuery = `SELECT account, SUM(amount_minor) FROM postings WHERE account LIKE 'card/%' GROUP BY account`

// checkLedger is CheckLedger also returning the card accounts' balances by
// account name, so Host.CheckLedger compares memory without a second scan.
func checkLedger(ctx context.Context, db *store.DB) (LedgerReport, map[string]int64, error) {
	var r LedgerReport
	q := db.DB
	if err := q.QueryRowContext(ctx, `SELECT COALESCE(SUM(amount_minor), 0), COUNT(DISTINCT entry_id) FROM postings`).Scan(&r.PostingsSum, &r.Entries); err != nil {
		return r, nil, fmt.Errorf("issuer: ledger check: %w", err)
	}
	if r.PostingsSum != 0 {
		r.problem("postings sum to %d, not 0", r.PostingsSum)
	}
	unbalanced, err := sumsBy(ctx, db, `SELECT entry_id, SUM(amount_minor) FROM postings GROUP BY entry_id HAVING SUM(amount_minor) <> 0 LIMIT 50`)
	if err != nil {
		return r, nil, err
	}
	for _, id := range sortedKeys(unbalanced) {
		r.problem("entry %s sums to %d", id, unbalanced[id])
	}
	if err := q.QueryRowContext(ctx, `SELECT
		COALESCE(SUM(approved), 0), COALESCE(SUM(CASE WHEN approved = 1 AND reversed = 1 THEN 1 ELSE 0 END), 0)
		FROM authorizations`).Scan(&r.Approvals, &r.Reversals); err != nil {
		return r, nil, fmt.Errorf("issuer: ledger check: %w", err)
	}
	if err := q.QueryRowContext(ctx, `SELECT
		COUNT(DISTINCT CASE WHEN kind = 'HOLD' THEN entry_id END), COUNT(DISTINCT CASE WHEN kind = 'RELEASE' THEN entry_id END)
		FROM postings`).Scan(&r.Holds, &r.Releases); err != nil {
		return r, nil, fmt.Errorf("issuer: ledger check: %w", err)
	}
	r.OpenHolds = r.Approvals - r.Reversals
	if r.Holds != r.Approvals {
		r.problem("%d hold entries for %d approvals", r.Holds, r.Approvals)
	}
	if r.Releases != r.Reversals {
		r.problem("%d release entries for %d reversals", r.Releases, r.Reversals)
	}
	// Per card: held balance vs approved, unreversed authorizations.
	held := map[string]int64{}
	avail := map[string]int64{}
	balances, err := sumsBy(ctx, db, cardBalancesQuery)
	if err != nil {
		return r, nil, err
	}
	for name, sum := range balances {
		id, part, _ := splitCardAccount(name)
		if part == "held" {
			held[id] = sum
			r.HeldMinor += sum
		} else {
			avail[id] = sum
		}
	}
	open, err := sumsBy(ctx, db, `SELECT card_id, SUM(amount_minor) FROM authorizations
		WHERE approved = 1 AND reversed = 0 GROUP BY card_id`)
	if err != nil {
		return r, nil, err
	}
	ids := make([]string, 0, len(held)+len(open))
	for id := range held {
		ids = append(ids, id)
	}
	for id := range open {
		if _, ok := held[id]; !ok {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		if held[id] != open[id] {
			r.problem("card %s: held %d, open authorizations %d", id, held[id], open[id])
		}
	}
	// An advised stand-in approval is held whatever the balance (advice.go):
	// a card's available balance may be below zero only by as much as its
	// open advised approvals hold.
	advised, err := sumsBy(ctx, db, `SELECT card_id, SUM(amount_minor) FROM authorizations
		WHERE approved = 1 AND reversed = 0 AND mti IN ('0120', '0220') GROUP BY card_id`)
	if err != nil {
		return r, nil, err
	}
	for id, v := range avail {
		if v < 0 && v+advised[id] < 0 {
			r.problem("card %s: available balance %d is negative", id, v)
		}
	}
	r.OK = len(r.Problems) == 0
	return r, balances, nil
}

func (r *LedgerReport) problem(format string, args ...any) {
	if len(r.Problems) < maxProblems {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// CheckLedger runs CheckLedger on the host's store and also checks that the
// in-memory balances equal the ledger's.
func (h *Host) CheckLedger(ctx context.Context) (LedgerReport, error) {
	r, bal, err := checkLedger(ctx, h.db)
	if err != nil {
		return r, err
	}
	for id, a := range h.cards {
		a.mu.Lock()
		av, hd := a.available, a.held
		a.mu.Unlock()
		if av != bal[availableAccount(id)] || hd != bal[heldAccount(id)] {
			r.problem("card %s: memory available/held %d/%d, ledger %d/%d", id, av, hd, bal[availableAccount(id)], bal[heldAccount(id)])
		}
	}
	r.OK = len(r.Problems) == 0
	return r, nil
}

// sumsBy runs a query of (key, sum) rows into a map.
func sumsBy(ctx context.Context, db *store.DB, query string) (map[string]int64, error) {
	rows, err := db.DB.QueryContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("issuer: ledger check: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var key string
		var sum int64
		if err := rows.Scan(&key, &sum); err != nil {
			return nil, fmt.Errorf("issuer: ledger check: %w", err)
		}
		out[key] = sum
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("issuer: ledger check: %w", err)
	}
	return out, nil
}

func sortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
