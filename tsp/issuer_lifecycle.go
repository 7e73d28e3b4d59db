package tsp

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/mipay-oss/mipay"
)

// Issuer-initiated lifecycle by card: a bank acts on every token of one of
// its cards (every device) without knowing the token references, and moves
// the tokens of a replaced card to the new card number. The PAN arrives in
// the request, is looked up by its HMAC and is never stored in clear, logged
// or answered (masked only).

// DefaultMaxTokensPerCard bounds how many tokens one card-level request
// touches (one card on many devices; far above any real wallet).
const DefaultMaxTokensPerCard = 1000

// Reasons recorded when the request gives none.
const (
	ReasonIssuerAction = "ISSUER_REQUEST"
	ReasonCardReplaced = "CARD_REPLACED"
)

// CardLifecycleRequest is POST /v1/issuer/cards/lifecycle.
type CardLifecycleRequest struct {
	PAN    string `json:"pan"`
	Action Action `json:"action"` // suspend, resume or delete
	Reason string `json:"reason"`
}

// String hides the PAN (requests may end up in logs through %v).
func (r CardLifecycleRequest) String() string {
	return fmt.Sprintf("{pan:%s action:%s reason:%q}", MaskPAN(r.PAN), r.Action, r.Reason)
}

// CardTokenResult is what happened to one token of the card.
type CardTokenResult struct {
	TokenRef   string `json:"tokenUniqueReference"`
	TokenLast4 string `json:"tokenLast4"`
	DeviceID   string `json:"deviceId"`
	State      State  `json:"state"`
	Changed    bool   `json:"changed"`
	Reason     string `json:"reason,omitempty"` // why it did not change (e.g. ALREADY_SUSPENDED)
}

// CardLifecycleResponse answers a card-level request. Only the masked PAN.
type CardLifecycleResponse struct {
	PAN      string            `json:"pan"` // masked first6/last4
	PANLast4 string            `json:"panLast4"`
	PAR      string            `json:"paymentAccountReference,omitempty"`
	Action   Action            `json:"action"`
	Tokens   []CardTokenResult `json:"tokens"`
	Changed  int               `json:"changed"`
}

// CardReplaceRequest is POST /v1/issuer/cards/replace.
type CardReplaceRequest struct {
	OldPAN    string `json:"oldPan"`
	NewPAN    string `json:"newPan"`
	NewExpiry string `json:"newExpiry"` // YYMM
	Reason    string `json:"reason"`
}

// String hides the PANs.
func (r CardReplaceRequest) String() string {
	return fmt.Sprintf("{oldPan:%s newPan:%s newExpiry:%s reason:%q}", MaskPAN(r.OldPAN), MaskPAN(r.NewPAN), r.NewExpiry, r.Reason)
}

// CardReplaceResponse answers a replacement: the tokens now on the new card.
type CardReplaceResponse struct {
	OldPAN   string            `json:"oldPan"` // masked
	NewPAN   string            `json:"newPan"` // masked
	PAR      string            `json:"paymentAccountReference"`
	Tokens   []CardTokenResult `json:"tokens"`
	Replaced int               `json:"replaced"`
}

// checkIssuerPAN validates a PAN from an issuer request and returns its
// lookup HMAC. The PAN must lie in a configured bank's range.
func (s *Service) checkIssuerPAN(ctx context.Context, field, pan string) ([]byte, error) {
	if !allDigits(pan) || len(pan) < minPANDigits || len(pan) > maxPANDigits {
		return nil, mipay.Errorf(mipay.EINVALID, "%s must be %d to %d digits", field, minPANDigits, maxPANDigits)
	}
	if !LuhnValid(pan) {
		return nil, &mipay.Error{Code: mipay.EINVALID, Reason: "LUHN", Message: field + " is not a valid card number"}
	}
	if _, ok := s.ref.IssuerByPAN(pan); !ok {
		return nil, &mipay.Error{Code: mipay.EINVALID, Reason: ReasonCardNotSupported, Message: field + " is not in any bank's card range"}
	}
	mac, err := s.keys.MAC(ctx, append([]byte(hmacLabelLookup), pan...))
	if err != nil {
		return nil, fmt.Errorf("tsp: PAN HMAC: %w", err)
	}
	return mac, nil
}

func checkReason(reason, def string) (string, error) {
	if len(reason) > maxReasonBytes {
		return "", mipay.Errorf(mipay.ETOOLARGE, "reason must be at most %d bytes", maxReasonBytes)
	}
	if reason == "" {
		return def, nil
	}
	return reason, nil
}

