// Package pos is the acquirer side: a UnionPay QuickPass contactless
// terminal (reader kernel over the nfc link), its ISO 8583 client to the
// network, and the terminal's own store (counters, transaction history).
package pos

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/mipay-oss/mipay/emv"
)

// Outcomes of a contactless read (EMV Book A "outcomes", qPBOC flavour).
const (
	OutcomeOnline   = "ONLINE_REQUEST" // cryptogram read; go online
	OutcomeApproved = "APPROVED"
	OutcomeDeclined = "DECLINED"
	OutcomeSeePhone = "SEE_PHONE" // the phone wants the user's approval; tap again
	OutcomeTryAgain = "TRY_AGAIN" // the tap was cut short; present the phone again
	OutcomeEnd      = "END_APPLICATION"
)

// Supported AIDs in order of preference when the card gives no priority.
var supportedAIDs = [][]byte{
	mustHex("A000000333010101"), // UnionPay debit
	mustHex("A000000333010102"), // UnionPay credit
	mustHex("A000000333010103"), // UnionPay quasi-credit
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// TerminalProfile is the terminal's fixed EMV data.
type TerminalProfile struct {
	Country      [2]byte // 9F1A, n3 BCD ("0156")
	TTQ          [4]byte // 9F66
	Capabilities [3]byte // 9F33
	Type         byte    // 9F35
	IFDSerial    [8]byte // 9F1E
	AppVersion   [2]byte // 9F09
}

// DefaultTerminalProfile is an attended, online-only QuickPass terminal in
// China: TTQ 36 80 00 00 (qPBOC, contact chip, online PIN and signature
// supported; online cryptogram required).
func DefaultTerminalProfile() TerminalProfile {
	p := TerminalProfile{
		Country:      [2]byte{0x01, 0x56},
		TTQ:          [4]byte{0x36, 0x80, 0x00, 0x00},
		Capabilities: [3]byte{0xE0, 0xE1, 0xC8},
		Type:         0x22,
		AppVersion:   [2]byte{0x00, 0x30},
	}
	copy(p.IFDSerial[:], "MIPAYPOS")
	return p
}

// CardSession is the card in the field (an nfc.Session).
type CardSession interface {
	Transmit(ctx context.Context, apdu []byte) ([]byte, error)
}

// Txn is what the kernel is asked to do.
type Txn struct {
	AmountMinor int64
	Currency    [2]byte // 5F2A, n3 BCD
	Type        byte    // 9C: 00 purchase
	Time        time.Time
	TTC         uint32 // 9F41 transaction sequence counter
}

// Read is what came off the card.
type Read struct {
	Outcome string
	AID     []byte
	Token   string // the PAN the card presents (a token for Mi Pay)
	Expiry  string // YYMM
	PSN     string // "01"
	Track2  string // ASCII, 'D' separator, no padding
	ICC     []byte // DE55 for the authorization request
	ATC     uint16
	CDCVM   bool // CTQ says the consumer device CVM was performed
	SW      uint16
}

// Kernel is a qPBOC reader kernel.
type Kernel struct {
	Profile TerminalProfile
}

// Errors of a read that end it without an outcome the user can act on.
var errCard = errors.New("pos: card answered out of protocol")

// ReadCard runs entry point and the qPBOC kernel: SELECT PPSE, choose the
// AID by priority, SELECT it, build the PDOL, GET PROCESSING OPTIONS, READ
// RECORD per AFL. A card that answers GPO with 6986 gives OutcomeSeePhone.
func (k *Kernel) ReadCard(ctx context.Context, card CardSession, t Txn) (*Read, error) {
	fci, swd, err := exchange(ctx, card, selectAPDU([]byte("2PAY.SYS.DDF01")))
	if err != nil {
		return tryAgain(err)
	}
	if swd != emv.SWSuccess {
		return &Read{Outcome: OutcomeEnd, SW: swd}, nil
	}
	aid, err := chooseAID(fci)
	if err != nil {
		return &Read{Outcome: OutcomeEnd}, err
	}
	afci, swd, err := exchange(ctx, card, selectAPDU(aid))
	if err != nil {
		return tryAgain(err)
	}
	if swd != emv.SWSuccess {
		return &Read{Outcome: OutcomeEnd, SW: swd, AID: aid}, nil
	}
	pdol, err := pdolOf(afci)
	if err != nil {
		return &Read{Outcome: OutcomeEnd, AID: aid}, err
	}
	values, err := k.terminalValues(t)
	if err != nil {
		return nil, err
	}
	pdolData := emv.BuildDOL(pdol, values)
	gpo := append([]byte{0x80, 0xA8, 0x00, 0x00, byte(len(pdolData) + 2), 0x83, byte(len(pdolData))}, pdolData...)
	gpo = append(gpo, 0x00)
	resp, swd, err := exchange(ctx, card, gpo)
	if err != nil {
		return tryAgain(err)
	}
	switch swd {
	case emv.SWSuccess:
	case emv.SWCommandNotAllowed:
		return &Read{Outcome: OutcomeSeePhone, AID: aid, SW: swd}, nil
	default:
		return &Read{Outcome: OutcomeEnd, AID: aid, SW: swd}, nil
	}
	r := &Read{Outcome: OutcomeOnline, AID: aid}
	card2, err := k.readRecords(ctx, card, resp)
	if err != nil {
		if errors.Is(err, errCard) {
			return &Read{Outcome: OutcomeEnd, AID: aid}, err
		}
		return tryAgain(err)
	}
	if err := r.fill(resp, card2, values, aid, k.Profile, t); err != nil {
		return &Read{Outcome: OutcomeEnd, AID: aid}, err
	}
	return r, nil
}

func tryAgain(err error) (*Read, error) {
	return &Read{Outcome: OutcomeTryAgain}, err
}

func selectAPDU(name []byte) []byte {
	return append(append([]byte{0x00, 0xA4, 0x04, 0x00, byte(len(name))}, name...), 0x00)
}

func exchange(ctx context.Context, card CardSession, apdu []byte) ([]byte, uint16, error) {
	resp, err := card.Transmit(ctx, apdu)
	if err != nil {
		return nil, 0, err
	}
	r, err := emv.ParseResponse(resp)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", errCard, err)
	}
	return r.Data, r.SW, nil
}

