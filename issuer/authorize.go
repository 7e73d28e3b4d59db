package issuer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/store"
)

// ResponseCode is an ISO 8583 DE39 answer of the issuer.
type ResponseCode string

// The issuer's response codes: the one table every decision comes from.
const (
	RCApproved          ResponseCode = "00" // approved
	RCDoNotHonor        ResponseCode = "05" // card lost/stolen, or the original was already reversed
	RCInvalidAmount     ResponseCode = "13" // amount zero, negative or malformed
	RCInvalidCard       ResponseCode = "14" // no such card at this bank
	RCFormatError       ResponseCode = "30" // a required field is missing or malformed
	RCInsufficientFunds ResponseCode = "51" // balance or credit available too low
	RCExpiredCard       ResponseCode = "54" // card expired, or DE14 not the card's expiry
	RCNotPermitted      ResponseCode = "57" // transaction type or currency not allowed for the card
	RCExceedsAmount     ResponseCode = "61" // over the per-transaction or daily amount limit
	RCRestrictedCard    ResponseCode = "62" // card blocked by the bank
	RCExceedsFrequency  ResponseCode = "65" // over the approvals per hour
	RCIssuerUnavailable ResponseCode = "91" // issuer shutting down / store closed
	RCDuplicate         ResponseCode = "94" // same identity as an earlier message, different content
	RCSystemError       ResponseCode = "96" // the answer could not be made durable
)

// responseText explains each code (logs, tests, the accounts page).
var responseText = map[ResponseCode]string{
	RCApproved: "approved", RCDoNotHonor: "do not honor", RCInvalidAmount: "invalid amount",
	RCInvalidCard: "invalid card number", RCFormatError: "format error", RCInsufficientFunds: "insufficient funds",
	RCExpiredCard: "expired card", RCNotPermitted: "transaction not permitted to cardholder",
	RCExceedsAmount: "exceeds amount limit", RCRestrictedCard: "restricted card",
	RCExceedsFrequency: "exceeds frequency limit", RCIssuerUnavailable: "issuer unavailable",
	RCDuplicate: "duplicate transmission", RCSystemError: "system malfunction",
}

// Text returns the meaning of the code.
func (c ResponseCode) Text() string {
	if t, ok := responseText[c]; ok {
		return t
	}
	return "unknown"
}

// Approved reports whether the code approves.
func (c ResponseCode) Approved() bool { return c == RCApproved }

// Processing codes (DE3 first two digits) the issuer authorizes.
const procPurchase = "00"

// Cryptogram validation results of DE123 the issuer refuses.
const (
	cryptogramInvalid = "I"
	cryptogramReplay  = "R"
)

// authIDPrefix starts every authorization id.
const authIDPrefix = "auth_"

// currencyCNY is the billing currency of every card (ISO 4217 numeric).
const currencyCNY = "156"

// AuthRequest is an authorization (0100) or financial request (0200) as the
// issuer sees it, independent of the wire.
type AuthRequest struct {
	MTI            string
	PAN            string
	ProcessingCode string // DE3
	AmountMinor    int64  // DE4
	Currency       string // DE49
	// BillingAmountMinor/BillingCurrency (DE6/DE51), set by the switch when
	// the transaction currency is not the card's.
	BillingAmountMinor int64
	BillingCurrency    string
	Transmission       string // DE7 MMDDhhmmss
	STAN               string // DE11
	RRN                string // DE37
	Terminal           string // DE41
	Acquirer           string // DE32
	Expiry             string // DE14 YYMM, optional
	Country            string // DE19, the terminal's country ("" domestic)
	// Token data from the network's private field (DE123), when the card was
	// used through a token. The full token is not kept.
	TokenRef         string // the TSP's token reference, when the network sends one
	TokenLast4       string
	TokenRequestorID string
	// CryptogramResult is the network's ARQC check (DE123 tag 04): "V"
	// valid, "I" invalid, "R" replayed ATC, "N" none.
	CryptogramResult string
	// Promotion is DE124, when the network applied a bank campaign (promo.go).
	Promotion *Promotion
}

