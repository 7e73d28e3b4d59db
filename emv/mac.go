package emv

import (
	"crypto/aes"
	"encoding/binary"
	"fmt"

	"github.com/emmansun/gmsm/cbcmac"
	"github.com/emmansun/gmsm/sm4"
)

// ISO/IEC 9797-1 padding methods.
const (
	// PadMethod1 appends 00 bytes up to a whole block (an empty message
	// becomes one block of zeros).
	PadMethod1 = 1
	// PadMethod2 appends 80 then 00 bytes up to a whole block.
	PadMethod2 = 2
)

// MACAlg3 is the ISO/IEC 9797-1 MAC algorithm 3 ("retail MAC", ANSI X9.19)
// with a 16-byte key KL‖KR: single-DES CBC under KL with IV 0 over the
// padded data, then the last block decrypted under KR and encrypted under KL.
// pad is PadMethod1 or PadMethod2. This is the EMV ARQC/ARPC MAC.
//
// Why not gmsm's cbcmac.NewANSIRetailMAC: it builds both DES key schedules
// and copies the padded message on every call and panics on a bad key; the
// switch verifies one ARQC per authorization, so this works on prepared
// keys (see VerifyARQCPBOC and des.go). Tests check both agree.
func MACAlg3(key, data []byte, pad int) ([8]byte, error) {
	if len(key) != 16 {
		return [8]byte{}, fmt.Errorf("%w: MAC key of %d bytes (want 16)", ErrBadInput, len(key))
	}
	if pad != PadMethod1 && pad != PadMethod2 {
		return [8]byte{}, fmt.Errorf("%w: padding method %d (want 1 or 2)", ErrBadInput, pad)
	}
	var k tdesKey
	k.setKeyBytes(key)
	return block8(macAlg3(&k, data, pad)), nil
}

func block8(v uint64) [8]byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b
}

// macAlg3 is MAC algorithm 3 with k.k1 = KL and k.k2 = KR.
func macAlg3(k *tdesKey, data []byte, pad int) uint64 {
	s := cbcMACDES(&k.k1, data, pad)
	return k.k1.encrypt(k.k2.decrypt(s))
}

// cbcMACDES is a DES CBC-MAC with IV 0 over data padded by pad.
func cbcMACDES(k *desKey, data []byte, pad int) uint64 {
	var s uint64
	empty := len(data) == 0
	for len(data) >= 8 {
		s = k.encrypt(s ^ binary.BigEndian.Uint64(data))
		data = data[8:]
	}
	// Last, padded block. Method 1 adds none when data was a whole number of
	// blocks (and was not empty); method 2 always adds one.
	if pad == PadMethod1 && len(data) == 0 && !empty {
		return s
	}
	var last [8]byte
	copy(last[:], data)
	if pad == PadMethod2 {
		last[len(data)] = 0x80
	}
	return k.encrypt(s ^ binary.BigEndian.Uint64(last[:]))
}

// DESMAC is a single-DES CBC-MAC (IV 0, padding method 2) with an 8-byte
// key: the PBOC e-purse MAC before truncation to 4 bytes.
func DESMAC(key, data []byte) ([8]byte, error) {
	if len(key) != 8 {
		return [8]byte{}, fmt.Errorf("%w: DES key of %d bytes (want 8)", ErrBadInput, len(key))
	}
	var k desKey
	k.setKeyBytes(key)
	return block8(cbcMACDES(&k, data, PadMethod2)), nil
}

// AESCMAC is AES-CMAC (RFC 4493 / NIST SP 800-38B) with a 16-, 24- or
// 32-byte key, from gmsm's cbcmac.
func AESCMAC(key, msg []byte) ([16]byte, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return [16]byte{}, fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	var out [16]byte
	copy(out[:], cbcmac.NewCMAC(b, 16).MAC(msg))
	return out, nil
}

// SM4Encrypt encrypts one 16-byte block with SM4 (GB/T 32907), for the
// SM-algorithm variants of PBOC 3.0.
func SM4Encrypt(key, block []byte) ([16]byte, error) {
	if len(block) != 16 {
		return [16]byte{}, fmt.Errorf("%w: SM4 block of %d bytes (want 16)", ErrBadInput, len(block))
	}
	b, err := sm4.NewCipher(key)
	if err != nil {
		return [16]byte{}, fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	var out [16]byte
	b.Encrypt(out[:], block)
	return out, nil
}

// TDESEncrypt encrypts one 8-byte block with a 16-byte 3DES key.
func TDESEncrypt(key, block []byte) ([8]byte, error) {
	if len(block) != 8 {
		return [8]byte{}, fmt.Errorf("%w: block of %d bytes (want 8)", ErrBadInput, len(block))
	}
	if len(key) != 16 {
		return [8]byte{}, fmt.Errorf("%w: 3DES key of %d bytes (want 16)", ErrBadInput, len(key))
	}
	var k tdesKey
	k.setKeyBytes(key)
	return block8(k.encrypt(binary.BigEndian.Uint64(block))), nil
}
