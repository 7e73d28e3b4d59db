package transit

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strings"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/httpx"
)

// HTTP API of the agencies. Phone routes take the caller's Mi account
// session (the wallet's bearer token; the agency asks the wallet which
// devices it owns). Gate and operator routes take the agency's operator
// token (<data>/transit/operator.token).
//
//	GET  /v1/cities                          cities, fares, fees
//	POST /v1/cities/{city}/cards             issue (IssueRequest) → IssueResult
//	GET  /v1/cards                           the caller's cards
//	GET  /v1/cards/{number}                  one card with its history
//	POST /v1/cards/{number}/hotlist          {"reason"}
//	POST /v1/cards/{number}/move             MoveRequest → IssueResult (+ the transfer load)
//	GET  /v1/cards/{number}/pending-load     the open load, if any
//	POST /v1/cards/{number}/profile          {"sePublicKey"} → IssueResult (install again, no fee)
//	POST /v1/cards/{number}/proofs           {"proofs": [CardProof]} → {"cleared": n} (in-doubt taps)
//	POST /v1/devices/{id}/hotlist            every card of a lost device
//	POST /v1/devices/{id}/found              the cards that hotlist put on the list come off
//	POST /v1/loads                           LoadRequest → Load (paid)
//	GET  /v1/loads/{id}
//	POST /v1/loads/{id}/authorize            {"init": hex} → AuthorizeResult
//	POST /v1/loads/{id}/confirm              {"tac": hex} → Load
//	POST /v1/loads/{id}/cancel               {"init": hex?} → Load
//	GET  /v1/cities/{city}/hotlist           operator: {"cards": [...]}
//	POST /v1/cities/{city}/psams             operator: {"psamId","station","publicKey"} → {"sealedKey"}
//	POST /v1/cities/{city}/batches           operator: Batch → BatchResult

// MaxBatchBodyBytes bounds a gate upload (about 300 bytes a record).
const MaxBatchBodyBytes = 40 << 20

// Handler serves the API.
func Handler(s *Service, operatorToken string) http.Handler {
	h := &handler{s: s, op: operatorToken}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/cities", h.cities)
	mux.HandleFunc("POST /v1/cities/{city}/cards", h.issue)
	mux.HandleFunc("GET /v1/cards", h.cards)
	mux.HandleFunc("GET /v1/cards/{number}", h.card)
	mux.HandleFunc("POST /v1/cards/{number}/hotlist", h.hotlistCard)
	mux.HandleFunc("POST /v1/cards/{number}/move", h.move)
	mux.HandleFunc("GET /v1/cards/{number}/pending-load", h.pendingLoad)
	mux.HandleFunc("POST /v1/cards/{number}/profile", h.reinstall)
	mux.HandleFunc("POST /v1/cards/{number}/proofs", h.proofs)
	mux.HandleFunc("POST /v1/devices/{id}/hotlist", h.hotlistDevice)
	mux.HandleFunc("POST /v1/devices/{id}/found", h.deviceFound)
	mux.HandleFunc("POST /v1/loads", h.startLoad)
	mux.HandleFunc("GET /v1/loads/{id}", h.getLoad)
	mux.HandleFunc("POST /v1/loads/{id}/authorize", h.authorize)
	mux.HandleFunc("POST /v1/loads/{id}/confirm", h.confirm)
	mux.HandleFunc("POST /v1/loads/{id}/cancel", h.cancel)
	mux.HandleFunc("GET /v1/cities/{city}/hotlist", h.operator(h.hotlist))
	mux.HandleFunc("POST /v1/cities/{city}/psams", h.operator(h.psam))
	mux.HandleFunc("POST /v1/cities/{city}/batches", h.operator(h.batch))
	return mux
}

type handler struct {
	s  *Service
	op string
}

func bearer(r *http.Request) string {
	a := r.Header.Get("Authorization")
	if t, ok := strings.CutPrefix(a, "Bearer "); ok {
		return t
	}
	return ""
}

func (h *handler) operator(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t := bearer(r)
		if h.op == "" || subtle.ConstantTimeCompare([]byte(t), []byte(h.op)) != 1 {
			httpx.WriteError(w, r, mipay.Errorf(mipay.EUNAUTHORIZED, "the agency's operator token is required"))
			return
		}
		next(w, r)
	}
}

// CityInfo is a city as the app shows it.
type CityInfo struct {
	ID                   string `json:"id"`
	Name                 string `json:"name"`
	Product              string `json:"product"`
	Art                  string `json:"art"`
	AID                  string `json:"aid"`
	IssueFeeMinor        int64  `json:"issueFeeMinor"`
	MaxBalanceMinor      int64  `json:"maxBalanceMinor"`
	BusFareMinor         int64  `json:"busFareMinor"`
	MinEntryBalanceMinor int64  `json:"minEntryBalanceMinor"`
	TransfersPerYear     int    `json:"transfersPerYear"`
	Stations             int    `json:"stations"`
}

func (h *handler) cities(w http.ResponseWriter, r *http.Request) {
	out := []CityInfo{}
	for _, c := range h.s.Cities() {
		out = append(out, CityInfo{ID: c.ID, Name: c.Name, Product: c.Product, Art: c.Art, AID: c.AID, IssueFeeMinor: c.IssueFeeMinor,
			MaxBalanceMinor: c.MaxBalanceMinor, BusFareMinor: c.BusFareMinor, MinEntryBalanceMinor: c.MinEntryBalanceMinor,
			TransfersPerYear: c.TransfersPerYear, Stations: len(c.Stations)})
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"cities": out})
}

func (h *handler) issue(w http.ResponseWriter, r *http.Request) {
	var in IssueRequest
	if err := httpx.DecodeJSON(w, r, &in); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	in.City = r.PathValue("city")
	res, err := h.s.Issue(r.Context(), bearer(r), in)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusCreated, res)
}

