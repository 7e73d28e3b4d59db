package se

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/cryptobox"
	"github.com/mipay-oss/mipay/emv"
)

// The e-purse applet: a PBOC ED/EP (JT/T 978 style) stored-value transit
// card, one instance per transit card. Gates debit it offline in express
// mode (no fingerprint: it answers whether or not anything is armed); the
// agency's load host credits it online. Balance, serials, log and the CAPP
// (metro entry) record change together and are durable before the answer
// leaves — one journal record per DEBIT or CREDIT (epurse_journal.go) — so a
// tap cut off halfway leaves the old state or the new one.
//
// APDUs (CLA 80 unless noted; data layouts as in the PBOC e-purse spec):
//
//	00 A4 04 00 AID               SELECT → 6F{84 AID, A5{50 label, 5A card number, 9F0C city}}
//	80 5C 00 02 04                GET BALANCE → balance(4)
//	80 50 01 02 0B kid amt(4) term(6)   INITIALIZE FOR PURCHASE
//	80 50 03 02 0B kid amt(4) term(6)   INITIALIZE FOR CAPP PURCHASE
//	    → balance(4) offline serial(2) overdraft(3) key version(1) alg(1) random(4)
//	80 DC rec (17<<3) Lc data     UPDATE CAPP DATA CACHE (after INITIALIZE FOR CAPP PURCHASE)
//	80 54 01 00 0F tsn(4) date(4) time(3) MAC1(4)   DEBIT FOR PURCHASE → TAC(4) MAC2(4)
//	80 50 00 02 0B kid amt(4) term(6)   INITIALIZE FOR LOAD
//	    → balance(4) online serial(2) key version(1) alg(1) random(4) MAC1(4)
//	80 52 00 00 0B date(4) time(3) MAC2(4)          CREDIT FOR LOAD → TAC(4)
//	80 5A 00 type 02 serial(2)    GET TRANSACTION PROOF → MAC(4) TAC(4) of that transaction
//	                              (the last load; any purchase still in the log)
//	00 B2 n (18<<3|4)             READ RECORD n of the log (1 = newest, 23 bytes)
//	00 B2 n (17<<3|4)             READ RECORD n of the CAPP records

// Limits of the e-purse applet.
const (
	// DefaultMaxTransitCards is how many transit cards an SE holds unless
	// Options.MaxTransitCards says otherwise.
	DefaultMaxTransitCards = 8
	// MaxTransitLog is how many transactions a card's log keeps (newest first).
	MaxTransitLog = 10
	// MaxCAPPRecords and MaxCAPPRecordBytes bound the CAPP data (metro trips).
	MaxCAPPRecords     = 4
	MaxCAPPRecordBytes = 48
	// maxTransitProfileBytes bounds a transit profile.
	maxTransitProfileBytes = 16 << 10
)

// Short file identifiers of the e-purse's records.
const (
	SFILog  = 0x18
	SFICAPP = 0x17
)

// EPurseKeyVersion and EPurseAlgorithm are what INITIALIZE answers (3DES).
const (
	EPurseKeyVersion byte = 0x01
	EPurseAlgorithm  byte = 0x00
)

// e-purse INS codes.
const (
	insInitialize  = 0x50
	insGetBalance  = 0x5C
	insDebit       = 0x54
	insCredit      = 0x52
	insUpdateCAPP  = 0xDC
	insProof       = 0x5A
	insReadRecord  = 0xB2
	insSelect      = 0xA4
	p1Load         = 0x00
	p1Purchase     = 0x01
	p1CAPPPurchase = 0x03
)

