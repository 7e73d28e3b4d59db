package emv

import (
	"bytes"
	"crypto/des"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/cbcmac"
	"github.com/emmansun/gmsm/padding"
)

// Vectors from /work/shared/vectors/emv-vectors.md (published by others).

const vecIMK = "0123456789ABCDEFFEDCBA9876543210"

func mustHex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		tb.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func mustKey(tb testing.TB, s string) Key {
	tb.Helper()
	k, err := KeyFromBytes(mustHex(tb, s))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func hexOf(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) }

func TestVectorICCMasterKey(t *testing.T) {
	imk := mustHex(t, vecIMK)
	cases := []struct {
		option string
		pan    string
		psn    int
		want   string
	}{
		{"A", "12345678901234567", 45, "946DC1A8C78A624519BC4645CB073737"},
		{"A", "12345678901234567", 0, "8357F1866492A1C8D657132AABF25789"},
		{"A", "12345678901234567", 1, "73AD54688CEF2934B0979857E3C719F1"},
		{"B", "1234567890123456", 0, "154F349D8585CB7F6B0798E9839B10C1"},
		{"B", "12345678901234567", 45, "F767ECC2263B2C543775CB62AB6B57D6"},
		{"B", "12345678901234567", 0, "1C13AE23B54AF7BA49FBE09192C87983"},
		{"B", "123456789012345679", 0, "1083E9C8A72AA26BDC9B10570B73BACB"},
		{"B", "000000000000000005", 23, "2608BAA2378C92DAE0948A97E0CD230B"},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("option%s_%dDigits_PSN%02d", c.option, len(c.pan), c.psn), func(t *testing.T) {
			derive := DeriveICCMKOptionA
			if c.option == "B" {
				derive = DeriveICCMKOptionB
			}
			mk, err := derive(imk, c.pan, c.psn)
			if err != nil {
				t.Fatal(err)
			}
			if got := hexOf(mk[:]); got != c.want {
				t.Fatalf("MK = %s, want %s", got, c.want)
			}
		})
	}
	t.Run("DeriveICCMK picks A up to 16 digits", func(t *testing.T) {
		a, _ := DeriveICCMKOptionA(imk, "1234567890123456", 0)
		mk, err := DeriveICCMK(imk, "1234567890123456", 0)
		if err != nil || mk != a {
			t.Fatalf("DeriveICCMK = %X, %v; want option A %X", mk, err, a)
		}
	})
	t.Run("DeriveICCMK picks B above 16 digits", func(t *testing.T) {
		mk, err := DeriveICCMK(imk, "12345678901234567", 45)
		if err != nil || hexOf(mk[:]) != "F767ECC2263B2C543775CB62AB6B57D6" {
			t.Fatalf("DeriveICCMK = %X, %v", mk, err)
		}
	})
}

func TestVectorCommonSessionKey(t *testing.T) {
	cases := []struct{ name, mk, r, want string }{
		{"IMK as MK", vecIMK, "001C000000000000", "E9FB384AF807B940FEDCEA613461B0C4"},
		{"derived MK", "154F349D8585CB7F6B0798E9839B10C1", "1234567890123456", "91E5C4FEF4F7CBD6D53776B6F7C4EA2F"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sk := SessionKeyCommon(mustKey(t, c.mk), [8]byte(mustHex(t, c.r)))
			if got := hexOf(sk[:]); got != c.want {
				t.Fatalf("SK = %s, want %s", got, c.want)
			}
		})
	}
}

