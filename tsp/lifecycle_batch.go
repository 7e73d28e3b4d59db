package tsp

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/httpx"
)

// Lifecycle of many tokens in one call: the wallet's "switch off Mi Pay on
// this device" (and "found it", "remove") acts on every card of a device at
// once. One request, one durable write for every token's state and history,
// then the events and issuer notices — instead of one request, one commit
// and one event round trip per token, which made a device with many tokens
// take seconds to switch off. Each token still goes through the state
// machine and gets its history entry and its issuer notice, as a single
// change does; the events go out as token.states_changed (one per up to
// 500 tokens) on which switch caches and the wallet act like on
// token.state_changed.

// Bounds of a batch.
const (
	// MaxBatchTokens is how many tokens one request may name.
	MaxBatchTokens = 1000
	// batchLookupChunk bounds the placeholders of one lookup statement.
	batchLookupChunk = 250
)

// BatchLifecycleRequest is POST /v1/tokens/lifecycle.
type BatchLifecycleRequest struct {
	TokenRefs []string `json:"tokenRefs"`
	Action    Action   `json:"action"` // suspend, resume or delete
	CausedBy  CausedBy `json:"causedBy"`
	Reason    string   `json:"reason"`
}

// BatchTokenResult is what happened to one token of a batch. A token the
// action does not apply to (already suspended, unknown, deleted, suspended
// by the issuer) keeps its state and says why; the others changed.
type BatchTokenResult struct {
	TokenRef string `json:"tokenUniqueReference"`
	State    State  `json:"state,omitempty"`
	Changed  bool   `json:"changed"`
	Code     string `json:"code,omitempty"`    // mipay error code when it did not change
	Reason   string `json:"reason,omitempty"`  // e.g. ALREADY_SUSPENDED
	Message  string `json:"message,omitempty"` // user-safe
}

// BatchLifecycleResponse answers a batch, one result per token in request
// order.
type BatchLifecycleResponse struct {
	Results []BatchTokenResult `json:"results"`
	Changed int                `json:"changed"`
}

// batchChange is one token's prepared transition.
type batchChange struct {
	i           int
	row         *tokenRow
	c           StateChange
	suspendedBy CausedBy
}

// LifecycleBatch applies one action to many tokens: every transition is
// written in one durable write, then announced.
func (s *Service) LifecycleBatch(ctx context.Context, req BatchLifecycleRequest) (BatchLifecycleResponse, error) {
	if !req.CausedBy.Valid() {
		return BatchLifecycleResponse{}, mipay.Errorf(mipay.EINVALID, "causedBy must be CARDHOLDER, ISSUER or TOKEN_REQUESTOR")
	}
	if len(req.Reason) > maxReasonBytes {
		return BatchLifecycleResponse{}, mipay.Errorf(mipay.ETOOLARGE, "reason must be at most %d bytes", maxReasonBytes)
	}
	switch req.Action {
	case ActionSuspend, ActionResume, ActionDelete:
	default:
		return BatchLifecycleResponse{}, mipay.Errorf(mipay.EINVALID, "action must be suspend, resume or delete")
	}
	switch n := len(req.TokenRefs); {
	case n == 0:
		return BatchLifecycleResponse{}, mipay.Errorf(mipay.EINVALID, "tokenRefs must name at least one token")
	case n > MaxBatchTokens:
		return BatchLifecycleResponse{}, mipay.Errorf(mipay.ETOOLARGE, "tokenRefs may name at most %d tokens", MaxBatchTokens)
	}
	seen := make(map[string]bool, len(req.TokenRefs))
	for _, ref := range req.TokenRefs {
		if seen[ref] {
			return BatchLifecycleResponse{}, mipay.Errorf(mipay.EINVALID, "tokenRefs names a token twice")
		}
		seen[ref] = true
	}
	rows, err := s.vault.GetMany(ctx, req.TokenRefs)
	if err != nil {
		return BatchLifecycleResponse{}, err
	}
	out := BatchLifecycleResponse{Results: make([]BatchTokenResult, len(req.TokenRefs))}
	now := s.now().UTC()
	var changes []*batchChange
	for i, ref := range req.TokenRefs {
		r := &out.Results[i]
		r.TokenRef = ref
		t, ok := rows[ref]
		if !ok {
			r.Code, r.Reason, r.Message = mipay.ENOTFOUND, "NO_TOKEN", mipay.ErrorMessage(errNoToken)
			continue
		}
		r.State = t.State
		to, err := Transition(t.State, req.Action, req.CausedBy, t.SuspendedBy)
		if err != nil {
			r.Code, r.Reason, r.Message = mipay.ErrorCode(err), mipay.ErrorReason(err), mipay.ErrorMessage(err)
			continue
		}
		ch := &batchChange{i: i, row: t, c: s.change(&t.Token, t.State, to, req.CausedBy, req.Reason, now)}
		if to == StateSuspended {
			ch.suspendedBy = req.CausedBy
		}
		changes = append(changes, ch)
	}
	var wrote, announced time.Duration
	if len(changes) > 0 {
		t0 := time.Now()
		applied, err := s.vault.ChangeStates(ctx, changes)
		wrote = time.Since(t0)
		if err != nil {
			return BatchLifecycleResponse{}, err
		}
		var done []*batchChange
		for k, ch := range changes {
			r := &out.Results[ch.i]
			if !applied[k] {
				// Changed by someone else between the read and the write.
				r.Code, r.Reason, r.Message = mipay.ECONFLICT, "CONCURRENT_CHANGE", "this card was changed meanwhile; please try again"
				continue
			}
			r.State, r.Changed = ch.c.State, true
			out.Changed++
			done = append(done, ch)
		}
		t1 := time.Now()
		s.announceBatch(ctx, done)
		announced = time.Since(t1)
	}
	s.log.InfoContext(ctx, "token states changed in a batch", "action", req.Action, "causedBy", req.CausedBy, "reason", req.Reason,
		"tokens", len(req.TokenRefs), "changed", out.Changed, "write", wrote.String(), "announce", announced.String())
	return out, nil
}

