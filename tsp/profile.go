package tsp

import (
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/mipay-oss/mipay/config"
)

// The SE card profile. GET /v1/tokens/{ref}/provisioning answers a Profile as
// JSON; the wallet relays it to the phone unchanged and the SE's payment
// applet is personalised from exactly these fields. Binary fields are
// uppercase hex strings (EMV data objects), the sealed key is base64 (JSON
// []byte).

// ProfileVersion is the version of the Profile layout.
const ProfileVersion = 1

// UnionPay application identifiers.
const (
	AIDDebit  = "A000000333010101"
	AIDCredit = "A000000333010102"
)

// PBOC 3.0 CVN 01 constants of the token's cryptogram (see DESIGN.md
// "Cryptograms"): IAD 9F10 = 07 ‖ key index ‖ CVN ‖ CVR (4) ‖ algorithm id.
const (
	CVN01           = 0x01
	AlgorithmTDES   = 0x01
	DefaultKeyIdx   = 0x01
	iadLengthByte   = 0x07
	cvrLengthByte   = 0x03
	iadMinBytes     = 8      // 07 ‖ key index ‖ CVN ‖ CVR(4) ‖ algorithm
	ProfileAIP      = "1800" // cardholder verification + terminal risk management supported
	ProfileAFL      = "08010200"
	ProfileCountry  = "0156" // 5F28 issuer country: China
	ProfileCurrency = "0156" // 9F51 application currency: CNY
	// ProfilePDOL is the qPBOC PDOL: TTQ, amount, other amount, terminal
	// country, TVR, currency, date, type, unpredictable number — exactly the
	// terminal data the ARQC is computed over.
	ProfilePDOL = "9F66049F02069F03069F1A0295055F2A029A039C019F3704"
	// CTQByte2CDCVM is the bit of CTQ (9F6C) byte 2 that says the consumer
	// device CVM (the fingerprint) was performed (qPBOC / qVSDC).
	CTQByte2CDCVM = 0x80
	// ProfileCardholderName goes in 5F20: the token carries no personal name.
	ProfileCardholderName = "MI PAY/TOKEN"
	// ProfileServiceCode is track 2's service code: international chip card,
	// online authorisation, no restrictions.
	ProfileServiceCode = "220"
)

// Profile is everything the SE needs to install a payment applet instance
// for one token.
type Profile struct {
	Version          int    `json:"version"`
	TokenRef         string `json:"tokenUniqueReference"`
	TokenRequestorID string `json:"tokenRequestorId"`
	IssuerID         string `json:"issuerId"`
	CardType         string `json:"cardType"` // "debit" | "credit"
	DPAN             string `json:"dpan"`
	Expiry           string `json:"expiry"` // YYMM
	PSN              int    `json:"psn"`
	AID              string `json:"aid"`      // hex
	AppLabel         string `json:"appLabel"` // 50
	AppPriority      int    `json:"appPriority"`
	AIP              string `json:"aip"`  // hex, 82
	AFL              string `json:"afl"`  // hex, 94
	PDOL             string `json:"pdol"` // hex, 9F38 value
	IssuerCountry    string `json:"issuerCountry"`
	Currency         string `json:"currency"`
	KeyIndex         int    `json:"keyIndex"`    // IAD byte 2
	CVN              int    `json:"cvn"`         // IAD byte 3: 1
	AlgorithmID      int    `json:"algorithmId"` // IAD byte 8: 1 = 3DES
	// Records are the READ RECORD answers (template 70), per AFL.
	Records []ProfileRecord `json:"records"`
	// SealedKey is the token's ICC master key for application cryptograms
	// (16 bytes, 3DES, odd parity), sealed with cryptobox to the SE's public
	// key with AAD = ProfileKeyAAD(seId, tokenRef). Only the SE can open it.
	SealedKey []byte `json:"sealedKey"`
	SEID      string `json:"seId"`
}

// ProfileRecord is one record the applet answers READ RECORD with.
type ProfileRecord struct {
	SFI    int    `json:"sfi"`
	Number int    `json:"record"`
	Data   string `json:"data"` // hex: the whole template 70 L V
}

// ProfileKeyAAD is the additional data the ICC key is sealed with: it binds
// the blob to one SE and one token, so a profile cannot be installed on
// another SE or under another token.
func ProfileKeyAAD(seID, tokenRef string) []byte {
	return []byte("mipay tsp icc key v1\x00" + seID + "\x00" + tokenRef)
}

// CardDataAAD is the additional data the phone seals card data with
// (cryptobox.Seal to the key of GET /v1/keys/encryption): it binds the blob
// to the token requestor it is sent for.
func CardDataAAD(tokenRequestorID string) []byte {
	return []byte("mipay tsp card data v1\x00" + tokenRequestorID)
}

// AIDFor returns the UnionPay AID of a card type.
func AIDFor(cardType string) string {
	if cardType == config.Credit {
		return AIDCredit
	}
	return AIDDebit
}

func appLabelFor(cardType string) string {
	if cardType == config.Credit {
		return "UnionPay Credit"
	}
	return "UnionPay Debit"
}

