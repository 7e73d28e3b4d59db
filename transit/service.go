package transit

import (
	"context"
	"crypto/ecdh"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/hsm"
)

// Profile is what the issuance host sends to personalize the SE's e-purse
// applet (the SE reads it as se.TransitProfile): card data and the card's
// keys, each sealed to the SE with KeyAAD.
type Profile struct {
	Version         int    `json:"version"`
	City            string `json:"city"`
	CardNumber      string `json:"cardNumber"`
	AID             []byte `json:"aid"`
	Label           string `json:"label"`
	SEID            string `json:"seId"`
	MaxBalanceMinor uint32 `json:"maxBalanceMinor"`
	SealedDPK       []byte `json:"sealedDpk"`
	SealedDLK       []byte `json:"sealedDlk"`
	SealedDTK       []byte `json:"sealedDtk"`
}

// KeyAAD must equal se.TransitKeyAAD: it binds a sealed key to the SE, the
// card and the key's role.
func KeyAAD(seID, cardNumber, role string) []byte {
	return []byte("mipay transit key v1\x00" + seID + "\x00" + cardNumber + "\x00" + role)
}

// IssueRequest asks for a new card on a device of the caller's account.
type IssueRequest struct {
	City        string        `json:"city"`
	DeviceID    string        `json:"deviceId"`
	SEID        string        `json:"seId"`
	SEPublicKey []byte        `json:"sePublicKey"`
	Payment     *InAppPayment `json:"payment,omitempty"` // the issuance fee, when the city charges one
}

// IssueResult is the new card and its profile for the SE.
type IssueResult struct {
	Card    Card    `json:"card"`
	Profile Profile `json:"profile"`
	Load    *Load   `json:"load,omitempty"` // a move's balance, to be loaded
}

// devices returns the caller's devices by id.
func (s *Service) devices(ctx context.Context, bearer string) (map[string]Device, error) {
	if s.acc == nil {
		return nil, mipay.Errorf(mipay.EUNAVAILABLE, "the Mi account service is not configured")
	}
	ds, err := s.acc.Devices(ctx, bearer)
	if err != nil {
		return nil, err
	}
	out := make(map[string]Device, len(ds))
	for _, d := range ds {
		out[d.ID] = d
	}
	return out, nil
}

// attestedKey checks that deviceID is one of the caller's devices, that its
// SE is seID, and that pubBytes is the key the wallet attested for that SE
// at registration (the vendor certificate chain certified it). The card's
// keys are sealed to this key: a key the caller made up would get them in
// the clear (load and TAC keys: free top-ups, forged clearing).
func attestedKey(ds map[string]Device, deviceID, seID string, pubBytes []byte) (*ecdh.PublicKey, error) {
	d, ok := ds[deviceID]
	if !ok || d.SEID != seID {
		return nil, mipay.Errorf(mipay.EFORBIDDEN, "device %s is not a device of your Mi account", deviceID)
	}
	pub, err := ecdh.P256().NewPublicKey(pubBytes)
	if err != nil {
		return nil, mipay.Errorf(mipay.EINVALID, "the SE public key must be an uncompressed P-256 point")
	}
	if d.SEKeySHA256 == "" {
		return nil, mipay.Errorf(mipay.EFORBIDDEN, "the Mi account service has no attested key for the secure element of device %s", deviceID)
	}
	sum := sha256.Sum256(pubBytes)
	if !strings.EqualFold(hex.EncodeToString(sum[:]), d.SEKeySHA256) {
		return nil, mipay.Errorf(mipay.EFORBIDDEN, "the SE public key is not the key attested for device %s", deviceID)
	}
	return pub, nil
}

func (s *Service) ownDevice(ctx context.Context, bearer, deviceID, seID string, pubBytes []byte) (*ecdh.PublicKey, error) {
	ds, err := s.devices(ctx, bearer)
	if err != nil {
		return nil, err
	}
	return attestedKey(ds, deviceID, seID, pubBytes)
}