// AuthResult is the issuer's answer.
type AuthResult struct {
	Code      ResponseCode
	AuthCode  string // DE38, set on approval
	AuthID    string // the issuer's id of the authorization ("" when not recorded)
	Duplicate bool   // the answer is the stored answer of an earlier identical message
	// Points (promo.go), on a new approval: what it earned and the card's
	// balance after it, returned to the network in the 0210's DE124.
	PointsEarned, PointsBalance int64
	Points                      bool // the two above are set
}

// OriginalData identifies the original of a reversal (DE90).
type OriginalData struct {
	MTI          string
	STAN         string
	Transmission string
	Acquirer     string
}

// ReversalRequest is a reversal (0400) or reversal advice (0420).
type ReversalRequest struct {
	MTI          string
	PAN          string
	AmountMinor  int64
	Transmission string
	STAN         string
	RRN          string
	Terminal     string
	Acquirer     string
	Original     *OriginalData // DE90, when present
}

// ReversalResult is the answer to a reversal.
type ReversalResult struct {
	Code     ResponseCode
	Released bool // this reversal released the hold (false: already released, declined original, or unknown)
	AuthID   string
	// Points: the reversal of an approval that earned points answers what
	// it took back and the card's balance after it (DE124 tags 05/06 of
	// the 0410, for the wallet), and the discount booking it took back.
	Points        bool
	PointsTaken   int64
	PointsBalance int64
	DiscountMinor int64
}

// normAcquirer drops DE32's leading zeros: DE90 carries the acquirer id
// zero-padded to 11 digits.
func normAcquirer(s string) string {
	t := strings.TrimLeft(s, "0")
	if t == "" && s != "" {
		return "0"
	}
	return t
}

func identOf(acquirer, terminal, stan, transmission string) string {
	return normAcquirer(acquirer) + "|" + terminal + "|" + stan + "|" + transmission
}

func altOf(terminal, stan, rrn, transmission string) string {
	return terminal + "|" + stan + "|" + rrn + "|" + transmission
}