// SubjectStatesChanged carries the state changes of one batch (StateChanges):
// every switch node drops all of its tokens from its cache on one event,
// where a token.state_changed per token would take one publish each (a
// device of 1,000 tokens took ~0.3 s more to be refused everywhere).
const SubjectStatesChanged = "token.states_changed"

// StateChanges is the payload of token.states_changed.
type StateChanges struct {
	Changes []StateChange `json:"changes"`
}

// maxChangesPerEvent keeps a batch event well under the bus's 1 MiB (a
// change is about 400 bytes of JSON).
const maxChangesPerEvent = 500

// announceBatch publishes the batch's changes (token.states_changed, one
// event per maxChangesPerEvent) and queues each token's issuer notice; like
// announce, it runs after the changes are durable and only logs failures.
func (s *Service) announceBatch(ctx context.Context, done []*batchChange) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultPublishTimeout)
	defer cancel()
	if s.bus != nil {
		for lo := 0; lo < len(done); lo += maxChangesPerEvent {
			chunk := done[lo:min(lo+maxChangesPerEvent, len(done))]
			ev := StateChanges{Changes: make([]StateChange, len(chunk))}
			for i, ch := range chunk {
				ev.Changes[i] = ch.c
			}
			var err error
			for i := 0; i < DefaultPublishAttempts; i++ {
				if i > 0 {
					time.Sleep(publishBackoff << (i - 1))
				}
				if err = s.bus.Publish(ctx, SubjectStatesChanged, ev); err == nil {
					break
				}
			}
			if err != nil {
				s.log.ErrorContext(ctx, "publish token state changes failed", "tokens", len(chunk), "err", err)
			}
		}
	}
	if s.notices != nil {
		jobs := make([]noticeJob, len(done))
		for i, ch := range done {
			jobs[i] = noticeJob{ch.c.IssuerID, issuerNotice(ch.c, NoticeStateChanged, ch.row.DecisionID)}
		}
		s.notices.sendAll(jobs)
		return
	}
	for _, ch := range done {
		n := issuerNotice(ch.c, NoticeStateChanged, ch.row.DecisionID)
		if err := s.issuers.Notice(ctx, ch.c.IssuerID, n); err != nil {
			s.log.WarnContext(ctx, "token notice to issuer failed", "token", n.TokenRef, "issuer", ch.c.IssuerID, "err", err)
		}
	}
}

// issuerNotice is the token notice of a change (announce's and a batch's).
func issuerNotice(c StateChange, event, decisionID string) TokenNotice {
	causedBy := c.CausedBy
	if causedBy == CausedByTSP {
		causedBy = "" // the issuer API knows ISSUER, TOKEN_REQUESTOR, CARDHOLDER only
	}
	return TokenNotice{TokenRef: c.TokenRef, DecisionID: decisionID, PANLast4: c.PANLast4, Event: event, State: c.State, CausedBy: causedBy, Reason: c.Reason}
}

