package emv

import (
	"encoding/binary"
	"fmt"
)

// PBOC ED/EP e-purse (JT/T 978 style) crypto. Keys: DPK (purchase), DLK
// (load), DTK (TAC) are 16-byte card keys, usually DiversifyKey of the
// agency's master keys with the card number. Session keys and MACs are
// 8-byte single-DES keys; MACs are single-DES CBC, IV 0, padding 80 00..,
// leftmost 4 bytes.

// Transaction types of the e-purse (tag 9C-like, 1 byte).
const (
	EPurseTypeLoad              byte = 0x02
	EPurseTypePurchase          byte = 0x06
	EPurseTypeCompositePurchase byte = 0x09
)

// EPurseTx is what MAC1, MAC2 and TAC cover besides amounts and serials.
type EPurseTx struct {
	Amount   uint32  // minor units (fen)
	Type     byte    // EPurseType…
	Terminal [6]byte // terminal number (PSAM / load terminal)
	Date     [4]byte // YYYYMMDD BCD
	Time     [3]byte // hhmmss BCD
}

// EPursePurchaseSessionKey is SESPK = 3DES(DPK, random ‖ offline serial ‖
// last 2 bytes of the terminal transaction serial).
func EPursePurchaseSessionKey(dpk Key, random [4]byte, offlineSerial, termSerialLast2 [2]byte) [8]byte {
	var in [8]byte
	copy(in[:4], random[:])
	copy(in[4:6], offlineSerial[:])
	copy(in[6:], termSerialLast2[:])
	return tdesBlock(dpk, in)
}

// EPurseLoadSessionKey is SESLK = 3DES(DLK, random ‖ online serial ‖ 8000).
func EPurseLoadSessionKey(dlk Key, random [4]byte, onlineSerial [2]byte) [8]byte {
	var in [8]byte
	copy(in[:4], random[:])
	copy(in[4:6], onlineSerial[:])
	in[6] = 0x80
	return tdesBlock(dlk, in)
}

func tdesBlock(key Key, in [8]byte) [8]byte {
	var k tdesKey
	k.setKeyBytes(key[:])
	return block8(k.encrypt(binary.BigEndian.Uint64(in[:])))
}

// EPurseMAC is the e-purse MAC: single-DES CBC under key8, IV 0, padding
// 80 00.., leftmost 4 bytes.
func EPurseMAC(key8 [8]byte, data []byte) [4]byte {
	var k desKey
	k.setKeyBytes(key8[:])
	m := block8(cbcMACDES(&k, data, PadMethod2))
	return [4]byte(m[:4])
}

// EPurseTACKey is the single-DES TAC key: left half xor right half of DTK.
func EPurseTACKey(dtk Key) [8]byte {
	var k [8]byte
	for i := range k {
		k[i] = dtk[i] ^ dtk[8+i]
	}
	return k
}

func appendAmount(dst []byte, v uint32) []byte {
	return binary.BigEndian.AppendUint32(dst, v)
}

// EPursePurchaseMAC1 is the PSAM's MAC1 for DEBIT FOR PURCHASE: MAC(SESPK,
// amount ‖ type ‖ terminal ‖ date ‖ time).
func EPursePurchaseMAC1(sespk [8]byte, tx EPurseTx) [4]byte {
	d := make([]byte, 0, 18)
	d = appendAmount(d, tx.Amount)
	d = append(d, tx.Type)
	d = append(d, tx.Terminal[:]...)
	d = append(d, tx.Date[:]...)
	d = append(d, tx.Time[:]...)
	return EPurseMAC(sespk, d)
}

// EPursePurchaseMAC2 is the card's MAC2 after a purchase: MAC(SESPK, amount).
func EPursePurchaseMAC2(sespk [8]byte, amount uint32) [4]byte {
	return EPurseMAC(sespk, appendAmount(nil, amount))
}

// EPursePurchaseTAC is the purchase TAC: MAC(TAC key, amount ‖ type ‖
// terminal ‖ terminal transaction serial ‖ date ‖ time).
func EPursePurchaseTAC(tacKey [8]byte, tx EPurseTx, termSerial [4]byte) [4]byte {
	d := make([]byte, 0, 22)
	d = appendAmount(d, tx.Amount)
	d = append(d, tx.Type)
	d = append(d, tx.Terminal[:]...)
	d = append(d, termSerial[:]...)
	d = append(d, tx.Date[:]...)
	d = append(d, tx.Time[:]...)
	return EPurseMAC(tacKey, d)
}

// EPurseLoadMAC1 is the card's MAC1 in the INITIALIZE FOR LOAD answer:
// MAC(SESLK, balance before ‖ amount ‖ type ‖ terminal).
func EPurseLoadMAC1(seslk [8]byte, balance uint32, tx EPurseTx) [4]byte {
	d := make([]byte, 0, 15)
	d = appendAmount(d, balance)
	d = appendAmount(d, tx.Amount)
	d = append(d, tx.Type)
	d = append(d, tx.Terminal[:]...)
	return EPurseMAC(seslk, d)
}

// EPurseLoadMAC2 is the load host's MAC2 for CREDIT FOR LOAD: MAC(SESLK,
// amount ‖ type ‖ terminal ‖ date ‖ time).
func EPurseLoadMAC2(seslk [8]byte, tx EPurseTx) [4]byte {
	d := make([]byte, 0, 18)
	d = appendAmount(d, tx.Amount)
	d = append(d, tx.Type)
	d = append(d, tx.Terminal[:]...)
	d = append(d, tx.Date[:]...)
	d = append(d, tx.Time[:]...)
	return EPurseMAC(seslk, d)
}

// EPurseLoadTAC is the load TAC: MAC(TAC key, balance after ‖ online serial
// (before increment) ‖ amount ‖ type ‖ terminal ‖ date ‖ time).
func EPurseLoadTAC(tacKey [8]byte, newBalance uint32, onlineSerial [2]byte, tx EPurseTx) [4]byte {
	d := make([]byte, 0, 24)
	d = appendAmount(d, newBalance)
	d = append(d, onlineSerial[:]...)
	d = appendAmount(d, tx.Amount)
	d = append(d, tx.Type)
	d = append(d, tx.Terminal[:]...)
	d = append(d, tx.Date[:]...)
	d = append(d, tx.Time[:]...)
	return EPurseMAC(tacKey, d)
}

// MaxCardNumberDigits bounds an e-purse card number (application serial
// number, 10 bytes BCD = 20 digits).
const MaxCardNumberDigits = 20

// EPurseDiversifier is the 8-byte diversifier of an e-purse card number:
// its rightmost 16 digits as BCD, left-padded with zeros. Keys for the card
// are DiversifyKey(master, EPurseDiversifier(number)).
func EPurseDiversifier(cardNumber string) ([8]byte, error) {
	if len(cardNumber) == 0 || len(cardNumber) > MaxCardNumberDigits {
		return [8]byte{}, fmt.Errorf("%w: card number of %d digits (want 1–%d)", ErrBadInput, len(cardNumber), MaxCardNumberDigits)
	}
	var digits [16]byte
	j := 15
	for i := len(cardNumber) - 1; i >= 0; i-- {
		c := cardNumber[i]
		if c < '0' || c > '9' {
			return [8]byte{}, fmt.Errorf("%w: card number has a non-digit at position %d", ErrBadInput, i+1)
		}
		if j >= 0 {
			digits[j] = c - '0'
			j--
		}
	}
	var div [8]byte
	for i := range div {
		div[i] = digits[2*i]<<4 | digits[2*i+1]
	}
	return div, nil
}
