package emv

import (
	"crypto/subtle"
	"encoding/binary"
	"fmt"
)

// TxData holds the terminal and card data objects every ARQC covers, in
// the order PBOC CVN 01, Visa CVN 10/18 and Mastercard CVN 16 MAC them:
// 9F02‖9F03‖9F1A‖95‖5F2A‖9A‖9C‖9F37‖82‖9F36.
type TxData struct {
	Amount        [6]byte // 9F02, n12
	AmountOther   [6]byte // 9F03, n12
	Country       [2]byte // 9F1A, n3
	TVR           [5]byte // 95
	Currency      [2]byte // 5F2A, n3
	Date          [3]byte // 9A, YYMMDD
	Type          byte    // 9C
	Unpredictable [4]byte // 9F37
	AIP           [2]byte // 82
	ATC           [2]byte // 9F36
}

// TxDataLen is the encoded length of TxData in bytes.
const TxDataLen = 6 + 6 + 2 + 5 + 2 + 3 + 1 + 4 + 2 + 2

// AppendTxData appends the fields of t in ARQC order.
func AppendTxData(dst []byte, t *TxData) []byte {
	dst = append(dst, t.Amount[:]...)
	dst = append(dst, t.AmountOther[:]...)
	dst = append(dst, t.Country[:]...)
	dst = append(dst, t.TVR[:]...)
	dst = append(dst, t.Currency[:]...)
	dst = append(dst, t.Date[:]...)
	dst = append(dst, t.Type)
	dst = append(dst, t.Unpredictable[:]...)
	dst = append(dst, t.AIP[:]...)
	return append(dst, t.ATC[:]...)
}

// ATCValue is the ATC as a number.
func (t *TxData) ATCValue() uint16 { return binary.BigEndian.Uint16(t.ATC[:]) }

// TxDataFromTLV fills a TxData from a flat list of data objects (DE55, a
// GPO answer plus the PDOL values). Every tag must be present with its
// exact length.
func TxDataFromTLV(tlvs []TLV) (TxData, error) {
	var t TxData
	fields := []struct {
		tag uint32
		dst []byte
	}{
		{0x9F02, t.Amount[:]}, {0x9F03, t.AmountOther[:]}, {0x9F1A, t.Country[:]},
		{0x95, t.TVR[:]}, {0x5F2A, t.Currency[:]}, {0x9A, t.Date[:]},
		{0x9C, []byte{0}}, {0x9F37, t.Unpredictable[:]}, {0x82, t.AIP[:]},
		{0x9F36, t.ATC[:]},
	}
	for _, f := range fields {
		v, ok := FindTag(tlvs, f.tag)
		if !ok {
			return TxData{}, fmt.Errorf("%w: tag %X missing", ErrBadInput, f.tag)
		}
		if len(v.Value) != len(f.dst) {
			return TxData{}, fmt.Errorf("%w: tag %X has %d bytes, want %d", ErrBadInput, f.tag, len(v.Value), len(f.dst))
		}
		copy(f.dst, v.Value)
		if f.tag == 0x9C {
			t.Type = v.Value[0]
		}
	}
	return t, nil
}

// ARQCDataPBOC is the PBOC 3.0 CVN 01 ARQC input: TxData ‖ CVR (the 4
// bytes 03 xx xx xx following the CVN in the IAD).
func ARQCDataPBOC(t *TxData, cvr [4]byte) []byte {
	return append(AppendTxData(make([]byte, 0, TxDataLen+4), t), cvr[:]...)
}

// ARQCDataVisaCVN10 is the Visa CVN 10 ARQC input: TxData ‖ CVR (4 bytes,
// length byte 03 first). It is MACed with the ICC MK and padding method 1.
func ARQCDataVisaCVN10(t *TxData, cvr [4]byte) []byte {
	return append(AppendTxData(make([]byte, 0, TxDataLen+4), t), cvr[:]...)
}

// ARQCDataVisaCVN18 is the Visa CVN 18 ARQC input: TxData ‖ the whole IAD
// (9F10 value). It is MACed with the common session key, padding method 2.
func ARQCDataVisaCVN18(t *TxData, iad []byte) []byte {
	return append(AppendTxData(make([]byte, 0, TxDataLen+len(iad)), t), iad...)
}