// chooseAID picks the supported AID with the best (lowest) priority from the
// PPSE directory.
func chooseAID(fci []byte) ([]byte, error) {
	tlvs, err := emv.DecodeTLV(fci)
	if err != nil {
		return nil, fmt.Errorf("%w: PPSE: %w", errCard, err)
	}
	dir, ok := emv.Find(tlvs, "6F.A5.BF0C")
	if !ok {
		return nil, fmt.Errorf("%w: PPSE without a directory", errCard)
	}
	var best []byte
	bestPrio := 16
	for _, e := range dir.Children {
		if e.Tag != 0x61 {
			continue
		}
		aid, ok := emv.FindTag(e.Children, 0x4F)
		if !ok || !supported(aid.Value) {
			continue
		}
		prio := 15
		if p, ok := emv.FindTag(e.Children, 0x87); ok && len(p.Value) == 1 && p.Value[0]&0x0F != 0 {
			prio = int(p.Value[0] & 0x0F)
		}
		if prio < bestPrio {
			best, bestPrio = aid.Value, prio
		}
	}
	if best == nil {
		return nil, fmt.Errorf("pos: the card offers no UnionPay application")
	}
	return best, nil
}

func supported(aid []byte) bool {
	for _, a := range supportedAIDs {
		if bytes.Equal(a, aid) {
			return true
		}
	}
	return false
}