// Issue allocates a card number, takes the issuance fee (in-app payment)
// and makes the profile with the card's keys sealed to the SE. A failure
// after the payment reverses it.
func (s *Service) Issue(ctx context.Context, bearer string, req IssueRequest) (*IssueResult, error) {
	city, err := s.City(req.City)
	if err != nil {
		return nil, err
	}
	// Before any payment: a refused key costs the caller nothing.
	pub, err := s.ownDevice(ctx, bearer, req.DeviceID, req.SEID, req.SEPublicKey)
	if err != nil {
		return nil, err
	}
	if n, err := s.activeCardsOnDevice(ctx, req.DeviceID, city.ID); err != nil {
		return nil, err
	} else if n > 0 {
		return nil, mipay.Errorf(mipay.ECONFLICT, "this phone already holds a %s card", city.Name)
	}
	var payID string
	if city.IssueFeeMinor > 0 {
		if req.Payment == nil {
			return nil, mipay.Errorf(mipay.EINVALID, "the %s card costs %d.%02d CNY: a payment is required", city.Name, city.IssueFeeMinor/100, city.IssueFeeMinor%100)
		}
		if payID, err = s.pay(ctx, newID("pay_"), city.ID, PurposeIssuance, city.IssueFeeMinor, *req.Payment); err != nil {
			return nil, err
		}
	}
	res, err := s.issue(ctx, city, req.DeviceID, req.SEID, pub, "")
	if err != nil && payID != "" {
		s.refund(context.WithoutCancel(ctx), payID)
	}
	return res, err
}

// issue allocates and records a card (lineage "" starts a new one) and
// makes its profile.
func (s *Service) issue(ctx context.Context, city *config.City, deviceID, seID string, pub *ecdh.PublicKey, movedFrom string) (*IssueResult, error) {
	seq, err := s.nextCounter(ctx, "card/"+city.ID, pow10(city.CardDigits-len(city.CardPrefix))-1)
	if err != nil {
		return nil, err
	}
	number := fmt.Sprintf("%s%0*d", city.CardPrefix, city.CardDigits-len(city.CardPrefix), seq)
	prof, err := s.profile(ctx, city, number, seID, pub)
	if err != nil {
		return nil, err
	}
	now := s.nowMS()
	c := Card{CardNumber: number, City: city.ID, DeviceID: deviceID, SEID: seID, Status: CardActive,
		MaxSerial: -1, Lineage: number, MovedFrom: movedFrom, Created: time.UnixMilli(now)}
	if movedFrom == "" {
		if err := s.db.Tx(ctx, func(tx *sql.Tx) error { return insertCard(ctx, tx, &c, now) }); err != nil {
			return nil, fmt.Errorf("transit: record card: %w", err)
		}
	}
	return &IssueResult{Card: c, Profile: *prof}, nil
}

func insertCard(ctx context.Context, tx *sql.Tx, c *Card, now int64) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO transit_cards (card_number, city, device_id, se_id, status, moved_from, lineage, created, updated)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$8)`, c.CardNumber, c.City, c.DeviceID, c.SEID, c.Status, c.MovedFrom, c.Lineage, now)
	return err
}

func pow10(n int) int64 {
	v := int64(1)
	for range min(n, 18) {
		v *= 10
	}
	return v
}

// profile seals the card's three keys to the SE.
func (s *Service) profile(ctx context.Context, city *config.City, number, seID string, pub *ecdh.PublicKey) (*Profile, error) {
	div, err := diversifier(number)
	if err != nil {
		return nil, err
	}
	k := CityKeys(city.ID)
	p := &Profile{Version: 1, City: city.ID, CardNumber: number, AID: city.AIDBytes(), Label: city.Product,
		SEID: seID, MaxBalanceMinor: uint32(city.MaxBalanceMinor)}
	for _, f := range []struct {
		h    hsm.Handle
		role string
		dst  *[]byte
	}{{k.DPK, "dpk", &p.SealedDPK}, {k.DLK, "dlk", &p.SealedDLK}, {k.DTK, "dtk", &p.SealedDTK}} {
		b, err := s.hsm.DeriveDiversifiedKeySealed(ctx, f.h, div, pub, KeyAAD(seID, number, f.role))
		if err != nil {
			return nil, fmt.Errorf("transit: sealing card key: %w", err)
		}
		*f.dst = b
	}
	return p, nil
}

func (s *Service) activeCardsOnDevice(ctx context.Context, deviceID, city string) (int, error) {
	var n int
	err := s.db.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM transit_cards WHERE device_id = $1 AND city = $2 AND status = $3`,
		deviceID, city, CardActive).Scan(&n)
	return n, err
}

