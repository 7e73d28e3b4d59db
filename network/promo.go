package network

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/promo"
	"github.com/mipay-oss/mipay/tsp"
)

// Promotions is the promotions engine the switch consults after
// de-tokenization (issue 8). *promo.Engine implements it.
type Promotions interface {
	Reserve(ctx context.Context, p promo.PaymentContext) (promo.Reservation, bool, error)
	// Confirm marks the reservation used, durably: the switch waits for it
	// before answering an approval, so a crash after the answer can never
	// leave the discount "reserved" for the sweeper to give back.
	Confirm(ctx context.Context, id string) (bool, error)
	Release(ctx context.Context, id string) (bool, error)
}

var _ Promotions = (*promo.Engine)(nil)

// applyPromotion asks the engine for the best campaign of a payment about to
// go to the issuer and, when one applies, returns the issuer's copy with
// DE124 (original amount, discount, campaign, points multiplier). DE4 stays
// the full amount: the merchant is paid in full; the issuer debits the
// cardholder DE4 minus the discount and funds the discount itself.
//
// Payments converted from another currency get no promotion (campaigns are
// in CNY on the domestic amount). An engine failure never declines a
// payment: it goes on without a promotion.
func (s *Switch) applyPromotion(ctx context.Context, out *iso8583.Message, rec *authRecord, res *tsp.AuthResult, iss *config.Issuer) *iso8583.Message {
	if s.cfg.Promotions == nil || rec.Bill.converted() || out.String(49) != config.BillingCurrency {
		return out
	}
	pan := out.String(2)
	p := promo.PaymentContext{
		TxID: transactionID(rec.Key), IssuerID: iss.ID, CardType: iss.CardType, BIN: pan[:min(len(pan), promo.MaxBINDigits)],
		Token: res != nil, CardKey: promoCardKey(pan, out.String(iso8583.FieldExpiry), res), MCC: out.String(iso8583.FieldMCC),
		MerchantID: strings.TrimSpace(out.String(iso8583.FieldMerchantID)), Country: rec.Country,
		City: merchantCity(rec.Merchant), AmountMinor: rec.AmountMinor, Time: s.now(),
		// A token's first cryptogram has ATC 1 (the SE starts at 0 and counts
		// before it answers): the first payment since the card was bound. A
		// card bound again gets a new token, but its PAR (the card key) keeps
		// per-card limits.
		FirstPayment: res != nil && res.CryptogramValid && res.ATC == 1,
	}
	if res != nil && res.AccountRef != "" {
		// The TSP's opaque reference of the Mi account (never its id): a
		// campaign's per-account limit counts every card of the account.
		p.AccountKey = "acct:" + res.AccountRef
	}
	r, ok, err := s.cfg.Promotions.Reserve(ctx, p)
	if err != nil {
		s.log.WarnContext(ctx, "promotion engine failed; paying without an offer", "err", err)
		return out
	}
	if !ok {
		return out
	}
	de124, err := promotionField(r)
	if err != nil {
		s.log.ErrorContext(ctx, "promotion field", "campaign", r.CampaignID, "err", err)
		s.releasePromotion(ctx, r.ID)
		return out
	}
	rec.promo = &r
	rec.promoField = de124
	out = out.Clone()
	out.SetString(iso8583.FieldPromotion, de124)
	return out
}

func promotionField(r promo.Reservation) (string, error) {
	orig, err := iso8583.FormatAmount(r.OriginalMinor)
	if err != nil {
		return "", err
	}
	disc, err := iso8583.FormatAmount(r.DiscountMinor)
	if err != nil {
		return "", err
	}
	return iso8583.Promotion{OriginalAmount: orig, DiscountAmount: disc, CampaignID: r.CampaignID,
		Points: strconv.FormatInt(r.PointsMultiplier, 10)}.Encode()
}

// settlePromotion ends a payment's reservation with its decision, before the
// decision is recorded and answered: an issuer approval confirms it and the
// acquirer's answer gets DE124 (for the receipt's saving); a decline or a
// timeout releases it. A stand-in approval confirms it too (the issuer may
// have booked the discount before its answer was lost, and its advice
// carries the original's DE124, advice.go, so the issuer books it
// otherwise) but shows no saving the issuer did not approve. Only a
// reservation no decision settled stays reserved, for the engine's sweeper
// (promo.Engine.Sweep).
func (s *Switch) settlePromotion(ctx context.Context, resp *iso8583.Message, rec *authRecord) {
	if rec.promo == nil {
		return
	}
	id := rec.promo.ID
	switch {
	case resp.String(39) == RCApproved && !rec.StandIn:
		s.confirmPromotion(ctx, id)
		resp.SetString(iso8583.FieldPromotion, rec.promoField)
	case resp.String(39) == RCApproved:
		// stand-in: keep the budget, show nothing the issuer did not approve.
		if !s.confirmPromotion(ctx, id) {
			// The sweeper may give this budget back (or already has): the
			// advice must not then have the issuer book the discount (never
			// overspend a campaign). The issuer holds the full amount, as
			// the acquirer was told.
			rec.promoField = ""
		}
	default:
		s.releasePromotion(ctx, id)
	}
}

