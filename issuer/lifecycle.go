package issuer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/httpx"
)

// Issuer-initiated token lifecycle: the bank's staff act on a card (reported
// stolen, found again, closed, replaced) and the host asks the TSP to act on
// every token of that card. The host keeps no PAN (cards are found by keyed
// hash), so the operator gives the full PAN in the request body; it is used
// for the lookup and the TSP call and never stored, logged or answered.

// TSPCards is the TSP's issuer API by card (tsp/API.md, "Issuer: lifecycle
// by card").
type TSPCards interface {
	CardLifecycle(ctx context.Context, req TSPCardLifecycle) (TSPCardResult, error)
	ReplaceCard(ctx context.Context, req TSPCardReplace) (TSPCardResult, error)
	CardTokens(ctx context.Context, req TSPCardTokens) (TSPCardResult, error)
}

// TSPCardLifecycle is the TSP's POST /v1/issuer/cards/lifecycle.
type TSPCardLifecycle struct {
	PAN    string `json:"pan"`
	Action string `json:"action"` // suspend, resume, delete
	Reason string `json:"reason,omitempty"`
}

// String hides the PAN.
func (r TSPCardLifecycle) String() string {
	return fmt.Sprintf("{pan:%s action:%s reason:%q}", maskPAN(r.PAN), r.Action, r.Reason)
}

// TSPCardReplace is the TSP's POST /v1/issuer/cards/replace.
type TSPCardReplace struct {
	OldPAN    string `json:"oldPan"`
	NewPAN    string `json:"newPan"`
	NewExpiry string `json:"newExpiry"`
	Reason    string `json:"reason,omitempty"`
}

// String hides the PANs.
func (r TSPCardReplace) String() string {
	return fmt.Sprintf("{oldPan:%s newPan:%s newExpiry:%s}", maskPAN(r.OldPAN), maskPAN(r.NewPAN), r.NewExpiry)
}

// TSPCardToken is one token in the TSP's answer.
type TSPCardToken struct {
	TokenRef   string `json:"tokenUniqueReference"`
	TokenLast4 string `json:"tokenLast4"`
	DeviceID   string `json:"deviceId"`
	State      string `json:"state"`
	Changed    bool   `json:"changed"`
	Reason     string `json:"reason,omitempty"`
}

// TSPCardResult is the TSP's answer (masked PANs only).
type TSPCardResult struct {
	Tokens   []TSPCardToken `json:"tokens"`
	Changed  int            `json:"changed"`
	Replaced int            `json:"replaced"`
}

// Token actions a bank may take on a card's tokens.
const (
	TokenSuspend = "suspend"
	TokenResume  = "resume"
	TokenDelete  = "delete"
)

// Bounds and defaults of the TSP client.
const (
	DefaultTSPTimeout    = 10 * time.Second // one card call (up to 1,000 tokens at the TSP)
	EnvTSPIssuerToken    = "MIPAY_TSP_ISSUER_TOKEN"
	tspIssuerTokenFile   = "issuer.token" // <data>/tsp/issuer.token, made by the TSP
	maxTSPSecretBytes    = 256
	maxLifecycleReason   = 200
	reasonStolen         = "CARD_STOLEN"
	reasonReplacedByBank = "CARD_REPLACED"
)

// HTTPTSP calls the TSP's issuer API. The TSP's address and secret are read
// at each call: the TSP starts after the issuer host and makes the secret
// file on its first start.
type HTTPTSP struct {
	base    func() string // the TSP's URL, "" while unknown
	dataDir string
	http    *http.Client
}

// NewHTTPTSP returns a client of the TSP found by base(), with the issuer
// secret from MIPAY_TSP_ISSUER_TOKEN or <dataDir>/tsp/issuer.token.
func NewHTTPTSP(base func() string, dataDir string) *HTTPTSP {
	return &HTTPTSP{base: base, dataDir: dataDir, http: &http.Client{Timeout: DefaultTSPTimeout}}
}

func (c *HTTPTSP) client() (*httpx.Client, error) {
	base := c.base()
	if base == "" {
		return nil, mipay.Errorf(mipay.EUNAVAILABLE, "the token service is not reachable now")
	}
	tok := strings.TrimSpace(os.Getenv(EnvTSPIssuerToken))
	if tok == "" && c.dataDir != "" {
		b, err := os.ReadFile(filepath.Join(c.dataDir, "tsp", tspIssuerTokenFile))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, mipay.WrapError(mipay.EUNAVAILABLE, err, "the token service credentials cannot be read")
		}
		if len(b) <= maxTSPSecretBytes {
			tok = strings.TrimSpace(string(b))
		}
	}
	if tok == "" {
		return nil, mipay.Errorf(mipay.EUNAVAILABLE, "no token service credentials (%s)", EnvTSPIssuerToken)
	}
	return &httpx.Client{Base: base, HTTP: c.http, Token: tok}, nil
}

