package emv

import (
	"errors"
	"strings"
	"syscall"
	"testing"
)

// pbocCase is a PBOC CVN 01 transaction with the data the card MACs.
type pbocCase struct {
	imk  *IMK
	pan  string
	psn  int
	atc  uint16
	data []byte
	arqc [8]byte
}

func mustPBOCCase(tb testing.TB) pbocCase {
	tb.Helper()
	imk, err := NewIMK(mustHex(tb, vecIMK))
	if err != nil {
		tb.Fatal(err)
	}
	tx := TxData{
		Amount: [6]byte{0, 0, 0, 0, 0x10, 0}, Country: [2]byte{0x01, 0x56}, Currency: [2]byte{0x01, 0x56},
		Date: [3]byte{0x26, 0x11, 0x26}, Unpredictable: [4]byte{0xCA, 0xFE, 0xBA, 0xBE},
		AIP: [2]byte{0x00, 0x80}, ATC: [2]byte{0x00, 0x2A},
	}
	iad, err := ParseIADPBOC(mustHex(tb, "07010103A0A0000100"))
	if err != nil {
		tb.Fatal(err)
	}
	c := pbocCase{imk: imk, pan: "6228480000000001234", psn: 1, atc: tx.ATCValue(), data: ARQCDataPBOC(&tx, iad.CVR)}
	// The card side computes the cryptogram with the general building blocks.
	mk, err := DeriveICCMK(mustHex(tb, vecIMK), c.pan, c.psn)
	if err != nil {
		tb.Fatal(err)
	}
	sk := SessionKeyPBOC(mk, c.atc)
	c.arqc, err = MACAlg3(sk[:], c.data, PadMethod2)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func TestVerifyARQCPBOC(t *testing.T) {
	c := mustPBOCCase(t)
	t.Run("genuine", func(t *testing.T) {
		ok, sk, err := VerifyARQCPBOC(c.imk, c.pan, c.psn, c.atc, c.data, c.arqc)
		if err != nil || !ok {
			t.Fatalf("ok = %v, err = %v", ok, err)
		}
		mk, _ := c.imk.DeriveICCMK(c.pan, c.psn)
		if sk != SessionKeyPBOC(mk, c.atc) {
			t.Fatal("returned session key differs")
		}
		chain, err := GenerateARQC(SchemePBOC, mustHex(t, vecIMK), c.pan, c.psn, c.atc, [4]byte{}, c.data)
		if err != nil || chain != c.arqc {
			t.Fatalf("GenerateARQC = %X, %v", chain, err)
		}
	})
	t.Run("tampered amount", func(t *testing.T) {
		data := append([]byte(nil), c.data...)
		data[4] ^= 0x01
		if ok, _, err := VerifyARQCPBOC(c.imk, c.pan, c.psn, c.atc, data, c.arqc); ok || err != nil {
			t.Fatalf("ok = %v, err = %v", ok, err)
		}
	})
	t.Run("other ATC", func(t *testing.T) {
		if ok, _, _ := VerifyARQCPBOC(c.imk, c.pan, c.psn, c.atc+1, c.data, c.arqc); ok {
			t.Fatal("accepted with another ATC")
		}
	})
	t.Run("other PSN", func(t *testing.T) {
		if ok, _, _ := VerifyARQCPBOC(c.imk, c.pan, 2, c.atc, c.data, c.arqc); ok {
			t.Fatal("accepted with another PSN")
		}
	})
	for _, bad := range []struct {
		name string
		pan  string
		psn  int
	}{{"PAN with letters", "62284800000A0001234", 1}, {"PAN too short", "1234567", 1}, {"PAN too long", "12345678901234567890", 1}, {"PSN 100", "6228480000000001234", 100}, {"PSN -1", "6228480000000001234", -1}} {
		t.Run(bad.name, func(t *testing.T) {
			_, _, err := VerifyARQCPBOC(c.imk, bad.pan, bad.psn, c.atc, c.data, c.arqc)
			if !errors.Is(err, ErrBadInput) {
				t.Fatalf("err = %v", err)
			}
			if strings.Contains(err.Error(), bad.pan) {
				t.Fatalf("error leaks the PAN: %v", err)
			}
		})
	}
}

// BenchmarkARQCVerify is one PBOC ARQC verification for a 19-digit token
// (Option B: SHA-1 included): derive MK, session key, MAC. Besides ns/op
// (wall clock, inflated when the machine is shared) it reports the process
// CPU time per operation.
func BenchmarkARQCVerify(b *testing.B) {
	c := mustPBOCCase(b)
	b.ReportAllocs()
	start := cpuTime(b)
	for b.Loop() {
		ok, _, err := VerifyARQCPBOC(c.imk, c.pan, c.psn, c.atc, c.data, c.arqc)
		if !ok || err != nil {
			b.Fatal("verify failed")
		}
	}
	b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the user+system CPU time of the process in nanoseconds.
func cpuTime(tb testing.TB) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func TestIADPBOC(t *testing.T) {
	raw := mustHex(t, "07010103A0A0000100")
	iad, err := ParseIADPBOC(raw)
	if err != nil {
		t.Fatal(err)
	}
	if iad.KeyIndex != 1 || iad.CVN != CVNPBOC01 || hexOf(iad.CVR[:]) != "03A0A000" || iad.AlgorithmID != AlgPBOC3DES || hexOf(iad.Discretionary) != "00" {
		t.Fatalf("iad = %+v", iad)
	}
	if hexOf(iad.Bytes()) != hexOf(raw) {
		t.Fatalf("Bytes = %X", iad.Bytes())
	}
	for _, bad := range []string{"0701", "08010103A0A0000100", "07010104A0A0000100"} {
		if _, err := ParseIADPBOC(mustHex(t, bad)); !errors.Is(err, ErrBadInput) {
			t.Errorf("ParseIADPBOC(%s) err = %v", bad, err)
		}
	}
}

func TestTxDataFromTLVErrors(t *testing.T) {
	if _, err := TxDataFromTLV(nil); !errors.Is(err, ErrBadInput) {
		t.Fatalf("empty: %v", err)
	}
	tlvs, _ := DecodeTLV(mustHex(t, "9F02050000004000 9F0306000000000000 9F1A020124 95058000048000 5F2A020124 9A03191105 9C0101 9F370452BF4585 82021800 9F3602001C"))
	if _, err := TxDataFromTLV(tlvs); !errors.Is(err, ErrBadInput) {
		t.Fatalf("short 9F02: %v", err)
	}
}

func TestParseScheme(t *testing.T) {
	for _, s := range []string{"pboc", "csk", "visa-cvn10", "mc-skd"} {
		if _, err := ParseScheme(s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	if _, err := ParseScheme("amex"); !errors.Is(err, ErrBadInput) {
		t.Fatalf("amex: %v", err)
	}
}

func TestOddParity(t *testing.T) {
	k := mustHex(t, "0000FFFE0102030480")
	OddParity(k)
	if hexOf(k) != "0101FEFE0102020480" {
		t.Fatalf("OddParity = %X", k)
	}
}

// DiversifyKey is the same construction as Option A: diversifying the IMK
// with Option A's Y gives the published ICC master key.
func TestDiversifyKeyIsOptionA(t *testing.T) {
	y := optionAInput("12345678901234567", 45)
	if hexOf(y[:]) != "4567890123456745" {
		t.Fatalf("Y = %X", y)
	}
	k := DiversifyKey(mustKey(t, vecIMK), y)
	if hexOf(k[:]) != "946DC1A8C78A624519BC4645CB073737" {
		t.Fatalf("DiversifyKey = %X", k)
	}
}

func TestMACAlg3BadInput(t *testing.T) {
	if _, err := MACAlg3(make([]byte, 8), nil, PadMethod2); !errors.Is(err, ErrBadInput) {
		t.Fatalf("8-byte key: %v", err)
	}
	if _, err := MACAlg3(make([]byte, 16), nil, 3); !errors.Is(err, ErrBadInput) {
		t.Fatalf("pad 3: %v", err)
	}
	if _, err := ARPCMethod2(Key{}, [8]byte{}, [4]byte{}, make([]byte, 9)); !errors.Is(err, ErrBadInput) {
		t.Fatalf("9 bytes proprietary data: %v", err)
	}
	// Padding method 1 on an empty message MACs one zero block.
	a, _ := MACAlg3(make([]byte, 16), nil, PadMethod1)
	b, _ := MACAlg3(make([]byte, 16), make([]byte, 8), PadMethod1)
	if a != b {
		t.Fatalf("empty %X != zero block %X", a, b)
	}
}

// The load flow: card MAC1, host MAC2, card TAC, each keyed as the spec
// says; a changed field changes each MAC.
func TestEPurseLoad(t *testing.T) {
	dlk := DiversifyKey(mustKey(t, "11223344556677888877665544332211"), [8]byte{0, 0, 0, 0, 0, 0, 0x12, 0x34})
	seslk := EPurseLoadSessionKey(dlk, [4]byte{1, 2, 3, 4}, [2]byte{0, 7})
	want, _ := TDESEncrypt(dlk[:], mustHex(t, "0102030400078000"))
	if seslk != want {
		t.Fatalf("SESLK = %X, want %X", seslk, want)
	}
	tx := EPurseTx{Amount: 5000, Type: EPurseTypeLoad, Terminal: [6]byte{0, 0, 0, 0, 0, 1}, Date: [4]byte{0x20, 0x26, 0x11, 0x26}, Time: [3]byte{0x01, 0x02, 0x03}}
	mac1 := EPurseLoadMAC1(seslk, 100, tx)
	if mac1 != EPurseMAC(seslk, mustHex(t, "00000064 00001388 02 000000000001")) {
		t.Fatal("MAC1 layout")
	}
	mac2 := EPurseLoadMAC2(seslk, tx)
	if mac2 != EPurseMAC(seslk, mustHex(t, "00001388 02 000000000001 20261126 010203")) {
		t.Fatal("MAC2 layout")
	}
	tacKey := EPurseTACKey(dlk)
	tac := EPurseLoadTAC(tacKey, 5100, [2]byte{0, 7}, tx)
	if tac != EPurseMAC(tacKey, mustHex(t, "000013EC 0007 00001388 02 000000000001 20261126 010203")) {
		t.Fatal("TAC layout")
	}
	ptac := EPursePurchaseTAC(tacKey, tx, [4]byte{0, 0, 0, 9})
	if ptac != EPurseMAC(tacKey, mustHex(t, "00001388 02 000000000001 00000009 20261126 010203")) {
		t.Fatal("purchase TAC layout")
	}
	tx.Amount++
	if EPurseLoadMAC2(seslk, tx) == mac2 {
		t.Fatal("MAC2 ignores the amount")
	}
}

func TestDESMAC(t *testing.T) {
	sespk := [8]byte(mustHex(t, "003238ABC57659DD"))
	full, err := DESMAC(sespk[:], mustHex(t, "00001000"))
	if err != nil || hexOf(full[:4]) != "56988A13" {
		t.Fatalf("DESMAC = %X, %v", full, err)
	}
	if _, err := DESMAC(make([]byte, 16), nil); !errors.Is(err, ErrBadInput) {
		t.Fatalf("16-byte key: %v", err)
	}
}

func TestVerifyARQCUnknownScheme(t *testing.T) {
	c := mustPBOCCase(t)
	if _, _, err := VerifyARQC(c.imk, "amex", c.pan, c.psn, c.atc, [4]byte{}, c.data, c.arqc); !errors.Is(err, ErrBadInput) {
		t.Fatalf("err = %v", err)
	}
	if ok, _, err := VerifyARQC(c.imk, SchemePBOC, c.pan, c.psn, c.atc, [4]byte{}, c.data, c.arqc); !ok || err != nil {
		t.Fatalf("PBOC through VerifyARQC: %v, %v", ok, err)
	}
}

func TestEPurseDiversifier(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"31000000000012345678", "0000000012345678"},
		{"12345", "0000000000012345"},
		{"1234567890123456", "1234567890123456"},
	} {
		got, err := EPurseDiversifier(c.in)
		if err != nil || hexOf(got[:]) != c.want {
			t.Errorf("EPurseDiversifier(%s) = %X, %v; want %s", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "12a4", "123456789012345678901"} {
		if _, err := EPurseDiversifier(bad); !errors.Is(err, ErrBadInput) {
			t.Errorf("EPurseDiversifier(%q) err = %v", bad, err)
		}
	}
}

func BenchmarkDecodeTLVDE55(b *testing.B) {
	de55 := mustHex(b, "9F2608FA624250B008B59A9F2701809F101307010103A0A00001000000000000000000000000"+
		"9F3704CAFEBABE9F36020001950500000000009A032611269C01009F02060000000010005F2A020156"+
		"820200809F1A0201569F03060000000000009F3303E0E1C89F34031E03009F350122"+
		"9F1E0831323334353637388407A00000033301019F090200309F410400000001"+
		"9F6C0202809F6604360040009F6E04208000009F0702FF009F5D06000000010000")
	b.ReportAllocs()
	b.SetBytes(int64(len(de55)))
	for b.Loop() {
		tlvs, err := DecodeTLV(de55)
		if err != nil || len(tlvs) < 20 {
			b.Fatal(err)
		}
	}
}
