package wallet

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mipay-oss/mipay"
)

// hub wakes the waiters of a device when this node wrote a notification for
// it. Waiters also look at the store every NotificationPoll, which covers
// notifications written by other wallet nodes. An entry lives only while
// someone waits, so the map is bounded by the waiters in flight.
type hub struct {
	mu    sync.Mutex
	waits map[string]*waiters // device id → its waiters
}

type waiters struct {
	ch chan struct{} // closed on the next signal
	n  int
}

func newHub() *hub { return &hub{waits: map[string]*waiters{}} }

// wait returns a channel closed at the device's next signal, and a release
// the caller must call when it stops waiting.
func (h *hub) wait(deviceID string) (<-chan struct{}, func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w, ok := h.waits[deviceID]
	if !ok {
		w = &waiters{ch: make(chan struct{})}
		h.waits[deviceID] = w
	}
	w.n++
	return w.ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		w.n--
		if w.n == 0 && h.waits[deviceID] == w {
			delete(h.waits, deviceID)
		}
	}
}

func (h *hub) signal(deviceID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if w, ok := h.waits[deviceID]; ok {
		close(w.ch)
		delete(h.waits, deviceID)
	}
}

// size is how many devices have waiters (tests).
func (h *hub) size() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.waits)
}

// Notifications returns the device's notifications after seq `after`; when
// there are none it waits up to wait for one (long poll).
func (s *Service) Notifications(ctx context.Context, accountID, deviceID string, after int64, wait time.Duration) ([]Notification, error) {
	if _, err := s.Device(ctx, accountID, deviceID); err != nil {
		return nil, err
	}
	if after < 0 {
		return nil, mipay.Errorf(mipay.EINVALID, "after must be a notification number (0 or more)")
	}
	wait = min(max(wait, 0), MaxLongPollWait)
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		ns, done, err := s.waitOnce(ctx, deviceID, after, deadline.C)
		if err != nil || len(ns) > 0 || done {
			return ns, err
		}
	}
}

// waitOnce reads the device's notifications after `after` and, when there
// are none, waits for a signal, the poll interval, the deadline, ctx or
// Stop; done reports that waiting should end.
func (s *Service) waitOnce(ctx context.Context, deviceID string, after int64, deadline <-chan time.Time) ([]Notification, bool, error) {
	// Take the wake-up channel before reading so a signal between the read
	// and the wait is not lost.
	woken, release := s.hub.wait(deviceID)
	defer release()
	ns, err := s.repo.notifications(ctx, deviceID, after, MaxNotificationsPerPage, s.cfg.NotificationsKept)
	if err != nil || len(ns) > 0 {
		return ns, true, err
	}
	poll := time.NewTimer(s.cfg.NotificationPoll)
	defer poll.Stop()
	select {
	case <-woken:
	case <-poll.C:
	case <-deadline:
		return []Notification{}, true, nil
	case <-ctx.Done():
		return []Notification{}, true, nil
	case <-s.stopping:
		return []Notification{}, true, nil
	}
	return nil, false, nil
}

// --- events ---

// TransactionEvent is the payload of transaction.authorized as the switch
// publishes it. Unknown fields are ignored (the switch may add some).
type TransactionEvent struct {
	ID            string    `json:"id"`
	TransactionID string    `json:"transactionId"`
	TokenRef      string    `json:"tokenRef"`
	TokenUniqRef  string    `json:"tokenUniqueReference"`
	AmountMinor   int64     `json:"amountMinor"`
	Currency      string    `json:"currency"`
	MerchantName  string    `json:"merchantName"`
	Approved      bool      `json:"approved"`
	ResponseCode  string    `json:"responseCode"`
	AuthCode      string    `json:"authCode"`
	Time          time.Time `json:"time"`
	STAN          string    `json:"stan"`
	RRN           string    `json:"rrn"`
	// Set by the switch for a payment abroad.
	Country            string `json:"country"`
	BillingAmountMinor int64  `json:"billingAmountMinor"`
	BillingCurrency    string `json:"billingCurrency"`
	ConversionRate     string `json:"conversionRate"`
	// Set by the switch when a bank promotion applied (approvals only):
	// AmountMinor is what the merchant gets, the cardholder paid
	// AmountMinor - DiscountMinor.
	DiscountMinor    int64  `json:"discountMinor"`
	OfferBank        string `json:"offerBank"`
	CampaignID       string `json:"campaignId"`
	PointsMultiplier int64  `json:"pointsMultiplier"`
	// Points is what the issuer said the approval earned and the card's
	// balance after it (rewards.go).
	Points *EventPoints `json:"points"`
}