// GetMany returns the tokens with these references that exist, by
// reference (unknown or malformed references are simply absent).
func (v *Vault) GetMany(ctx context.Context, refs []string) (map[string]*tokenRow, error) {
	out := make(map[string]*tokenRow, len(refs))
	valid := make([]any, 0, len(refs))
	for _, r := range refs {
		if validTokenRef(r) {
			valid = append(valid, r)
		}
	}
	for lo := 0; lo < len(valid); lo += batchLookupChunk {
		chunk := valid[lo:min(lo+batchLookupChunk, len(valid))]
		marks := make([]string, len(chunk))
		for i := range chunk {
			marks[i] = fmt.Sprintf("$%d", i+1)
		}
		rows, err := v.db.DB.QueryContext(ctx, tokenSelect+` WHERE t.ref IN (`+strings.Join(marks, ",")+`)`, chunk...)
		if err != nil {
			return nil, fmt.Errorf("tsp: tokens by reference: %w", err)
		}
		for rows.Next() {
			t, err := scanToken(rows)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("tsp: tokens by reference: %w", err)
			}
			out[t.Ref] = t
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("tsp: tokens by reference: %w", err)
		}
	}
	return out, nil
}

// ChangeStates writes every change of a batch, with its history entry, in
// one durable write. A token no longer in the state it was read in is left
// alone and reported false (the rest still commit).
func (v *Vault) ChangeStates(ctx context.Context, changes []*batchChange) ([]bool, error) {
	applied := make([]bool, len(changes))
	err := v.write(ctx, func(tx *sql.Tx) error {
		// Each token's last history number, a few statements for the batch.
		seqs := make(map[string]int, len(changes))
		for lo := 0; lo < len(changes); lo += batchLookupChunk {
			chunk := changes[lo:min(lo+batchLookupChunk, len(changes))]
			marks, args := make([]string, len(chunk)), make([]any, len(chunk))
			for i, ch := range chunk {
				marks[i], args[i] = fmt.Sprintf("$%d", i+1), ch.c.TokenRef
			}
			rows, err := tx.QueryContext(ctx, `SELECT token_ref, MAX(seq) FROM token_state_history WHERE token_ref IN (`+
				strings.Join(marks, ",")+`) GROUP BY token_ref`, args...)
			if err != nil {
				return fmt.Errorf("tsp: history seq: %w", err)
			}
			for rows.Next() {
				var (
					ref string
					seq int
				)
				if err := rows.Scan(&ref, &seq); err != nil {
					rows.Close()
					return fmt.Errorf("tsp: history seq: %w", err)
				}
				seqs[ref] = seq
			}
			err = rows.Err()
			rows.Close()
			if err != nil {
				return fmt.Errorf("tsp: history seq: %w", err)
			}
		}
		for k, ch := range changes {
			c := ch.c
			res, err := tx.ExecContext(ctx, `UPDATE tokens SET state = $1, suspended_by = $2, updated_at = $3 WHERE ref = $4 AND state = $5`,
				string(c.State), string(ch.suspendedBy), ms(c.Time), c.TokenRef, string(c.From))
			if err != nil {
				return fmt.Errorf("tsp: change state: %w", err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return fmt.Errorf("tsp: change state: %w", err)
			}
			applied[k] = n == 1
			if n != 1 {
				continue
			}
			seqs[c.TokenRef]++
			if err := insertHistory(ctx, tx, seqs[c.TokenRef], c); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return applied, nil
}

// batchTimeout bounds a batch request (its events may take a while).
const batchTimeout = 30 * time.Second

// lifecycleBatch is POST /v1/tokens/lifecycle (requestor or issuer role).
func (a *API) lifecycleBatch(w http.ResponseWriter, r *http.Request, _ caller) {
	var in BatchLifecycleRequest
	// 1,000 references of at most 128 bytes each, quoted.
	if err := httpx.DecodeJSONLimit(w, r, &in, MaxBatchTokens*(maxIDBytes+4)+1024); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), batchTimeout)
	defer cancel()
	v, err := a.s.LifecycleBatch(ctx, in)
	reply(w, r, v, err)
}