// TransitProfile is what the agency's issuance host sends to personalize an
// e-purse instance: card data and the card's three keys (purchase DPK, load
// DLK, TAC DTK), each diversified by card number inside the agency's HSM and
// sealed (cryptobox) to this SE with TransitKeyAAD.
type TransitProfile struct {
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

// TransitKeyAAD binds a sealed card key to this SE, the card and the key's
// role ("dpk", "dlk", "dtk"); the agency seals with the same bytes.
func TransitKeyAAD(seID, cardNumber, role string) []byte {
	return []byte("mipay transit key v1\x00" + seID + "\x00" + cardNumber + "\x00" + role)
}

// TransitCard is what the phone may know of an installed transit card.
type TransitCard struct {
	City          string `json:"city"`
	CardNumber    string `json:"cardNumber"`
	Label         string `json:"label"`
	BalanceMinor  uint32 `json:"balanceMinor"`
	OfflineSerial uint16 `json:"offlineSerial"`
	OnlineSerial  uint16 `json:"onlineSerial"`
	AID           []byte `json:"aid"`
}

// TransitRecord is one entry of a card's transaction log.
type TransitRecord struct {
	Serial      uint16  `json:"serial"` // offline serial (purchase) or online serial (load)
	AmountMinor uint32  `json:"amountMinor"`
	Type        byte    `json:"type"` // emv.EPurseType…
	Terminal    [6]byte `json:"terminal"`
	Date        [4]byte `json:"date"`
	Time        [3]byte `json:"time"`
}

// Bytes is the 23-byte READ RECORD layout: serial(2) overdraft(3)
// amount(4) type(1) terminal(6) date(4) time(3).
func (r TransitRecord) Bytes() []byte {
	b := make([]byte, 0, 23)
	b = binary.BigEndian.AppendUint16(b, r.Serial)
	b = append(b, 0, 0, 0)
	b = binary.BigEndian.AppendUint32(b, r.AmountMinor)
	b = append(b, r.Type)
	b = append(b, r.Terminal[:]...)
	b = append(b, r.Date[:]...)
	return append(b, r.Time[:]...)
}

// ParseTransitRecord reads a 23-byte log record.
func ParseTransitRecord(b []byte) (TransitRecord, error) {
	if len(b) != 23 {
		return TransitRecord{}, fmt.Errorf("se: transit record of %d bytes (want 23)", len(b))
	}
	var r TransitRecord
	r.Serial = binary.BigEndian.Uint16(b)
	r.AmountMinor = binary.BigEndian.Uint32(b[5:])
	r.Type = b[9]
	copy(r.Terminal[:], b[10:16])
	copy(r.Date[:], b[16:20])
	copy(r.Time[:], b[20:23])
	return r, nil
}

// proof is what GET TRANSACTION PROOF answers for a past transaction.
type proof struct {
	Serial uint16  `json:"serial"`
	MAC    [4]byte `json:"mac"`
	TAC    [4]byte `json:"tac"`
}

// purse is an installed e-purse instance (persisted in the SE's state).
type purse struct {
	City          string          `json:"city"`
	CardNumber    string          `json:"cardNumber"`
	AID           []byte          `json:"aid"`
	Label         string          `json:"label"`
	DPK           []byte          `json:"dpk"`
	DLK           []byte          `json:"dlk"`
	DTK           []byte          `json:"dtk"`
	MaxBalance    uint32          `json:"maxBalance"`
	Balance       uint32          `json:"balance"`
	OfflineSerial uint16          `json:"offlineSerial"`
	OnlineSerial  uint16          `json:"onlineSerial"`
	Log           []TransitRecord `json:"log"`  // newest first
	CAPP          map[int][]byte  `json:"capp"` // CAPP record number → data
	LastPurchase  *proof          `json:"lastPurchase,omitempty"`
	LastLoad      *proof          `json:"lastLoad,omitempty"`
	// Proofs are the purchases' proofs, newest first, as deep as the log:
	// a gate that lost a DEBIT's answer (its process or power cut) gets the
	// TAC back when the card returns, even after later taps elsewhere.
	Proofs []proof `json:"proofs,omitempty"`
}

// clone is a deep copy, so a transaction can be undone when persisting fails.
func (p *purse) clone() *purse {
	c := *p
	c.Log = slices.Clone(p.Log)
	c.CAPP = make(map[int][]byte, len(p.CAPP))
	for k, v := range p.CAPP {
		c.CAPP[k] = v
	}
	if p.LastPurchase != nil {
		lp := *p.LastPurchase
		c.LastPurchase = &lp
	}
	if p.LastLoad != nil {
		ll := *p.LastLoad
		c.LastLoad = &ll
	}
	c.Proofs = slices.Clone(p.Proofs)
	return &c
}

// pushPurchaseProof records a purchase's proof (newest first, bounded).
func (p *purse) pushPurchaseProof(pr proof) {
	lp := pr
	p.LastPurchase = &lp
	p.Proofs = append([]proof{pr}, p.Proofs...)
	if len(p.Proofs) > MaxTransitLog {
		p.Proofs = p.Proofs[:MaxTransitLog]
	}
}

func (p *purse) view() TransitCard {
	return TransitCard{City: p.City, CardNumber: p.CardNumber, Label: p.Label, BalanceMinor: p.Balance,
		OfflineSerial: p.OfflineSerial, OnlineSerial: p.OnlineSerial, AID: slices.Clone(p.AID)}
}

// epSession is the volatile state of the selected e-purse: what the last
// INITIALIZE started. Reset, a new SELECT or any failure forgets it.
type epSession struct {
	cur    *purse
	op     byte // 0 none, p1Purchase, p1CAPPPurchase, p1Load
	amount uint32
	term   [6]byte
	random [4]byte
	capp   map[int][]byte // UPDATE CAPP DATA CACHE, committed by DEBIT
}

func (s *SE) maxTransitCards() int {
	if s.maxTransit > 0 {
		return s.maxTransit
	}
	return DefaultMaxTransitCards
}

func (s *SE) purseByNumber(n string) *purse {
	for _, p := range s.st.Purses {
		if p.CardNumber == n {
			return p
		}
	}
	return nil
}

// InstallTransit personalizes an e-purse instance from an agency profile.
// The keys open only with this SE's private key and only for the card the
// profile names. Beyond MaxTransitCards, or a second card of a city, is refused.
func (s *SE) InstallTransit(profileJSON []byte) (TransitCard, error) {
	if len(profileJSON) > maxTransitProfileBytes {
		return TransitCard{}, mipay.Errorf(mipay.ETOOLARGE, "transit profile over %d bytes", maxTransitProfileBytes)
	}
	var p TransitProfile
	if err := json.Unmarshal(profileJSON, &p); err != nil {
		return TransitCard{}, mipay.WrapError(mipay.EINVALID, err, "transit profile is not valid JSON")
	}
	if p.Version != 1 || p.CardNumber == "" || len(p.CardNumber) > emv.MaxCardNumberDigits || len(p.AID) < 5 || len(p.AID) > 16 || p.City == "" {
		return TransitCard{}, mipay.Errorf(mipay.EINVALID, "transit profile is malformed")
	}
	if _, err := emv.EPurseDiversifier(p.CardNumber); err != nil {
		return TransitCard{}, mipay.Errorf(mipay.EINVALID, "transit profile: card number must be digits")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.SEID != s.st.ID {
		return TransitCard{}, mipay.Errorf(mipay.EFORBIDDEN, "transit profile was made for another secure element")
	}
	if s.purseByNumber(p.CardNumber) != nil {
		return TransitCard{}, mipay.Errorf(mipay.ECONFLICT, "transit card %s is already installed", p.CardNumber)
	}
	for _, q := range s.st.Purses {
		if bytes.Equal(q.AID, p.AID) {
			return TransitCard{}, mipay.Errorf(mipay.ECONFLICT, "this phone already holds a %s transit card", p.City)
		}
	}
	if len(s.st.Purses) >= s.maxTransitCards() {
		return TransitCard{}, mipay.Errorf(mipay.ELIMIT, "the secure element already holds %d transit cards", s.maxTransitCards())
	}
	priv, err := s.ecdhKey()
	if err != nil {
		return TransitCard{}, err
	}
	keys := make([][]byte, 3)
	for i, k := range []struct {
		blob []byte
		role string
	}{{p.SealedDPK, "dpk"}, {p.SealedDLK, "dlk"}, {p.SealedDTK, "dtk"}} {
		key, err := cryptobox.Open(priv, k.blob, TransitKeyAAD(s.st.ID, p.CardNumber, k.role))
		if err != nil || len(key) != 16 {
			return TransitCard{}, mipay.Errorf(mipay.EFORBIDDEN, "transit card key does not open in this secure element")
		}
		keys[i] = key
	}
	np := &purse{
		City: p.City, CardNumber: p.CardNumber, AID: p.AID, Label: p.Label,
		DPK: keys[0], DLK: keys[1], DTK: keys[2], MaxBalance: p.MaxBalanceMinor, CAPP: map[int][]byte{},
	}
	s.st.Purses = append(s.st.Purses, np)
	if err := s.persist(); err != nil {
		s.st.Purses = s.st.Purses[:len(s.st.Purses)-1]
		return TransitCard{}, err
	}
	return np.view(), nil
}

// TransitCards lists the installed transit cards.
func (s *SE) TransitCards() []TransitCard {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]TransitCard, 0, len(s.st.Purses))
	for _, p := range s.st.Purses {
		out = append(out, p.view())
	}
	return out
}

