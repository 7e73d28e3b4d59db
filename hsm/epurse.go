package hsm

import (
	"context"
	"crypto/subtle"

	"github.com/mipay-oss/mipay/emv"
)

// E-purse (PBOC ED/EP, transit cards) operations. The agency's master keys
// (purchase MPK, load MLK, TAC MTK) are TDES2 keys in the HSM; a card's keys
// are emv.DiversifyKey(master, emv.EPurseDiversifier(cardNumber)). Every
// operation derives the card key and session key inside the HSM and returns
// only MACs and verdicts.

// EPurseLoadInput is an online load as the load host sees it: the card's
// INITIALIZE FOR LOAD answer and the load being made.
type EPurseLoadInput struct {
	Diversifier  [8]byte      // emv.EPurseDiversifier(card number)
	Random       [4]byte      // the card's pseudo-random number
	OnlineSerial [2]byte      // the card's online transaction serial (before this load)
	Balance      uint32       // balance before the load, minor units
	Tx           emv.EPurseTx // amount, type (emv.EPurseTypeLoad), terminal, date, time
	MAC1         [4]byte      // the card's MAC1
}

// EPurseLoadResult says whether the card's MAC1 is right and, if so, the
// MAC2 for CREDIT FOR LOAD.
type EPurseLoadResult struct {
	Valid bool
	MAC2  [4]byte
}

// EPurseLoad checks MAC1 of an online load with the card's load key
// (diversified from the master load key mlk) and makes MAC2.
func (s *Soft) EPurseLoad(_ context.Context, mlk Handle, in EPurseLoadInput) (EPurseLoadResult, error) {
	k, err := s.get(mlk, TDES2)
	if err != nil {
		return EPurseLoadResult{}, err
	}
	dlk := emv.DiversifyKey(k.tdes, in.Diversifier)
	seslk := emv.EPurseLoadSessionKey(dlk, in.Random, in.OnlineSerial)
	clear(dlk[:])
	defer clear(seslk[:])
	mac1 := emv.EPurseLoadMAC1(seslk, in.Balance, in.Tx)
	if subtle.ConstantTimeCompare(mac1[:], in.MAC1[:]) != 1 {
		return EPurseLoadResult{}, nil
	}
	return EPurseLoadResult{Valid: true, MAC2: emv.EPurseLoadMAC2(seslk, in.Tx)}, nil
}

// EPurseVerifyLoadTAC checks the TAC a card returned after a load, with the
// card's TAC key diversified from the master TAC key mtk.
func (s *Soft) EPurseVerifyLoadTAC(_ context.Context, mtk Handle, diversifier [8]byte, newBalance uint32, onlineSerial [2]byte, tx emv.EPurseTx, tac [4]byte) (bool, error) {
	tk, err := s.tacKey(mtk, diversifier)
	if err != nil {
		return false, err
	}
	defer clear(tk[:])
	want := emv.EPurseLoadTAC(tk, newBalance, onlineSerial, tx)
	return subtle.ConstantTimeCompare(want[:], tac[:]) == 1, nil
}

// EPurseVerifyPurchaseTAC checks the TAC of a purchase (clearing of
// offline transit taps), with the card's TAC key diversified from mtk.
func (s *Soft) EPurseVerifyPurchaseTAC(_ context.Context, mtk Handle, diversifier [8]byte, tx emv.EPurseTx, termSerial [4]byte, tac [4]byte) (bool, error) {
	tk, err := s.tacKey(mtk, diversifier)
	if err != nil {
		return false, err
	}
	defer clear(tk[:])
	want := emv.EPursePurchaseTAC(tk, tx, termSerial)
	return subtle.ConstantTimeCompare(want[:], tac[:]) == 1, nil
}

// EPursePurchaseInput is what a PSAM computes a purchase MAC1 from: the
// card's INITIALIZE FOR PURCHASE answer, the terminal serial and the purchase.
type EPursePurchaseInput struct {
	Diversifier     [8]byte
	Random          [4]byte // the card's pseudo-random number
	OfflineSerial   [2]byte // the card's offline transaction serial
	TermSerialLast2 [2]byte // last 2 bytes of the terminal transaction serial
	Tx              emv.EPurseTx
}

