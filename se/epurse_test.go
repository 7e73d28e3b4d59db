package se

import (
	"bytes"
	"crypto/ecdh"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/cryptobox"
	"github.com/mipay-oss/mipay/emv"
)

// The published PBOC e-purse example (vectors/emv-vectors.md).
var (
	vecDPK  = mustHex("11223344556677888877665544332211")
	vecDTK  = mustHex("00112233445566778899AABBCCDDEEFF")
	vecDLK  = mustHex("0123456789ABCDEFFEDCBA9876543210")
	testAID = mustHex("A000000632010103")
)

// transitProfileFor seals the given card keys to s as the agency does.
func transitProfileFor(tb testing.TB, s *SE, number string, aid []byte, dpk, dlk, dtk []byte) []byte {
	tb.Helper()
	pub, err := ecdh.P256().NewPublicKey(s.PublicKey())
	if err != nil {
		tb.Fatal(err)
	}
	seal := func(k []byte, role string) []byte {
		b, err := cryptobox.Seal(pub, k, TransitKeyAAD(s.ID(), number, role))
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
	b, err := json.Marshal(TransitProfile{Version: 1, City: "sz", CardNumber: number, AID: aid, Label: "Shenzhen Tong",
		SEID: s.ID(), MaxBalanceMinor: 100000, SealedDPK: seal(dpk, "dpk"), SealedDLK: seal(dlk, "dlk"), SealedDTK: seal(dtk, "dtk")})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func mustInstallPurse(tb testing.TB, s *SE, number string) {
	tb.Helper()
	if _, err := s.InstallTransit(transitProfileFor(tb, s, number, testAID, vecDPK, vecDLK, vecDTK)); err != nil {
		tb.Fatal(err)
	}
}

func apdu(tb testing.TB, s *SE, hexCmd string, wantSW uint16) []byte {
	tb.Helper()
	r := s.Transmit(mustHex(hexCmd))
	if len(r) < 2 {
		tb.Fatalf("%s: response %x", hexCmd, r)
	}
	if got := binary.BigEndian.Uint16(r[len(r)-2:]); got != wantSW {
		tb.Fatalf("%s: SW %04X, want %04X", hexCmd, got, wantSW)
	}
	return r[:len(r)-2]
}

// loadDirect credits a purse through INITIALIZE FOR LOAD / CREDIT FOR LOAD,
// computing MAC2 with the card's DLK as the load host would.
func loadDirect(tb testing.TB, s *SE, amount uint32) []byte {
	tb.Helper()
	term := mustHex("000000000099")
	cmd := "805000020B01" + hex.EncodeToString(binary.BigEndian.AppendUint32(nil, amount)) + hex.EncodeToString(term) + "10"
	r := apdu(tb, s, cmd, emv.SWSuccess)
	if len(r) != 16 {
		tb.Fatalf("INITIALIZE FOR LOAD answer %x", r)
	}
	sk := emv.EPurseLoadSessionKey(emv.Key(vecDLK), [4]byte(r[8:12]), [2]byte(r[4:6]))
	tx := emv.EPurseTx{Amount: amount, Type: emv.EPurseTypeLoad, Terminal: [6]byte(term), Date: [4]byte(mustHex("20260101")), Time: [3]byte(mustHex("080000"))}
	if mac1 := emv.EPurseLoadMAC1(sk, binary.BigEndian.Uint32(r[0:4]), tx); !bytes.Equal(mac1[:], r[12:16]) {
		tb.Fatalf("load MAC1 %x, want %x", r[12:16], mac1)
	}
	mac2 := emv.EPurseLoadMAC2(sk, tx)
	tac := apdu(tb, s, "805200000B"+"20260101080000"+hex.EncodeToString(mac2[:])+"04", emv.SWSuccess)
	want := emv.EPurseLoadTAC(emv.EPurseTACKey(emv.Key(vecDTK)), binary.BigEndian.Uint32(r[0:4])+amount, [2]byte(r[4:6]), tx)
	if !bytes.Equal(tac, want[:]) {
		tb.Fatalf("load TAC %x, want %x", tac, want)
	}
	return tac
}

func TestEPursePublishedPurchaseVector(t *testing.T) {
	s, _ := mustManufacture(t, &clock{t: time.Now()})
	mustInstallPurse(t, s, "3112000000000001")
	apdu(t, s, "00A4040008"+hex.EncodeToString(testAID), emv.SWSuccess)
	loadDirect(t, s, 0x1000)
	// The example's card has pseudo-random 11223344 and offline serial 0000.
	s.epRand = func(b []byte) { copy(b, mustHex("11223344")) }
	init := apdu(t, s, "805001020B01"+"00001000"+"001122334455"+"0F", emv.SWSuccess)
	if want := "00001000" + "0000" + "000000" + "01" + "00" + "11223344"; hex.EncodeToString(init) != lower(want) {
		t.Fatalf("INITIALIZE FOR PURCHASE answer %x, want %s", init, want)
	}
	// MAC1 F15CAB75 from the published example; terminal serial ends 0001.
	out := apdu(t, s, "805401000F"+"00000001"+"20120229"+"135100"+"F15CAB75"+"08", emv.SWSuccess)
	if got := hex.EncodeToString(out[4:8]); got != "56988a13" {
		t.Fatalf("MAC2 %s, want 56988a13 (published)", got)
	}
	tx := emv.EPurseTx{Amount: 0x1000, Type: emv.EPurseTypePurchase, Terminal: [6]byte(mustHex("001122334455")),
		Date: [4]byte(mustHex("20120229")), Time: [3]byte(mustHex("135100"))}
	tac := emv.EPursePurchaseTAC([8]byte(mustHex("8888888888888888")), tx, [4]byte(mustHex("00000001")))
	if !bytes.Equal(out[:4], tac[:]) {
		t.Fatalf("TAC %x, want %x (TAC key 8888888888888888 of the example)", out[:4], tac)
	}
	if bal := apdu(t, s, "805C000204", emv.SWSuccess); !bytes.Equal(bal, []byte{0, 0, 0, 0}) {
		t.Fatalf("balance after purchase %x, want 0", bal)
	}
	rec, err := ParseTransitRecord(apdu(t, s, "00B201C400", emv.SWSuccess))
	if err != nil {
		t.Fatal(err)
	}
	if rec.AmountMinor != 0x1000 || rec.Type != emv.EPurseTypePurchase || rec.Serial != 0 {
		t.Fatalf("log record %+v", rec)
	}
	if pr := apdu(t, s, "805A00060200"+"00", emv.SWSuccess); !bytes.Equal(pr, append(out[4:8:8], out[:4]...)) {
		t.Fatalf("transaction proof %x, want MAC2‖TAC %x", pr, out)
	}
}

func lower(s string) string { return string(bytes.ToLower([]byte(s))) }

func TestEPurseRefusals(t *testing.T) {
	s, dir := mustManufacture(t, &clock{t: time.Now()})
	mustInstallPurse(t, s, "3112000000000002")
	apdu(t, s, "00A4040008"+hex.EncodeToString(testAID), emv.SWSuccess)
	loadDirect(t, s, 500)
	t.Run("insufficient balance at INITIALIZE", func(t *testing.T) {
		apdu(t, s, "805001020B01"+"00000600"+"001122334455"+"0F", emv.SWInsufficientBalance)
	})
	t.Run("wrong MAC1 debits nothing", func(t *testing.T) {
		apdu(t, s, "805001020B01"+"00000100"+"001122334455"+"0F", emv.SWSuccess)
		apdu(t, s, "805401000F"+"00000001"+"20260101"+"120000"+"00000000"+"08", emv.SWMACInvalid)
		if bal := apdu(t, s, "805C000204", emv.SWSuccess); binary.BigEndian.Uint32(bal) != 500 {
			t.Fatalf("balance %x after a bad MAC1", bal)
		}
	})
	t.Run("DEBIT without INITIALIZE", func(t *testing.T) {
		apdu(t, s, "805401000F"+"00000001"+"20260101"+"120000"+"00000000"+"08", emv.SWConditionsNotSatisfied)
	})
	t.Run("CAPP cache only after INITIALIZE FOR CAPP PURCHASE", func(t *testing.T) {
		apdu(t, s, "80DC01B80401020304", emv.SWConditionsNotSatisfied)
	})
	t.Run("load above the maximum balance", func(t *testing.T) {
		apdu(t, s, "805000020B01"+"000186A0"+"000000000099"+"10", emv.SWWrongData)
	})
	t.Run("CREDIT with a wrong MAC2 credits nothing", func(t *testing.T) {
		apdu(t, s, "805000020B01"+"00000064"+"000000000099"+"10", emv.SWSuccess)
		apdu(t, s, "805200000B"+"20260101080000"+"00000000"+"04", emv.SWMACInvalid)
		if bal := apdu(t, s, "805C000204", emv.SWSuccess); binary.BigEndian.Uint32(bal) != 500 {
			t.Fatalf("balance %x after a bad MAC2", bal)
		}
	})
	t.Run("a second card of the same city", func(t *testing.T) {
		if _, err := s.InstallTransit(transitProfileFor(t, s, "3112000000000003", testAID, vecDPK, vecDLK, vecDTK)); err == nil {
			t.Fatal("installed a second card with the same AID")
		}
	})
	t.Run("keys sealed to another SE", func(t *testing.T) {
		other, _ := mustManufacture(t, &clock{t: time.Now()})
		p := transitProfileFor(t, other, "3112000000000004", mustHex("A000000632010104"), vecDPK, vecDLK, vecDTK)
		if _, err := s.InstallTransit(p); err == nil {
			t.Fatal("installed a profile of another SE")
		}
	})
	t.Run("state survives reopening", func(t *testing.T) {
		s2, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		cards := s2.TransitCards()
		if len(cards) != 1 || cards[0].BalanceMinor != 500 || cards[0].OnlineSerial != 1 {
			t.Fatalf("reopened cards %+v", cards)
		}
	})
}

// TestEPurseTapCutOff: the state on disk after each step of a tap is the old
// state (before DEBIT) or the new one (after it), never a mix.
func TestEPurseTapCutOff(t *testing.T) {
	s, dir := mustManufacture(t, &clock{t: time.Now()})
	mustInstallPurse(t, s, "3112000000000005")
	apdu(t, s, "00A4040008"+hex.EncodeToString(testAID), emv.SWSuccess)
	loadDirect(t, s, 1000)
	reopen := func() TransitCard {
		s2, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		return s2.TransitCards()[0]
	}
	s.epRand = func(b []byte) { copy(b, mustHex("01020304")) }
	init := apdu(t, s, "805003020B01"+"00000190"+"001122334455"+"0F", emv.SWSuccess)
	apdu(t, s, "80DC01B808"+"0102030405060708", emv.SWSuccess)
	if c := reopen(); c.BalanceMinor != 1000 || c.OfflineSerial != 0 {
		t.Fatalf("cut before DEBIT: %+v, want the old state", c)
	}
	sk := emv.EPursePurchaseSessionKey(emv.Key(vecDPK), [4]byte(init[11:15]), [2]byte(init[4:6]), [2]byte{0, 7})
	tx := emv.EPurseTx{Amount: 400, Type: emv.EPurseTypeCompositePurchase, Terminal: [6]byte(mustHex("001122334455")),
		Date: [4]byte(mustHex("20260102")), Time: [3]byte(mustHex("090000"))}
	mac1 := emv.EPursePurchaseMAC1(sk, tx)
	apdu(t, s, "805401000F"+"00000007"+"20260102"+"090000"+hex.EncodeToString(mac1[:])+"08", emv.SWSuccess)
	s2, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := s2.TransitCards()[0]
	if c.BalanceMinor != 600 || c.OfflineSerial != 1 {
		t.Fatalf("after DEBIT: %+v, want balance 600 serial 1", c)
	}
	apdu(t, s2, "00A4040008"+hex.EncodeToString(testAID), emv.SWSuccess)
	if r := apdu(t, s2, "00B201BC00", emv.SWSuccess); !bytes.Equal(r, mustHex("0102030405060708")) {
		t.Fatalf("CAPP record %x after DEBIT", r)
	}
	log, err := s2.TransitLog(c.CardNumber)
	if err != nil || len(log) != 2 || log[0].Type != emv.EPurseTypeCompositePurchase || log[1].Type != emv.EPurseTypeLoad {
		t.Fatalf("log %+v, %v", log, err)
	}
}

func TestEPurseLimitAndExpress(t *testing.T) {
	data := t.TempDir()
	f, err := OpenFactory(data)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Manufacture(data+"/p", f, Options{MaxTransitCards: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i, aid := range []string{"A000000632010101", "A000000632010102", "A000000632010103"} {
		_, err := s.InstallTransit(transitProfileFor(t, s, "311000000000000"+string(rune('1'+i)), mustHex(aid), vecDPK, vecDLK, vecDTK))
		if i < 2 && err != nil {
			t.Fatal(err)
		}
		if i == 2 && err == nil {
			t.Fatal("a 3rd transit card was installed with MaxTransitCards 2")
		}
	}
	// Express mode: nothing armed, yet the e-purse answers.
	apdu(t, s, "00A4040008A000000632010101", emv.SWSuccess)
	apdu(t, s, "805C000204", emv.SWSuccess)
	// Selecting another applet leaves the e-purse.
	apdu(t, s, "00A404000E"+hex.EncodeToString([]byte(PPSE)), emv.SWFileNotFound)
	apdu(t, s, "805C000204", emv.SWINSNotSupported)
	if err := s.RemoveTransit("3110000000000001"); err != nil {
		t.Fatal(err)
	}
	apdu(t, s, "00A4040008A000000632010101", emv.SWFileNotFound)
}

func TestCardNumberBCD(t *testing.T) {
	for _, n := range []string{"3112000000000001", "123", "12345678901234567890"} {
		got, err := CardNumberFromBCD(cardNumberBCD(n))
		if err != nil || got != n {
			t.Fatalf("%s → %q, %v", n, got, err)
		}
	}
	if _, err := CardNumberFromBCD([]byte{0xAB}); err == nil {
		t.Fatal("accepted non-BCD")
	}
}

func FuzzEPurseAPDU(f *testing.F) {
	f.Add(mustHex("805001020B0100001000001122334455"))
	f.Add(mustHex("805401000F0000000120120229135100F15CAB7508"))
	f.Add(mustHex("80DC01B80401020304"))
	f.Add(mustHex("00B201C400"))
	f.Add(mustHex("805A0002020000"))
	s, _ := mustManufacture(f, &clock{t: time.Now()})
	mustInstallPurse(f, s, "3112000000000009")
	f.Fuzz(func(t *testing.T, cmd []byte) {
		s.Transmit(mustHex("00A4040008" + hex.EncodeToString(testAID)))
		before := s.TransitCards()[0]
		r := s.Transmit(cmd)
		if len(r) < 2 {
			t.Fatalf("response %x has no SW", r)
		}
		after := s.TransitCards()[0]
		if after.BalanceMinor > before.BalanceMinor {
			t.Fatalf("balance rose from %d to %d without a load MAC2", before.BalanceMinor, after.BalanceMinor)
		}
	})
}

func TestInAppCryptogram(t *testing.T) {
	clk := &clock{time.Now()}
	s, _ := mustManufacture(t, clk)
	const dpan = "6234567890123456"
	if _, err := s.Install(profileFor(t, s, "DTR1", dpan)); err != nil {
		t.Fatal(err)
	}
	req := InAppRequest{TokenRef: "DTR1", AmountMinor: 5000, Currency: "156", Country: "156", Unpredictable: [4]byte{1, 2, 3, 4}, Time: clk.t}
	t.Run("without fingerprint refused", func(t *testing.T) {
		if _, err := s.InAppCryptogram(req); err == nil {
			t.Fatal("cryptogram without arming")
		}
	})
	t.Run("armed: ARQC verifies at the issuer side, once", func(t *testing.T) {
		if err := s.Arm("DTR1"); err != nil {
			t.Fatal(err)
		}
		c, err := s.InAppCryptogram(req)
		if err != nil {
			t.Fatal(err)
		}
		if c.DPAN != dpan || c.ATC != 1 || c.Entry != "091" {
			t.Fatalf("cryptogram %+v", c)
		}
		tlvs, err := emv.DecodeTLV(c.ICC)
		if err != nil {
			t.Fatal(err)
		}
		tx, err := emv.TxDataFromTLV(tlvs)
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(tx.Amount[:]) != "000000005000" {
			t.Fatalf("9F02 %x", tx.Amount)
		}
		arqc, _ := emv.FindTag(tlvs, 0x9F26)
		imk, err := emv.NewIMK(testIMK)
		if err != nil {
			t.Fatal(err)
		}
		ok, _, err := emv.VerifyARQCPBOC(imk, dpan, 1, 1, emv.ARQCDataPBOC(&tx, cvr), [8]byte(arqc.Value))
		if err != nil || !ok {
			t.Fatalf("in-app ARQC does not verify: %v", err)
		}
		if _, err := s.InAppCryptogram(req); err == nil {
			t.Fatal("second cryptogram on one fingerprint")
		}
	})
}