// authRecord is an authorization in the duplicate index. Fields other than
// reversed are set before done is closed and never change after; reversed
// is guarded by the card's account mutex (or h.dedup.mu for unknown cards).
type authRecord struct {
	id, issuerID, cardID string
	ident, alt           string
	fingerprint          string
	code                 ResponseCode
	authCode             string
	approved             bool
	amount               int64
	fee                  int64 // cross-border fee, part of amount (country.go)
	day                  int64
	acct                 *account
	reversed             bool
	reversing            chan struct{} // closed when the first reversal's write ends (nil: none in flight)
	early                bool          // a reversal that came before its original
	failed               bool          // not stored: the write failed; treat as absent
	done                 chan struct{}
	next                 *authRecord // eviction queue
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// dedupIndex is the bounded in-memory index of recent authorizations by
// identity; the store's unique index on ident catches what was evicted.
type dedupIndex struct {
	mu         sync.Mutex
	byIdent    map[string]*authRecord
	byAlt      map[string]*authRecord
	head, tail *authRecord
	n, max     int
}

func newDedupIndex(max int) *dedupIndex {
	return &dedupIndex{byIdent: make(map[string]*authRecord), byAlt: make(map[string]*authRecord), max: max}
}

// put adds r (mu held by caller or during load).
func (d *dedupIndex) put(r *authRecord) {
	if r.ident != "" {
		d.byIdent[r.ident] = r
	}
	if r.alt != "" {
		d.byAlt[r.alt] = r
	}
	if d.tail == nil {
		d.head, d.tail = r, r
	} else {
		d.tail.next, d.tail = r, r
	}
	d.n++
	for d.n > d.max && d.head != nil {
		old := d.head
		d.head = old.next
		if d.head == nil {
			d.tail = nil
		}
		old.next = nil
		d.n--
		if d.byIdent[old.ident] == old {
			delete(d.byIdent, old.ident)
		}
		if d.byAlt[old.alt] == old {
			delete(d.byAlt, old.alt)
		}
	}
}

// remove drops r from the maps (its queue slot ages out harmlessly).
func (d *dedupIndex) remove(r *authRecord) {
	if d.byIdent[r.ident] == r {
		delete(d.byIdent, r.ident)
	}
	if d.byAlt[r.alt] == r {
		delete(d.byAlt, r.alt)
	}
}

// account is a card's ledger state in memory. The store is the truth; this
// is rebuilt from it at start and changed only together with a durable write
// (reserved before the write, undone if the write fails).
type account struct {
	card *Card
	bank *config.Issuer

	mu        sync.Mutex
	status    string
	available int64   // ledger balance of card/<id>/available
	held      int64   // ledger balance of card/<id>/held
	day       int64   // CST day daySpent counts
	daySpent  int64   // approved, not reversed, today
	recent    []int64 // approval times (ms) within the last hour, oldest first
	points    int64   // ledger balance of points/<id> (promo.go)
}

// Authorize decides an authorization, records it durably (with its hold on
// approval) and returns the answer. A repeated message (same acquirer,
// terminal, STAN and DE7) gets the stored answer, or 94 when its content
// differs.
func (h *Host) Authorize(ctx context.Context, req AuthRequest) AuthResult {
	ident := identOf(req.Acquirer, req.Terminal, req.STAN, req.Transmission)
	alt := altOf(req.Terminal, req.STAN, req.RRN, req.Transmission)
	acct := h.cardByPAN(ctx, req.PAN)
	fp := fingerprintOf(req, acct)

	for attempt := 0; ; attempt++ {
		rec, prev := h.claim(ident, alt, fp)
		if prev == nil {
			return h.authorizeNew(ctx, req, rec, acct)
		}
		<-prev.done
		switch {
		case prev.failed && attempt < DefaultDuplicateRetries:
			continue // the earlier copy was never stored: process this one
		case prev.failed:
			return AuthResult{Code: RCSystemError}
		case prev.early:
			return h.authorizeReversedEarly(ctx, req, prev, acct, ident, alt, fp)
		case prev.fingerprint != fp:
			return AuthResult{Code: RCDuplicate}
		default:
			return AuthResult{Code: prev.code, AuthCode: prev.authCode, AuthID: prev.id, Duplicate: true}
		}
	}
}

// claim returns the record already holding ident (prev), or a new pending
// record placed in the index for this message.
func (h *Host) claim(ident, alt, fp string) (rec, prev *authRecord) {
	h.dedup.mu.Lock()
	defer h.dedup.mu.Unlock()
	if p := h.dedup.byIdent[ident]; p != nil {
		return nil, p
	}
	if p := h.dedup.byAlt[alt]; p != nil && p.early {
		return nil, p
	}
	rec = &authRecord{ident: ident, alt: alt, fingerprint: fp, done: make(chan struct{})}
	h.dedup.put(rec)
	return rec, nil
}

// fingerprintOf is what must match for a repeat to be a duplicate rather
// than a different message reusing an identity (94). It holds no PAN: the
// card id for known cards, first6/last4 otherwise.
func fingerprintOf(req AuthRequest, a *account) string {
	card := "?"
	if a != nil {
		card = a.card.ID
	} else if len(req.PAN) >= 10 {
		card = req.PAN[:6] + "…" + req.PAN[len(req.PAN)-4:]
	}
	return card + "|" + req.ProcessingCode + "|" + strconv.FormatInt(req.AmountMinor, 10) + "|" + req.Currency
}

// authorizeNew decides, writes and publishes rec.
func (h *Host) authorizeNew(ctx context.Context, req AuthRequest, rec *authRecord, acct *account) AuthResult {
	now := h.now()
	rec.id = h.ids.next(authIDPrefix, now)
	rec.acct = acct
	rec.day = dayOf(now)
	if acct != nil {
		rec.cardID = acct.card.ID
		rec.issuerID = acct.bank.ID
	} else if is, ok := h.ref.IssuerByPAN(req.PAN); ok {
		rec.issuerID = is.ID
	}

	amount, code := h.check(req, acct, now)
	if code == RCApproved {
		// The cross-border fee is held with the billing amount and booked
		// to the bank's fee account (both undone by a reversal).
		rec.fee = crossBorderFee(acct.bank, amount, req.Country)
		amount += rec.fee
		amount, code = discounted(&req, amount)
	}
	rec.amount = amount
	if code == RCApproved {
		code = acct.reserve(amount, rec.day, now.UnixMilli())
	}
	rec.code = code
	if code == RCApproved {
		rec.approved = true
		rec.authCode = newAuthCode()
	}

	res, ok := h.commitAuth(ctx, &req, rec, acct, amount, now, "authorization")
	if ok && rec.approved {
		res.PointsEarned, res.PointsBalance = acct.earnPoints(&req, rec.amount)
		res.Points = true
	}
	return res
}

// commitAuth makes rec durable (its row, hold, fee and points in one
// authorization-writer write) and then releases the duplicates waiting on
// it; a write that fails gives back what acct had reserved for rec. ok is
// false when the write failed (res is then failAuth's answer).
func (h *Host) commitAuth(ctx context.Context, req *AuthRequest, rec *authRecord, acct *account, amount int64, now time.Time, what string) (res AuthResult, ok bool) {
	if err := h.batch.write(ctx, req, rec, now); err != nil {
		if rec.approved {
			acct.unreserve(amount, rec.day, now.UnixMilli())
		}
		return h.failAuth(ctx, rec, err), false
	}
	close(rec.done)
	if h.log.Enabled(ctx, slog.LevelDebug) {
		h.log.Debug(what, "issuer", rec.issuerID, "pan", maskPAN(req.PAN), "amount", amount, "rc", string(rec.code))
	}
	return AuthResult{Code: rec.code, AuthCode: rec.authCode, AuthID: rec.id}, true
}

// errIdentTaken: the store already holds an authorization with this
// identity (it had left the in-memory index).
var errIdentTaken = errors.New("issuer: authorization identity already stored")

// failAuth handles a write that did not commit: the stored answer when the
// identity was taken after all, 91 when the store is closing, 96 otherwise.
// Nothing was stored, so the record leaves the index.
func (h *Host) failAuth(ctx context.Context, rec *authRecord, err error) AuthResult {
	rec.failed = true
	h.dedup.mu.Lock()
	h.dedup.remove(rec)
	h.dedup.mu.Unlock()
	close(rec.done)
	if errors.Is(err, errIdentTaken) {
		stored, ferr := h.findStored(ctx, rec.ident)
		if ferr == nil && stored != nil {
			if stored.fingerprint != rec.fingerprint {
				return AuthResult{Code: RCDuplicate}
			}
			return AuthResult{Code: stored.code, AuthCode: stored.authCode, AuthID: stored.id, Duplicate: true}
		}
		err = errors.Join(err, ferr)
	}
	if errors.Is(err, store.ErrWriterClosed) {
		return AuthResult{Code: RCIssuerUnavailable}
	}
	h.log.Error("authorization not stored", "issuer", rec.issuerID, "err", err)
	return AuthResult{Code: RCSystemError}
}

// check applies the rules that need no account lock. It returns the amount
// to authorize in the card's currency and RCApproved when the account
// checks (funds, limits, velocity) may go ahead.
func (h *Host) check(req AuthRequest, a *account, now time.Time) (int64, ResponseCode) {
	if len(req.STAN) == 0 || len(req.Terminal) == 0 || len(req.Transmission) == 0 || len(req.ProcessingCode) != 6 {
		return 0, RCFormatError
	}
	if a == nil {
		return 0, RCInvalidCard
	}
	// The network declines bad cryptograms itself; should one arrive anyway,
	// the bank does not honour it.
	if req.CryptogramResult == cryptogramInvalid || req.CryptogramResult == cryptogramReplay {
		return req.AmountMinor, RCDoNotHonor
	}
	amount, currency := req.AmountMinor, req.Currency
	if req.BillingCurrency != "" {
		amount, currency = req.BillingAmountMinor, req.BillingCurrency
	}
	if amount <= 0 {
		return 0, RCInvalidAmount
	}
	switch a.currentStatus() {
	case StatusActive:
	case StatusBlocked:
		return amount, RCRestrictedCard
	default: // lost, stolen, anything unknown
		return amount, RCDoNotHonor
	}
	if a.card.expired(now) {
		return amount, RCExpiredCard
	}
	// DE14 is checked only for card (not token) transactions: for a token
	// the switch sends the token's expiry rules, not the card's.
	if req.TokenRef == "" && req.Expiry != "" && req.Expiry != a.card.Expiry {
		return amount, RCExpiredCard
	}
	if req.ProcessingCode[:2] != procPurchase || currency != currencyCNY {
		return amount, RCNotPermitted
	}
	if rc := countryRule(a.bank, a.card, req.Country); rc != RCApproved {
		return amount, rc
	}
	if l := a.bank.Limits.PerTransactionMinor; l > 0 && amount > l {
		return amount, RCExceedsAmount
	}
	return amount, RCApproved
}

func (a *account) currentStatus() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.status
}

