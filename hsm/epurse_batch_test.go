package hsm

import (
	"context"
	"testing"

	"github.com/mipay-oss/mipay/emv"
)

// TestEPurseVerifyPurchaseTACs: the batch check agrees with the one-by-one
// check (good and altered TACs, several cards interleaved), and refuses an
// unknown key.
func TestEPurseVerifyPurchaseTACs(t *testing.T) {
	ctx := context.Background()
	s := MustOpenSoft(t, "")
	mtk := mustHex(t, "00112233445566778899AABBCCDDEEFF")
	mustImport(t, s, "transit/sh/mtk", TDES2, mtk)
	var checks []EPursePurchaseTACCheck
	for i, card := range []string{"3101000012345678", "3101000000000001", "3101000012345678", "3101000000000002"} {
		div, err := emv.EPurseDiversifier(card)
		if err != nil {
			t.Fatal(err)
		}
		tx := emv.EPurseTx{Amount: uint32(200 + i), Type: emv.EPurseTypePurchase, Terminal: [6]byte{1, 2, 3, 4, 5, 6},
			Date: [4]byte{0x20, 0x26, 0x11, 0x26}, Time: [3]byte{0x08, 0x00, byte(i)}}
		tsn := [4]byte{0, 0, 0, byte(i + 1)}
		tk := refDiversify(t, mtk, div)
		key := make([]byte, 8)
		for j := range key {
			key[j] = tk[j] ^ tk[8+j]
		}
		tac := emv.EPursePurchaseTAC([8]byte(key), tx, tsn)
		if i == 1 {
			tac[0] ^= 1 // altered
		}
		checks = append(checks, EPursePurchaseTACCheck{Diversifier: div, Tx: tx, TermSerial: tsn, TAC: tac})
	}
	got, err := s.EPurseVerifyPurchaseTACs(ctx, "transit/sh/mtk", checks)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range checks {
		one, err := s.EPurseVerifyPurchaseTAC(ctx, "transit/sh/mtk", c.Diversifier, c.Tx, c.TermSerial, c.TAC)
		if err != nil {
			t.Fatal(err)
		}
		if got[i] != one || got[i] != (i != 1) {
			t.Errorf("check %d: batch %v, one by one %v", i, got[i], one)
		}
	}
	if _, err := s.EPurseVerifyPurchaseTACs(ctx, "transit/sh/none", checks); err == nil {
		t.Error("an unknown key verified")
	}
	var _ EPurseBatchVerifier = s
}