// card posts one of the TSP's issuer card requests (the PAN in the body).
func (c *HTTPTSP) card(ctx context.Context, path string, req any) (TSPCardResult, error) {
	var out TSPCardResult
	cl, err := c.client()
	if err != nil {
		return out, err
	}
	return out, cl.Do(ctx, http.MethodPost, path, req, &out)
}

// CardLifecycle implements TSPCards.
func (c *HTTPTSP) CardLifecycle(ctx context.Context, req TSPCardLifecycle) (TSPCardResult, error) {
	return c.card(ctx, "/v1/issuer/cards/lifecycle", req)
}

// ReplaceCard implements TSPCards.
func (c *HTTPTSP) ReplaceCard(ctx context.Context, req TSPCardReplace) (TSPCardResult, error) {
	return c.card(ctx, "/v1/issuer/cards/replace", req)
}

// CardActionRequest is an operator's request on one card.
type CardActionRequest struct {
	PAN    string `json:"pan"`
	Action string `json:"action"` // suspend, resume, delete (token-actions only)
	Reason string `json:"reason"`
}

// String hides the PAN.
func (r CardActionRequest) String() string {
	return fmt.Sprintf("{pan:%s action:%s reason:%q}", maskPAN(r.PAN), r.Action, r.Reason)
}

// CardActionResult is the answer: the card (masked) and its status, and the
// tokens as the TSP reports them.
type CardActionResult struct {
	CardID     string         `json:"cardId"`
	PAN        string         `json:"pan"` // masked
	CardStatus string         `json:"cardStatus"`
	Tokens     []TSPCardToken `json:"tokens"`
	Changed    int            `json:"changed"`
}

// CardReplaceRequest is an operator's replacement of a card by another card
// of the same bank already on the host (new PAN and/or expiry).
type CardReplaceRequest struct {
	OldPAN string `json:"oldPan"`
	NewPAN string `json:"newPan"`
	Reason string `json:"reason"`
}

// String hides the PANs.
func (r CardReplaceRequest) String() string {
	return fmt.Sprintf("{oldPan:%s newPan:%s}", maskPAN(r.OldPAN), maskPAN(r.NewPAN))
}

// CardReplaceResult is the answer to a replacement.
type CardReplaceResult struct {
	OldCardID     string         `json:"oldCardId"`
	OldPAN        string         `json:"oldPan"` // masked
	OldCardStatus string         `json:"oldCardStatus"`
	NewCardID     string         `json:"newCardId"`
	NewPAN        string         `json:"newPan"` // masked
	NewExpiry     string         `json:"newExpiry"`
	Tokens        []TSPCardToken `json:"tokens"`
	Replaced      int            `json:"replaced"`
}

// bankCard finds the card of pan at bank issuerID (ENOTFOUND otherwise, the
// same answer for an unknown bank and a card of another bank).
func (h *Host) bankCard(ctx context.Context, issuerID, field, pan string) (*account, error) {
	if !validPAN(pan) {
		return nil, mipay.Errorf(mipay.EINVALID, "%s is not a valid card number", field)
	}
	a := h.cardByPAN(ctx, pan)
	if a == nil || a.card.IssuerID != issuerID {
		return nil, mipay.Errorf(mipay.ENOTFOUND, "no such card at this bank")
	}
	return a, nil
}

func (h *Host) tspCards() (TSPCards, error) {
	if h.tsp == nil {
		return nil, mipay.Errorf(mipay.EUNAVAILABLE, "the token service is not configured")
	}
	return h.tsp, nil
}

func lifecycleReason(r, def string) (string, error) {
	if len(r) > maxLifecycleReason {
		return "", mipay.Errorf(mipay.ETOOLARGE, "reason must be at most %d bytes", maxLifecycleReason)
	}
	if r == "" {
		return def, nil
	}
	return r, nil
}

// TokenAction suspends, resumes or deletes every token of a card at the TSP
// (causedBy ISSUER). The card's own status does not change.
func (h *Host) TokenAction(ctx context.Context, issuerID string, req CardActionRequest) (CardActionResult, error) {
	switch req.Action {
	case TokenSuspend, TokenResume, TokenDelete:
	default:
		return CardActionResult{}, mipay.Errorf(mipay.EINVALID, "action must be suspend, resume or delete")
	}
	reason, err := lifecycleReason(req.Reason, "ISSUER_REQUEST")
	if err != nil {
		return CardActionResult{}, err
	}
	a, err := h.bankCard(ctx, issuerID, "pan", req.PAN)
	if err != nil {
		return CardActionResult{}, err
	}
	t, err := h.tspCards()
	if err != nil {
		return CardActionResult{}, err
	}
	res, err := t.CardLifecycle(ctx, TSPCardLifecycle{PAN: req.PAN, Action: req.Action, Reason: reason})
	if err != nil {
		return CardActionResult{}, fmt.Errorf("issuer: TSP card lifecycle: %w", err)
	}
	h.log.InfoContext(ctx, "card tokens changed by the bank", "issuer", issuerID, "card", a.card.ID, "action", req.Action, "changed", res.Changed)
	return CardActionResult{CardID: a.card.ID, PAN: a.card.Masked(), CardStatus: a.currentStatus(), Tokens: res.Tokens, Changed: res.Changed}, nil
}

