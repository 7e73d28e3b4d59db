package emv

import (
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// ErrBadInput is wrapped by errors about malformed keys, PANs, PSNs and
// other arguments of the crypto functions. Messages never hold a PAN or key.
var ErrBadInput = errors.New("emv: bad input")

// Bounds of a PAN (ISO/IEC 7812: 8 to 19 digits).
const (
	MinPANDigits = 8
	MaxPANDigits = 19
)

// Key is a double-length (16-byte) 3DES key: the size of every EMV issuer,
// ICC master and session key here.
type Key = [16]byte

// OddParity sets the low bit of every byte of key so that each byte has an
// odd number of set bits (DES key parity). It changes key in place.
func OddParity(key []byte) {
	for i, c := range key {
		c &^= 1
		key[i] = c | byte(bits.OnesCount8(c)&1^1)
	}
}

// KeyFromBytes checks that b is a 16-byte key and copies it.
func KeyFromBytes(b []byte) (Key, error) {
	var k Key
	if len(b) != len(k) {
		return k, fmt.Errorf("%w: key of %d bytes (want 16)", ErrBadInput, len(b))
	}
	copy(k[:], b)
	return k, nil
}

// checkPAN validates a PAN's digits without ever echoing it.
func checkPAN(pan string) error {
	if len(pan) < MinPANDigits || len(pan) > MaxPANDigits {
		return fmt.Errorf("%w: PAN of %d digits (want %d–%d)", ErrBadInput, len(pan), MinPANDigits, MaxPANDigits)
	}
	for i := 0; i < len(pan); i++ {
		if pan[i] < '0' || pan[i] > '9' {
			return fmt.Errorf("%w: PAN has a non-digit at position %d", ErrBadInput, i+1)
		}
	}
	return nil
}

func checkPSN(psn int) error {
	if psn < 0 || psn > 99 {
		return fmt.Errorf("%w: PSN %d (want 0–99)", ErrBadInput, psn)
	}
	return nil
}

// optionAInput is Y of EMV Book 2 A1.4.1: the rightmost 16 digits of
// PAN‖PSN (left-padded with zeros) as 8 BCD bytes.
func optionAInput(pan string, psn int) [8]byte {
	var digits [16]byte
	for i := range digits {
		digits[i] = 0
	}
	// Fill from the right: two PSN digits, then the PAN's rightmost 14.
	digits[15] = byte(psn % 10)
	digits[14] = byte(psn / 10)
	j := 13
	for i := len(pan) - 1; i >= 0 && j >= 0; i-- {
		digits[j] = pan[i] - '0'
		j--
	}
	var y [8]byte
	for i := range y {
		y[i] = digits[2*i]<<4 | digits[2*i+1]
	}
	return y
}

// optionBInput is Y of EMV Book 2 A1.4.2: SHA-1 over PAN‖PSN (BCD,
// left-padded to whole bytes), then the first 16 decimal digits of the hex
// digest, topped up with the letters A–F decimalised (A→0 … F→5).
func optionBInput(pan string, psn int) [8]byte {
	var bcd [11]byte // ≤ 19 + 2 digits, padded to 22 nibbles
	nd := len(pan) + 2
	nb := (nd + 1) / 2
	pos := 2*nb - nd // leading pad nibble when nd is odd
	put := func(d byte) {
		if pos%2 == 0 {
			bcd[pos/2] = d << 4
		} else {
			bcd[pos/2] |= d
		}
		pos++
	}
	for i := 0; i < len(pan); i++ {
		put(pan[i] - '0')
	}
	put(byte(psn / 10))
	put(byte(psn % 10))
	sum := sha1.Sum(bcd[:nb])

	var digits [16]byte
	n := 0
	for _, c := range sum {
		for _, d := range [2]byte{c >> 4, c & 0x0F} {
			if d < 10 && n < 16 {
				digits[n] = d
				n++
			}
		}
	}
	for _, c := range sum {
		for _, d := range [2]byte{c >> 4, c & 0x0F} {
			if d >= 10 && n < 16 {
				digits[n] = d - 10
				n++
			}
		}
	}
	var y [8]byte
	for i := range y {
		y[i] = digits[2*i]<<4 | digits[2*i+1]
	}
	return y
}

// deriveFromY is MK = 3DES(IMK, Y) ‖ 3DES(IMK, Y xor FF..FF) with odd parity.
func deriveFromY(imk *tdesKey, y [8]byte) Key {
	v := binary.BigEndian.Uint64(y[:])
	return halvesWithParity(imk.encrypt(v), imk.encrypt(^v))
}

func halvesWithParity(l, r uint64) Key {
	var k Key
	binary.BigEndian.PutUint64(k[:8], l)
	binary.BigEndian.PutUint64(k[8:], r)
	OddParity(k[:])
	return k
}

// DeriveICCMKOptionA derives an ICC master key from the issuer master key
// with EMV Book 2 A1.4.1 (Option A). imk is 16 bytes.
func DeriveICCMKOptionA(imk []byte, pan string, psn int) (Key, error) {
	k, err := NewIMK(imk)
	if err != nil {
		return Key{}, err
	}
	return k.DeriveOptionA(pan, psn)
}

// DeriveICCMKOptionB derives an ICC master key with EMV Book 2 A1.4.2
// (Option B); for a PAN of 16 digits or fewer it equals Option A.
func DeriveICCMKOptionB(imk []byte, pan string, psn int) (Key, error) {
	k, err := NewIMK(imk)
	if err != nil {
		return Key{}, err
	}
	return k.DeriveOptionB(pan, psn)
}

// DeriveICCMK derives an ICC master key the way DESIGN.md prescribes:
// Option A for PANs of up to 16 digits, Option B for longer ones.
func DeriveICCMK(imk []byte, pan string, psn int) (Key, error) {
	return DeriveICCMKOptionB(imk, pan, psn)
}

// IMK is an issuer master key prepared for repeated derivations: its 3DES
// key schedule is computed once. Safe for concurrent use.
type IMK struct {
	key tdesKey
}

// NewIMK prepares a 16-byte issuer master key.
func NewIMK(key []byte) (*IMK, error) {
	if len(key) != 16 {
		return nil, fmt.Errorf("%w: issuer master key of %d bytes (want 16)", ErrBadInput, len(key))
	}
	k := new(IMK)
	k.key.setKeyBytes(key)
	return k, nil
}

// DeriveOptionA derives the ICC master key of (pan, psn) with Option A.
func (k *IMK) DeriveOptionA(pan string, psn int) (Key, error) {
	if err := checkPAN(pan); err != nil {
		return Key{}, err
	}
	if err := checkPSN(psn); err != nil {
		return Key{}, err
	}
	return deriveFromY(&k.key, optionAInput(pan, psn)), nil
}

// DeriveOptionB derives the ICC master key of (pan, psn) with Option B
// (Option A when the PAN has at most 16 digits).
func (k *IMK) DeriveOptionB(pan string, psn int) (Key, error) {
	if err := checkPAN(pan); err != nil {
		return Key{}, err
	}
	if err := checkPSN(psn); err != nil {
		return Key{}, err
	}
	if len(pan) <= 16 {
		return deriveFromY(&k.key, optionAInput(pan, psn)), nil
	}
	return deriveFromY(&k.key, optionBInput(pan, psn)), nil
}

// DeriveICCMK is DeriveOptionB: Option A up to 16 digits, else Option B.
func (k *IMK) DeriveICCMK(pan string, psn int) (Key, error) {
	return k.DeriveOptionB(pan, psn)
}

// twoHalves is 3DES(mk, a) ‖ 3DES(mk, b) with odd parity.
func twoHalves(mk *Key, a, b uint64) Key {
	var k tdesKey
	k.setKeyBytes(mk[:])
	return halvesWithParity(k.encrypt(a), k.encrypt(b))
}

// SessionKeyPBOC is the PBOC 3.0 session key (DESIGN.md; not the EMV common
// session key): 3DES(MK, 000000000000‖ATC) ‖ 3DES(MK, 000000000000‖(ATC xor
// FFFF)), odd parity.
func SessionKeyPBOC(mk Key, atc uint16) Key {
	return twoHalves(&mk, uint64(atc), uint64(atc^0xFFFF))
}

// SessionKeyCommon is the EMV common session key (Book 2 A1.3.1):
// 3DES(MK, R with R[2] = F0) ‖ 3DES(MK, R with R[2] = 0F), odd parity.
func SessionKeyCommon(mk Key, r [8]byte) Key {
	v := binary.BigEndian.Uint64(r[:]) &^ (0xFF << 40)
	return twoHalves(&mk, v|0xF0<<40, v|0x0F<<40)
}

// SessionKeyVisaCVN18 is the common session key with R = ATC‖000000000000.
func SessionKeyVisaCVN18(mk Key, atc uint16) Key {
	var r [8]byte
	binary.BigEndian.PutUint16(r[:2], atc)
	return SessionKeyCommon(mk, r)
}

// SessionKeyMastercard is Mastercard SKD (M/Chip CVN 16/17): the common
// session key with R = ATC‖0000‖UN.
func SessionKeyMastercard(mk Key, atc uint16, un [4]byte) Key {
	var r [8]byte
	binary.BigEndian.PutUint16(r[:2], atc)
	copy(r[4:], un[:])
	return SessionKeyCommon(mk, r)
}

// DiversifyKey derives a card key from a 16-byte master key and an 8-byte
// diversifier (e.g. the rightmost 8 bytes of the e-purse card number):
// 3DES(master, div) ‖ 3DES(master, NOT div), odd parity, as for ICC master
// keys.
func DiversifyKey(master Key, div [8]byte) Key {
	v := binary.BigEndian.Uint64(div[:])
	return twoHalves(&master, v, ^v)
}
