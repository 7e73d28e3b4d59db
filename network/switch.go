// Package network is the card network switch (the UnionPay role): it takes
// ISO 8583 authorizations from acquirers, detects duplicates, has the TSP
// de-tokenize Mi Pay tokens (state, domain, ARQC, ATC, CDCVM), routes by BIN
// to the issuer's host, answers the acquirer with the token back in DE2 and
// the ARPC in DE55 tag 91, stands in for an issuer that does not answer,
// reverses late approvals, forwards reversals exactly once, records every
// decision and publishes transaction.authorized.
package network

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/emv"
	"github.com/mipay-oss/mipay/events"
	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/promo"
	"github.com/mipay-oss/mipay/store"
	"github.com/mipay-oss/mipay/tsp"
	"github.com/prometheus/client_golang/prometheus"
)

// TokenService is the TSP's Go API the switch calls for tokenized messages.
type TokenService interface {
	Authorize(ctx context.Context, req tsp.AuthRequest) (tsp.AuthResult, error)
	ARPC(ctx context.Context, tokenRef string, atc uint16, arqc [8]byte, arc [2]byte) ([8]byte, error)
	Detokenize(ctx context.Context, tokenRef, requester, purpose string) (pan, panExpiry string, err error)
}

var _ TokenService = (*tsp.Authorizer)(nil)

// IssuerLink sends a message to an issuer host and waits for its answer.
type IssuerLink interface {
	Send(ctx context.Context, req *iso8583.Message) (*iso8583.Message, error)
}

var _ IssuerLink = (*iso8583.Client)(nil)

// Publisher publishes events under ids of ours (the events bus), so a
// re-publication after a crash is the same event to subscribers.
type Publisher interface {
	PublishID(ctx context.Context, id, subject string, v any) error
	// PublishBatch publishes several at once and tells which were stored.
	PublishBatch(ctx context.Context, evs []events.Outgoing) (ok []bool, err error)
}

var _ Publisher = (*events.Bus)(nil)

// Defaults.
const (
	DefaultIssuerTimeout = 2 * time.Second
	// DefaultDuplicateWindow is how long duplicates are detected from memory;
	// older transmissions are looked up in the store.
	DefaultDuplicateWindow = 10 * time.Minute
	// DefaultMaxRecent bounds the in-memory duplicate index.
	DefaultMaxRecent = 2_000_000
	// SubjectTransactionAuthorized is the event of every tokenized decision.
	SubjectTransactionAuthorized = "transaction.authorized"
)

// Config is what a Switch needs.
type Config struct {
	Ref     *config.Reference
	DB      *store.DB
	Tokens  TokenService
	Issuers func(issuerID string) (IssuerLink, bool)
	Bus     Publisher // nil: events stay in the outbox
	Log     *slog.Logger
	Now     func() time.Time
	// NodeID names this switch node (de-tokenization log, auth codes).
	NodeID          string
	DuplicateWindow time.Duration
	MaxRecent       int
	Writer          store.WriterConfig
	// ReversalRetry is the first delay before retrying an unacknowledged
	// issuer reversal (doubling up to a minute).
	ReversalRetry time.Duration
	// RateMaxAge is how old the exchange-rate table in effect may be
	// (DefaultRateMaxAge when 0); older, the switch declines conversions.
	RateMaxAge time.Duration
	// Promotions, when set, is consulted after de-tokenization (promo.go).
	Promotions Promotions
	// PANSealer seals the PAN of a plain card's pending stand-in advice
	// (advice.go).
	PANSealer PANSealer
	// AdviceBuildAttempts bounds how often in a row a stand-in advice may
	// fail to be built before it is marked failed (advice.go;
	// DefaultAdviceBuildAttempts when 0).
	AdviceBuildAttempts int
	// Metrics receives the switch's own metrics (advice_metrics.go); nil:
	// Writer.Registerer.
	Metrics prometheus.Registerer
}