// confirmPromotion makes an approved payment's reservation "confirmed"
// before the approval is recorded and answered, and reports whether this
// call did. The approval stands if it fails (the issuer has approved; the
// payment is not declined over a bookkeeping write): the reservation then
// stays "reserved", and the error says the sweeper may give that
// discount's budget back. A reservation that was no longer "reserved"
// (Confirm moved nothing: the sweeper released it while the issuer was
// waited for) holds no budget either, though Confirm reports no error.
func (s *Switch) confirmPromotion(ctx context.Context, id string) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), promo.DefaultConfirmTimeout)
	defer cancel()
	moved, err := s.cfg.Promotions.Confirm(ctx, id)
	if err != nil {
		s.log.ErrorContext(ctx, "promotion confirmation failed: the sweeper may release this discount's budget", "reservation", id, "err", err)
		return false
	}
	if !moved {
		s.log.ErrorContext(ctx, "promotion reservation was no longer reserved when the payment was approved (released by the sweeper?): its budget is not kept", "reservation", id)
	}
	return moved
}

// releasePromotion gives a reservation back; the engine does it exactly
// once however often it is asked. A failure leaves the budget held (never
// overspent) and is logged.
func (s *Switch) releasePromotion(ctx context.Context, id string) {
	if s.cfg.Promotions == nil {
		return
	}
	if _, err := s.cfg.Promotions.Release(ctx, id); err != nil {
		s.log.ErrorContext(ctx, "promotion release failed (budget stays held)", "reservation", id, "err", err)
	}
}

// promoCardKey identifies a card to the engine's per-card limits without
// its PAN: the PAR for a token (the same for every token of the card). A
// plain card is keyed by what may be shown of it, first 6, last 4 and
// expiry: an unkeyed digest of a PAN could be reversed by trying the few
// PANs of a BIN, and two cards that share the key only share limits (never
// more discount). The plain-card digest wants an HSM HMAC key (not done).
func promoCardKey(pan, expiry string, res *tsp.AuthResult) string {
	if res != nil && res.PAR != "" {
		return "par:" + res.PAR
	}
	if res != nil && res.TokenRef != "" {
		return "ref:" + res.TokenRef
	}
	if len(pan) < 10 {
		return "pan:?"
	}
	return "pan:" + pan[:6] + "*" + pan[len(pan)-4:] + "/" + expiry
}

// merchantCity is the city part of DE43 (name 25, city 13, country 2).
func merchantCity(de43 string) string {
	if len(de43) < 38 {
		return ""
	}
	return strings.TrimSpace(de43[25:38])
}

// addPromotion tells the wallet of an approved payment's saving (the
// notification "Saved 10.00 CNY with <bank> offer", promo.SavingText).
func addPromotion(e *TransactionEvent, rec *authRecord) {
	if rec.RC == RCApproved && !rec.StandIn {
		e.Points = rec.points
	}
	if rec.promo == nil || rec.RC != RCApproved || rec.StandIn {
		return
	}
	e.DiscountMinor, e.OfferBank, e.CampaignID = rec.promo.DiscountMinor, rec.promo.BankName, rec.promo.CampaignID
	if rec.promo.PointsMultiplier > 1 {
		e.PointsMultiplier = rec.promo.PointsMultiplier
	}
}

// promoOperatorAuth admits to the campaign API the network operator (the
// admin bearer secret) for every bank of the reference data, and a bank's
// issuer host for its own issuer id only: header HeaderPromoIssuer names it
// and the bearer is that bank's member key, PromoMemberKey(secret, id).
// The switch derives member keys and stores none; the operator hands each
// bank its own, so a bank holding only its key can act for no other.
func promoOperatorAuth(secret string, ref *config.Reference) promo.BankAuth {
	sum := sha256.Sum256([]byte(secret))
	all := make([]string, 0, len(ref.Issuers))
	known := make(map[string]bool, len(ref.Issuers))
	for i := range ref.Issuers {
		all = append(all, ref.Issuers[i].ID)
		known[ref.Issuers[i].ID] = true
	}
	return func(r *http.Request) ([]string, bool) {
		h := r.Header.Get("Authorization")
		if secret == "" || len(h) < 7 || len(h) > 512 || !strings.EqualFold(h[:7], "bearer ") {
			return nil, false
		}
		presented := strings.TrimSpace(h[7:])
		if id := r.Header.Get(HeaderPromoIssuer); id != "" {
			if !known[id] {
				return nil, false
			}
			want := sha256.Sum256([]byte(PromoMemberKey(secret, id)))
			got := sha256.Sum256([]byte(presented))
			if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
				return nil, false
			}
			return []string{id}, true
		}
		got := sha256.Sum256([]byte(presented))
		if subtle.ConstantTimeCompare(got[:], sum[:]) != 1 {
			return nil, false
		}
		return all, true
	}
}

// HeaderPromoIssuer names the bank an issuer host acts for at the campaign
// API (with that bank's member key as bearer).
const HeaderPromoIssuer = "X-Mipay-Issuer"

// PromoMemberKey is a bank's key to the campaign API: HMAC-SHA256 of
// "mipay promo member v1|" and the issuer id under the admin secret,
// base64url. issuer.PromoMemberKey derives the same.
func PromoMemberKey(secret, issuerID string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("mipay promo member v1|" + issuerID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// withPromoAPI serves the campaign API (/v1/promo/) and the public offers
// query (GET /v1/promo/offers, what the wallet shows per card) beside next.
func withPromoAPI(next http.Handler, e *promo.Engine, secret string, ref *config.Reference) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /v1/promo/offers", e.OffersHandler())
	mux.Handle("/v1/promo/", e.Handler(promoOperatorAuth(secret, ref)))
	mux.Handle("/", next)
	return mux
}