const cardColumns = `card_number, city, device_id, se_id, status, status_reason, loaded_minor, cleared_minor, cleared_count,
	max_offline_serial, moved_from, moved_to, lineage, created`

type scanner interface{ Scan(dest ...any) error }

func scanCard(r scanner) (*Card, error) {
	var c Card
	var created int64
	if err := r.Scan(&c.CardNumber, &c.City, &c.DeviceID, &c.SEID, &c.Status, &c.StatusReason, &c.LoadedMinor, &c.ClearedMinor,
		&c.ClearedRecords, &c.MaxSerial, &c.MovedFrom, &c.MovedTo, &c.Lineage, &created); err != nil {
		return nil, err
	}
	c.ShadowBalance = c.LoadedMinor - c.ClearedMinor
	c.Created = time.UnixMilli(created)
	return &c, nil
}

// Card returns a card by number (operators, tests).
func (s *Service) Card(ctx context.Context, number string) (*Card, error) {
	c, err := scanCard(s.db.DB.QueryRowContext(ctx, `SELECT `+cardColumns+` FROM transit_cards WHERE card_number = $1`, number))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, mipay.Errorf(mipay.ENOTFOUND, "no transit card %s", number)
	}
	return c, err
}

// ownedCard returns a card of one of the caller's devices.
func (s *Service) ownedCard(ctx context.Context, bearer, number string) (*Card, map[string]Device, error) {
	ds, err := s.devices(ctx, bearer)
	if err != nil {
		return nil, nil, err
	}
	c, err := s.Card(ctx, number)
	if err != nil {
		return nil, nil, err
	}
	if _, ok := ds[c.DeviceID]; !ok {
		return nil, nil, mipay.Errorf(mipay.ENOTFOUND, "no transit card %s on your Mi account", number)
	}
	return c, ds, nil
}