// PromotionCurrency is the currency of every bank promotion's saving (the
// promotions engine's campaigns are in CNY).
const PromotionCurrency = "CNY"

// maxPointsMultiplier bounds the multiplier taken from an event; campaigns
// multiply points by small factors.
const maxPointsMultiplier = 1000

// savingText is what the phone shows for a payment with a discount, worded
// as the promotions engine words it: "Saved 10.00 CNY with ICBC offer" (""
// without one). The wallet does not import the engine (parties do not
// import each other), so the format is repeated here.
func savingText(bank string, discountMinor int64) string {
	if discountMinor <= 0 {
		return ""
	}
	if bank == "" {
		bank = "bank"
	}
	return fmt.Sprintf("Saved %d.%02d %s with %s offer", discountMinor/100, discountMinor%100, PromotionCurrency, bank)
}

// applyPromotion copies a promotion from the event onto t: only on an
// approval, with a discount above zero and not above the amount; anything
// else is not a saving the cardholder got.
func applyPromotion(t *Transaction, e *TransactionEvent) {
	if !e.Approved || e.DiscountMinor <= 0 || e.DiscountMinor > e.AmountMinor {
		return
	}
	t.DiscountMinor = e.DiscountMinor
	t.OfferBank = clip(e.OfferBank)
	t.CampaignID = clip(e.CampaignID)
	if e.PointsMultiplier > 0 && e.PointsMultiplier <= maxPointsMultiplier {
		t.PointsMultiplier = e.PointsMultiplier
	}
	t.SavingText = savingText(t.OfferBank, t.DiscountMinor)
}

// Subjects the wallet subscribes to, and its durable consumer names.
const (
	SubjectTransactionAuthorized = "transaction.authorized"
	SubjectTokenStateChanged     = "token.state_changed"
	SubjectTokenStatesChanged    = "token.states_changed" // a batch's changes (lifecycle_batch.go)
	DurableTransactions          = "wallet-transactions"
	DurableTokenStates           = "wallet-token-states"
	DurableTokenStateBatches     = "wallet-token-state-batches"
)

// maxEventTextBytes bounds text fields taken from events into the store.
const maxEventTextBytes = 128

func clip(s string) string {
	if len(s) > maxEventTextBytes {
		s = s[:maxEventTextBytes]
	}
	return strings.ToValidUTF8(s, "")
}

