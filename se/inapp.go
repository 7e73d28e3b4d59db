package se

import (
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/emv"
)

// In-app payment: the payment applet makes the same PBOC CVN 01 ARQC as at
// GET PROCESSING OPTIONS, for a purchase inside an app (e.g. paying a
// transit agency for a card or a top-up). Like a tap it needs the
// fingerprint: the applet must be armed for this card, and one arming pays
// once. The merchant sends the result as DE55 of an 0200 with POS entry mode
// 09x (in-app), where the TSP accepts the token in its in-app domain.

// InAppRequest is the purchase the app asks the applet to authorize.
type InAppRequest struct {
	TokenRef      string
	AmountMinor   int64   // CNY fen, at most 12 digits
	Currency      string  // ISO 4217 numeric, e.g. "156"
	Country       string  // ISO 3166 numeric of the merchant, e.g. "156"
	Unpredictable [4]byte // the merchant's unpredictable number
	Time          time.Time
}

// InAppCryptogram is what the app hands the merchant: the token and its
// card data, and the ICC data for DE55.
type InAppCryptogram struct {
	DPAN   string `json:"dpan"`
	PSN    int    `json:"psn"`
	Expiry string `json:"expiry"`       // YYMM, from the card's records
	Track2 string `json:"track2"`       // track 2 equivalent (57) as hex, "" if the card has none
	ATC    uint16 `json:"atc"`          // the transaction counter used
	ICC    []byte `json:"icc"`          // BER-TLV: 9F26 9F27 9F10 9F37 9F36 95 9A 9C 9F02 5F2A 82 9F1A 9F03 9F6C 84
	Entry  string `json:"posEntryMode"` // DE22 for this cryptogram: "091"
}

// InAppEntryMode is DE22 of an in-app payment with a cryptogram.
const InAppEntryMode = "091"

// InAppCryptogram makes the cryptogram of an in-app purchase with the card
// tokenRef. The applet must be armed for that card (fingerprint matched
// within the arm window); the arming is used up.
func (s *SE) InAppCryptogram(req InAppRequest) (InAppCryptogram, error) {
	if req.AmountMinor < 0 || req.AmountMinor > 999_999_999_999 {
		return InAppCryptogram{}, mipay.Errorf(mipay.EINVALID, "amount out of range")
	}
	cur, err1 := bcd2(req.Currency)
	ctry, err2 := bcd2(req.Country)
	if err1 != nil || err2 != nil {
		return InAppCryptogram{}, mipay.Errorf(mipay.EINVALID, "currency and country must be 3 digits")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.card(req.TokenRef)
	if c == nil {
		return InAppCryptogram{}, mipay.Errorf(mipay.ENOTFOUND, "no card %s in the secure element", req.TokenRef)
	}
	if s.armed.tokenRef != c.TokenRef || !s.now().Before(s.armed.until) {
		return InAppCryptogram{}, mipay.Errorf(mipay.EFORBIDDEN, "confirm the payment with your fingerprint first")
	}
	if c.ATC == 0xFFFF {
		return InAppCryptogram{}, mipay.Errorf(mipay.ELIMIT, "the card's transaction counter is exhausted")
	}
	c.ATC++
	if err := s.persist(); err != nil { // the ATC is durable before the cryptogram leaves
		c.ATC--
		return InAppCryptogram{}, err
	}
	s.armed = arming{}
	var atc [2]byte
	binary.BigEndian.PutUint16(atc[:], c.ATC)
	t := req.Time
	if t.IsZero() {
		t = s.now()
	}
	var tx emv.TxData
	amt, _ := hex.DecodeString(leftPad(strconv.FormatInt(req.AmountMinor, 10), 12))
	copy(tx.Amount[:], amt)
	tx.Country, tx.Currency = ctry, cur
	d, _ := hex.DecodeString(t.UTC().Format("060102"))
	copy(tx.Date[:], d)
	tx.Type = 0x00
	tx.Unpredictable = req.Unpredictable
	copy(tx.AIP[:], c.AIP)
	tx.ATC = atc
	sk := emv.SessionKeyPBOC(emv.Key(c.MK), c.ATC)
	arqc, err := emv.MACAlg3(sk[:], emv.ARQCDataPBOC(&tx, cvr), emv.PadMethod2)
	if err != nil {
		return InAppCryptogram{}, mipay.WrapError(mipay.EINTERNAL, err, "cryptogram")
	}
	iad := []byte{0x07, c.KeyIndex, 0x01, cvr[0], cvr[1], cvr[2], cvr[3], 0x01}
	icc := emv.AppendTLV(nil, 0x9F26, arqc[:])
	icc = emv.AppendTLV(icc, 0x9F27, []byte{0x80})
	icc = emv.AppendTLV(icc, 0x9F10, iad)
	icc = emv.AppendTLV(icc, 0x9F37, tx.Unpredictable[:])
	icc = emv.AppendTLV(icc, 0x9F36, atc[:])
	icc = emv.AppendTLV(icc, 0x95, tx.TVR[:])
	icc = emv.AppendTLV(icc, 0x9A, tx.Date[:])
	icc = emv.AppendTLV(icc, 0x9C, []byte{tx.Type})
	icc = emv.AppendTLV(icc, 0x9F02, tx.Amount[:])
	icc = emv.AppendTLV(icc, 0x5F2A, tx.Currency[:])
	icc = emv.AppendTLV(icc, 0x82, tx.AIP[:])
	icc = emv.AppendTLV(icc, 0x9F1A, tx.Country[:])
	icc = emv.AppendTLV(icc, 0x9F03, tx.AmountOther[:])
	icc = emv.AppendTLV(icc, 0x9F6C, ctqCDCVM)
	icc = emv.AppendTLV(icc, 0x84, c.AID)
	out := InAppCryptogram{DPAN: c.DPAN, PSN: c.PSN, ATC: c.ATC, ICC: icc, Entry: InAppEntryMode}
	out.Expiry, out.Track2 = c.expiryAndTrack2()
	return out, nil
}

// expiryAndTrack2 reads 5F24 (YYMMDD) and 57 from the card's records.
func (c *paymentCard) expiryAndTrack2() (expiry, track2 string) {
	for _, r := range c.Records {
		tlvs, err := emv.DecodeTLV(r)
		if err != nil {
			continue
		}
		if v, ok := emv.Search(tlvs, 0x5F24); ok && len(v.Value) >= 2 && expiry == "" {
			expiry = hex.EncodeToString(v.Value[:2])
		}
		if v, ok := emv.Search(tlvs, 0x57); ok && track2 == "" {
			track2 = hex.EncodeToString(v.Value)
			if expiry == "" { // track 2: PAN D YYMM …
				if i := indexNibble(track2, 'd'); i >= 0 && i+5 <= len(track2) {
					expiry = track2[i+1 : i+5]
				}
			}
		}
	}
	return expiry, track2
}

func indexNibble(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func leftPad(s string, n int) string {
	for len(s) < n {
		s = "0" + s
	}
	return s
}

// bcd2 packs a 3-digit code as 2 BCD bytes (0156).
func bcd2(code string) ([2]byte, error) {
	if len(code) != 3 {
		return [2]byte{}, mipay.Errorf(mipay.EINVALID, "want 3 digits")
	}
	b, err := hex.DecodeString("0" + code)
	if err != nil {
		return [2]byte{}, err
	}
	return [2]byte(b), nil
}