// EPursePurchaseMAC1 is the PSAM's MAC1 for DEBIT FOR PURCHASE, with the
// card's purchase key diversified from the master purchase key mpk.
func (s *Soft) EPursePurchaseMAC1(_ context.Context, mpk Handle, in EPursePurchaseInput) ([4]byte, error) {
	sespk, err := s.purchaseSessionKey(mpk, in)
	if err != nil {
		return [4]byte{}, err
	}
	defer clear(sespk[:])
	return emv.EPursePurchaseMAC1(sespk, in.Tx), nil
}

// EPurseVerifyPurchaseMAC2 checks the card's MAC2 after DEBIT FOR PURCHASE.
func (s *Soft) EPurseVerifyPurchaseMAC2(_ context.Context, mpk Handle, in EPursePurchaseInput, mac2 [4]byte) (bool, error) {
	sespk, err := s.purchaseSessionKey(mpk, in)
	if err != nil {
		return false, err
	}
	defer clear(sespk[:])
	want := emv.EPursePurchaseMAC2(sespk, in.Tx.Amount)
	return subtle.ConstantTimeCompare(want[:], mac2[:]) == 1, nil
}

func (s *Soft) purchaseSessionKey(mpk Handle, in EPursePurchaseInput) ([8]byte, error) {
	k, err := s.get(mpk, TDES2)
	if err != nil {
		return [8]byte{}, err
	}
	dpk := emv.DiversifyKey(k.tdes, in.Diversifier)
	defer clear(dpk[:])
	return emv.EPursePurchaseSessionKey(dpk, in.Random, in.OfflineSerial, in.TermSerialLast2), nil
}

func (s *Soft) tacKey(mtk Handle, diversifier [8]byte) ([8]byte, error) {
	k, err := s.get(mtk, TDES2)
	if err != nil {
		return [8]byte{}, err
	}
	dtk := emv.DiversifyKey(k.tdes, diversifier)
	defer clear(dtk[:])
	return emv.EPurseTACKey(dtk), nil
}

// EPursePurchaseTACCheck is one purchase TAC for EPurseVerifyPurchaseTACs.
type EPursePurchaseTACCheck struct {
	Diversifier [8]byte
	Tx          emv.EPurseTx
	TermSerial  [4]byte
	TAC         [4]byte
}

// EPurseBatchVerifier is implemented by HSMs that check many purchase TACs
// in one call (clearing a gate batch), deriving each card's TAC key once per
// call instead of once per record. The keys never leave the HSM.
type EPurseBatchVerifier interface {
	EPurseVerifyPurchaseTACs(ctx context.Context, mtk Handle, checks []EPursePurchaseTACCheck) ([]bool, error)
}

// EPurseVerifyPurchaseTACs checks each TAC as EPurseVerifyPurchaseTAC does.
func (s *Soft) EPurseVerifyPurchaseTACs(_ context.Context, mtk Handle, checks []EPursePurchaseTACCheck) ([]bool, error) {
	k, err := s.get(mtk, TDES2)
	if err != nil {
		return nil, err
	}
	keys := make(map[[8]byte][8]byte) // diversifier → TAC key, for this call only
	defer clear(keys)
	out := make([]bool, len(checks))
	for i := range checks {
		c := &checks[i]
		tk, ok := keys[c.Diversifier]
		if !ok {
			dtk := emv.DiversifyKey(k.tdes, c.Diversifier)
			tk = emv.EPurseTACKey(dtk)
			clear(dtk[:])
			keys[c.Diversifier] = tk
		}
		want := emv.EPursePurchaseTAC(tk, c.Tx, c.TermSerial)
		out[i] = subtle.ConstantTimeCompare(want[:], c.TAC[:]) == 1
	}
	return out, nil
}