func pdolOf(fci []byte) ([]emv.DOLEntry, error) {
	tlvs, err := emv.DecodeTLV(fci)
	if err != nil {
		return nil, fmt.Errorf("%w: FCI: %w", errCard, err)
	}
	p, ok := emv.Find(tlvs, "6F.A5.9F38")
	if !ok {
		return nil, fmt.Errorf("%w: the application asks no PDOL (qPBOC needs one)", errCard)
	}
	return emv.ParseDOL(p.Value)
}

func (k *Kernel) terminalValues(t Txn) (map[uint32][]byte, error) {
	amount, err := bcdAmount(t.AmountMinor)
	if err != nil {
		return nil, err
	}
	un := make([]byte, 4)
	if _, err := rand.Read(un); err != nil {
		return nil, err
	}
	ts := t.Time.UTC()
	date := bcd(fmt.Sprintf("%02d%02d%02d", ts.Year()%100, int(ts.Month()), ts.Day()))
	ttc := bcd(fmt.Sprintf("%08d", t.TTC%100000000))
	p := k.Profile
	return map[uint32][]byte{
		0x9F66: p.TTQ[:], 0x9F02: amount, 0x9F03: make([]byte, 6), 0x9F1A: p.Country[:],
		0x95: make([]byte, 5), 0x5F2A: t.Currency[:], 0x9A: date, 0x9C: {t.Type}, 0x9F37: un,
		0x9F33: p.Capabilities[:], 0x9F35: {p.Type}, 0x9F1E: p.IFDSerial[:], 0x9F09: p.AppVersion[:],
		0x9F41: ttc,
	}, nil
}

// readRecords reads every record the AFL in the GPO answer names.
func (k *Kernel) readRecords(ctx context.Context, card CardSession, gpo []byte) ([]emv.TLV, error) {
	tlvs, err := emv.DecodeTLV(gpo)
	if err != nil {
		return nil, fmt.Errorf("%w: GPO: %w", errCard, err)
	}
	afl, ok := emv.Find(tlvs, "77.94")
	if !ok || len(afl.Value)%4 != 0 || len(afl.Value) > 64 {
		return nil, fmt.Errorf("%w: GPO answer without a valid AFL", errCard)
	}
	var out []emv.TLV
	for i := 0; i < len(afl.Value); i += 4 {
		sfi := afl.Value[i] >> 3
		for rec := afl.Value[i+1]; rec <= afl.Value[i+2] && rec != 0; rec++ {
			data, swd, err := exchange(ctx, card, []byte{0x00, 0xB2, rec, sfi<<3 | 4, 0x00})
			if err != nil {
				return nil, err
			}
			if swd != emv.SWSuccess {
				return nil, fmt.Errorf("%w: READ RECORD %d/%d: %04X", errCard, sfi, rec, swd)
			}
			r, err := emv.DecodeTLV(data)
			if err != nil || len(r) != 1 || r[0].Tag != 0x70 {
				return nil, fmt.Errorf("%w: record %d/%d is not a template 70", errCard, sfi, rec)
			}
			out = append(out, r[0].Children...)
			if rec == 0xFF {
				break
			}
		}
	}
	return out, nil
}

// de55Tags is the order of DE55 in the authorization request (DESIGN.md).
var de55Tags = []uint32{0x9F26, 0x9F27, 0x9F10, 0x9F37, 0x9F36, 0x95, 0x9A, 0x9C, 0x9F02, 0x5F2A,
	0x82, 0x9F1A, 0x9F03, 0x9F33, 0x9F34, 0x9F35, 0x9F1E, 0x84, 0x9F09, 0x9F41, 0x9F6C, 0x9F66}