// reserve checks the daily limit, velocity and funds and, when they allow,
// takes amount from available into held in memory. The caller writes the
// same change durably and calls unreserve if that fails.
func (a *account) reserve(amount, day, nowMS int64) ResponseCode {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.day != day {
		a.day, a.daySpent = day, 0
	}
	if l := a.bank.Limits.DailyMinor; l > 0 && a.daySpent+amount > l {
		return RCExceedsAmount
	}
	hourAgo := nowMS - time.Hour.Milliseconds()
	for len(a.recent) > 0 && a.recent[0] <= hourAgo {
		a.recent = a.recent[1:]
	}
	if v := a.bank.Limits.VelocityPerHour; v > 0 && len(a.recent) >= v {
		return RCExceedsFrequency
	}
	if a.available < amount {
		return RCInsufficientFunds
	}
	a.takeLocked(amount, nowMS)
	return RCApproved
}

// takeLocked moves amount from available into held and counts it towards
// the day and the hour (a.day already the day of the approval); a.mu held.
// unreserve undoes it.
func (a *account) takeLocked(amount, nowMS int64) {
	a.available -= amount
	a.held += amount
	a.daySpent += amount
	if a.bank.Limits.VelocityPerHour > 0 {
		a.recent = append(a.recent, nowMS)
	}
}