// ARQCDataMastercardCVN16 is the M/Chip CVN 16 ARQC input: TxData ‖ CVR (6
// bytes). It is MACed with the SKD session key, padding method 2.
func ARQCDataMastercardCVN16(t *TxData, cvr [6]byte) []byte {
	return append(AppendTxData(make([]byte, 0, TxDataLen+6), t), cvr[:]...)
}

// IADPBOC is the PBOC 3.0 Issuer Application Data (9F10): 07 ‖ key index ‖
// CVN ‖ CVR (03 + 3 bytes) ‖ algorithm id ‖ issuer discretionary data.
type IADPBOC struct {
	KeyIndex      byte
	CVN           byte
	CVR           [4]byte
	AlgorithmID   byte // 01 = 3DES, 04 = SM4
	Discretionary []byte
}

// PBOC constants.
const (
	CVNPBOC01    = 0x01
	AlgPBOC3DES  = 0x01
	AlgPBOCSM4   = 0x04
	iadPBOCFixed = 8 // 07 ‖ key index ‖ CVN ‖ CVR(4) ‖ algorithm id
	// MaxIADBytes is the longest IAD accepted (EMV: 32 bytes).
	MaxIADBytes = 32
)

// ParseIADPBOC parses a PBOC IAD.
func ParseIADPBOC(b []byte) (IADPBOC, error) {
	if len(b) < iadPBOCFixed || len(b) > MaxIADBytes {
		return IADPBOC{}, fmt.Errorf("%w: PBOC IAD of %d bytes", ErrBadInput, len(b))
	}
	if b[0] != 0x07 || b[3] != 0x03 {
		return IADPBOC{}, fmt.Errorf("%w: PBOC IAD lengths %02X/%02X (want 07/03)", ErrBadInput, b[0], b[3])
	}
	iad := IADPBOC{KeyIndex: b[1], CVN: b[2], AlgorithmID: b[7], Discretionary: b[8:]}
	copy(iad.CVR[:], b[3:7])
	return iad, nil
}

// Bytes encodes the IAD.
func (iad IADPBOC) Bytes() []byte {
	out := make([]byte, 0, iadPBOCFixed+len(iad.Discretionary))
	out = append(out, 0x07, iad.KeyIndex, iad.CVN)
	out = append(out, iad.CVR[:]...)
	out = append(out, iad.AlgorithmID)
	return append(out, iad.Discretionary...)
}

// Scheme names an ARQC scheme: how the ICC master key turns into the
// cryptogram key and which padding the MAC uses.
type Scheme string

// ARQC schemes.
const (
	SchemePBOC       Scheme = "pboc"       // PBOC session key, padding 2
	SchemeCSK        Scheme = "csk"        // EMV common session key R = ATC‖000000000000 (Visa CVN 18), padding 2
	SchemeVisaCVN10  Scheme = "visa-cvn10" // ICC MK itself, padding 1
	SchemeMastercard Scheme = "mc-skd"     // Mastercard SKD R = ATC‖0000‖UN (CVN 16), padding 2
)

// ParseScheme checks a scheme name.
func ParseScheme(s string) (Scheme, error) {
	switch sc := Scheme(s); sc {
	case SchemePBOC, SchemeCSK, SchemeVisaCVN10, SchemeMastercard:
		return sc, nil
	}
	return "", fmt.Errorf("%w: unknown scheme %q (want pboc, csk, visa-cvn10 or mc-skd)", ErrBadInput, s)
}

// CryptogramKey is the key the scheme MACs the ARQC with.
func (s Scheme) CryptogramKey(mk Key, atc uint16, un [4]byte) Key {
	switch s {
	case SchemePBOC:
		return SessionKeyPBOC(mk, atc)
	case SchemeCSK:
		return SessionKeyVisaCVN18(mk, atc)
	case SchemeMastercard:
		return SessionKeyMastercard(mk, atc, un)
	}
	return mk
}

// Padding is the ISO 9797-1 padding method of the scheme's ARQC MAC.
func (s Scheme) Padding() int {
	if s == SchemeVisaCVN10 {
		return PadMethod1
	}
	return PadMethod2
}