// cardTokens returns every token of the card with this lookup HMAC
// (ENOTFOUND when none).
func (s *Service) cardTokens(ctx context.Context, panHMAC []byte) ([]*tokenRow, error) {
	rows, err := s.vault.ByPANHMAC(ctx, panHMAC, DefaultMaxTokensPerCard)
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, &mipay.Error{Code: mipay.ENOTFOUND, Reason: "NO_TOKENS", Message: "this card has no tokens"}
	}
	return rows, nil
}

// CardLifecycle suspends, resumes or deletes every token of a card, caused
// by the ISSUER. Tokens already in the target state (or deleted) are
// reported unchanged; the request fails only if it can change nothing and
// some token refused (e.g. resume of a deleted card).
func (s *Service) CardLifecycle(ctx context.Context, req CardLifecycleRequest) (CardLifecycleResponse, error) {
	switch req.Action {
	case ActionSuspend, ActionResume, ActionDelete:
	default:
		return CardLifecycleResponse{}, mipay.Errorf(mipay.EINVALID, "action must be suspend, resume or delete")
	}
	reason, err := checkReason(req.Reason, ReasonIssuerAction)
	if err != nil {
		return CardLifecycleResponse{}, err
	}
	mac, err := s.checkIssuerPAN(ctx, "pan", req.PAN)
	if err != nil {
		return CardLifecycleResponse{}, err
	}
	rows, err := s.cardTokens(ctx, mac)
	if err != nil {
		return CardLifecycleResponse{}, err
	}
	out := CardLifecycleResponse{PAN: MaskPAN(req.PAN), PANLast4: last4(req.PAN), PAR: rows[0].PAR, Action: req.Action}
	for _, t := range rows {
		r := CardTokenResult{TokenRef: t.Ref, TokenLast4: t.DPANLast4(), DeviceID: t.DeviceID, State: t.State}
		v, err := s.apply(ctx, t, req.Action, CausedByIssuer, reason, "")
		switch {
		case err == nil:
			r.State, r.Changed = v.State, true
			out.Changed++
		case mipay.ErrorCode(err) == mipay.ECONFLICT || mipay.ErrorCode(err) == mipay.EFORBIDDEN:
			r.Reason = mipay.ErrorReason(err)
			if r.Reason == "" {
				r.Reason = mipay.ErrorCode(err)
			}
		default:
			return CardLifecycleResponse{}, err
		}
		out.Tokens = append(out.Tokens, r)
	}
	s.log.InfoContext(ctx, "issuer card lifecycle", "pan", MaskPAN(req.PAN), "action", req.Action, "tokens", len(rows), "changed", out.Changed)
	return out, nil
}

// CardTokensRequest is POST /v1/issuer/cards/tokens.
type CardTokensRequest struct {
	PAN string `json:"pan"`
}

// String hides the PAN.
func (r CardTokensRequest) String() string { return fmt.Sprintf("{pan:%s}", MaskPAN(r.PAN)) }

// CardTokens lists every token of a card (every device, every state, up
// to DefaultMaxTokensPerCard) for its bank; ENOTFOUND when it has none.
func (s *Service) CardTokens(ctx context.Context, req CardTokensRequest) (CardLifecycleResponse, error) {
	mac, err := s.checkIssuerPAN(ctx, "pan", req.PAN)
	if err != nil {
		return CardLifecycleResponse{}, err
	}
	rows, err := s.cardTokens(ctx, mac)
	if err != nil {
		return CardLifecycleResponse{}, err
	}
	out := CardLifecycleResponse{PAN: MaskPAN(req.PAN), PANLast4: last4(req.PAN), PAR: rows[0].PAR, Tokens: make([]CardTokenResult, 0, len(rows))}
	for _, t := range rows {
		out.Tokens = append(out.Tokens, CardTokenResult{TokenRef: t.Ref, TokenLast4: t.DPANLast4(), DeviceID: t.DeviceID, State: t.State})
	}
	return out, nil
}

