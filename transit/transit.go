// Package transit is the transit agencies of the six cities (one process
// hosts them all, as the issuer host hosts all banks): the issuance host
// (allocates card numbers and personalizes e-purse applets in phones' SEs
// with keys diversified by card number inside the HSM and sealed to the SE),
// the load host (top-ups: payment first, then the MAC1/MAC2/TAC exchange,
// exactly once), the clearing host (gate batches: every TAC verified,
// duplicates and serial gaps flagged, a shadow balance per card), the
// hotlist, balance moves between devices of one account, and PSAM
// provisioning for gates (the gate itself is transit/gate).
//
// Keys: per city three TDES2 masters in the HSM — "transit/<city>/epurse-dpk"
// (purchase; the only one that leaves, sealed to provisioned PSAMs),
// "…/epurse-dlk" (load) and "…/epurse-dtk" (TAC). A card's keys are
// DiversifyKey(master, EPurseDiversifier(card number)).
package transit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/emv"
	"github.com/mipay-oss/mipay/hsm"
	"github.com/mipay-oss/mipay/store"
)

// Card statuses.
const (
	CardActive    = "ACTIVE"
	CardHotlisted = "HOTLISTED"
	CardMoved     = "MOVED" // hotlisted, and its balance moved to another card
)

// Load kinds and states.
const (
	LoadTopUp    = "TOPUP"
	LoadTransfer = "TRANSFER"

	// LoadPaying: the payment is on its way (the load row is durable first,
	// so a crash here is found and refunded by the sweeper).
	LoadPaying = "PAYING"
	// LoadPaid: paid (or, for a transfer, funded), no MAC2 sent yet.
	LoadPaid = "PAID"
	// LoadMAC2Sent: MAC2 answered for the card's online serial; the card may
	// or may not have applied it. Resolved by the TAC (or a proof), or by a
	// fresh INITIALIZE FOR LOAD that shows the serial did not move.
	LoadMAC2Sent = "MAC2_SENT"
	// LoadLoaded: the TAC came back and verified; the payment stands.
	LoadLoaded = "LOADED"
	// LoadRefunded: never applied; the payment was reversed.
	LoadRefunded = "REFUNDED"
	// LoadDeclined: the payment was declined or did not complete.
	LoadDeclined = "DECLINED"
)

// Payment states.
const (
	PayPending       = "PENDING" // 0200 sent, no answer yet
	PayApproved      = "APPROVED"
	PayDeclined      = "DECLINED"
	PayReversed      = "REVERSED"
	PayReversalOwed  = "REVERSAL_OWED" // the 0400 did not get through yet; retried
	PurposeIssuance  = "ISSUANCE"
	PurposeLoad      = "LOAD"
	reversalAttempts = 3
)

// Bounds and defaults.
const (
	// DefaultPaidLoadTimeout: a paid load with no MAC2 sent after this long
	// is refunded (the phone never came back for it).
	DefaultPaidLoadTimeout = 10 * time.Minute
	// MaxBatchRecords bounds one gate upload.
	MaxBatchRecords = 100_000
	// MaxLoadMinor bounds one top-up (the city's maximum balance also does).
	MaxLoadMinor = 100_000
	// maxHistory bounds a card's history answer.
	maxHistory = 200
)

// Card is an issued transit card as the agency keeps it.
type Card struct {
	CardNumber     string    `json:"cardNumber"`
	City           string    `json:"city"`
	DeviceID       string    `json:"deviceId"`
	SEID           string    `json:"seId"`
	Status         string    `json:"status"`
	StatusReason   string    `json:"statusReason,omitempty"`
	LoadedMinor    int64     `json:"loadedMinor"`
	ClearedMinor   int64     `json:"clearedMinor"`
	ShadowBalance  int64     `json:"shadowBalanceMinor"` // as of the last cleared record
	ClearedRecords int64     `json:"clearedRecords"`
	MaxSerial      int64     `json:"maxOfflineSerial"`
	MovedFrom      string    `json:"movedFrom,omitempty"`
	MovedTo        string    `json:"movedTo,omitempty"`
	Lineage        string    `json:"-"` // the first card of a chain of moves
	Created        time.Time `json:"createdAt"`
}