// HandleTransaction records an authorization of one of the wallet's cards
// (once: by the switch's transaction id, else the event id) and notifies the
// card's device. Authorizations of tokens this wallet does not hold are
// ignored.
func (s *Service) HandleTransaction(ctx context.Context, eventID string, data json.RawMessage) error {
	var e TransactionEvent
	if err := json.Unmarshal(data, &e); err != nil {
		// A malformed event will not get better on redelivery.
		s.cfg.Log.ErrorContext(ctx, "malformed transaction event dropped", "event", eventID, "err", err)
		return nil
	}
	ref := e.TokenRef
	if ref == "" {
		ref = e.TokenUniqRef
	}
	id := e.TransactionID
	if id == "" {
		id = e.ID
	}
	if id == "" {
		id = eventID
	}
	if ref == "" || id == "" {
		s.cfg.Log.WarnContext(ctx, "transaction event without token or id dropped", "event", eventID)
		return nil
	}
	c, err := s.repo.tokenCard(ctx, ref)
	if mipay.ErrorCode(err) == mipay.ENOTFOUND {
		return nil
	}
	if err != nil {
		return err
	}
	at := s.eventTime(e.Time)
	t := &Transaction{
		ID: clip(id), CardID: c.cardID, DeviceID: c.deviceID, AmountMinor: e.AmountMinor, Currency: clip(e.Currency),
		MerchantName: clip(e.MerchantName), Approved: e.Approved, ResponseCode: clip(e.ResponseCode),
		AuthCode: clip(e.AuthCode), STAN: clip(e.STAN), RRN: clip(e.RRN), TokenLast4: c.tokenLast4, Time: at.UTC(),
		Country: clip(e.Country), BillingAmountMinor: e.BillingAmountMinor, BillingCurrency: clip(e.BillingCurrency),
		ConversionRate: clip(e.ConversionRate),
	}
	applyPromotion(t, &e)
	pts := validPoints(&e)
	if pts != nil {
		t.PointsEarned = &pts.Earned // shown in the notification too
	}
	inserted, err := s.repo.insertTransaction(ctx, t, pts, s.now(), s.cfg.NotificationsKept)
	if err != nil {
		return err
	}
	if inserted {
		s.metrics.transactions.Inc()
		s.hub.signal(c.deviceID)
	}
	return nil
}

// eventTime is when an event says it happened, or now when it does not.
func (s *Service) eventTime(t time.Time) time.Time {
	if t.IsZero() {
		return s.now()
	}
	return t
}

// TokenStateEvent is the payload of token.state_changed (the TSP's
// StateChange).
type TokenStateEvent struct {
	TokenRef string    `json:"tokenUniqueReference"`
	State    string    `json:"state"`
	CausedBy string    `json:"causedBy"`
	Reason   string    `json:"reason"`
	Time     time.Time `json:"time"`
	// PANLast4 is the card's last 4 at the TSP; PANExpiry is set when
	// the bank replaced the card (replaced.go).
	PANLast4  string `json:"panLast4"`
	PANExpiry string `json:"panExpiry"`
}

// HandleTokenState updates the state of the card holding the token and
// notifies its device.
func (s *Service) HandleTokenState(ctx context.Context, eventID string, data json.RawMessage) error {
	var e TokenStateEvent
	if err := json.Unmarshal(data, &e); err != nil || e.TokenRef == "" {
		s.cfg.Log.ErrorContext(ctx, "malformed token state event dropped", "event", eventID, "err", err)
		return nil
	}
	return s.applyTokenState(ctx, eventID, &e)
}

// applyTokenState records one token's state change on its card.
func (s *Service) applyTokenState(ctx context.Context, eventID string, e *TokenStateEvent) error {
	c, err := s.repo.cardByTokenRef(ctx, e.TokenRef)
	if mipay.ErrorCode(err) == mipay.ENOTFOUND {
		return nil
	}
	if err != nil {
		return err
	}
	at := s.eventTime(e.Time)
	if cardReplaced(c, e) {
		if err := s.applyCardReplaced(ctx, c, e, at); err != nil {
			return err
		}
	} else if c.State == e.State {
		return nil // already recorded (e.g. from the TSP's answer to this wallet's own call): no write
	}
	err = s.changeCardState(ctx, c, e.State, clip(e.CausedBy), clip(e.Reason), at)
	if mipay.ErrorCode(err) == mipay.EUNAVAILABLE {
		s.cfg.Log.ErrorContext(ctx, "token state event with an unknown state dropped", "event", eventID, "state", clip(e.State))
		return nil
	}
	return err
}

// parseAfter reads a notification number from ?after= or Last-Event-ID.
func parseAfter(v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, mipay.Errorf(mipay.EINVALID, "after must be a notification number (0 or more)")
	}
	return n, nil
}

// sseEvent formats a notification as a server-sent event.
func sseEvent(n *Notification) ([]byte, error) {
	b, err := json.Marshal(n)
	if err != nil {
		return nil, fmt.Errorf("wallet: encode notification: %w", err)
	}
	return fmt.Appendf(nil, "id: %d\nevent: %s\ndata: %s\n\n", n.Seq, n.Kind, b), nil
}