// ReplaceCard moves every token of the old card to the new card number and
// expiry: the PAN is sealed again for each token, the lookup HMAC changes,
// PAR and PAN reference stay (they identify the account the wallet shows).
// Token states do not change; deactivated tokens are left on the old card.
// Each moved token gets a history entry and a token.state_changed event
// (same state, reason CARD_REPLACED) so switch caches drop the old PAN.
func (s *Service) ReplaceCard(ctx context.Context, req CardReplaceRequest) (CardReplaceResponse, error) {
	if !validExpiry(req.NewExpiry) {
		return CardReplaceResponse{}, mipay.Errorf(mipay.EINVALID, "newExpiry must be YYMM (e.g. 2912)")
	}
	reason, err := checkReason(req.Reason, ReasonCardReplaced)
	if err != nil {
		return CardReplaceResponse{}, err
	}
	oldMAC, err := s.checkIssuerPAN(ctx, "oldPan", req.OldPAN)
	if err != nil {
		return CardReplaceResponse{}, err
	}
	newMAC, err := s.checkIssuerPAN(ctx, "newPan", req.NewPAN)
	if err != nil {
		return CardReplaceResponse{}, err
	}
	oldIss, _ := s.ref.IssuerByPAN(req.OldPAN)
	newIss, _ := s.ref.IssuerByPAN(req.NewPAN)
	if oldIss.ID != newIss.ID {
		return CardReplaceResponse{}, mipay.Errorf(mipay.EINVALID, "the new card must be of the same bank")
	}
	rows, err := s.cardTokens(ctx, oldMAC)
	if err != nil {
		return CardReplaceResponse{}, err
	}
	out := CardReplaceResponse{OldPAN: MaskPAN(req.OldPAN), NewPAN: MaskPAN(req.NewPAN), PAR: rows[0].PAR}
	samePAN := req.OldPAN == req.NewPAN
	for _, t := range rows {
		r := CardTokenResult{TokenRef: t.Ref, TokenLast4: t.DPANLast4(), DeviceID: t.DeviceID, State: t.State}
		if t.State == StateDeactivated {
			r.Reason = "TOKEN_DELETED"
			out.Tokens = append(out.Tokens, r)
			continue
		}
		sealed, err := s.keys.SealPAN(ctx, req.NewPAN, panAAD(t.Ref))
		if err != nil {
			return CardReplaceResponse{}, fmt.Errorf("tsp: seal PAN: %w", err)
		}
		c := s.change(&t.Token, t.State, t.State, CausedByIssuer, reason, s.now().UTC())
		// The event tells the wallet the new last 4 and expiry (never the
		// PAN): the card it shows follows the bank's replacement.
		c.PANLast4, c.PANExpiry = last4(req.NewPAN), req.NewExpiry
		if err := s.vault.ReplacePAN(ctx, t.Ref, oldMAC, newMAC, sealed, last4(req.NewPAN), req.NewExpiry, c); err != nil {
			return CardReplaceResponse{}, err
		}
		s.announce(ctx, c, NoticeStateChanged, t.DecisionID)
		r.Changed = true
		out.Replaced++
		out.Tokens = append(out.Tokens, r)
	}
	s.log.InfoContext(ctx, "issuer card replaced", "oldPan", MaskPAN(req.OldPAN), "newPan", MaskPAN(req.NewPAN),
		"samePAN", samePAN, "tokens", len(rows), "replaced", out.Replaced)
	return out, nil
}

// ByPANHMAC returns up to limit tokens of the card with this lookup HMAC,
// oldest first.
func (v *Vault) ByPANHMAC(ctx context.Context, panHMAC []byte, limit int) ([]*tokenRow, error) {
	rows, err := v.db.DB.QueryContext(ctx, tokenSelect+` WHERE t.pan_hmac = $1 ORDER BY t.created_at, t.ref LIMIT $2`, panHMAC, limit)
	if err != nil {
		return nil, fmt.Errorf("tsp: tokens by PAN: %w", err)
	}
	defer rows.Close()
	var out []*tokenRow
	for rows.Next() {
		r, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("tsp: tokens by PAN: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// ReplacePAN moves one token from the card with oldHMAC to a new card:
// sealed PAN, lookup HMAC, last 4 and card expiry; and records c in the
// token's history. ECONFLICT when the token no longer is on the old card.
func (v *Vault) ReplacePAN(ctx context.Context, ref string, oldHMAC, newHMAC, sealed []byte, newLast4, newExpiry string, c StateChange) error {
	return v.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE tokens SET pan_sealed = $1, pan_hmac = $2, pan_last4 = $3, pan_expiry = $4, updated_at = $5
			WHERE ref = $6 AND pan_hmac = $7 AND state <> $8`,
			sealed, newHMAC, newLast4, newExpiry, ms(c.Time), ref, oldHMAC, string(StateDeactivated))
		if err != nil {
			return fmt.Errorf("tsp: replace PAN: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return &mipay.Error{Code: mipay.ECONFLICT, Reason: "CONCURRENT_CHANGE", Message: "this card was changed meanwhile; please try again"}
		}
		var seq int
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM token_state_history WHERE token_ref = $1`, ref).Scan(&seq); err != nil {
			return fmt.Errorf("tsp: history seq: %w", err)
		}
		return insertHistory(ctx, tx, seq+1, c)
	})
}