// TransitLog returns a card's transaction log, newest first.
func (s *SE) TransitLog(cardNumber string) ([]TransitRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.purseByNumber(cardNumber)
	if p == nil {
		return nil, mipay.Errorf(mipay.ENOTFOUND, "no transit card %s in the secure element", cardNumber)
	}
	return slices.Clone(p.Log), nil
}

// RemoveTransit deletes a transit card and its keys (after a move to
// another device, or a wipe).
func (s *SE) RemoveTransit(cardNumber string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.st.Purses, func(p *purse) bool { return p.CardNumber == cardNumber })
	if i < 0 {
		return mipay.Errorf(mipay.ENOTFOUND, "no transit card %s in the secure element", cardNumber)
	}
	old := s.st.Purses
	s.st.Purses = slices.Delete(slices.Clone(old), i, i+1)
	if s.ep.cur != nil && s.ep.cur.CardNumber == cardNumber {
		s.ep = epSession{}
	}
	if err := s.persist(); err != nil {
		s.st.Purses = old
		return err
	}
	return nil
}

// transmitEPurse handles the APDUs of the e-purse applet: a SELECT of a
// transit AID, and the e-purse commands while one is selected. handled is
// false when the command belongs to another applet. Callers hold mu.
func (s *SE) transmitEPurse(cmd emv.Command) (resp []byte, handled bool) {
	if cmd.CLA == 0x00 && cmd.INS == insSelect {
		if cmd.P1 == 0x04 {
			for _, p := range s.st.Purses {
				if bytes.Equal(cmd.Data, p.AID) {
					s.ep = epSession{cur: p}
					return s.selectPurse(p), true
				}
			}
		}
		s.ep = epSession{} // another applet is being selected
		return nil, false
	}
	p := s.ep.cur
	if p == nil {
		return nil, false
	}
	switch {
	case cmd.CLA == 0x00 && cmd.INS == insReadRecord:
		return s.purseReadRecord(p, cmd), true
	case cmd.CLA != 0x80:
		return sw(nil, emv.SWCLANotSupported), true
	case cmd.INS == insGetBalance:
		if cmd.P1 != 0x00 || cmd.P2 != 0x02 {
			return sw(nil, emv.SWIncorrectP1P2), true
		}
		return sw(binary.BigEndian.AppendUint32(nil, p.Balance), emv.SWSuccess), true
	case cmd.INS == insInitialize:
		return s.purseInitialize(p, cmd), true
	case cmd.INS == insUpdateCAPP:
		return s.purseUpdateCAPP(cmd), true
	case cmd.INS == insDebit:
		return s.purseDebit(p, cmd), true
	case cmd.INS == insCredit:
		return s.purseCredit(p, cmd), true
	case cmd.INS == insProof:
		return s.purseProof(p, cmd), true
	}
	return sw(nil, emv.SWINSNotSupported), true
}