// fill takes the card's data and builds DE55.
func (r *Read) fill(gpo []byte, records []emv.TLV, term map[uint32][]byte, aid []byte, p TerminalProfile, t Txn) error {
	g, err := emv.DecodeTLV(gpo)
	if err != nil || len(g) != 1 || g[0].Tag != 0x77 {
		return fmt.Errorf("%w: GPO answer is not a template 77", errCard)
	}
	card := map[uint32][]byte{}
	for _, e := range append(append([]emv.TLV(nil), g[0].Children...), records...) {
		card[e.Tag] = e.Value
	}
	for _, tag := range []uint32{0x9F26, 0x9F27, 0x9F10, 0x9F36, 0x82} {
		if _, ok := card[tag]; !ok {
			return fmt.Errorf("%w: card data lacks tag %X", errCard, tag)
		}
	}
	if len(card[0x9F36]) != 2 {
		return fmt.Errorf("%w: ATC of %d bytes", errCard, len(card[0x9F36]))
	}
	r.ATC = binary.BigEndian.Uint16(card[0x9F36])
	if ctq := card[0x9F6C]; len(ctq) == 2 && ctq[1]&0x80 != 0 {
		r.CDCVM = true
	}
	t2, ok := card[0x57]
	if !ok {
		return fmt.Errorf("%w: no track 2 equivalent data", errCard)
	}
	r.Track2 = track2Text(t2)
	pan, exp, ok := splitTrack2(r.Track2)
	if !ok {
		return fmt.Errorf("%w: malformed track 2 equivalent data", errCard)
	}
	r.Token, r.Expiry = pan, exp
	if v, ok := card[0x5A]; ok {
		if p := trimF(hex.EncodeToString(v)); p != pan {
			return fmt.Errorf("%w: 5A and track 2 disagree", errCard)
		}
	}
	r.PSN = "00"
	if v, ok := card[0x5F34]; ok && len(v) == 1 {
		r.PSN = fmt.Sprintf("%02X", v[0])
	}
	cvm := []byte{0x3F, 0x00, 0x00} // no CVM performed
	if r.CDCVM {
		cvm = []byte{0x1F, 0x00, 0x02} // CDCVM on the device, successful
	}
	all := map[uint32][]byte{0x84: aid, 0x9F34: cvm}
	for k, v := range term {
		all[k] = v
	}
	for k, v := range card {
		all[k] = v
	}
	var icc []byte
	for _, tag := range de55Tags {
		if v, ok := all[tag]; ok {
			icc = emv.AppendTLV(icc, tag, v)
		}
	}
	r.ICC = icc
	return nil
}

func track2Text(b []byte) string {
	s := []byte(hex.EncodeToString(b))
	for i, c := range s {
		if c == 'd' {
			s[i] = 'D'
		}
	}
	return trimF(string(s))
}

func trimF(s string) string {
	for len(s) > 0 && (s[len(s)-1] == 'f' || s[len(s)-1] == 'F') {
		s = s[:len(s)-1]
	}
	return s
}

// splitTrack2 returns the PAN and YYMM expiry of track 2 text.
func splitTrack2(t string) (pan, expiry string, ok bool) {
	i := bytes.IndexByte([]byte(t), 'D')
	if i < 12 || i > 19 || len(t) < i+5 {
		return "", "", false
	}
	for _, c := range t[:i+5] {
		if c != 'D' && (c < '0' || c > '9') {
			return "", "", false
		}
	}
	return t[:i], t[i+1 : i+5], true
}

func bcdAmount(minor int64) ([]byte, error) {
	if minor < 0 || minor > 999999999999 {
		return nil, fmt.Errorf("pos: amount %d out of range", minor)
	}
	return bcd(fmt.Sprintf("%012d", minor)), nil
}

func bcd(digits string) []byte {
	b, _ := hex.DecodeString(digits)
	return b
}

// CurrencyBCD turns a numeric ISO 4217 code ("156") into 5F2A bytes.
func CurrencyBCD(code string) ([2]byte, error) {
	n, err := strconv.Atoi(code)
	if err != nil || n < 0 || n > 999 || len(code) != 3 {
		return [2]byte{}, fmt.Errorf("pos: currency %q is not a 3-digit ISO 4217 code", code)
	}
	var out [2]byte
	copy(out[:], bcd(fmt.Sprintf("%04d", n)))
	return out, nil
}
