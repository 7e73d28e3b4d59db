package se

import (
	"crypto/ecdh"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/cryptobox"
	"github.com/mipay-oss/mipay/emv"
)

var testIMK, _ = hex.DecodeString("0123456789ABCDEFFEDCBA9876543210")

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func mustManufacture(tb testing.TB, clk *clock) (*SE, string) {
	tb.Helper()
	data := tb.TempDir()
	f, err := OpenFactory(data)
	if err != nil {
		tb.Fatal(err)
	}
	dir := data + "/phone"
	s, err := Manufacture(dir, f, Options{Now: clk.now})
	if err != nil {
		tb.Fatal(err)
	}
	return s, dir
}

// profileFor builds a profile as the TSP does, with the ICC key derived from
// the test IMK and sealed to the SE.
func profileFor(tb testing.TB, s *SE, ref, dpan string) []byte {
	tb.Helper()
	mk, err := emv.DeriveICCMK(testIMK, dpan, 1)
	if err != nil {
		tb.Fatal(err)
	}
	pub, err := ecdh.P256().NewPublicKey(s.PublicKey())
	if err != nil {
		tb.Fatal(err)
	}
	sealed, err := cryptobox.Seal(pub, mk[:], profileKeyAAD(s.ID(), ref))
	if err != nil {
		tb.Fatal(err)
	}
	p := Profile{
		Version: 1, TokenRef: ref, CardType: "debit", DPAN: dpan, Expiry: "3012", PSN: 1,
		AID: "A000000333010101", AppLabel: "UnionPay Debit", AppPriority: 1, AIP: "1800", AFL: "08010100",
		PDOL: "9F66049F02069F03069F1A0295055F2A029A039C019F3704", KeyIndex: 1, CVN: 1, AlgorithmID: 1,
		Records:   []ProfileRecord{{SFI: 1, Number: 1, Data: "700A5A0862345678901234565F"}},
		SealedKey: sealed, SEID: s.ID(),
	}
	b, err := json.Marshal(p)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

const pdolData = "36000000" + "000000001250" + "000000000000" + "0156" + "0000000000" + "0156" + "261126" + "00" + "12345678"

func gpoAPDU() []byte {
	d := mustHex(pdolData)
	return append(append([]byte{0x80, 0xA8, 0x00, 0x00, byte(len(d) + 2), 0x83, byte(len(d))}, d...), 0x00)
}

func TestAttestationChain(t *testing.T) {
	s, _ := mustManufacture(t, &clock{time.Now()})
	chain := s.CertificateChain()
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		t.Fatal(err)
	}
	root, err := x509.ParseCertificate(chain[1])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("chain does not verify: %v", err)
	}
	if leaf.Subject.CommonName != s.ID() {
		t.Fatalf("leaf CN %q, SE id %q", leaf.Subject.CommonName, s.ID())
	}
}

func TestPaymentTap(t *testing.T) {
	clk := &clock{time.Now()}
	s, dir := mustManufacture(t, clk)
	const dpan = "6234567890123456"
	if _, err := s.Install(profileFor(t, s, "DTR1", dpan)); err != nil {
		t.Fatal(err)
	}
	ppse := s.Transmit(append([]byte{0x00, 0xA4, 0x04, 0x00, 14}, append([]byte(PPSE), 0)...))
	if got := hex.EncodeToString(ppse[len(ppse)-2:]); got != "9000" {
		t.Fatalf("PPSE SW %s", got)
	}
	sel := s.Transmit(append([]byte{0x00, 0xA4, 0x04, 0x00, 8}, append(mustHex("A000000333010101"), 0)...))
	if sel[len(sel)-2] != 0x90 {
		t.Fatalf("SELECT AID: % X", sel)
	}

	t.Run("not armed answers 6986", func(t *testing.T) {
		r := s.Transmit(gpoAPDU())
		if hex.EncodeToString(r) != "6986" {
			t.Fatalf("got % X", r)
		}
	})
	t.Run("armed makes a valid ARQC once", func(t *testing.T) {
		if err := s.Arm("DTR1"); err != nil {
			t.Fatal(err)
		}
		r := s.Transmit(gpoAPDU())
		if r[len(r)-2] != 0x90 {
			t.Fatalf("GPO: % X", r)
		}
		tlvs, err := emv.DecodeTLV(r[:len(r)-2])
		if err != nil {
			t.Fatal(err)
		}
		arqc, _ := emv.Find(tlvs, "77.9F26")
		atc, _ := emv.Find(tlvs, "77.9F36")
		iad, _ := emv.Find(tlvs, "77.9F10")
		ctq, _ := emv.Find(tlvs, "77.9F6C")
		if hex.EncodeToString(atc.Value) != "0001" || hex.EncodeToString(ctq.Value) != "0080" {
			t.Fatalf("ATC %X CTQ %X", atc.Value, ctq.Value)
		}
		parsed, err := emv.ParseIADPBOC(iad.Value)
		if err != nil {
			t.Fatal(err)
		}
		// Recompute as the issuer side does from the terminal's data.
		d := mustHex(pdolData)
		var tx emv.TxData
		copy(tx.Amount[:], d[4:10])
		copy(tx.AmountOther[:], d[10:16])
		copy(tx.Country[:], d[16:18])
		copy(tx.TVR[:], d[18:23])
		copy(tx.Currency[:], d[23:25])
		copy(tx.Date[:], d[25:28])
		tx.Type = d[28]
		copy(tx.Unpredictable[:], d[29:33])
		copy(tx.AIP[:], mustHex("1800"))
		copy(tx.ATC[:], atc.Value)
		imk, err := emv.NewIMK(testIMK)
		if err != nil {
			t.Fatal(err)
		}
		var a [8]byte
		copy(a[:], arqc.Value)
		ok, _, err := emv.VerifyARQCPBOC(imk, dpan, 1, 1, emv.ARQCDataPBOC(&tx, parsed.CVR), a)
		if err != nil || !ok {
			t.Fatalf("ARQC does not verify: %v", err)
		}
		if r := s.Transmit(gpoAPDU()); hex.EncodeToString(r) != "6986" {
			t.Fatalf("second GPO on one fingerprint: % X", r)
		}
	})
	t.Run("arming expires after the window", func(t *testing.T) {
		if err := s.Arm("DTR1"); err != nil {
			t.Fatal(err)
		}
		clk.t = clk.t.Add(DefaultArmWindow)
		if r := s.Transmit(gpoAPDU()); hex.EncodeToString(r) != "6986" {
			t.Fatalf("GPO after window: % X", r)
		}
	})
	t.Run("read record per AFL", func(t *testing.T) {
		r := s.Transmit([]byte{0x00, 0xB2, 0x01, 0x0C, 0x00})
		if hex.EncodeToString(r) != "700a5a0862345678901234565f9000" {
			t.Fatalf("READ RECORD: % X", r)
		}
		if r := s.Transmit([]byte{0x00, 0xB2, 0x02, 0x0C, 0x00}); hex.EncodeToString(r) != "6a83" {
			t.Fatalf("record outside AFL: % X", r)
		}
	})
	t.Run("ATC survives restart", func(t *testing.T) {
		s2, err := Open(dir, Options{Now: clk.now})
		if err != nil {
			t.Fatal(err)
		}
		if c := s2.Cards(); len(c) != 1 || c[0].ATC != 1 || !c[0].Selected {
			t.Fatalf("cards after reopen: %+v", c)
		}
	})
}