func (s *SE) selectPurse(p *purse) []byte {
	prop := emv.AppendTLV(nil, 0x50, []byte(p.Label))
	prop = emv.AppendTLV(prop, 0x5A, cardNumberBCD(p.CardNumber))
	prop = emv.AppendTLV(prop, 0x9F0C, []byte(p.City))
	fci := emv.AppendTLV(nil, 0x84, p.AID)
	fci = emv.AppendTLV(fci, 0xA5, prop)
	return sw(emv.AppendTLV(nil, 0x6F, fci), emv.SWSuccess)
}

// cardNumberBCD packs digits as BCD, padded with F.
func cardNumberBCD(n string) []byte {
	b := make([]byte, (len(n)+1)/2)
	for i := range b {
		hi := n[2*i] - '0'
		lo := byte(0x0F)
		if 2*i+1 < len(n) {
			lo = n[2*i+1] - '0'
		}
		b[i] = hi<<4 | lo
	}
	return b
}

// CardNumberFromBCD reverses cardNumberBCD (the gate reads tag 5A).
func CardNumberFromBCD(b []byte) (string, error) {
	if len(b) == 0 || len(b) > emv.MaxCardNumberDigits/2 {
		return "", fmt.Errorf("se: card number of %d bytes", len(b))
	}
	out := make([]byte, 0, 2*len(b))
	for i, c := range b {
		for j, d := range []byte{c >> 4, c & 0x0F} {
			switch {
			case d <= 9:
				out = append(out, '0'+d)
			case d == 0x0F && i == len(b)-1 && j == 1:
			default:
				return "", fmt.Errorf("se: card number is not BCD")
			}
		}
	}
	return string(out), nil
}