// ReportStolen marks the card lost (the host declines it, 05) and suspends
// every token of it at the TSP (causedBy ISSUER, reason CARD_STOLEN). The
// card status is written first: a TSP failure leaves the card blocked here
// and the call can be repeated.
func (h *Host) ReportStolen(ctx context.Context, issuerID string, req CardActionRequest) (CardActionResult, error) {
	reason, err := lifecycleReason(req.Reason, reasonStolen)
	if err != nil {
		return CardActionResult{}, err
	}
	a, err := h.bankCard(ctx, issuerID, "pan", req.PAN)
	if err != nil {
		return CardActionResult{}, err
	}
	t, err := h.tspCards()
	if err != nil {
		return CardActionResult{}, err
	}
	if err := h.setCardStatus(ctx, a, StatusLost); err != nil {
		return CardActionResult{}, err
	}
	out := CardActionResult{CardID: a.card.ID, PAN: a.card.Masked(), CardStatus: StatusLost}
	res, err := t.CardLifecycle(ctx, TSPCardLifecycle{PAN: req.PAN, Action: TokenSuspend, Reason: reason})
	if mipay.ErrorCode(err) == mipay.ENOTFOUND {
		return out, nil // a card without tokens: blocking it is all there is to do
	}
	if err != nil {
		return CardActionResult{}, fmt.Errorf("issuer: TSP card lifecycle: %w", err)
	}
	out.Tokens, out.Changed = res.Tokens, res.Changed
	h.log.InfoContext(ctx, "card reported stolen", "issuer", issuerID, "card", a.card.ID, "tokensSuspended", res.Changed)
	return out, nil
}

// ReplaceCard moves the tokens of the old card to the new one (a card of the
// same bank on this host: its PAN and expiry go to the TSP) and blocks the
// old card. The user does not bind again.
func (h *Host) ReplaceCard(ctx context.Context, issuerID string, req CardReplaceRequest) (CardReplaceResult, error) {
	reason, err := lifecycleReason(req.Reason, reasonReplacedByBank)
	if err != nil {
		return CardReplaceResult{}, err
	}
	oldA, err := h.bankCard(ctx, issuerID, "oldPan", req.OldPAN)
	if err != nil {
		return CardReplaceResult{}, err
	}
	newA, err := h.bankCard(ctx, issuerID, "newPan", req.NewPAN)
	if err != nil {
		return CardReplaceResult{}, err
	}
	if newA.currentStatus() != StatusActive {
		return CardReplaceResult{}, mipay.Errorf(mipay.ECONFLICT, "the new card is not active")
	}
	t, err := h.tspCards()
	if err != nil {
		return CardReplaceResult{}, err
	}
	res, err := t.ReplaceCard(ctx, TSPCardReplace{OldPAN: req.OldPAN, NewPAN: req.NewPAN, NewExpiry: newA.card.Expiry, Reason: reason})
	if err != nil {
		return CardReplaceResult{}, fmt.Errorf("issuer: TSP card replace: %w", err)
	}
	status := oldA.currentStatus()
	if oldA != newA {
		if err := h.setCardStatus(ctx, oldA, StatusBlocked); err != nil {
			return CardReplaceResult{}, err
		}
		status = StatusBlocked
	}
	h.log.InfoContext(ctx, "card replaced", "issuer", issuerID, "oldCard", oldA.card.ID, "newCard", newA.card.ID, "tokens", res.Replaced)
	return CardReplaceResult{
		OldCardID: oldA.card.ID, OldPAN: oldA.card.Masked(), OldCardStatus: status,
		NewCardID: newA.card.ID, NewPAN: newA.card.Masked(), NewExpiry: newA.card.Expiry,
		Tokens: res.Tokens, Replaced: res.Replaced,
	}, nil
}

// setCardStatus writes a card's status, then changes it in memory.
func (h *Host) setCardStatus(ctx context.Context, a *account, status string) error {
	_, err := h.db.DB.ExecContext(ctx, `UPDATE cards SET status = $1 WHERE id = $2`, status, a.card.ID)
	if err != nil {
		return fmt.Errorf("issuer: card status: %w", err)
	}
	a.mu.Lock()
	a.status = status
	a.mu.Unlock()
	return nil
}

// HTTP handlers (API.md, "Card lifecycle").

func (h *Host) handleTokenAction(w http.ResponseWriter, r *http.Request) {
	bankCall(w, r, h.TokenAction)
}

func (h *Host) handleReportStolen(w http.ResponseWriter, r *http.Request) {
	bankCall(w, r, h.ReportStolen)
}

func (h *Host) handleReplaceCard(w http.ResponseWriter, r *http.Request) {
	bankCall(w, r, h.ReplaceCard)
}
