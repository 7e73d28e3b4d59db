package se

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/cryptobox"
	"github.com/mipay-oss/mipay/emv"
)

// The payment applet: qPBOC (UnionPay QuickPass) with the ARQC made at GET
// PROCESSING OPTIONS, PBOC 3.0 CVN 01.

// PPSE is the proximity payment system environment name.
const PPSE = "2PAY.SYS.DDF01"

// Profile is the card profile the TSP makes for one token (the JSON of its
// GET /v1/tokens/{ref}/provisioning); the wallet relays it unread. The TSP
// defines the layout (tsp/profile.go); this is the SE's reading of it.
type Profile struct {
	Version          int             `json:"version"`
	TokenRef         string          `json:"tokenUniqueReference"`
	TokenRequestorID string          `json:"tokenRequestorId"`
	IssuerID         string          `json:"issuerId"`
	CardType         string          `json:"cardType"`
	DPAN             string          `json:"dpan"`
	Expiry           string          `json:"expiry"`
	PSN              int             `json:"psn"`
	AID              string          `json:"aid"`
	AppLabel         string          `json:"appLabel"`
	AppPriority      int             `json:"appPriority"`
	AIP              string          `json:"aip"`
	AFL              string          `json:"afl"`
	PDOL             string          `json:"pdol"`
	KeyIndex         int             `json:"keyIndex"`
	CVN              int             `json:"cvn"`
	AlgorithmID      int             `json:"algorithmId"`
	Records          []ProfileRecord `json:"records"`
	SealedKey        []byte          `json:"sealedKey"`
	SEID             string          `json:"seId"`
}

// ProfileRecord is one READ RECORD answer.
type ProfileRecord struct {
	SFI    int    `json:"sfi"`
	Number int    `json:"record"`
	Data   string `json:"data"`
}

// profileKeyAAD must equal the TSP's ProfileKeyAAD: it binds the sealed ICC
// key to this SE and this token.
func profileKeyAAD(seID, tokenRef string) []byte {
	return []byte("mipay tsp icc key v1\x00" + seID + "\x00" + tokenRef)
}

const maxProfileBytes = 64 << 10

// paymentCard is an installed payment applet instance.
type paymentCard struct {
	TokenRef string            `json:"tokenRef"`
	CardType string            `json:"cardType"`
	DPAN     string            `json:"dpan"`
	PSN      int               `json:"psn"`
	AID      []byte            `json:"aid"`
	AppLabel string            `json:"appLabel"`
	Priority int               `json:"priority"`
	AIP      []byte            `json:"aip"`
	AFL      []byte            `json:"afl"`
	PDOL     []byte            `json:"pdol"`
	KeyIndex byte              `json:"keyIndex"`
	MK       []byte            `json:"mk"` // ICC master key (AC), 16 bytes
	ATC      uint16            `json:"atc"`
	Records  map[string][]byte `json:"records"` // "sfi/record" → template 70

	pdol []emv.DOLEntry
}

func (c *paymentCard) prepare() error {
	d, err := emv.ParseDOL(c.PDOL)
	if err != nil {
		return fmt.Errorf("se: card %s: PDOL: %w", c.TokenRef, err)
	}
	if len(c.MK) != 16 || len(c.AIP) != 2 {
		return fmt.Errorf("se: card %s: bad key or AIP", c.TokenRef)
	}
	c.pdol = d
	return nil
}