func (s *SE) purseInitialize(p *purse, cmd emv.Command) []byte {
	s.ep.op, s.ep.capp = 0, nil
	if cmd.P2 != 0x02 || (cmd.P1 != p1Load && cmd.P1 != p1Purchase && cmd.P1 != p1CAPPPurchase) {
		return sw(nil, emv.SWIncorrectP1P2)
	}
	if len(cmd.Data) != 11 {
		return sw(nil, emv.SWWrongLength)
	}
	if cmd.Data[0] != EPurseKeyVersion {
		return sw(nil, emv.SWKeyIndexNotSupported)
	}
	amount := binary.BigEndian.Uint32(cmd.Data[1:5])
	var random [4]byte
	if s.epRand != nil {
		s.epRand(random[:])
	} else if _, err := rand.Read(random[:]); err != nil {
		return sw(nil, emv.SWUnknown)
	}
	var term [6]byte
	copy(term[:], cmd.Data[5:11])
	if cmd.P1 == p1Load {
		if p.OnlineSerial == 0xFFFF {
			return sw(nil, emv.SWAuthMethodBlocked)
		}
		if amount == 0 || uint64(p.Balance)+uint64(amount) > uint64(p.MaxBalance) {
			return sw(nil, emv.SWWrongData)
		}
		serial := binary.BigEndian.AppendUint16(nil, p.OnlineSerial)
		sk := emv.EPurseLoadSessionKey(emv.Key(p.DLK), random, [2]byte(serial))
		mac1 := emv.EPurseLoadMAC1(sk, p.Balance, emv.EPurseTx{Amount: amount, Type: emv.EPurseTypeLoad, Terminal: term})
		s.ep.op, s.ep.amount, s.ep.term, s.ep.random = p1Load, amount, term, random
		out := binary.BigEndian.AppendUint32(nil, p.Balance)
		out = append(out, serial...)
		out = append(out, EPurseKeyVersion, EPurseAlgorithm)
		out = append(out, random[:]...)
		out = append(out, mac1[:]...)
		return sw(out, emv.SWSuccess)
	}
	if p.OfflineSerial == 0xFFFF {
		return sw(nil, emv.SWAuthMethodBlocked)
	}
	if amount > p.Balance {
		return sw(nil, emv.SWInsufficientBalance)
	}
	s.ep.op, s.ep.amount, s.ep.term, s.ep.random = cmd.P1, amount, term, random
	out := binary.BigEndian.AppendUint32(nil, p.Balance)
	out = binary.BigEndian.AppendUint16(out, p.OfflineSerial)
	out = append(out, 0, 0, 0, EPurseKeyVersion, EPurseAlgorithm)
	out = append(out, random[:]...)
	return sw(out, emv.SWSuccess)
}

