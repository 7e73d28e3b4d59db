package hsm

import (
	"bytes"
	"context"
	"crypto/des"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/cryptobox"
	"github.com/mipay-oss/mipay/emv"
)

// refEPurseMAC is the e-purse MAC written with the standard library:
// single-DES CBC, IV 0, padding 80 00.., leftmost 4 bytes.
func refEPurseMAC(tb testing.TB, key8, data []byte) []byte {
	tb.Helper()
	c, err := des.NewCipher(key8)
	if err != nil {
		tb.Fatal(err)
	}
	padded := append(bytes.Clone(data), 0x80)
	for len(padded)%8 != 0 {
		padded = append(padded, 0)
	}
	h := make([]byte, 8)
	for i := 0; i < len(padded); i += 8 {
		for j := range 8 {
			h[j] ^= padded[i+j]
		}
		c.Encrypt(h, h)
	}
	return h[:4]
}

func refDiversify(tb testing.TB, master []byte, div [8]byte) []byte {
	k := append(tdesEncrypt(tb, master, div[:]), tdesEncrypt(tb, master, not8(div[:]))...)
	emv.OddParity(k)
	return k
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// The references agree with the published PBOC e-purse purchase example of
// emv-vectors.md.
func TestEPurseReferenceMatchesVector(t *testing.T) {
	dpk := mustHex(t, "11223344556677888877665544332211")
	sespk := tdesEncrypt(t, dpk, mustHex(t, "1122334400000001"))
	if got := strings.ToUpper(hex.EncodeToString(sespk)); got != "003238ABC57659DD" {
		t.Fatalf("SESPK = %s", got)
	}
	mac1 := refEPurseMAC(t, sespk, mustHex(t, "00001000"+"06"+"001122334455"+"20120229135100"))
	if got := strings.ToUpper(hex.EncodeToString(mac1)); got != "F15CAB75" {
		t.Fatalf("MAC1 = %s", got)
	}
	if got := strings.ToUpper(hex.EncodeToString(refEPurseMAC(t, sespk, mustHex(t, "00001000")))); got != "56988A13" {
		t.Fatalf("MAC2 = %s", got)
	}
}

func TestEPurse(t *testing.T) {
	ctx := context.Background()
	s := MustOpenSoft(t, "")
	mpk := mustHex(t, "11223344556677888877665544332211")
	mlk := mustHex(t, vectorIMK)
	mtk := mustHex(t, "00112233445566778899AABBCCDDEEFF")
	mustImport(t, s, "transit/sh/mpk", TDES2, mpk)
	mustImport(t, s, "transit/sh/mlk", TDES2, mlk)
	mustImport(t, s, "transit/sh/mtk", TDES2, mtk)
	div, err := emv.EPurseDiversifier("3101000012345678")
	if err != nil {
		t.Fatal(err)
	}
	tx := emv.EPurseTx{Amount: 4096, Type: emv.EPurseTypeLoad, Terminal: [6]byte{0, 0x11, 0x22, 0x33, 0x44, 0x55},
		Date: [4]byte{0x20, 0x26, 0x11, 0x26}, Time: [3]byte{0x01, 0x55, 0x00}}
	txFields := cat(u32(tx.Amount), []byte{tx.Type}, tx.Terminal[:])
	dateTime := cat(tx.Date[:], tx.Time[:])

	t.Run("load", func(t *testing.T) {
		in := EPurseLoadInput{Diversifier: div, Random: [4]byte{1, 2, 3, 4}, OnlineSerial: [2]byte{0, 7}, Balance: 1000, Tx: tx}
		seslk := tdesEncrypt(t, refDiversify(t, mlk, div), cat(in.Random[:], in.OnlineSerial[:], []byte{0x80, 0}))
		in.MAC1 = [4]byte(refEPurseMAC(t, seslk, cat(u32(in.Balance), txFields)))
		res, err := s.EPurseLoad(ctx, "transit/sh/mlk", in)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Valid || !bytes.Equal(res.MAC2[:], refEPurseMAC(t, seslk, cat(txFields, dateTime))) {
			t.Fatalf("result %+v", res)
		}
		bad := in
		bad.Balance++
		if res, err := s.EPurseLoad(ctx, "transit/sh/mlk", bad); err != nil || res.Valid || res.MAC2 != [4]byte{} {
			t.Errorf("changed balance: %+v, %v", res, err)
		}
	})
	t.Run("load TAC", func(t *testing.T) {
		dtk := refDiversify(t, mtk, div)
		tk := make([]byte, 8)
		for i := range tk {
			tk[i] = dtk[i] ^ dtk[8+i]
		}
		online := [2]byte{0, 7}
		tac := [4]byte(refEPurseMAC(t, tk, cat(u32(5096), online[:], txFields, dateTime)))
		if ok, err := s.EPurseVerifyLoadTAC(ctx, "transit/sh/mtk", div, 5096, online, tx, tac); err != nil || !ok {
			t.Errorf("valid TAC refused: %v", err)
		}
		if ok, _ := s.EPurseVerifyLoadTAC(ctx, "transit/sh/mtk", div, 5097, online, tx, tac); ok {
			t.Error("TAC accepted for another balance")
		}
	})
	t.Run("purchase", func(t *testing.T) {
		ptx := tx
		ptx.Type = emv.EPurseTypePurchase
		in := EPursePurchaseInput{Diversifier: div, Random: [4]byte{9, 8, 7, 6}, OfflineSerial: [2]byte{0, 3}, TermSerialLast2: [2]byte{0, 1}, Tx: ptx}
		sespk := tdesEncrypt(t, refDiversify(t, mpk, div), cat(in.Random[:], in.OfflineSerial[:], in.TermSerialLast2[:]))
		mac1, err := s.EPursePurchaseMAC1(ctx, "transit/sh/mpk", in)
		if err != nil {
			t.Fatal(err)
		}
		if want := refEPurseMAC(t, sespk, cat(u32(ptx.Amount), []byte{ptx.Type}, ptx.Terminal[:], dateTime)); !bytes.Equal(mac1[:], want) {
			t.Errorf("MAC1 = %X, want %X", mac1, want)
		}
		mac2 := [4]byte(refEPurseMAC(t, sespk, u32(ptx.Amount)))
		if ok, err := s.EPurseVerifyPurchaseMAC2(ctx, "transit/sh/mpk", in, mac2); err != nil || !ok {
			t.Errorf("valid MAC2 refused: %v", err)
		}
		mac2[0] ^= 1
		if ok, _ := s.EPurseVerifyPurchaseMAC2(ctx, "transit/sh/mpk", in, mac2); ok {
			t.Error("bad MAC2 accepted")
		}
		dtk := refDiversify(t, mtk, div)
		tk := make([]byte, 8)
		for i := range tk {
			tk[i] = dtk[i] ^ dtk[8+i]
		}
		termSerial := [4]byte{0, 0, 0, 1}
		tac := [4]byte(refEPurseMAC(t, tk, cat(u32(ptx.Amount), []byte{ptx.Type}, ptx.Terminal[:], termSerial[:], dateTime)))
		if ok, err := s.EPurseVerifyPurchaseTAC(ctx, "transit/sh/mtk", div, ptx, termSerial, tac); err != nil || !ok {
			t.Errorf("valid purchase TAC refused: %v", err)
		}
		termSerial[3] = 2
		if ok, _ := s.EPurseVerifyPurchaseTAC(ctx, "transit/sh/mtk", div, ptx, termSerial, tac); ok {
			t.Error("TAC accepted for another terminal serial")
		}
	})
	t.Run("wrong kind", func(t *testing.T) {
		mustEnsure(t, s, "aes", AES256)
		if _, err := s.EPurseLoad(ctx, "aes", EPurseLoadInput{}); err == nil {
			t.Error("AES key used as e-purse master key")
		}
	})
}

func TestClose(t *testing.T) {
	ctx := context.Background()
	s := MustOpenSoft(t, "")
	mustEnsure(t, s, "k", HMACSHA256)
	before, _ := s.HMAC(ctx, "k", []byte("x"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	after, err := s.HMAC(ctx, "k", []byte("x"))
	if err != nil || !bytes.Equal(before, after) {
		t.Errorf("after Close: %x, %v", after, err)
	}
}

func TestExportPSAMKeyPolicy(t *testing.T) {
	ctx := context.Background()
	s := MustOpenSoft(t, "")
	dpk := mustHex(t, "11223344556677888877665544332211")
	mustImport(t, s, "transit/sh/epurse-dpk", TDES2, dpk)
	mustImport(t, s, "tsp/imk/icbc", TDES2, mustHex(t, vectorIMK))
	mustEnsure(t, s, "transit/sh/epurse-dlk", TDES2)
	psam := newRecipient(t)
	aad := []byte("sh|psam-1")
	blob, err := s.ExportPSAMKey(ctx, "transit/sh/epurse-dpk", psam.PublicKey(), aad)
	if err != nil {
		t.Fatal(err)
	}
	got, err := cryptobox.Open(psam, blob, aad)
	emv.OddParity(dpk) // as stored
	if err != nil || !bytes.Equal(got, dpk) {
		t.Fatalf("exported %X, %v", got, err)
	}
	for _, h := range []Handle{"tsp/imk/icbc", "transit/sh/epurse-dlk"} {
		if _, err := s.ExportPSAMKey(ctx, h, psam.PublicKey(), aad); !errors.Is(err, ErrNotExportable) || mipay.ErrorCode(err) != mipay.EFORBIDDEN {
			t.Errorf("%s exported: %v", h, err)
		}
	}
	mustEnsure(t, s, "x/epurse-dpk", AES256)
	if _, err := s.ExportPSAMKey(ctx, "x/epurse-dpk", psam.PublicKey(), aad); !errors.Is(err, ErrWrongKind) {
		t.Errorf("AES key exported: %v", err)
	}
}