// Cards lists the cards on the caller's devices.
func (s *Service) Cards(ctx context.Context, bearer string) ([]Card, error) {
	ds, err := s.devices(ctx, bearer)
	if err != nil {
		return nil, err
	}
	out := []Card{}
	for id := range ds {
		rows, err := s.db.DB.QueryContext(ctx, `SELECT `+cardColumns+` FROM transit_cards WHERE device_id = $1 ORDER BY created`, id)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			c, err := scanCard(rows)
			if err != nil {
				rows.Close()
				return nil, err
			}
			out = append(out, *c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Hotlist puts a card of the caller's on the hotlist (lost phone, or the
// user's own choice): every gate refuses it once it has the new list.
func (s *Service) Hotlist(ctx context.Context, bearer, number, reason string) error {
	if _, _, err := s.ownedCard(ctx, bearer, number); err != nil {
		return err
	}
	return s.hotlist(ctx, number, reason, HotlistedByCard)
}

// HotlistDevice hotlists every active card of a device of the caller (the
// portal's "switch off Mi Pay on this device").
func (s *Service) HotlistDevice(ctx context.Context, bearer, deviceID, reason string) ([]string, error) {
	ds, err := s.devices(ctx, bearer)
	if err != nil {
		return nil, err
	}
	if _, ok := ds[deviceID]; !ok {
		return nil, mipay.Errorf(mipay.EFORBIDDEN, "device %s is not a device of your Mi account", deviceID)
	}
	rows, err := s.db.DB.QueryContext(ctx, `SELECT card_number FROM transit_cards WHERE device_id = $1 AND status = $2`, deviceID, CardActive)
	if err != nil {
		return nil, err
	}
	var nums []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, err
		}
		nums = append(nums, n)
	}
	rows.Close()
	for _, n := range nums {
		if err := s.hotlist(ctx, n, reason, HotlistedByDevice); err != nil {
			return nil, err
		}
	}
	return nums, nil
}

// Why a card is hotlisted (transit_cards.hotlisted_by).
const (
	// HotlistedByDevice: its phone was switched off (lost); "found it" lifts it.
	HotlistedByDevice = "DEVICE"
	// HotlistedByCard: the user hotlisted this card; "found it" leaves it.
	HotlistedByCard = "CARD"
)

func (s *Service) hotlist(ctx context.Context, number, reason, by string) error {
	if reason == "" {
		reason = "LOST"
	}
	if len(reason) > 64 {
		reason = reason[:64]
	}
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE transit_cards SET status = $2, status_reason = $3, hotlisted_by = $6, updated = $4 WHERE card_number = $1 AND status = $5`,
			number, CardHotlisted, reason, s.nowMS(), CardActive, by)
		return err
	})
}

// RestoreDevice is the portal's "found it" for a device of the caller: the
// cards its switch-off hotlisted come off the hotlist (gates accept them
// again once they fetched the new list). Cards hotlisted for another reason
// (the user's own hotlist of one card) stay, and a moved card stays moved.
func (s *Service) RestoreDevice(ctx context.Context, bearer, deviceID string) ([]string, error) {
	ds, err := s.devices(ctx, bearer)
	if err != nil {
		return nil, err
	}
	if _, ok := ds[deviceID]; !ok {
		return nil, mipay.Errorf(mipay.EFORBIDDEN, "device %s is not a device of your Mi account", deviceID)
	}
	var nums []string
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		nums = nums[:0]
		rows, err := tx.QueryContext(ctx, `UPDATE transit_cards SET status = $2, status_reason = '', hotlisted_by = '', updated = $3
			WHERE device_id = $1 AND status = $4 AND hotlisted_by = $5 RETURNING card_number`,
			deviceID, CardActive, s.nowMS(), CardHotlisted, HotlistedByDevice)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				return err
			}
			nums = append(nums, n)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(nums)
	return nums, nil
}

// HotlistOf is a city's hotlist: every card a gate must refuse.
func (s *Service) HotlistOf(ctx context.Context, city string) ([]string, error) {
	if _, err := s.City(city); err != nil {
		return nil, err
	}
	rows, err := s.db.DB.QueryContext(ctx, `SELECT card_number FROM transit_cards WHERE city = $1 AND status <> $2 ORDER BY card_number`, city, CardActive)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// MoveRequest moves a card's balance to another device of the account.
type MoveRequest struct {
	CardNumber    string `json:"cardNumber"`
	ToDeviceID    string `json:"toDeviceId"`
	ToSEID        string `json:"toSeId"`
	ToSEPublicKey []byte `json:"toSePublicKey"`
}

// Move hotlists the card and issues a new card of the same city on the
// target device; the old card's balance as of its last cleared record is
// owed to the new card as a TRANSFER load (made with the usual load
// exchange from the new phone). The city's rule bounds moves per year.
func (s *Service) Move(ctx context.Context, bearer string, req MoveRequest) (*IssueResult, error) {
	old, ds, err := s.ownedCard(ctx, bearer, req.CardNumber)
	if err != nil {
		return nil, err
	}
	pub, err := attestedKey(ds, req.ToDeviceID, req.ToSEID, req.ToSEPublicKey)
	if err != nil {
		return nil, err
	}
	if req.ToDeviceID == old.DeviceID {
		return nil, mipay.Errorf(mipay.EINVALID, "the card is already on that device")
	}
	if old.Status == CardMoved {
		return nil, mipay.Errorf(mipay.ECONFLICT, "card %s was already moved to %s", old.CardNumber, old.MovedTo)
	}
	city, err := s.City(old.City)
	if err != nil {
		return nil, err
	}
	if n, err := s.activeCardsOnDevice(ctx, req.ToDeviceID, city.ID); err != nil {
		return nil, err
	} else if n > 0 {
		return nil, mipay.Errorf(mipay.ECONFLICT, "that phone already holds a %s card", city.Name)
	}
	if err := s.settleOpenLoad(ctx, old.CardNumber); err != nil {
		return nil, err
	}
	if city.TransfersPerYear > 0 {
		var n int
		since := s.now().Add(-365 * 24 * time.Hour).UnixMilli()
		if err := s.db.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM transit_transfers WHERE lineage = $1 AND created >= $2`, old.Lineage, since).Scan(&n); err != nil {
			return nil, err
		}
		if n >= city.TransfersPerYear {
			return nil, mipay.Errorf(mipay.ELIMIT, "%s cards can move to another phone at most %d time(s) a year", city.Name, city.TransfersPerYear)
		}
	}
	res, err := s.issue(ctx, city, req.ToDeviceID, req.ToSEID, pub, old.CardNumber)
	if err != nil {
		return nil, err
	}
	res.Card.Lineage = old.Lineage
	now := s.nowMS()
	var load *Load
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		load = nil
		// Re-read the shadow balance inside the transaction: clearing may
		// have applied records since.
		cur, err := scanCard(tx.QueryRowContext(ctx, `SELECT `+cardColumns+` FROM transit_cards WHERE card_number = $1`, old.CardNumber))
		if err != nil {
			return err
		}
		if cur.Status == CardMoved {
			return mipay.Errorf(mipay.ECONFLICT, "card %s was already moved", old.CardNumber)
		}
		res.Card.Created = time.UnixMilli(now)
		if err := insertCard(ctx, tx, &res.Card, now); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE transit_cards SET status = $2, status_reason = 'MOVED', moved_to = $3, updated = $4 WHERE card_number = $1`,
			old.CardNumber, CardMoved, res.Card.CardNumber, now); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO transit_transfers (id, city, lineage, from_card, to_card, amount_minor, created) VALUES ($1,$2,$3,$4,$5,$6,$7)`,
			newID("mv_"), city.ID, old.Lineage, old.CardNumber, res.Card.CardNumber, cur.ShadowBalance, now); err != nil {
			return err
		}
		if cur.ShadowBalance > 0 {
			load = &Load{ID: newID("ld_"), RequestID: "move-" + old.CardNumber, City: city.ID, CardNumber: res.Card.CardNumber,
				Kind: LoadTransfer, AmountMinor: cur.ShadowBalance, State: LoadPaid, OnlineSerial: -1, BalanceBefore: -1,
				Terminal: fmt.Sprintf("%X", s.LoadTerminal(city.ID)), Created: time.UnixMilli(now), Updated: time.UnixMilli(now)}
			return insertLoad(ctx, tx, load, now)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	res.Load = load
	return res, nil
}