func (s *SE) purseUpdateCAPP(cmd emv.Command) []byte {
	if s.ep.op != p1CAPPPurchase {
		return sw(nil, emv.SWConditionsNotSatisfied)
	}
	if cmd.P2>>3 != SFICAPP || cmd.P1 == 0 || int(cmd.P1) > MaxCAPPRecords {
		return sw(nil, emv.SWIncorrectP1P2)
	}
	if len(cmd.Data) == 0 || len(cmd.Data) > MaxCAPPRecordBytes {
		return sw(nil, emv.SWWrongLength)
	}
	if s.ep.capp == nil {
		s.ep.capp = map[int][]byte{}
	}
	s.ep.capp[int(cmd.P1)] = slices.Clone(cmd.Data)
	return sw(nil, emv.SWSuccess)
}

// purseDebit checks MAC1, debits and answers TAC ‖ MAC2; the new balance,
// serial, log and CAPP data are durable before the answer.
func (s *SE) purseDebit(p *purse, cmd emv.Command) []byte {
	op := s.ep.op
	s.ep.op = 0 // one DEBIT per INITIALIZE, whatever happens
	if op != p1Purchase && op != p1CAPPPurchase {
		return sw(nil, emv.SWConditionsNotSatisfied)
	}
	if cmd.P1 != 0x01 || cmd.P2 != 0x00 {
		return sw(nil, emv.SWIncorrectP1P2)
	}
	if len(cmd.Data) != 15 {
		return sw(nil, emv.SWWrongLength)
	}
	tsn := [4]byte(cmd.Data[0:4])
	tx := emv.EPurseTx{Amount: s.ep.amount, Type: emv.EPurseTypePurchase, Terminal: s.ep.term,
		Date: [4]byte(cmd.Data[4:8]), Time: [3]byte(cmd.Data[8:11])}
	if op == p1CAPPPurchase {
		tx.Type = emv.EPurseTypeCompositePurchase
	}
	var serial [2]byte
	binary.BigEndian.PutUint16(serial[:], p.OfflineSerial)
	sk := emv.EPursePurchaseSessionKey(emv.Key(p.DPK), s.ep.random, serial, [2]byte(tsn[2:4]))
	mac1 := emv.EPursePurchaseMAC1(sk, tx)
	if subtle.ConstantTimeCompare(mac1[:], cmd.Data[11:15]) != 1 {
		return sw(nil, emv.SWMACInvalid)
	}
	if tx.Amount > p.Balance {
		return sw(nil, emv.SWInsufficientBalance)
	}
	tac := emv.EPursePurchaseTAC(emv.EPurseTACKey(emv.Key(p.DTK)), tx, tsn)
	mac2 := emv.EPursePurchaseMAC2(sk, tx.Amount)
	saved := p.clone()
	rec := TransitRecord{Serial: binary.BigEndian.Uint16(serial[:]), AmountMinor: tx.Amount, Type: tx.Type,
		Terminal: tx.Terminal, Date: tx.Date, Time: tx.Time}
	pr := proof{Serial: binary.BigEndian.Uint16(serial[:]), MAC: mac2, TAC: tac}
	p.Balance -= tx.Amount
	p.OfflineSerial++
	p.pushLog(rec)
	var capp map[int][]byte
	if op == p1CAPPPurchase {
		capp = s.ep.capp
		for k, v := range capp {
			p.CAPP[k] = v
		}
	}
	p.pushPurchaseProof(pr)
	s.ep.capp = nil
	// One durable write for the whole sequence (INITIALIZE, UPDATE CAPP
	// DATA CACHE, DEBIT): the answer leaves only after it.
	if err := s.commitPurse(purseDelta{Card: p.CardNumber, Balance: p.Balance, OfflineSerial: p.OfflineSerial,
		OnlineSerial: p.OnlineSerial, Rec: rec.Bytes(), CAPP: capp, Purchase: &pr}); err != nil {
		*p = *saved
		return sw(nil, emv.SWMemoryFailure)
	}
	return sw(append(tac[:], mac2[:]...), emv.SWSuccess)
}