func (h *handler) cards(w http.ResponseWriter, r *http.Request) {
	cs, err := h.s.Cards(r.Context(), bearer(r))
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"cards": cs})
}

func (h *handler) card(w http.ResponseWriter, r *http.Request) {
	hist, err := h.s.History(r.Context(), bearer(r), r.PathValue("number"))
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, hist)
}

type reasonBody struct {
	Reason string `json:"reason"`
}

func (h *handler) hotlistCard(w http.ResponseWriter, r *http.Request) {
	var in reasonBody
	if err := httpx.DecodeJSON(w, r, &in); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if err := h.s.Hotlist(r.Context(), bearer(r), r.PathValue("number"), in.Reason); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": CardHotlisted})
}

func (h *handler) hotlistDevice(w http.ResponseWriter, r *http.Request) {
	var in reasonBody
	if err := httpx.DecodeJSON(w, r, &in); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	nums, err := h.s.HotlistDevice(r.Context(), bearer(r), r.PathValue("id"), in.Reason)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if nums == nil {
		nums = []string{}
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"hotlisted": nums})
}

func (h *handler) proofs(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Proofs []CardProof `json:"proofs"`
	}
	if err := httpx.DecodeJSON(w, r, &in); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	n, err := h.s.SettleProofs(r.Context(), bearer(r), r.PathValue("number"), in.Proofs)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]int{"cleared": n})
}

func (h *handler) deviceFound(w http.ResponseWriter, r *http.Request) {
	nums, err := h.s.RestoreDevice(r.Context(), bearer(r), r.PathValue("id"))
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if nums == nil {
		nums = []string{}
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"restored": nums})
}

func (h *handler) move(w http.ResponseWriter, r *http.Request) {
	var in MoveRequest
	if err := httpx.DecodeJSON(w, r, &in); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	in.CardNumber = r.PathValue("number")
	res, err := h.s.Move(r.Context(), bearer(r), in)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusCreated, res)
}

func (h *handler) reinstall(w http.ResponseWriter, r *http.Request) {
	var in struct {
		SEPublicKey []byte `json:"sePublicKey"`
	}
	if err := httpx.DecodeJSON(w, r, &in); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	res, err := h.s.Reinstall(r.Context(), bearer(r), r.PathValue("number"), in.SEPublicKey)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, res)
}

func (h *handler) pendingLoad(w http.ResponseWriter, r *http.Request) {
	l, err := h.s.PendingLoad(r.Context(), bearer(r), r.PathValue("number"))
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"load": l})
}

func (h *handler) startLoad(w http.ResponseWriter, r *http.Request) {
	var in LoadRequest
	if err := httpx.DecodeJSON(w, r, &in); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	l, err := h.s.StartLoad(r.Context(), bearer(r), in)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusCreated, l)
}

func (h *handler) getLoad(w http.ResponseWriter, r *http.Request) {
	l, _, err := h.s.ownedLoad(r.Context(), bearer(r), r.PathValue("id"))
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, l)
}

type hexBody struct {
	Init string `json:"init,omitempty"`
	TAC  string `json:"tac,omitempty"`
}

func decodeHex(s string, max int) ([]byte, error) {
	if len(s) > 2*max {
		return nil, mipay.Errorf(mipay.EINVALID, "hex value too long")
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, mipay.Errorf(mipay.EINVALID, "not hex")
	}
	return b, nil
}

// loadStep answers one step of a top-up whose body carries one hex value
// (the card's INITIALIZE FOR LOAD answer, or its TAC): decode the body, take
// the value of at most maxBytes, run the step on the load named in the path.
func loadStep[T any](w http.ResponseWriter, r *http.Request, field func(hexBody) string, maxBytes int,
	step func(ctx context.Context, session, loadID string, value []byte) (T, error)) {
	var in hexBody
	if err := httpx.DecodeJSON(w, r, &in); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	v, err := decodeHex(field(in), maxBytes)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	out, err := step(r.Context(), bearer(r), r.PathValue("id"), v)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, out)
}

func initOf(b hexBody) string { return b.Init }
func tacOf(b hexBody) string  { return b.TAC }

func (h *handler) authorize(w http.ResponseWriter, r *http.Request) {
	loadStep(w, r, initOf, 16, h.s.AuthorizeLoad)
}

func (h *handler) confirm(w http.ResponseWriter, r *http.Request) {
	loadStep(w, r, tacOf, 4, h.s.ConfirmLoad)
}

func (h *handler) cancel(w http.ResponseWriter, r *http.Request) {
	loadStep(w, r, initOf, 16, h.s.CancelLoad)
}

func (h *handler) hotlist(w http.ResponseWriter, r *http.Request) {
	cards, err := h.s.HotlistOf(r.Context(), r.PathValue("city"))
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"cards": cards})
}

// PSAMRequest provisions a gate's PSAM.
type PSAMRequest struct {
	PSAMID    string `json:"psamId"`
	Station   string `json:"station"`
	PublicKey []byte `json:"publicKey"`
}

func (h *handler) psam(w http.ResponseWriter, r *http.Request) {
	var in PSAMRequest
	if err := httpx.DecodeJSON(w, r, &in); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	blob, err := h.s.ProvisionPSAM(r.Context(), r.PathValue("city"), in.Station, in.PSAMID, in.PublicKey)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"sealedKey": blob})
}

func (h *handler) batch(w http.ResponseWriter, r *http.Request) {
	var in Batch
	if err := httpx.DecodeJSONLimit(w, r, &in, MaxBatchBodyBytes); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	in.City = r.PathValue("city")
	res, err := h.s.Clear(r.Context(), in)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, res)
}