// settleOpenLoad refunds a paid top-up that never got a MAC2 (it cannot be
// applied any more once the card is hotlisted) and refuses to move a card
// whose top-up is in doubt (MAC2 sent, no TAC yet).
func (s *Service) settleOpenLoad(ctx context.Context, number string) error {
	l, err := s.openLoad(ctx, number)
	if err != nil || l == nil {
		return err
	}
	switch l.State {
	case LoadMAC2Sent:
		return mipay.Errorf(mipay.ECONFLICT, "a top-up of this card is not settled yet: open the app on the old phone, or wait for clearing")
	default:
		return s.refundLoad(ctx, l)
	}
}

// History is a card's loads and cleared gate records, newest first.
type History struct {
	Loads   []Load        `json:"loads"`
	Records []GateRecord  `json:"records"`
	Card    Card          `json:"card"`
	Moves   []MoveSummary `json:"moves,omitempty"`
}

// MoveSummary is one move of a card's lineage.
type MoveSummary struct {
	From, To    string
	AmountMinor int64
	Time        time.Time
}

// History returns a card's history (the caller's cards only).
func (s *Service) History(ctx context.Context, bearer, number string) (*History, error) {
	c, _, err := s.ownedCard(ctx, bearer, number)
	if err != nil {
		return nil, err
	}
	h := &History{Card: *c, Loads: []Load{}, Records: []GateRecord{}}
	rows, err := s.db.DB.QueryContext(ctx, `SELECT `+loadColumns+` FROM transit_loads WHERE card_number = $1 ORDER BY created DESC LIMIT `+fmt.Sprint(maxHistory), number)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		l, err := scanLoad(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		h.Loads = append(h.Loads, *l)
	}
	rows.Close()
	if h.Records, err = s.cardRecords(ctx, number, maxHistory); err != nil {
		return nil, err
	}
	if h.Records == nil {
		h.Records = []GateRecord{}
	}
	mrows, err := s.db.DB.QueryContext(ctx, `SELECT from_card, to_card, amount_minor, created FROM transit_transfers WHERE lineage = $1 ORDER BY created`, c.Lineage)
	if err != nil {
		return nil, err
	}
	defer mrows.Close()
	for mrows.Next() {
		var m MoveSummary
		var t int64
		if err := mrows.Scan(&m.From, &m.To, &m.AmountMinor, &t); err != nil {
			return nil, err
		}
		m.Time = time.UnixMilli(t)
		h.Moves = append(h.Moves, m)
	}
	return h, mrows.Err()
}