// unreserve undoes reserve after a failed write.
func (a *account) unreserve(amount, day, nowMS int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.available += amount
	a.held -= amount
	if a.day == day {
		a.daySpent -= amount
	}
	for i := len(a.recent) - 1; i >= 0; i-- {
		if a.recent[i] == nowMS {
			a.recent = append(a.recent[:i], a.recent[i+1:]...)
			break
		}
	}
}

// newAuthCode returns a 6-digit DE38 approval code. math/rand/v2's global
// source is ChaCha8 seeded from the OS per thread: unpredictable enough for
// an approval code, and no system call per authorization.
func newAuthCode() string {
	s := strconv.FormatUint(mrand.Uint64N(1000000), 10)
	return strings.Repeat("0", 6-len(s)) + s
}

// cardByPAN finds the card of pan: from the in-memory PAN cache, else by its
// keyed hash (one HSM call), which then fills the cache. The PAN stays in
// memory only.
func (h *Host) cardByPAN(ctx context.Context, pan string) *account {
	if !validPAN(pan) {
		return nil
	}
	h.mu.RLock()
	a, ok := h.byPAN[pan]
	h.mu.RUnlock()
	if ok {
		return a
	}
	sum, err := h.hasher.HMAC(ctx, panHashInput(pan))
	if err != nil {
		h.log.Error("card lookup: hash", "pan", maskPAN(pan), "err", err)
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	a = h.byHash[string(sum)]
	if a != nil {
		h.byPAN[pan] = a
	}
	return a
}

// Reverse releases the hold of the original authorization exactly once. The
// original is found by DE90 (acquirer, terminal, STAN, DE7) or, without
// DE90, by the reversal's own terminal, STAN, RRN and DE7. Repeats answer 00
// and release nothing. A reversal whose original is unknown is remembered:
// if the original arrives later it is declined, so no hold is left behind.
func (h *Host) Reverse(ctx context.Context, req ReversalRequest) ReversalResult {
	var ident, alt string
	if o := req.Original; o != nil {
		ident = identOf(o.Acquirer, req.Terminal, o.STAN, o.Transmission)
	} else {
		// A reversal without DE90 repeats the original's terminal, STAN,
		// RRN and DE7 (and acquirer: the store is searched by that identity).
		alt = altOf(req.Terminal, req.STAN, req.RRN, req.Transmission)
		ident = ""
	}
	if req.Terminal == "" || (req.Original == nil && (req.STAN == "" || req.Transmission == "")) {
		return ReversalResult{Code: RCFormatError}
	}

	lookup := ident
	if lookup == "" {
		lookup = identOf(req.Acquirer, req.Terminal, req.STAN, req.Transmission)
	}
	orig, err := h.findOriginal(ctx, ident, alt, lookup)
	if err != nil {
		h.log.Error("reversal: find original", "err", err)
		return ReversalResult{Code: RCSystemError}
	}
	if orig == nil {
		return h.reverseUnknown(ctx, req, ident, alt)
	}
	if !orig.approved && orig.acct != nil {
		// Recorded, for an advice of the network's stand-in approval that
		// may follow (advice.go).
		if res, retry := h.reverseDeclined(ctx, req, orig); !retry {
			return res
		}
		return h.Reverse(ctx, req)
	}
	if !orig.approved || orig.acct == nil {
		return ReversalResult{Code: RCApproved, AuthID: orig.id}
	}
	a := orig.acct
	a.mu.Lock()
	for orig.reversed {
		wait := orig.reversing
		a.mu.Unlock()
		if wait == nil {
			return h.repeatedReversal(ctx, orig)
		}
		// The first reversal's write is in flight: a repeat is answered
		// only once it is durable (or, if it failed, runs it again), never
		// ahead of it — a crash would otherwise lose a reversal the
		// acquirer was told of.
		select {
		case <-wait:
		case <-ctx.Done():
			return ReversalResult{Code: RCIssuerUnavailable}
		}
		a.mu.Lock()
	}
	orig.reversed = true
	reversing := make(chan struct{})
	orig.reversing = reversing
	defer func() {
		a.mu.Lock()
		orig.reversing = nil
		a.mu.Unlock()
		close(reversing)
	}()
	a.available += orig.amount
	a.held -= orig.amount
	if a.day == orig.day {
		a.daySpent -= orig.amount
	}
	a.mu.Unlock()

	now := h.now().UnixMilli()
	var pointsBack, discountBack int64
	err = h.w.Write(ctx, func(tx *sql.Tx) error {
		ctx := context.Background() // see authorizeNew
		pointsBack, discountBack = 0, 0
		res, err := tx.ExecContext(ctx, sqlMarkReversed, orig.id, now)
		if err != nil {
			return fmt.Errorf("mark reversed: %w", err)
		}
		if n, err := res.RowsAffected(); err == nil && n == 0 {
			return errAlreadyReversed
		}
		if err := postPair(ctx, tx, "release/"+orig.id, orig.issuerID, kindRelease, orig.id,
			availableAccount(orig.cardID), heldAccount(orig.cardID), orig.amount, now); err != nil {
			return fmt.Errorf("release hold: %w", err)
		}
		if err := reverseFee(ctx, tx, orig.id, now); err != nil {
			return fmt.Errorf("reverse fee: %w", err)
		}
		if pointsBack, discountBack, err = reversePromotion(ctx, tx, orig.id, orig.cardID, orig.issuerID, now); err != nil {
			return fmt.Errorf("reverse promotion: %w", err)
		}
		_, err = tx.ExecContext(ctx, sqlInsertRev, newID("rev_"), orig.issuerID, req.MTI, orig.ident, orig.alt, orig.id, 1, now)
		return err
	})
	if errors.Is(err, errAlreadyReversed) {
		// The store says it was released before (this record was loaded
		// stale): memory must follow the store.
		return h.repeatedReversal(ctx, orig)
	}
	if err != nil {
		a.mu.Lock()
		orig.reversed = false
		a.available -= orig.amount
		a.held += orig.amount
		if a.day == orig.day {
			a.daySpent += orig.amount
		}
		a.mu.Unlock()
		if errors.Is(err, store.ErrWriterClosed) {
			return ReversalResult{Code: RCIssuerUnavailable}
		}
		h.log.Error("reversal not stored", "issuer", orig.issuerID, "err", err)
		return ReversalResult{Code: RCSystemError}
	}
	balance := a.takePoints(pointsBack)
	return ReversalResult{Code: RCApproved, Released: true, AuthID: orig.id, Points: true,
		PointsTaken: pointsBack, PointsBalance: balance, DiscountMinor: discountBack}
}

var errAlreadyReversed = errors.New("issuer: authorization already reversed")

// findOriginal finds the original in memory by ident (or alt when ident is
// ""), waiting for it if it is being decided, or else in the store by the
// identity lookup.
func (h *Host) findOriginal(ctx context.Context, ident, alt, lookup string) (*authRecord, error) {
	h.dedup.mu.Lock()
	var r *authRecord
	if ident != "" {
		r = h.dedup.byIdent[ident]
	} else {
		r = h.dedup.byAlt[alt]
	}
	h.dedup.mu.Unlock()
	if r != nil {
		<-r.done
		if r.early {
			return nil, nil
		}
		if !r.failed {
			return r, nil
		}
	}
	stored, err := h.findStored(ctx, lookup)
	if err != nil || stored == nil {
		return nil, err
	}
	if ident == "" && stored.alt != alt {
		return nil, nil // same identity, other RRN: not this reversal's original
	}
	// Put the stored record in the index so later reversals and duplicates
	// share it (and its reversed flag) instead of loading it again.
	h.dedup.mu.Lock()
	defer h.dedup.mu.Unlock()
	if cur := h.dedup.byIdent[stored.ident]; cur != nil && !cur.failed && !cur.early {
		return cur, nil
	}
	h.dedup.put(stored)
	return stored, nil
}

// reverseUnknown records a reversal whose original is not known (yet).
func (h *Host) reverseUnknown(ctx context.Context, req ReversalRequest, ident, alt string) ReversalResult {
	h.dedup.mu.Lock()
	if (ident != "" && h.dedup.byIdent[ident] != nil) || (alt != "" && h.dedup.byAlt[alt] != nil && h.dedup.byAlt[alt].early) {
		h.dedup.mu.Unlock()
		return ReversalResult{Code: RCApproved} // already remembered
	}
	issuerID := ""
	if is, ok := h.ref.IssuerByPAN(req.PAN); ok {
		issuerID = is.ID
	}
	r := &authRecord{issuerID: issuerID, ident: ident, alt: alt, early: true, done: make(chan struct{})}
	h.dedup.put(r)
	h.dedup.mu.Unlock()
	err := h.w.Write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, sqlInsertRev, newID("rev_"), issuerID, req.MTI, ident, alt, nil, 0, h.now().UnixMilli())
		return err
	})
	if err != nil {
		r.failed = true
		h.dedup.mu.Lock()
		h.dedup.remove(r)
		h.dedup.mu.Unlock()
		close(r.done)
		if errors.Is(err, store.ErrWriterClosed) {
			return ReversalResult{Code: RCIssuerUnavailable}
		}
		return ReversalResult{Code: RCSystemError}
	}
	close(r.done)
	return ReversalResult{Code: RCApproved}
}