// Install personalizes a payment applet instance from a TSP profile. The
// ICC key opens only with this SE's private key and only for the token the
// profile names. A 9th payment card is refused and nothing changes.
func (s *SE) Install(profileJSON []byte) (Card, error) {
	if len(profileJSON) > maxProfileBytes {
		return Card{}, mipay.Errorf(mipay.ETOOLARGE, "card profile over %d bytes", maxProfileBytes)
	}
	var p Profile
	if err := json.Unmarshal(profileJSON, &p); err != nil {
		return Card{}, mipay.WrapError(mipay.EINVALID, err, "card profile is not valid JSON")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.SEID != s.st.ID {
		return Card{}, mipay.Errorf(mipay.EFORBIDDEN, "card profile was made for another secure element")
	}
	if s.card(p.TokenRef) != nil {
		return Card{}, mipay.Errorf(mipay.ECONFLICT, "card %s is already installed", p.TokenRef)
	}
	if max := s.paymentLimit(); len(s.st.Cards) >= max {
		if max == MaxPaymentCards {
			return Card{}, ErrCardsFull
		}
		return Card{}, mipay.Errorf(mipay.ELIMIT, "the secure element already holds %d payment cards", max)
	}
	c, err := s.personalize(&p)
	if err != nil {
		return Card{}, err
	}
	s.st.Cards = append(s.st.Cards, c)
	if s.st.Selected == "" {
		s.st.Selected, s.sel = c.TokenRef, c
	}
	if err := s.persist(); err != nil {
		s.st.Cards = s.st.Cards[:len(s.st.Cards)-1]
		return Card{}, err
	}
	return Card{TokenRef: c.TokenRef, TokenLast: c.DPAN[len(c.DPAN)-4:], CardType: c.CardType, AppLabel: c.AppLabel}, nil
}

func (s *SE) personalize(p *Profile) (*paymentCard, error) {
	if p.CVN != 1 || p.AlgorithmID != 1 {
		return nil, mipay.Errorf(mipay.EINVALID, "card profile: only PBOC CVN 01 with 3DES is supported")
	}
	if len(p.DPAN) < 13 || len(p.DPAN) > 19 || p.PSN < 0 || p.PSN > 99 {
		return nil, mipay.Errorf(mipay.EINVALID, "card profile: bad token number or PSN")
	}
	priv, err := s.ecdhKey()
	if err != nil {
		return nil, err
	}
	mk, err := cryptobox.Open(priv, p.SealedKey, profileKeyAAD(s.st.ID, p.TokenRef))
	if err != nil || len(mk) != 16 {
		return nil, mipay.Errorf(mipay.EFORBIDDEN, "card profile key does not open in this secure element")
	}
	c := &paymentCard{
		TokenRef: p.TokenRef, CardType: p.CardType, DPAN: p.DPAN, PSN: p.PSN,
		AppLabel: p.AppLabel, Priority: p.AppPriority, KeyIndex: byte(p.KeyIndex), MK: mk,
		Records: make(map[string][]byte, len(p.Records)),
	}
	for _, f := range []struct {
		dst *[]byte
		hex string
		nm  string
	}{{&c.AID, p.AID, "aid"}, {&c.AIP, p.AIP, "aip"}, {&c.AFL, p.AFL, "afl"}, {&c.PDOL, p.PDOL, "pdol"}} {
		b, err := hex.DecodeString(f.hex)
		if err != nil {
			return nil, mipay.Errorf(mipay.EINVALID, "card profile: %s is not hex", f.nm)
		}
		*f.dst = b
	}
	for _, r := range p.Records {
		b, err := hex.DecodeString(r.Data)
		if err != nil || len(b) == 0 || b[0] != 0x70 {
			return nil, mipay.Errorf(mipay.EINVALID, "card profile: record %d/%d is not a template 70", r.SFI, r.Number)
		}
		c.Records[recordKey(r.SFI, r.Number)] = b
	}
	if err := c.prepare(); err != nil {
		return nil, mipay.WrapError(mipay.EINVALID, err, "card profile is malformed")
	}
	return c, nil
}

func recordKey(sfi, rec int) string { return fmt.Sprintf("%d/%d", sfi, rec) }

// Transmit processes one command APDU from the contactless interface and
// returns the response APDU (data ‖ SW1 SW2). It never fails: errors are
// status words.
func (s *SE) Transmit(apdu []byte) []byte {
	cmd, err := emv.ParseCommand(apdu)
	if err != nil {
		return sw(nil, emv.SWWrongLength)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if resp, ok := s.transmitEPurse(cmd); ok {
		return resp
	}
	switch {
	case cmd.CLA == 0x00 && cmd.INS == 0xA4:
		return s.selectFile(cmd)
	case cmd.CLA == 0x80 && cmd.INS == 0xA8:
		return s.gpo(cmd)
	case cmd.CLA == 0x00 && cmd.INS == 0xB2:
		return s.readRecord(cmd)
	case cmd.CLA&0xF0 != 0x00 && cmd.CLA&0xF0 != 0x80:
		return sw(nil, emv.SWCLANotSupported)
	default:
		return sw(nil, emv.SWINSNotSupported)
	}
}

// Reset ends the contactless session (field off or card reset): the
// application selection is forgotten; an armed transaction stays armed.
func (s *SE) Reset() {
	s.mu.Lock()
	s.sel = s.card(s.st.Selected)
	s.ep = epSession{}
	s.mu.Unlock()
}

func sw(data []byte, w uint16) []byte {
	return binary.BigEndian.AppendUint16(data, w)
}

func (s *SE) selectFile(cmd emv.Command) []byte {
	if cmd.P1 != 0x04 {
		return sw(nil, emv.SWIncorrectP1P2)
	}
	c := s.card(s.st.Selected)
	if string(cmd.Data) == PPSE {
		if c == nil {
			return sw(nil, emv.SWFileNotFound)
		}
		entry := emv.AppendTLV(nil, 0x4F, c.AID)
		entry = emv.AppendTLV(entry, 0x50, []byte(c.AppLabel))
		entry = emv.AppendTLV(entry, 0x87, []byte{byte(c.Priority)})
		fci := emv.AppendTLV(nil, 0x84, []byte(PPSE))
		fci = emv.AppendTLV(fci, 0xA5, emv.AppendTLV(nil, 0xBF0C, emv.AppendTLV(nil, 0x61, entry)))
		return sw(emv.AppendTLV(nil, 0x6F, fci), emv.SWSuccess)
	}
	if c == nil || !bytes.Equal(cmd.Data, c.AID) {
		return sw(nil, emv.SWFileNotFound)
	}
	s.sel = c
	prop := emv.AppendTLV(nil, 0x50, []byte(c.AppLabel))
	prop = emv.AppendTLV(prop, 0x87, []byte{byte(c.Priority)})
	prop = emv.AppendTLV(prop, 0x9F38, c.PDOL)
	fci := emv.AppendTLV(nil, 0x84, c.AID)
	fci = emv.AppendTLV(fci, 0xA5, prop)
	return sw(emv.AppendTLV(nil, 0x6F, fci), emv.SWSuccess)
}

// cvr is the card verification result of an online qPBOC transaction: 03
// (length), byte 2 A0 (ARQC returned at GPO, second AC not requested), no
// offline checks failed.
var cvr = [4]byte{0x03, 0xA0, 0x00, 0x00}

// ctqCDCVM is the CTQ (9F6C) for a transaction approved on the device:
// byte 2 bit 8, consumer device CVM performed.
var ctqCDCVM = []byte{0x00, 0x80}

func (s *SE) gpo(cmd emv.Command) []byte {
	c := s.sel
	if c == nil || cmd.P1 != 0 || cmd.P2 != 0 {
		return sw(nil, emv.SWConditionsNotSatisfied)
	}
	if len(cmd.Data) < 2 || cmd.Data[0] != 0x83 || int(cmd.Data[1]) != len(cmd.Data)-2 {
		return sw(nil, emv.SWWrongData)
	}
	vals, err := emv.SplitDOL(c.pdol, cmd.Data[2:])
	if err != nil {
		return sw(nil, emv.SWWrongLength)
	}
	// Not armed, armed for another card, or the window passed: "See phone".
	if s.armed.tokenRef != c.TokenRef || !s.now().Before(s.armed.until) {
		return sw(nil, emv.SWCommandNotAllowed)
	}
	if c.ATC == 0xFFFF {
		return sw(nil, emv.SWAuthMethodBlocked)
	}
	c.ATC++
	// The ATC is durable before the cryptogram leaves: a crash can skip an
	// ATC value, never reuse one.
	if err := s.persist(); err != nil {
		c.ATC--
		return sw(nil, emv.SWMemoryFailure)
	}
	s.armed = arming{} // one transaction per fingerprint
	var atc [2]byte
	binary.BigEndian.PutUint16(atc[:], c.ATC)
	tx := txData(vals, c.AIP, atc)
	mk := emv.Key(c.MK)
	sk := emv.SessionKeyPBOC(mk, c.ATC)
	arqc, err := emv.MACAlg3(sk[:], emv.ARQCDataPBOC(&tx, cvr), emv.PadMethod2)
	if err != nil {
		return sw(nil, emv.SWUnknown)
	}
	iad := []byte{0x07, c.KeyIndex, 0x01, cvr[0], cvr[1], cvr[2], cvr[3], 0x01}
	body := emv.AppendTLV(nil, 0x82, c.AIP)
	body = emv.AppendTLV(body, 0x94, c.AFL)
	body = emv.AppendTLV(body, 0x9F36, atc[:])
	body = emv.AppendTLV(body, 0x9F26, arqc[:])
	body = emv.AppendTLV(body, 0x9F27, []byte{0x80})
	body = emv.AppendTLV(body, 0x9F10, iad)
	body = emv.AppendTLV(body, 0x9F6C, ctqCDCVM)
	return sw(emv.AppendTLV(nil, 0x77, body), emv.SWSuccess)
}

// txData takes the PDOL values the terminal sent (absent ones stay zero).
func txData(v map[uint32][]byte, aip []byte, atc [2]byte) emv.TxData {
	var t emv.TxData
	copy(t.Amount[:], v[0x9F02])
	copy(t.AmountOther[:], v[0x9F03])
	copy(t.Country[:], v[0x9F1A])
	copy(t.TVR[:], v[0x95])
	copy(t.Currency[:], v[0x5F2A])
	copy(t.Date[:], v[0x9A])
	if b := v[0x9C]; len(b) == 1 {
		t.Type = b[0]
	}
	copy(t.Unpredictable[:], v[0x9F37])
	copy(t.AIP[:], aip)
	t.ATC = atc
	return t
}

func (s *SE) readRecord(cmd emv.Command) []byte {
	c := s.sel
	if c == nil {
		return sw(nil, emv.SWConditionsNotSatisfied)
	}
	if cmd.P2&0x07 != 0x04 {
		return sw(nil, emv.SWIncorrectP1P2)
	}
	sfi := int(cmd.P2 >> 3)
	r, ok := c.Records[recordKey(sfi, int(cmd.P1))]
	if !ok || !inAFL(c.AFL, sfi, int(cmd.P1)) {
		return sw(nil, emv.SWRecordNotFound)
	}
	return sw(append([]byte(nil), r...), emv.SWSuccess)
}

// inAFL reports whether the AFL (4-byte entries: SFI<<3, first, last, ODA
// count) names the record.
func inAFL(afl []byte, sfi, rec int) bool {
	for i := 0; i+4 <= len(afl); i += 4 {
		if int(afl[i]>>3) == sfi && rec >= int(afl[i+1]) && rec <= int(afl[i+2]) {
			return true
		}
	}
	return false
}

// paymentLimit is Options.MaxPaymentCards, or MaxPaymentCards.
func (s *SE) paymentLimit() int {
	if s.maxPayment > 0 {
		return s.maxPayment
	}
	return MaxPaymentCards
}