// GenerateARQC runs the whole chain: ICC MK from the IMK (DeriveICCMK),
// the scheme's key, and the MAC over data.
func GenerateARQC(s Scheme, imk []byte, pan string, psn int, atc uint16, un [4]byte, data []byte) ([8]byte, error) {
	if _, err := ParseScheme(string(s)); err != nil {
		return [8]byte{}, err
	}
	mk, err := DeriveICCMK(imk, pan, psn)
	if err != nil {
		return [8]byte{}, err
	}
	key := s.CryptogramKey(mk, atc, un)
	return MACAlg3(key[:], data, s.Padding())
}

// ARPCMethod1 is EMV ARPC method 1 (Book 2 A1.2.1): 3DES(key, ARQC xor
// (ARC‖000000000000)). For PBOC, tag 91 = ARPC ‖ ARC.
func ARPCMethod1(key Key, arqc [8]byte, arc [2]byte) [8]byte {
	var k tdesKey
	k.setKeyBytes(key[:])
	x := binary.BigEndian.Uint64(arqc[:]) ^ uint64(binary.BigEndian.Uint16(arc[:]))<<48
	return block8(k.encrypt(x))
}

// MaxProprietaryAuthBytes bounds the proprietary authentication data of
// ARPC method 2 (EMV: 0–8 bytes).
const MaxProprietaryAuthBytes = 8

// ARPCMethod2 is EMV ARPC method 2 (Book 2 A1.2.2): the leftmost 4 bytes of
// MAC algorithm 3 (padding 2) over ARQC ‖ CSU ‖ proprietary authentication
// data. Tag 91 = ARPC ‖ CSU ‖ proprietary data.
func ARPCMethod2(key Key, arqc [8]byte, csu [4]byte, propAuth []byte) ([4]byte, error) {
	if len(propAuth) > MaxProprietaryAuthBytes {
		return [4]byte{}, fmt.Errorf("%w: proprietary authentication data of %d bytes (max %d)", ErrBadInput, len(propAuth), MaxProprietaryAuthBytes)
	}
	var data [8 + 4 + MaxProprietaryAuthBytes]byte
	copy(data[:8], arqc[:])
	copy(data[8:12], csu[:])
	n := 12 + copy(data[12:], propAuth)
	var k tdesKey
	k.setKeyBytes(key[:])
	mac := block8(macAlg3(&k, data[:n], PadMethod2))
	return [4]byte(mac[:4]), nil
}

// VerifyARQCPBOC is the switch's fast path for a PBOC CVN 01 cryptogram: it
// derives the ICC MK (Option A, or B above 16 digits) from the prepared
// IMK, the PBOC session key for atc, and MAC algorithm 3 (padding 2) over
// data, and compares with arqc in constant time. It returns the session key
// so the caller can answer with ARPCMethod1. err is only for bad input.
func VerifyARQCPBOC(imk *IMK, pan string, psn int, atc uint16, data []byte, arqc [8]byte) (ok bool, sk Key, err error) {
	mk, err := imk.DeriveICCMK(pan, psn)
	if err != nil {
		return false, Key{}, err
	}
	sk = SessionKeyPBOC(mk, atc)
	var k tdesKey
	k.setKeyBytes(sk[:])
	mac := block8(macAlg3(&k, data, PadMethod2))
	return subtle.ConstantTimeCompare(mac[:], arqc[:]) == 1, sk, nil
}

// VerifyARQC is VerifyARQCPBOC for any Scheme: ICC MK from the prepared
// IMK, the scheme's cryptogram key (un is used by SchemeMastercard only),
// MAC algorithm 3 with the scheme's padding, constant-time comparison. It
// returns the cryptogram key for the ARPC. err is only for bad input.
func VerifyARQC(imk *IMK, s Scheme, pan string, psn int, atc uint16, un [4]byte, data []byte, arqc [8]byte) (ok bool, key Key, err error) {
	if _, err := ParseScheme(string(s)); err != nil {
		return false, Key{}, err
	}
	mk, err := imk.DeriveICCMK(pan, psn)
	if err != nil {
		return false, Key{}, err
	}
	key = s.CryptogramKey(mk, atc, un)
	var k tdesKey
	k.setKeyBytes(key[:])
	mac := block8(macAlg3(&k, data, s.Padding()))
	return subtle.ConstantTimeCompare(mac[:], arqc[:]) == 1, key, nil
}