// Load is one top-up or balance move.
type Load struct {
	ID            string    `json:"id"`
	RequestID     string    `json:"requestId"`
	City          string    `json:"city"`
	CardNumber    string    `json:"cardNumber"`
	Kind          string    `json:"kind"`
	AmountMinor   int64     `json:"amountMinor"`
	State         string    `json:"state"`
	PaymentID     string    `json:"paymentId,omitempty"`
	OnlineSerial  int64     `json:"onlineSerial"` // -1 until the first INITIALIZE FOR LOAD
	BalanceBefore int64     `json:"balanceBefore"`
	Terminal      string    `json:"terminal"` // 6 bytes hex: the load terminal
	Date          string    `json:"date,omitempty"`
	Time          string    `json:"time,omitempty"`
	random        string    // the card's random of the session MAC2 was made for
	Created       time.Time `json:"createdAt"`
	Updated       time.Time `json:"updatedAt"`
}

// Keys are the HSM handles of a city's masters.
type Keys struct{ DPK, DLK, DTK hsm.Handle }

// CityKeys names the handles of city id.
func CityKeys(city string) Keys {
	p := "transit/" + city + "/epurse-"
	return Keys{DPK: hsm.Handle(p + "dpk"), DLK: hsm.Handle(p + "dlk"), DTK: hsm.Handle(p + "dtk")}
}

// Config is what New needs.
type Config struct {
	DB       *store.DB
	HSM      hsm.HSM
	Ref      *config.Reference
	Log      *slog.Logger
	Acquirer Acquirer // pays issuance fees and top-ups (ISO 8583 to the network)
	Accounts Accounts // who the caller is (the wallet's Mi account)
	// PaidLoadTimeout: DefaultPaidLoadTimeout when zero.
	PaidLoadTimeout time.Duration
	Now             func() time.Time
}

// Service is every city's agency.
type Service struct {
	db     *store.DB
	hsm    hsm.HSM
	cities map[string]*config.City
	order  []string
	log    *slog.Logger
	acq    Acquirer
	acc    Accounts
	now    func() time.Time
	paidTO time.Duration
}

// New makes the service and ensures every city's keys exist in the HSM.
func New(ctx context.Context, cfg Config) (*Service, error) {
	s := &Service{db: cfg.DB, hsm: cfg.HSM, cities: map[string]*config.City{}, log: cfg.Log,
		acq: cfg.Acquirer, acc: cfg.Accounts, now: cfg.Now, paidTO: cfg.PaidLoadTimeout}
	if s.now == nil {
		s.now = time.Now
	}
	if s.paidTO <= 0 {
		s.paidTO = DefaultPaidLoadTimeout
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	for i := range cfg.Ref.Cities {
		c := &cfg.Ref.Cities[i]
		if !c.Transit() {
			continue
		}
		k := CityKeys(c.ID)
		for _, h := range []hsm.Handle{k.DPK, k.DLK, k.DTK} {
			if err := s.hsm.EnsureKey(ctx, h, hsm.TDES2); err != nil {
				return nil, fmt.Errorf("transit: key %s: %w", h, err)
			}
		}
		s.cities[c.ID] = c
		s.order = append(s.order, c.ID)
	}
	if len(s.cities) == 0 {
		return nil, fmt.Errorf("transit: the reference data has no transit city")
	}
	return s, nil
}

// City returns a transit city or ENOTFOUND.
func (s *Service) City(id string) (*config.City, error) {
	c, ok := s.cities[id]
	if !ok {
		return nil, mipay.Errorf(mipay.ENOTFOUND, "no transit city %q", id)
	}
	return c, nil
}

// Cities lists the transit cities in configuration order.
func (s *Service) Cities() []*config.City {
	out := make([]*config.City, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, s.cities[id])
	}
	return out
}

func (s *Service) nowMS() int64 { return s.now().UnixMilli() }

func newID(prefix string) string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// LoadTerminal is the 6-byte terminal number of a city's load host: 'L',
// then the city index, then zeros (BCD-ish, only for MACs and logs).
func (s *Service) LoadTerminal(city string) [6]byte {
	var t [6]byte
	t[0] = 0x4C
	for i, id := range s.order {
		if id == city {
			t[1] = byte(i + 1)
		}
	}
	return t
}

func diversifier(cardNumber string) ([8]byte, error) {
	d, err := emv.EPurseDiversifier(cardNumber)
	if err != nil {
		return d, mipay.Errorf(mipay.EINVALID, "card number must be digits")
	}
	return d, nil
}