func TestVectorARQCAndARPC(t *testing.T) {
	sk := mustKey(t, "29B33180E567CE38EA4CBC9D753B0E61")
	data := mustHex(t, "0123456789ABCDEF0123456789ABCDEF")
	arqc, err := MACAlg3(sk[:], data, PadMethod2)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("ARQC", func(t *testing.T) {
		if got := hexOf(arqc[:]); got != "FA624250B008B59A" {
			t.Fatalf("ARQC = %s", got)
		}
	})
	t.Run("ARPC method 1", func(t *testing.T) {
		arpc := ARPCMethod1(sk, arqc, [2]byte{0, 0})
		if got := hexOf(arpc[:]); got != "45D4255EEF10C920" {
			t.Fatalf("ARPC = %s", got)
		}
	})
	t.Run("ARPC method 2", func(t *testing.T) {
		arpc, err := ARPCMethod2(sk, arqc, [4]byte{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := hexOf(arpc[:]); got != "CB56FA40" {
			t.Fatalf("ARPC = %s", got)
		}
	})
}

func visaTxData(t *testing.T) TxData {
	t.Helper()
	tlvs, err := DecodeTLV(mustHex(t, "9F0206000000004000 9F0306000000000000 9F1A020124 95058000048000 5F2A020124 9A03191105 9C0101 9F370452BF4585 82021800 9F3602001C"))
	if err != nil {
		t.Fatal(err)
	}
	tx, err := TxDataFromTLV(tlvs)
	if err != nil {
		t.Fatal(err)
	}
	return tx
}

func TestVectorVisa(t *testing.T) {
	tx := visaTxData(t)
	mk, err := DeriveICCMK(mustHex(t, vecIMK), "1234567890123456", 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("CVN10", func(t *testing.T) {
		data := ARQCDataVisaCVN10(&tx, [4]byte(mustHex(t, "03A06010")))
		arqc, err := MACAlg3(mk[:], data, PadMethod1)
		if err != nil {
			t.Fatal(err)
		}
		if got := hexOf(arqc[:]); got != "29CCA15AE665FA2E" {
			t.Fatalf("ARQC = %s", got)
		}
		arpc := ARPCMethod1(mk, arqc, [2]byte{0x30, 0x30})
		if got := hexOf(arpc[:]); got != "28993816AFAE4AEB" {
			t.Fatalf("ARPC = %s", got)
		}
		chain, err := GenerateARQC(SchemeVisaCVN10, mustHex(t, vecIMK), "1234567890123456", 0, tx.ATCValue(), [4]byte{}, data)
		if err != nil || chain != arqc {
			t.Fatalf("GenerateARQC = %X, %v", chain, err)
		}
		imk, _ := NewIMK(mustHex(t, vecIMK))
		if ok, key, err := VerifyARQC(imk, SchemeVisaCVN10, "1234567890123456", 0, tx.ATCValue(), [4]byte{}, data, arqc); !ok || err != nil || key != mk {
			t.Fatalf("VerifyARQC = %v, %X, %v", ok, key, err)
		}
	})
	t.Run("CVN18", func(t *testing.T) {
		sk := SessionKeyVisaCVN18(mk, tx.ATCValue())
		if got := hexOf(sk[:]); got != "436B942AD637E08564B532B0EC97CB26" {
			t.Fatalf("SK = %s", got)
		}
		data := ARQCDataVisaCVN18(&tx, mustHex(t, "06011203A0B800"))
		arqc, err := MACAlg3(sk[:], data, PadMethod2)
		if err != nil {
			t.Fatal(err)
		}
		if got := hexOf(arqc[:]); got != "7A788EA6B8A3E733" {
			t.Fatalf("ARQC = %s", got)
		}
		arpc, err := ARPCMethod2(sk, arqc, [4]byte{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := hexOf(arpc[:]); got != "9AF514C1" {
			t.Fatalf("ARPC = %s", got)
		}
		chain, err := GenerateARQC(SchemeCSK, mustHex(t, vecIMK), "1234567890123456", 0, tx.ATCValue(), [4]byte{}, data)
		if err != nil || chain != arqc {
			t.Fatalf("GenerateARQC = %X, %v", chain, err)
		}
	})
}

func TestVectorMastercardCVN16(t *testing.T) {
	tlvs, err := DecodeTLV(mustHex(t, "9F0206000000009999 9F0306000000000000 9F1A020124 95058000000000 5F2A020124 9A03209906 9C0100 9F3704ABCDEF12 82021800 9F3602001C"))
	if err != nil {
		t.Fatal(err)
	}
	tx, err := TxDataFromTLV(tlvs)
	if err != nil {
		t.Fatal(err)
	}
	mk, err := DeriveICCMK(mustHex(t, vecIMK), "1234567890123456", 0)
	if err != nil {
		t.Fatal(err)
	}
	sk := SessionKeyMastercard(mk, tx.ATCValue(), tx.Unpredictable)
	if got := hexOf(sk[:]); got != "5D8F37BCD9E5DA68048CDFA2EA255D9E" {
		t.Fatalf("SK = %s", got)
	}
	data := ARQCDataMastercardCVN16(&tx, [6]byte(mustHex(t, "A00003220000")))
	arqc, err := MACAlg3(sk[:], data, PadMethod2)
	if err != nil {
		t.Fatal(err)
	}
	if got := hexOf(arqc[:]); got != "24CCF3DEE3158C70" {
		t.Fatalf("ARQC = %s", got)
	}
	arpc := ARPCMethod1(mk, arqc, [2]byte{0x00, 0x10})
	if got := hexOf(arpc[:]); got != "73F6BBF389A6586C" {
		t.Fatalf("ARPC = %s", got)
	}
	chain, err := GenerateARQC(SchemeMastercard, mustHex(t, vecIMK), "1234567890123456", 0, tx.ATCValue(), tx.Unpredictable, data)
	if err != nil || chain != arqc {
		t.Fatalf("GenerateARQC = %X, %v", chain, err)
	}
	imk, _ := NewIMK(mustHex(t, vecIMK))
	ok, key, err := VerifyARQC(imk, SchemeMastercard, "1234567890123456", 0, tx.ATCValue(), tx.Unpredictable, data, arqc)
	if !ok || err != nil || key != sk {
		t.Fatalf("VerifyARQC = %v, %X, %v", ok, key, err)
	}
	if ok, _, _ := VerifyARQC(imk, SchemeMastercard, "1234567890123456", 0, tx.ATCValue(), [4]byte{}, data, arqc); ok {
		t.Fatal("VerifyARQC accepted another UN")
	}
}

func TestVectorEPursePurchase(t *testing.T) {
	dpk := mustKey(t, "11223344556677888877665544332211")
	// INITIALIZE FOR PURCHASE answer: balance, offline serial, overdraft,
	// key version, algorithm, pseudo-random.
	answer := mustHex(t, "00000000 0000 000000 01 00 11223344")
	offline := [2]byte(answer[4:6])
	random := [4]byte(answer[11:15])
	sespk := EPursePurchaseSessionKey(dpk, random, offline, [2]byte{0x00, 0x01})
	if got := hexOf(sespk[:]); got != "003238ABC57659DD" {
		t.Fatalf("SESPK = %s", got)
	}
	tx := EPurseTx{
		Amount:   0x1000,
		Type:     EPurseTypePurchase,
		Terminal: [6]byte(mustHex(t, "001122334455")),
		Date:     [4]byte(mustHex(t, "20120229")),
		Time:     [3]byte(mustHex(t, "135100")),
	}
	if got := EPursePurchaseMAC1(sespk, tx); hexOf(got[:]) != "F15CAB75" {
		t.Fatalf("MAC1 = %X", got)
	}
	if got := EPurseMAC(sespk, mustHex(t, "00001000 06 001122334455 20120229135100")); hexOf(got[:]) != "F15CAB75" {
		t.Fatalf("EPurseMAC (MAC1 data) = %X", got)
	}
	if got := EPursePurchaseMAC2(sespk, 0x1000); hexOf(got[:]) != "56988A13" {
		t.Fatalf("MAC2 = %X", got)
	}
	if got := EPurseTACKey(mustKey(t, "00112233445566778899AABBCCDDEEFF")); hexOf(got[:]) != "8888888888888888" {
		t.Fatalf("TAC key = %X", got)
	}
}

func TestVectorAESCMAC(t *testing.T) {
	key := mustHex(t, "2b7e151628aed2a6abf7158809cf4f3c")
	cases := []struct{ name, msg, want string }{
		{"empty", "", "BB1D6929E95937287FA37D129B756746"},
		{"one block", "6bc1bee22e409f96e93d7e117393172a", "070A16B46B4D4144F79BDD9DD04A287C"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mac, err := AESCMAC(key, mustHex(t, c.msg))
			if err != nil {
				t.Fatal(err)
			}
			if got := hexOf(mac[:]); got != c.want {
				t.Fatalf("CMAC = %s, want %s", got, c.want)
			}
		})
	}
}

func TestVectorSM4(t *testing.T) {
	k := mustHex(t, "0123456789ABCDEFFEDCBA9876543210")
	got, err := SM4Encrypt(k, k)
	if err != nil {
		t.Fatal(err)
	}
	if hexOf(got[:]) != "681EDF34D206965E86B3E94F536E4246" {
		t.Fatalf("SM4 = %X", got)
	}
}

func TestVectorTLV(t *testing.T) {
	cases := []struct{ name, hex, aidPath, aid, label string }{
		{"PPSE FCI", "6F2F840E325041592E5359532E4444463031A51DBF0C1A61184F07A0000000041010500A4D617374657263617264870101",
			"6F.A5.BF0C.61.4F", "A0000000041010", "Mastercard"},
		{"UnionPay debit PPSE", "6F30840E325041592E5359532E4444463031A51EBF0C1B61194F08A000000333010101500A50424F43204445424954870101",
			"6F.A5.BF0C.61.4F", "A000000333010101", "PBOC DEBIT"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw := mustHex(t, c.hex)
			tlvs, err := DecodeTLV(raw)
			if err != nil {
				t.Fatal(err)
			}
			if enc := EncodeTLV(tlvs); !bytes.Equal(enc, raw) {
				t.Fatalf("re-encoded %X, want %X", enc, raw)
			}
			aid, ok := Find(tlvs, c.aidPath)
			if !ok || hexOf(aid.Value) != c.aid {
				t.Fatalf("Find(%s) = %X, %v", c.aidPath, aid.Value, ok)
			}
			label, ok := Find(tlvs, "6F.A5.BF0C.61.50")
			if !ok || string(label.Value) != c.label {
				t.Fatalf("label = %q, %v", label.Value, ok)
			}
			df, ok := Find(tlvs, "6F.84")
			if !ok || string(df.Value) != "2PAY.SYS.DDF01" {
				t.Fatalf("DF name = %q, %v", df.Value, ok)
			}
			// Built from parts, the encoding is the published one.
			built := AppendTLV(nil, 0x6F, append(
				AppendTLV(nil, 0x84, []byte("2PAY.SYS.DDF01")),
				AppendTLV(nil, 0xA5, AppendTLV(nil, 0xBF0C, AppendTLV(nil, 0x61,
					append(append(AppendTLV(nil, 0x4F, aid.Value), AppendTLV(nil, 0x50, label.Value)...), AppendTLV(nil, 0x87, []byte{1})...))))...))
			if !bytes.Equal(built, raw) {
				t.Fatalf("built %X, want %X", built, raw)
			}
		})
	}
}

// TestMACAlg3MatchesGmsm cross-checks our retail MAC with gmsm's ANSI retail
// MAC (GB/T 15821.1 MAC scheme 3) on many lengths.
func TestMACAlg3MatchesGmsm(t *testing.T) {
	key := mustHex(t, "29B33180E567CE38EA4CBC9D753B0E61")
	ref := cbcmac.NewANSIRetailMAC(des.NewCipher, key[:8], key[8:], 8)
	data := make([]byte, 70)
	for i := range data {
		data[i] = byte(i*37 + 11)
	}
	for n := 0; n <= len(data); n++ {
		got, err := MACAlg3(key, data[:n], PadMethod2)
		if err != nil {
			t.Fatal(err)
		}
		if want := ref.MAC(data[:n]); !bytes.Equal(got[:], want) {
			t.Fatalf("len %d: MACAlg3 = %X, gmsm = %X", n, got, want)
		}
	}
	ref1 := cbcmac.NewANSIRetailMACWithPadding(des.NewCipher, key[:8], key[8:], 8, padding.NewZeroPadding)
	for n := 1; n <= len(data); n++ {
		got, _ := MACAlg3(key, data[:n], PadMethod1)
		if want := ref1.MAC(data[:n]); !bytes.Equal(got[:], want) {
			t.Fatalf("method 1 len %d: MACAlg3 = %X, gmsm = %X", n, got, want)
		}
	}
}