// purseCredit checks the load host's MAC2, credits and answers TAC.
func (s *SE) purseCredit(p *purse, cmd emv.Command) []byte {
	op := s.ep.op
	s.ep.op = 0
	if op != p1Load {
		return sw(nil, emv.SWConditionsNotSatisfied)
	}
	if cmd.P1 != 0x00 || cmd.P2 != 0x00 {
		return sw(nil, emv.SWIncorrectP1P2)
	}
	if len(cmd.Data) != 11 {
		return sw(nil, emv.SWWrongLength)
	}
	tx := emv.EPurseTx{Amount: s.ep.amount, Type: emv.EPurseTypeLoad, Terminal: s.ep.term,
		Date: [4]byte(cmd.Data[0:4]), Time: [3]byte(cmd.Data[4:7])}
	var serial [2]byte
	binary.BigEndian.PutUint16(serial[:], p.OnlineSerial)
	sk := emv.EPurseLoadSessionKey(emv.Key(p.DLK), s.ep.random, serial)
	mac2 := emv.EPurseLoadMAC2(sk, tx)
	if subtle.ConstantTimeCompare(mac2[:], cmd.Data[7:11]) != 1 {
		return sw(nil, emv.SWMACInvalid)
	}
	if uint64(p.Balance)+uint64(tx.Amount) > uint64(p.MaxBalance) {
		return sw(nil, emv.SWWrongData)
	}
	newBalance := p.Balance + tx.Amount
	tac := emv.EPurseLoadTAC(emv.EPurseTACKey(emv.Key(p.DTK)), newBalance, serial, tx)
	saved := p.clone()
	rec := TransitRecord{Serial: binary.BigEndian.Uint16(serial[:]), AmountMinor: tx.Amount, Type: tx.Type,
		Terminal: tx.Terminal, Date: tx.Date, Time: tx.Time}
	pr := proof{Serial: binary.BigEndian.Uint16(serial[:]), TAC: tac}
	p.Balance = newBalance
	p.OnlineSerial++
	p.pushLog(rec)
	p.LastLoad = &pr
	if err := s.commitPurse(purseDelta{Card: p.CardNumber, Balance: p.Balance, OfflineSerial: p.OfflineSerial,
		OnlineSerial: p.OnlineSerial, Rec: rec.Bytes(), Load: &pr}); err != nil {
		*p = *saved
		return sw(nil, emv.SWMemoryFailure)
	}
	return sw(tac[:], emv.SWSuccess)
}

