package sms

import (
	"net/http"
	"strconv"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/httpx"
)

// maxSendBodyBytes bounds a send request: the longest text in UTF-8 (4 bytes
// a character at worst, 6 when JSON-escaped) plus room for the other fields.
const maxSendBodyBytes = 6*MaxTextRunes + 1024

// Handler returns the gateway's HTTP API:
//
//	POST /v1/messages            {to, text, sender} → 201 {id, to, createdAt}
//	GET  /v1/outbox/{phone}?after=<id>&limit=<n> → {messages: […], last: <id>}
func Handler(s *Service) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/messages", s.handleSend)
	mux.HandleFunc("GET /v1/outbox/{phone}", s.handleOutbox)
	return mux
}

type sendAnswer struct {
	ID        int64  `json:"id"`
	To        string `json:"to"` // masked: the sender knows the number already
	CreatedAt string `json:"createdAt"`
}

func (s *Service) handleSend(w http.ResponseWriter, r *http.Request) {
	var req SendRequest
	if err := httpx.DecodeJSONLimit(w, r, &req, maxSendBodyBytes); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	m, err := s.Send(r.Context(), req)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	// The text is never logged: it holds one-time codes.
	httpx.Logger(r.Context()).Info("sms accepted", "id", m.ID, "to", MaskPhone(m.To), "sender", m.Sender)
	httpx.WriteJSON(w, http.StatusCreated, sendAnswer{ID: m.ID, To: MaskPhone(m.To), CreatedAt: m.CreatedAt.Format("2006-01-02T15:04:05.000Z07:00")})
}

type outboxAnswer struct {
	Messages []Message `json:"messages"`
	// Last is the id to pass as after= on the next read (the request's after
	// when nothing new arrived).
	Last int64 `json:"last"`
}

func (s *Service) handleOutbox(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	after, err := queryInt(q.Get("after"), "after")
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	limit, err := queryInt(q.Get("limit"), "limit")
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	msgs, err := s.Outbox(r.Context(), r.PathValue("phone"), after, int(limit))
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	last := after
	if len(msgs) > 0 {
		last = msgs[len(msgs)-1].ID
	}
	httpx.WriteJSON(w, http.StatusOK, outboxAnswer{Messages: msgs, Last: last})
}

// queryInt parses an optional non-negative integer query parameter.
func queryInt(v, name string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	if len(v) > 19 {
		return 0, mipay.Errorf(mipay.EINVALID, "%s must be a number", name)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, mipay.Errorf(mipay.EINVALID, "%s must be a number (0 or more)", name)
	}
	return n, nil
}