// authorizeReversedEarly answers an original whose reversal came first:
// declined (05) and recorded, so a later duplicate gets the same answer and
// no hold exists.
func (h *Host) authorizeReversedEarly(ctx context.Context, req AuthRequest, early *authRecord, acct *account, ident, alt, fp string) AuthResult {
	h.dedup.mu.Lock()
	if cur := h.dedup.byIdent[ident]; cur != nil && cur != early {
		h.dedup.mu.Unlock()
		return h.Authorize(ctx, req) // someone recorded it meanwhile
	}
	h.dedup.remove(early)
	rec := &authRecord{ident: ident, alt: alt, fingerprint: fp, done: make(chan struct{})}
	h.dedup.put(rec)
	h.dedup.mu.Unlock()

	now := h.now()
	rec.id, rec.acct, rec.day, rec.code = h.ids.next(authIDPrefix, now), acct, dayOf(now), RCDoNotHonor
	rec.issuerID = early.issuerID
	if acct != nil {
		rec.cardID, rec.issuerID = acct.card.ID, acct.bank.ID
	}
	err := h.w.Write(ctx, func(tx *sql.Tx) error {
		job := &authJob{req: &req, rec: rec, ms: now.UnixMilli()}
		if err := h.sql.writeAuthRows(tx, []*authJob{job}); err != nil {
			return err
		}
		if job.err != nil {
			return job.err
		}
		_, err := tx.ExecContext(ctx, `UPDATE reversals SET auth_id = $1 WHERE auth_id IS NULL AND (orig_ident = $2 OR orig_alt = $3)`,
			rec.id, nonEmpty(early.ident), nonEmpty(early.alt))
		return err
	})
	if err != nil {
		return h.failAuth(ctx, rec, err)
	}
	close(rec.done)
	return AuthResult{Code: rec.code, AuthID: rec.id}
}

// nonEmpty maps "" to a value no identity has (identities always hold
// '|'), so an empty key never matches.
func nonEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