// buildProfile lays out the token's card profile.
func buildProfile(t *Token, sealedKey []byte) (Profile, error) {
	rec1, err := record1(t)
	if err != nil {
		return Profile{}, err
	}
	rec2, err := record2(t)
	if err != nil {
		return Profile{}, err
	}
	return Profile{
		Version:          ProfileVersion,
		TokenRef:         t.Ref,
		TokenRequestorID: t.RequestorID,
		IssuerID:         t.IssuerID,
		CardType:         t.CardType,
		DPAN:             t.DPAN,
		Expiry:           t.Expiry,
		PSN:              t.PSN,
		AID:              AIDFor(t.CardType),
		AppLabel:         appLabelFor(t.CardType),
		AppPriority:      1,
		AIP:              ProfileAIP,
		AFL:              ProfileAFL,
		PDOL:             ProfilePDOL,
		IssuerCountry:    ProfileCountry,
		Currency:         ProfileCurrency,
		KeyIndex:         int(t.KeyIndex),
		CVN:              CVN01,
		AlgorithmID:      AlgorithmTDES,
		Records: []ProfileRecord{
			{SFI: 1, Number: 1, Data: strings.ToUpper(hex.EncodeToString(rec1))},
			{SFI: 1, Number: 2, Data: strings.ToUpper(hex.EncodeToString(rec2))},
		},
		SealedKey: sealedKey,
		SEID:      t.SEID,
	}, nil
}

// record1: track 2 equivalent data (57) and cardholder name (5F20).
func record1(t *Token) ([]byte, error) {
	t2, err := track2(t.DPAN, t.Expiry)
	if err != nil {
		return nil, err
	}
	var body []byte
	body = tlv(body, []byte{0x57}, t2)
	body = tlv(body, []byte{0x5F, 0x20}, []byte(ProfileCardholderName))
	return tlv(nil, []byte{0x70}, body), nil
}

// record2: PAN (5A), expiry (5F24), issuer country (5F28), PSN (5F34).
func record2(t *Token) ([]byte, error) {
	pan, err := bcdPadF(t.DPAN)
	if err != nil {
		return nil, err
	}
	exp, err := expiryYYMMDD(t.Expiry)
	if err != nil {
		return nil, err
	}
	country, _ := hex.DecodeString(ProfileCountry)
	var body []byte
	body = tlv(body, []byte{0x5A}, pan)
	body = tlv(body, []byte{0x5F, 0x24}, exp)
	body = tlv(body, []byte{0x5F, 0x28}, country)
	body = tlv(body, []byte{0x5F, 0x34}, []byte{byte(t.PSN/10<<4 | t.PSN%10)})
	return tlv(nil, []byte{0x70}, body), nil
}

// track2 builds the track 2 equivalent: PAN ‖ D ‖ YYMM ‖ service code ‖
// discretionary data, as nibbles, padded with F.
func track2(pan, expiry string) ([]byte, error) {
	s := pan + "D" + expiry + ProfileServiceCode + "00000"
	return bcdPadF(s)
}

// bcdPadF packs digits (and 'D' separators) two per byte, padding with F.
func bcdPadF(s string) ([]byte, error) {
	if len(s)%2 == 1 {
		s += "F"
	}
	out := make([]byte, len(s)/2)
	for i := 0; i < len(s); i++ {
		c := s[i]
		var n byte
		switch {
		case c >= '0' && c <= '9':
			n = c - '0'
		case c == 'D' || c == 'F':
			n = c - 'A' + 10
		default:
			return nil, fmt.Errorf("tsp: cannot pack %q as BCD", c)
		}
		if i%2 == 0 {
			out[i/2] = n << 4
		} else {
			out[i/2] |= n
		}
	}
	return out, nil
}

// expiryYYMMDD turns YYMM into the YYMMDD (last day of the month) BCD bytes.
func expiryYYMMDD(yymm string) ([]byte, error) {
	end, err := expiryEnd(yymm)
	if err != nil {
		return nil, err
	}
	last := end.AddDate(0, 0, -1)
	return bcdPadF(yymm + fmt.Sprintf("%02d", last.Day()))
}

// expiryEnd is the first instant after a YYMM expiry month (UTC).
func expiryEnd(yymm string) (time.Time, error) {
	if !validExpiry(yymm) {
		return time.Time{}, fmt.Errorf("tsp: bad expiry %q", yymm)
	}
	y := 2000 + int(yymm[0]-'0')*10 + int(yymm[1]-'0')
	m := int(yymm[2]-'0')*10 + int(yymm[3]-'0')
	return time.Date(y, time.Month(m)+1, 1, 0, 0, 0, 0, time.UTC), nil
}

// tlv appends tag ‖ length ‖ value (BER definite length) to dst.
func tlv(dst, tag, value []byte) []byte {
	dst = append(dst, tag...)
	switch n := len(value); {
	case n < 0x80:
		dst = append(dst, byte(n))
	case n < 0x100:
		dst = append(dst, 0x81, byte(n))
	default:
		dst = append(dst, 0x82, byte(n>>8), byte(n))
	}
	return append(dst, value...)
}