func TestInstallRules(t *testing.T) {
	clk := &clock{time.Now()}
	s, _ := mustManufacture(t, clk)
	t.Run("ninth card refused", func(t *testing.T) {
		for i := 0; i < MaxPaymentCards; i++ {
			if _, err := s.Install(profileFor(t, s, fmt.Sprintf("R%d", i), "623456789012345"+fmt.Sprint(i))); err != nil {
				t.Fatalf("card %d: %v", i, err)
			}
		}
		_, err := s.Install(profileFor(t, s, "R9", "6234567890123999"))
		if mipay.ErrorCode(err) != mipay.ELIMIT || len(s.Cards()) != MaxPaymentCards {
			t.Fatalf("9th: %v, %d cards", err, len(s.Cards()))
		}
	})
	t.Run("profile of another SE refused", func(t *testing.T) {
		other, _ := mustManufacture(t, clk)
		_, err := other.Install(profileFor(t, s, "X1", "6234567890123456"))
		if err == nil || len(other.Cards()) != 0 {
			t.Fatalf("installed another SE's profile: %v", err)
		}
	})
	t.Run("key sealed for another token refused", func(t *testing.T) {
		other, _ := mustManufacture(t, clk)
		var p Profile
		if err := json.Unmarshal(profileFor(t, other, "A1", "6234567890123456"), &p); err != nil {
			t.Fatal(err)
		}
		p.TokenRef = "A2"
		b, _ := json.Marshal(p)
		if _, err := other.Install(b); mipay.ErrorCode(err) != mipay.EFORBIDDEN {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("wipe removes every card", func(t *testing.T) {
		if err := s.Wipe(); err != nil {
			t.Fatal(err)
		}
		if len(s.Cards()) != 0 {
			t.Fatal("cards left after wipe")
		}
		if r := s.Transmit(append([]byte{0x00, 0xA4, 0x04, 0x00, 14}, []byte(PPSE)...)); hex.EncodeToString(r) != "6a82" {
			t.Fatalf("PPSE after wipe: % X", r)
		}
	})
}

func TestOpenRefusesForeignState(t *testing.T) {
	clk := &clock{time.Now()}
	_, dir := mustManufacture(t, clk)
	_, dir2 := mustManufacture(t, clk)
	// Another device's sealing key cannot open this state.
	if err := writeFileAtomic(dir+"/"+sealFile, mustRead(t, dir2+"/"+sealFile), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{}); err == nil {
		t.Fatal("opened state under a foreign sealing key")
	}
}

func mustRead(tb testing.TB, p string) []byte {
	tb.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func FuzzTransmit(f *testing.F) {
	clk := &clock{time.Now()}
	s, _ := mustManufacture(f, clk)
	if _, err := s.Install(profileFor(f, s, "F1", "6234567890123456")); err != nil {
		f.Fatal(err)
	}
	f.Add(append([]byte{0x00, 0xA4, 0x04, 0x00, 14}, []byte(PPSE)...))
	f.Add(gpoAPDU())
	f.Add([]byte{0x00, 0xB2, 0x01, 0x0C, 0x00})
	f.Add([]byte{0x80, 0xA8, 0x00, 0x00, 0x02, 0x83, 0x00})
	f.Fuzz(func(t *testing.T, apdu []byte) {
		_ = s.Arm("F1")
		r := s.Transmit(apdu)
		if len(r) < 2 {
			t.Fatalf("response without status word: % X", r)
		}
	})
}
