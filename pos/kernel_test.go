package pos

import (
	"context"
	"crypto/ecdh"
	"encoding/hex"
	"encoding/json"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/cryptobox"
	"github.com/mipay-oss/mipay/emv"
	"github.com/mipay-oss/mipay/nfc"
	"github.com/mipay-oss/mipay/se"
)

var testIMK, _ = hex.DecodeString("0123456789ABCDEFFEDCBA9876543210")

const testDPAN = "6234567890123456"

// mustPhoneSE makes an SE with one card whose key derives from testIMK, as
// the TSP would personalize it.
func mustPhoneSE(tb testing.TB) *se.SE {
	tb.Helper()
	data := tb.TempDir()
	f, err := se.OpenFactory(data)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := se.Manufacture(data+"/phone", f, se.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	mk, _ := emv.DeriveICCMK(testIMK, testDPAN, 1)
	pub, _ := ecdh.P256().NewPublicKey(s.PublicKey())
	sealed, err := cryptobox.Seal(pub, mk[:], []byte("mipay tsp icc key v1\x00"+s.ID()+"\x00REF1"))
	if err != nil {
		tb.Fatal(err)
	}
	rec1 := "70" + "15" + "57" + "0F" + testDPAN + "D3012220" + "00000F" + "5F340101"
	p := se.Profile{
		Version: 1, TokenRef: "REF1", CardType: "debit", DPAN: testDPAN, Expiry: "3012", PSN: 1,
		AID: "A000000333010101", AppLabel: "UnionPay Debit", AppPriority: 1, AIP: "1800", AFL: "08010100",
		PDOL: "9F66049F02069F03069F1A0295055F2A029A039C019F3704", KeyIndex: 1, CVN: 1, AlgorithmID: 1,
		Records: []se.ProfileRecord{{SFI: 1, Number: 1, Data: rec1}}, SealedKey: sealed, SEID: s.ID(),
	}
	b, _ := json.Marshal(p)
	if _, err := s.Install(b); err != nil {
		tb.Fatal(err)
	}
	return s
}

// tap runs one read: the phone taps the reader over the nfc link.
func tap(t *testing.T, phone *se.SE, amount int64) *Read {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := nfc.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	go nfc.Tap(ctx, r.Addr(), phone)
	sess, err := r.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	k := &Kernel{Profile: DefaultTerminalProfile()}
	cur, _ := CurrencyBCD("156")
	read, err := k.ReadCard(ctx, sess, Txn{AmountMinor: amount, Currency: cur, Time: time.Now(), TTC: 7})
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return read
}

func TestReadCard(t *testing.T) {
	phone := mustPhoneSE(t)
	t.Run("not armed gives See phone", func(t *testing.T) {
		if r := tap(t, phone, 1250); r.Outcome != OutcomeSeePhone {
			t.Fatalf("outcome %s", r.Outcome)
		}
	})
	t.Run("armed gives an online request with a valid ARQC", func(t *testing.T) {
		if err := phone.Arm("REF1"); err != nil {
			t.Fatal(err)
		}
		r := tap(t, phone, 1250)
		if r.Outcome != OutcomeOnline || r.Token != testDPAN || r.Expiry != "3012" || r.PSN != "01" || !r.CDCVM {
			t.Fatalf("read %+v", r)
		}
		tlvs, err := emv.DecodeTLV(r.ICC)
		if err != nil {
			t.Fatal(err)
		}
		tx, err := emv.TxDataFromTLV(tlvs)
		if err != nil {
			t.Fatal(err)
		}
		iadT, _ := emv.FindTag(tlvs, 0x9F10)
		iad, err := emv.ParseIADPBOC(iadT.Value)
		if err != nil {
			t.Fatal(err)
		}
		arqcT, _ := emv.FindTag(tlvs, 0x9F26)
		var arqc [8]byte
		copy(arqc[:], arqcT.Value)
		imk, _ := emv.NewIMK(testIMK)
		ok, _, err := emv.VerifyARQCPBOC(imk, r.Token, 1, tx.ATCValue(), emv.ARQCDataPBOC(&tx, iad.CVR), arqc)
		if err != nil || !ok {
			t.Fatalf("ARQC from DE55 does not verify (%v)", err)
		}
		if amt, _ := emv.FindTag(tlvs, 0x9F02); hex.EncodeToString(amt.Value) != "000000001250" {
			t.Fatalf("9F02 %X", amt.Value)
		}
	})
}