// purseProof answers GET TRANSACTION PROOF for the last load (P2 02) or
// purchase (P2 06/09) with the given serial: how a terminal or load host
// that lost the answer learns that the transaction happened.
func (s *SE) purseProof(p *purse, cmd emv.Command) []byte {
	if cmd.P1 != 0x00 {
		return sw(nil, emv.SWIncorrectP1P2)
	}
	if len(cmd.Data) != 2 {
		return sw(nil, emv.SWWrongLength)
	}
	serial := binary.BigEndian.Uint16(cmd.Data)
	var pr *proof
	switch cmd.P2 {
	case emv.EPurseTypeLoad:
		pr = p.LastLoad
	case emv.EPurseTypePurchase, emv.EPurseTypeCompositePurchase:
		pr = p.LastPurchase
		for i := range p.Proofs {
			if p.Proofs[i].Serial == serial {
				pr = &p.Proofs[i]
				break
			}
		}
	default:
		return sw(nil, emv.SWIncorrectP1P2)
	}
	if pr == nil || pr.Serial != serial {
		return sw(nil, emv.SWReferencedDataNotFound)
	}
	return sw(append(pr.MAC[:], pr.TAC[:]...), emv.SWSuccess)
}

func (p *purse) pushLog(r TransitRecord) {
	p.Log = append([]TransitRecord{r}, p.Log...)
	if len(p.Log) > MaxTransitLog {
		p.Log = p.Log[:MaxTransitLog]
	}
}

func (s *SE) purseReadRecord(p *purse, cmd emv.Command) []byte {
	if cmd.P2&0x07 != 0x04 || cmd.P1 == 0 {
		return sw(nil, emv.SWIncorrectP1P2)
	}
	n := int(cmd.P1)
	switch cmd.P2 >> 3 {
	case SFILog:
		if n > len(p.Log) {
			return sw(nil, emv.SWRecordNotFound)
		}
		return sw(p.Log[n-1].Bytes(), emv.SWSuccess)
	case SFICAPP:
		r, ok := p.CAPP[n]
		if !ok {
			return sw(nil, emv.SWRecordNotFound)
		}
		return sw(slices.Clone(r), emv.SWSuccess)
	}
	return sw(nil, emv.SWFileNotFound)
}

// PurchaseProof is a purchase's TAC as GET TRANSACTION PROOF gives it.
type PurchaseProof struct {
	OfflineSerial uint16
	TAC           [4]byte
}

// PurchaseProofs reads, over the e-purse's own APDUs (SELECT, then GET
// TRANSACTION PROOF per purchase in the log), the proofs of a card's
// purchases still in its log: what the phone reports to the agency so taps
// a gate holds in doubt (it never got the card's answer) can clear.
func (s *SE) PurchaseProofs(cardNumber string) ([]PurchaseProof, error) {
	s.mu.Lock()
	p := s.purseByNumber(cardNumber)
	if p == nil {
		s.mu.Unlock()
		return nil, mipay.Errorf(mipay.ENOTFOUND, "no transit card %s in the secure element", cardNumber)
	}
	aid, log := slices.Clone(p.AID), slices.Clone(p.Log)
	s.mu.Unlock()
	defer s.Reset()
	sel := s.Transmit(append(append([]byte{0x00, 0xA4, 0x04, 0x00, byte(len(aid))}, aid...), 0x00))
	if len(sel) < 2 || binary.BigEndian.Uint16(sel[len(sel)-2:]) != emv.SWSuccess {
		return nil, fmt.Errorf("se: the e-purse of %s does not select", cardNumber)
	}
	var out []PurchaseProof
	for _, r := range log {
		if r.Type != emv.EPurseTypePurchase && r.Type != emv.EPurseTypeCompositePurchase {
			continue
		}
		resp := s.Transmit([]byte{0x80, insProof, 0x00, r.Type, 0x02, byte(r.Serial >> 8), byte(r.Serial), 0x08})
		if len(resp) == 10 && binary.BigEndian.Uint16(resp[8:]) == emv.SWSuccess {
			out = append(out, PurchaseProof{OfflineSerial: r.Serial, TAC: [4]byte(resp[4:8])})
		}
	}
	return out, nil
}