// Switch is one switch node.
type Switch struct {
	cfg    Config
	db     *store.DB
	w      *store.Writer
	log    *slog.Logger
	now    func() time.Time
	recent *recentIndex
	rates  *RateTable

	flightMu sync.Mutex
	flight   map[string]*flightCall

	wake       chan struct{} // reversal worker
	adviceWake chan struct{} // advice worker (advice.go)
	outboxCh   chan struct{} // outbox publisher
	stop       chan struct{}
	wg         sync.WaitGroup

	adviceMetrics *adviceMetrics // advice_metrics.go
}

type flightCall struct {
	done chan struct{}
	resp *iso8583.Message
}

// New starts a switch node over its store: it loads the duplicate index of
// the last window and starts the reversal and outbox workers.
func New(ctx context.Context, cfg Config) (*Switch, error) {
	if cfg.Ref == nil || cfg.DB == nil || cfg.Tokens == nil || cfg.Issuers == nil || cfg.PANSealer == nil {
		return nil, errors.New("network: Ref, DB, Tokens, Issuers and PANSealer are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NodeID == "" {
		cfg.NodeID = "network"
	}
	if cfg.DuplicateWindow <= 0 {
		cfg.DuplicateWindow = DefaultDuplicateWindow
	}
	if cfg.MaxRecent <= 0 {
		cfg.MaxRecent = DefaultMaxRecent
	}
	if cfg.ReversalRetry <= 0 {
		cfg.ReversalRetry = 200 * time.Millisecond
	}
	if cfg.AdviceBuildAttempts <= 0 {
		cfg.AdviceBuildAttempts = DefaultAdviceBuildAttempts
	}
	s := &Switch{
		cfg: cfg, db: cfg.DB, log: cfg.Log, now: cfg.Now,
		flight: map[string]*flightCall{}, wake: make(chan struct{}, 1), outboxCh: make(chan struct{}, 1),
		adviceWake: make(chan struct{}, 1),
		stop:       make(chan struct{}),
	}
	s.adviceMetrics = newAdviceMetrics(cmp.Or(cfg.Metrics, cfg.Writer.Registerer))
	s.recent = newRecentIndex(cfg.MaxRecent)
	s.rates = NewRateTable(cfg.RateMaxAge)
	if err := s.loadRecent(ctx); err != nil {
		return nil, err
	}
	s.w = store.NewWriter(cfg.DB, cfg.Writer)
	if err := s.loadRates(ctx); err != nil {
		s.w.Close()
		return nil, err
	}
	s.wg.Add(4)
	go s.reversalLoop()
	go s.adviceLoop()
	go s.outboxLoop()
	go s.rateRefreshLoop()
	s.kick(s.wake)
	s.kick(s.adviceWake)
	s.kick(s.outboxCh)
	return s, nil
}

// Close stops the workers and the writer (not the store).
func (s *Switch) Close() error {
	close(s.stop)
	s.wg.Wait()
	return s.w.Close()
}

func (s *Switch) kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Handle is the acquirer-facing ISO 8583 handler.
func (s *Switch) Handle(ctx context.Context, req *iso8583.Message) (*iso8583.Message, error) {
	switch req.MTI() {
	case iso8583.MTIAuthRequest, iso8583.MTIFinancialRequest:
		return s.dedupe(ctx, req, s.authorize)
	case iso8583.MTIReversalRequest, iso8583.MTIReversalAdvice:
		return s.dedupe(ctx, req, s.reverse)
	default:
		resp := req.Response(3, 4, 7, 11, 32, 37, 41, 42)
		resp.SetString(39, RCInvalidTxn)
		return resp, nil
	}
}

// dupKey is a message's duplicate-detection identity.
func dupKey(m *iso8583.Message) string {
	return m.String(32) + "|" + m.String(41) + "|" + m.String(11) + "|" + m.String(37) + "|" + m.String(7) + "|" + m.MTI()[:2]
}

// dedupe answers a duplicate with the stored answer; concurrent duplicates
// wait for the first.
func (s *Switch) dedupe(ctx context.Context, req *iso8583.Message, fn func(context.Context, *iso8583.Message, string) (*iso8583.Message, error)) (*iso8583.Message, error) {
	key := dupKey(req)
	if resp, ok, err := s.storedAnswer(ctx, key, req); err != nil || ok {
		return resp, err
	}
	s.flightMu.Lock()
	if c, ok := s.flight[key]; ok {
		s.flightMu.Unlock()
		select {
		case <-c.done:
			if c.resp == nil {
				return nil, mipay.Errorf(mipay.EUNAVAILABLE, "original request failed")
			}
			return c.resp.Clone(), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	c := &flightCall{done: make(chan struct{})}
	s.flight[key] = c
	s.flightMu.Unlock()
	defer func() {
		s.flightMu.Lock()
		delete(s.flight, key)
		s.flightMu.Unlock()
		close(c.done)
	}()
	// A duplicate may have finished between the first look and the flight.
	if resp, ok, err := s.storedAnswer(ctx, key, req); err != nil || ok {
		c.resp = resp
		return resp, err
	}
	resp, err := fn(ctx, req, key)
	c.resp = resp
	return resp, err
}

// storedAnswer finds the answer of an earlier identical request: in memory
// when its transmission time is inside the window the index covers,
// otherwise in the store.
func (s *Switch) storedAnswer(ctx context.Context, key string, req *iso8583.Message) (*iso8583.Message, bool, error) {
	if b, ok := s.recent.get(key); ok {
		return unpackAnswer(b)
	}
	if s.recent.covers(transmissionTime(req.String(7), s.now())) {
		return nil, false, nil
	}
	var b []byte
	err := s.db.DB.QueryRowContext(ctx, `SELECT answer FROM auths WHERE dup_key = $1`, key).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("network: duplicate lookup: %w", err)
	}
	return unpackAnswer(b)
}

func unpackAnswer(b []byte) (*iso8583.Message, bool, error) {
	var m iso8583.Message
	if err := m.Unpack(b); err != nil {
		return nil, false, fmt.Errorf("network: stored answer: %w", err)
	}
	return &m, true, nil
}

// transmissionTime reads DE7 (MMDDhhmmss, UTC) as the instant nearest now.
func transmissionTime(de7 string, now time.Time) time.Time {
	if len(de7) != 10 {
		return time.Time{}
	}
	n, err := strconv.Atoi(de7)
	if err != nil {
		return time.Time{}
	}
	mo, d, h, mi, se := n/1e8, n/1e6%100, n/1e4%100, n/100%100, n%100
	now = now.UTC()
	t := time.Date(now.Year(), time.Month(mo), d, h, mi, se, 0, time.UTC)
	if t.Sub(now) > 180*24*time.Hour {
		t = t.AddDate(-1, 0, 0)
	} else if now.Sub(t) > 180*24*time.Hour {
		t = t.AddDate(1, 0, 0)
	}
	return t
}

// authRecord is what the switch records of an answered request.
type authRecord struct {
	Key, MTI, TokenRef, TokenLast4, IssuerID, Processing string
	AmountMinor                                          int64
	Currency, STAN, RRN, TxTime, Acquirer, Terminal      string
	Merchant, RC, AuthCode                               string
	StandIn                                              bool
	Answer                                               []byte
	Country                                              string   // DE19 ("" for reversals)
	Bill                                                 *billing // set when DE4 was converted
	arqc                                                 []byte   // the request's 9F26, for the ARPC
	promo                                                *promo.Reservation
	promoField                                           string       // DE124
	points                                               *EventPoints // from the issuer's approval (promo_points.go)
	pan                                                  string       // a plain card's DE2, for a stand-in's advice (advice.go)
}

// authorize handles a 0100/0200.
func (s *Switch) authorize(ctx context.Context, req *iso8583.Message, key string) (*iso8583.Message, error) {
	resp := req.Response(2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49)
	rec := &authRecord{Key: key, MTI: req.MTI(), Processing: req.String(3), Currency: req.String(49),
		STAN: req.String(11), RRN: req.String(37), TxTime: req.String(7), Acquirer: req.String(32),
		Terminal: req.String(41), Merchant: req.String(43)}
	if err := validateAuth(req); err != nil {
		s.log.InfoContext(ctx, "authorization refused", "reason", err.Error())
		// Echo only the fields that identify the request: the others may be
		// what is malformed.
		bad := req.Response(7, 11, 32, 37, 41)
		bad.SetString(39, RCFormatError)
		return s.finish(ctx, bad, rec, nil)
	}
	rec.AmountMinor, _ = iso8583.ParseAmount(req.String(4))
	bill, dec := s.crossBorder(req, s.now())
	if dec != nil {
		s.log.InfoContext(ctx, "authorization declined by the network", "rc", dec.rc, "reason", dec.reason)
		resp.SetString(39, dec.rc)
		return s.finish(ctx, resp, rec, nil)
	}
	rec.Country = bill.Country
	if bill.converted() {
		rec.Bill = bill
		req = req.Clone() // the issuer's copy carries DE6/DE10/DE51
		if err := setBilling(req, bill); err != nil {
			resp.SetString(39, RCInvalidAmount)
			return s.finish(ctx, resp, rec, nil)
		}
		_ = setBilling(resp, bill) // the same fields cannot fail twice
	}
	token := req.String(2)
	rec.TokenLast4 = token[len(token)-4:]
	iss, isToken := s.cfg.Ref.IssuerByToken(token)
	if !isToken {
		// A plain card: route by PAN BIN as is.
		if iss, ok := s.cfg.Ref.IssuerByPAN(token); ok {
			rec.IssuerID = iss.ID
			rec.pan = token
			return s.forward(ctx, s.applyPromotion(ctx, req, rec, nil, iss), resp, rec, nil, iss)
		}
		resp.SetString(39, RCInvalidCard)
		return s.finish(ctx, resp, rec, nil)
	}
	rec.IssuerID = iss.ID
	treq, err := tokenRequest(req)
	if err != nil {
		resp.SetString(39, RCFormatError)
		return s.finish(ctx, resp, rec, nil)
	}
	treq.Requester = s.cfg.NodeID + "/" + req.String(32)
	if bill.converted() {
		treq.BillingAmountMinor = bill.AmountMinor
	}
	rec.arqc = treq.ARQC
	res, err := s.cfg.Tokens.Authorize(ctx, treq)
	if err != nil {
		s.log.ErrorContext(ctx, "TSP failure", "err", err)
		resp.SetString(39, RCSystemError)
		return s.finish(ctx, resp, rec, nil)
	}
	rec.TokenRef = res.TokenRef
	if !res.Approved {
		resp.SetString(39, tokenDeclineCode(res.Decline))
		s.log.InfoContext(ctx, "token declined", "token_ref", res.TokenRef, "reason", res.Decline)
		return s.finish(ctx, resp, rec, &res)
	}
	out := req.Clone()
	out.SetString(2, res.PAN)
	out.SetString(14, res.PANExpiry)
	out.Unset(35) // track 2 equivalent data is the token's
	out.Unset(23) // the PSN is the token's
	td, err := iso8583.TokenData{Token: token, RequestorID: res.TokenRequestorID, AssuranceLevel: assuranceLevel(res.TokenAssurance),
		CryptogramResult: cryptogramResult(res), TokenExpiry: req.String(14)}.Encode()
	if err != nil {
		s.log.ErrorContext(ctx, "token data for the issuer", "token_ref", res.TokenRef, "err", err)
		resp.SetString(39, RCSystemError)
		return s.finish(ctx, resp, rec, &res)
	}
	out.SetString(123, td)
	return s.forward(ctx, s.applyPromotion(ctx, out, rec, &res, iss), resp, rec, &res, iss)
}

func validateAuth(req *iso8583.Message) error {
	for _, f := range []struct {
		n        int
		min, max int
	}{{2, 13, 19}, {3, 6, 6}, {4, 12, 12}, {7, 10, 10}, {11, 6, 6}, {22, 3, 3}, {41, 8, 8}, {49, 3, 3}} {
		v := req.Field(f.n)
		if len(v) < f.min || len(v) > f.max {
			return fmt.Errorf("field %d missing or of wrong length", f.n)
		}
		if f.n != 41 {
			for _, c := range v {
				if c < '0' || c > '9' {
					return fmt.Errorf("field %d is not numeric", f.n)
				}
			}
		}
	}
	return nil
}

// tokenRequest reads what the TSP needs from a tokenized message.
func tokenRequest(req *iso8583.Message) (tsp.AuthRequest, error) {
	amount, err := iso8583.ParseAmount(req.String(4))
	if err != nil {
		return tsp.AuthRequest{}, err
	}
	psn := -1
	if v := req.String(23); v != "" {
		if psn, err = strconv.Atoi(v); err != nil {
			return tsp.AuthRequest{}, err
		}
	}
	t := tsp.AuthRequest{
		Token: req.String(2), Expiry: req.String(14), PSN: psn, EntryMode: req.String(22),
		AmountMinor: amount, Currency: req.String(49), OnlinePIN: req.Has(52),
	}
	if !req.Has(55) {
		return t, nil
	}
	tlvs, err := emv.DecodeTLV(req.Field(55))
	if err != nil {
		return t, err
	}
	if v, ok := emv.FindTag(tlvs, 0x9F26); ok {
		t.ARQC = v.Value
	}
	if v, ok := emv.FindTag(tlvs, 0x9F10); ok {
		t.IAD = v.Value
	}
	if v, ok := emv.FindTag(tlvs, 0x9F6C); ok {
		t.CTQ = v.Value
	}
	if len(t.ARQC) > 0 {
		if t.ICC, err = emv.TxDataFromTLV(tlvs); err != nil {
			return t, err
		}
	}
	return t, nil
}

// forward sends the (de-tokenized) request to the issuer and builds the
// acquirer's answer.
func (s *Switch) forward(ctx context.Context, out, resp *iso8583.Message, rec *authRecord, res *tsp.AuthResult, iss *config.Issuer) (*iso8583.Message, error) {
	link, ok := s.cfg.Issuers(iss.ID)
	if !ok {
		resp.SetString(39, RCIssuerUnavailable)
		return s.finish(ctx, resp, rec, res)
	}
	timeout := iss.Timeout.D()
	if timeout <= 0 {
		timeout = DefaultIssuerTimeout
	}
	ictx, cancel := context.WithTimeout(ctx, timeout)
	answer, err := link.Send(ictx, out)
	cancel()
	if mipay.ErrorCode(err) == mipay.EINVALID {
		// The message could not be packed for the issuer: nothing was sent.
		s.log.InfoContext(ctx, "authorization not forwardable", "err", err)
		resp.SetString(39, RCFormatError)
		return s.finish(ctx, resp, rec, res)
	}
	if err != nil {
		return s.noAnswer(ctx, resp, rec, res, iss, err)
	}
	rc := answer.String(39)
	if len(rc) != 2 {
		s.log.ErrorContext(ctx, "issuer answer without a response code", "issuer", iss.ID)
		rc = RCSystemError
	}
	resp.SetString(39, rc)
	if rc == RCApproved {
		resp.SetString(38, answer.String(38))
		rec.points = pointsOf(answer)
	}
	return s.finish(ctx, resp, rec, res)
}

// noAnswer decides for an issuer that did not answer in time: stand-in
// within its limits (finishWith queues the advice that tells the issuer,
// advice.go), else 91. Either way, an issuer that approved late would
// hold money for a payment the acquirer was told was declined, so a declined
// one is reversed (0420) through the store-and-forward queue.
func (s *Switch) noAnswer(ctx context.Context, resp *iso8583.Message, rec *authRecord, res *tsp.AuthResult, iss *config.Issuer, cause error) (*iso8583.Message, error) {
	s.log.WarnContext(ctx, "issuer did not answer", "issuer", iss.ID, "err", cause)
	if iss.StandIn.Enabled && rec.billedMinor() <= iss.StandIn.MaxMinor {
		resp.SetString(39, RCApproved)
		resp.SetString(38, standInAuthCode())
		rec.StandIn = true
		return s.finish(ctx, resp, rec, res)
	}
	resp.SetString(39, RCIssuerUnavailable)
	return s.finishWith(ctx, resp, rec, res, &reversalDue{reason: "issuer timeout"})
}

// standInAuthCode is an approval code the switch gives when it stands in:
// "S" and five random digits, so an issuer's own codes never collide.
func standInAuthCode() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("S%05d", binary.BigEndian.Uint32(b[:])%100000)
}

type reversalDue struct{ reason string }

func (s *Switch) finish(ctx context.Context, resp *iso8583.Message, rec *authRecord, res *tsp.AuthResult) (*iso8583.Message, error) {
	return s.finishWith(ctx, resp, rec, res, nil)
}

// finishWith adds the ARPC for a verified cryptogram, records the decision
// (with its event, any reversal owed and a stand-in approval's advice)
// durably, and only then answers.
func (s *Switch) finishWith(ctx context.Context, resp *iso8583.Message, rec *authRecord, res *tsp.AuthResult, rev *reversalDue) (*iso8583.Message, error) {
	s.settlePromotion(ctx, resp, rec)
	rec.RC = resp.String(39)
	rec.AuthCode = resp.String(38)
	if res != nil && res.CryptogramValid {
		if err := s.addARPC(ctx, resp, res, rec.arqc); err != nil {
			s.log.ErrorContext(ctx, "ARPC failed", "token_ref", res.TokenRef, "err", err)
		}
	}
	answer, err := resp.Pack()
	if err != nil {
		return nil, fmt.Errorf("network: pack answer: %w", err)
	}
	rec.Answer = answer
	var ev *outboxEvent
	// A reversal's own answer is no transaction of the cardholder's: the
	// wallet learns of it from transaction.reversed once the issuer
	// acknowledged it (reversal_event.go).
	if rec.TokenRef != "" && rec.MTI != iso8583.MTIReversalRequest && rec.MTI != iso8583.MTIReversalAdvice {
		ev, err = transactionEvent(rec, s.now())
		if err != nil {
			return nil, err
		}
	}
	advise := rec.StandIn && rec.RC == RCApproved
	var sealedPAN string
	if advise {
		if sealedPAN, err = s.sealAdvicePAN(ctx, rec); err != nil {
			return nil, err
		}
	}
	err = s.w.Write(ctx, func(tx *sql.Tx) error {
		if err := insertAuth(ctx, tx, rec, s.now()); err != nil {
			return err
		}
		if advise {
			if err := insertAdvice(ctx, tx, rec, sealedPAN, s.now()); err != nil {
				return err
			}
		}
		if rev != nil {
			if err := insertReversal(ctx, tx, rec.Key, iso8583.MTIReversalAdvice, rev.reason, s.now()); err != nil {
				return err
			}
		}
		if ev != nil {
			return insertOutbox(ctx, tx, ev)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("network: record authorization: %w", err)
	}
	s.recent.put(rec.Key, answer, s.now())
	if ev != nil {
		s.kick(s.outboxCh)
	}
	if rev != nil {
		s.kick(s.wake)
	}
	if advise {
		s.kick(s.adviceWake)
	}
	return resp, nil
}

// addARPC puts tag 91 (ARPC ‖ ARC) in the answer's DE55: the TSP answers
// on behalf of the issuer with the token's keys. ARC is DE39 in ASCII.
func (s *Switch) addARPC(ctx context.Context, resp *iso8583.Message, res *tsp.AuthResult, reqARQC []byte) error {
	rc := resp.String(39)
	if len(rc) != 2 || len(reqARQC) != 8 {
		return nil
	}
	var arc [2]byte
	copy(arc[:], rc)
	var arqc [8]byte
	copy(arqc[:], reqARQC)
	arpc, err := s.cfg.Tokens.ARPC(ctx, res.TokenRef, res.ATC, arqc, arc)
	if err != nil {
		return err
	}
	resp.Set(55, emv.AppendTLV(nil, 0x91, append(arpc[:], arc[:]...)))
	return nil
}

// outboxEvent is an event waiting in the outbox.
type outboxEvent struct {
	ID      string
	Subject string
	Payload []byte
}

// TransactionEvent is the payload of transaction.authorized (no PAN).
type TransactionEvent struct {
	TransactionID string    `json:"transactionId"`
	TokenRef      string    `json:"tokenRef"`
	TokenLast4    string    `json:"tokenLast4"`
	IssuerID      string    `json:"issuerId"`
	AmountMinor   int64     `json:"amountMinor"`
	Currency      string    `json:"currency"`
	MerchantName  string    `json:"merchantName"`
	Approved      bool      `json:"approved"`
	ResponseCode  string    `json:"responseCode"`
	AuthCode      string    `json:"authCode,omitempty"`
	StandIn       bool      `json:"standIn,omitempty"`
	STAN          string    `json:"stan"`
	RRN           string    `json:"rrn"`
	Time          time.Time `json:"time"`
	// Paying abroad: the terminal's country, and what the cardholder is
	// billed (CNY fen) at which rate (CNY per major unit, as in DE10).
	Country            string `json:"country,omitempty"`
	BillingAmountMinor int64  `json:"billingAmountMinor,omitempty"`
	BillingCurrency    string `json:"billingCurrency,omitempty"`
	ConversionRate     string `json:"conversionRate,omitempty"`
	// Bank promotion (issue 8), on approvals only: AmountMinor is what the
	// merchant gets; the cardholder paid AmountMinor - DiscountMinor.
	DiscountMinor    int64  `json:"discountMinor,omitempty"`
	OfferBank        string `json:"offerBank,omitempty"`
	CampaignID       string `json:"campaignId,omitempty"`
	PointsMultiplier int64  `json:"pointsMultiplier,omitempty"`
	// Points is what the issuer's approval earned and the card's points
	// balance after it (DE124 of the 0210), with or without a campaign.
	Points *EventPoints `json:"points,omitempty"`
}

func transactionID(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:12])
}

func transactionEvent(rec *authRecord, now time.Time) (*outboxEvent, error) {
	e := TransactionEvent{
		TransactionID: transactionID(rec.Key), TokenRef: rec.TokenRef, TokenLast4: rec.TokenLast4, IssuerID: rec.IssuerID,
		AmountMinor: rec.AmountMinor, Currency: rec.Currency, MerchantName: trimMerchant(rec.Merchant),
		Approved: rec.RC == RCApproved, ResponseCode: rec.RC, AuthCode: rec.AuthCode, StandIn: rec.StandIn,
		STAN: rec.STAN, RRN: rec.RRN, Time: now.UTC(), Country: rec.Country,
	}
	if rec.Bill.converted() {
		e.BillingAmountMinor, e.BillingCurrency, e.ConversionRate = rec.Bill.AmountMinor, config.BillingCurrency, rec.Bill.Rate.String()
	}
	addPromotion(&e, rec)
	b, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	return &outboxEvent{ID: e.TransactionID, Subject: SubjectTransactionAuthorized, Payload: b}, nil
}

// trimMerchant takes the name part of DE43 (name 25, city 13, country 2).
func trimMerchant(de43 string) string {
	name := de43
	if len(name) > 25 {
		name = name[:25]
	}
	for len(name) > 0 && name[len(name)-1] == ' ' {
		name = name[:len(name)-1]
	}
	return name
}

// billedMinor is what the cardholder is billed in CNY fen.
func (r *authRecord) billedMinor() int64 {
	if r.Bill.converted() {
		return r.Bill.AmountMinor
	}
	return r.AmountMinor
}
