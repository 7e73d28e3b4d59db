package promo

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/httpx"
)

// The offers a card qualifies for now (issue 8: the wallet shows them per
// card). The wallet knows a card by what it was told when the card was
// bound (issuer, card type, product; never the PAN), so the query carries
// those and the channel; the payment-side conditions (merchant, category,
// place, minimum amount) are shown with the offer, not checked.

// MaxOffers bounds one offers answer.
const MaxOffers = 50

// OfferQuery is a card as the wallet knows it.
type OfferQuery struct {
	IssuerID string
	CardType string // Debit or Credit ("" unknown)
	Product  string // "" unknown
	BIN      string // 6–8 digits, "" unknown
	Token    bool   // presented as a Mi Pay token
	Time     time.Time
}

// Offer is what a cardholder is shown of a campaign: its benefit and the
// conditions a payment must meet, not its budget or limits' counters.
type Offer struct {
	CampaignID     string    `json:"campaignId"`
	BankName       string    `json:"bankName"`
	Name           string    `json:"name"`
	Benefit        Benefit   `json:"benefit"`
	MinAmountMinor int64     `json:"minAmountMinor,omitempty"`
	MCCs           []string  `json:"mccs,omitempty"`
	MerchantIDs    []string  `json:"merchantIds,omitempty"`
	Cities         []string  `json:"cities,omitempty"`
	Countries      []string  `json:"countries,omitempty"`
	FirstPayment   bool      `json:"firstPaymentOnly,omitempty"`
	Ends           time.Time `json:"ends"`
}

// Offers lists the active campaigns a card qualifies for now, best first by
// the campaigns' priority then benefit. A campaign restricted to BIN ranges
// or products is listed only when the query names a matching one.
func (e *Engine) Offers(q OfferQuery) []Offer {
	if q.Time.IsZero() {
		q.Time = e.now()
	}
	e.mu.RLock()
	var cs []*compiled
	for _, cc := range e.campaigns {
		if cc.offered(&q) {
			cs = append(cs, cc)
		}
	}
	e.mu.RUnlock()
	// 100 CNY is the amount benefits are compared at.
	slices.SortFunc(cs, func(a, b *compiled) int { return rank(a, b, 10_000) })
	out := make([]Offer, 0, min(len(cs), MaxOffers))
	for _, cc := range cs[:min(len(cs), MaxOffers)] {
		c := &cc.c
		out = append(out, Offer{CampaignID: c.ID, BankName: c.BankName, Name: c.Name, Benefit: c.Benefit,
			MinAmountMinor: c.Eligibility.MinAmountMinor, MCCs: c.Eligibility.MCCs, MerchantIDs: c.Eligibility.MerchantIDs,
			Cities: c.Eligibility.Cities, Countries: c.Eligibility.Countries, FirstPayment: c.Eligibility.FirstPaymentOnly,
			Ends: c.Window.End})
	}
	return out
}

// offered is eligible's card-side half.
func (cc *compiled) offered(q *OfferQuery) bool {
	c, el := &cc.c, &cc.c.Eligibility
	if c.Status != StatusActive || !cc.issuers[q.IssuerID] {
		return false
	}
	if el.CardType != "" && !strings.EqualFold(el.CardType, q.CardType) {
		return false
	}
	if el.Channel == ChannelMiPay && !q.Token {
		return false
	}
	if cc.products != nil && !cc.products[q.Product] {
		return false
	}
	if len(el.BINRanges) > 0 && (q.BIN == "" || !inRanges(el.BINRanges, q.BIN)) {
		return false
	}
	return c.Window.open(q.Time, cc.loc)
}

// OffersHandler serves GET /v1/promo/offers?issuerId=&cardType=&product=
// &bin=&channel=mipay: the offers a card qualifies for now, as
// {"offers": [...]}. Offers are public (what a bank advertises), so it needs
// no credentials; it reveals no budget, counter or card.
func (e *Engine) OffersHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := r.URL.Query()
		q := OfferQuery{IssuerID: v.Get("issuerId"), CardType: v.Get("cardType"), Product: v.Get("product"), BIN: v.Get("bin")}
		switch v.Get("channel") {
		case "", "card":
		case string(ChannelMiPay), "token":
			q.Token = true
		default:
			httpx.WriteError(w, r, invalid("channel must be mipay (a Mi Pay token) or card"))
			return
		}
		switch {
		case q.IssuerID == "" || len(q.IssuerID) > 64:
			httpx.WriteError(w, r, invalid("issuerId is required"))
			return
		case q.CardType != "" && !strings.EqualFold(q.CardType, "Debit") && !strings.EqualFold(q.CardType, "Credit"):
			httpx.WriteError(w, r, invalid("cardType must be Debit or Credit"))
			return
		case len(q.Product) > MaxNameBytes:
			httpx.WriteError(w, r, invalid("product is at most %d bytes", MaxNameBytes))
			return
		case q.BIN != "" && (len(q.BIN) < 6 || len(q.BIN) > MaxBINDigits || !digitRE.MatchString(q.BIN)):
			// Never more than a BIN: a PAN is refused, not evaluated.
			httpx.WriteError(w, r, mipay.Errorf(mipay.EINVALID, "promo: bin must be 6–%d digits", MaxBINDigits))
			return
		}
		httpx.WriteJSON(w, http.StatusOK, map[string]any{"offers": e.Offers(q)})
	})
}