// PSAMKeyAAD binds a PSAM's sealed purchase master to its city and id.
func PSAMKeyAAD(city, psamID string) []byte {
	return []byte("mipay psam key v1\x00" + city + "\x00" + psamID)
}

// ProvisionPSAM records a gate's PSAM and returns the city's purchase
// master sealed to the PSAM's public key (only the purchase master leaves;
// see hsm.PSAMExporter).
func (s *Service) ProvisionPSAM(ctx context.Context, city, station, psamID string, pubBytes []byte) ([]byte, error) {
	c, err := s.City(city)
	if err != nil {
		return nil, err
	}
	if station != "" {
		if _, ok := c.Station(station); !ok && !strings.HasPrefix(station, "bus") {
			return nil, mipay.Errorf(mipay.EINVALID, "%s has no station %q", c.Name, station)
		}
	}
	if psamID == "" || len(psamID) > 64 {
		return nil, mipay.Errorf(mipay.EINVALID, "psam id must be 1–64 characters")
	}
	pub, err := ecdh.P256().NewPublicKey(pubBytes)
	if err != nil {
		return nil, mipay.Errorf(mipay.EINVALID, "publicKey must be an uncompressed P-256 point")
	}
	exp, ok := s.hsm.(hsm.PSAMExporter)
	if !ok {
		return nil, mipay.Errorf(mipay.EUNAVAILABLE, "this HSM cannot provision PSAMs")
	}
	blob, err := exp.ExportPSAMKey(ctx, CityKeys(city).DPK, pub, PSAMKeyAAD(city, psamID))
	if err != nil {
		return nil, err
	}
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO transit_psams (id, city, station, public_key, created) VALUES ($1,$2,$3,$4,$5)
			ON CONFLICT (id) DO UPDATE SET station = $3, public_key = $4`, psamID, city, station, pubBytes, s.nowMS())
		return err
	})
	return blob, err
}

// Reinstall makes a card's profile again for its own SE: the phone paid and
// the agency issued, but the install did not happen (a crash, a lost
// answer). The keys are the same (derived from the card number), sealed to
// the same SE; no new fee is taken.
func (s *Service) Reinstall(ctx context.Context, bearer, number string, sePub []byte) (*IssueResult, error) {
	c, ds, err := s.ownedCard(ctx, bearer, number)
	if err != nil {
		return nil, err
	}
	if c.Status != CardActive {
		return nil, mipay.Errorf(mipay.ECONFLICT, "card %s is %s", number, c.Status)
	}
	if ds[c.DeviceID].SEID != c.SEID {
		return nil, mipay.Errorf(mipay.EFORBIDDEN, "card %s belongs to another secure element", number)
	}
	pub, err := attestedKey(ds, c.DeviceID, c.SEID, sePub)
	if err != nil {
		return nil, err
	}
	city, err := s.City(c.City)
	if err != nil {
		return nil, err
	}
	prof, err := s.profile(ctx, city, number, c.SEID, pub)
	if err != nil {
		return nil, err
	}
	return &IssueResult{Card: *c, Profile: *prof}, nil
}
