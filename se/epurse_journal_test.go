package se

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/emv"
)

// purchase runs INITIALIZE FOR PURCHASE and DEBIT as a gate with the
// card's DPK would, terminal serial tsn; it returns TAC ‖ MAC2.
func purchase(tb testing.TB, s *SE, amount uint32, tsn uint32) []byte {
	tb.Helper()
	apdu(tb, s, "00A4040008"+hex.EncodeToString(testAID), emv.SWSuccess)
	term := mustHex("001122334455")
	init := apdu(tb, s, "805001020B01"+hex.EncodeToString(binary.BigEndian.AppendUint32(nil, amount))+hex.EncodeToString(term)+"0F", emv.SWSuccess)
	var ts [4]byte
	binary.BigEndian.PutUint32(ts[:], tsn)
	sk := emv.EPursePurchaseSessionKey(emv.Key(vecDPK), [4]byte(init[11:15]), [2]byte(init[4:6]), [2]byte(ts[2:4]))
	tx := emv.EPurseTx{Amount: amount, Type: emv.EPurseTypePurchase, Terminal: [6]byte(term),
		Date: [4]byte(mustHex("20260102")), Time: [3]byte(mustHex("090000"))}
	mac1 := emv.EPursePurchaseMAC1(sk, tx)
	return apdu(tb, s, "805401000F"+hex.EncodeToString(ts[:])+"20260102"+"090000"+hex.EncodeToString(mac1[:])+"08", emv.SWSuccess)
}

// reopenCard closes prev (a crash as far as the directory is concerned: no
// more writes, the lock released) and opens dir again.
func reopenCard(tb testing.TB, prev *SE, dir string) (*SE, TransitCard) {
	tb.Helper()
	if err := prev.Close(); err != nil {
		tb.Fatal(err)
	}
	s, err := Open(dir, Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return s, s.TransitCards()[0]
}

// TestEPurseJournal: a DEBIT is one journal record (the state file is not
// rewritten); reopening replays it; a torn last record is ignored and
// overwritten; a state rewrite starts a new generation, so old records are
// never applied twice; a full journal falls back to a state rewrite.
func TestEPurseJournal(t *testing.T) {
	s, dir := mustManufacture(t, &clock{t: time.Now()})
	mustInstallPurse(t, s, "3112000000000009")
	apdu(t, s, "00A4040008"+hex.EncodeToString(testAID), emv.SWSuccess)
	loadDirect(t, s, 5000)
	statePath := filepath.Join(dir, stateFile)
	before, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}
	out := purchase(t, s, 200, 1)
	purchase(t, s, 300, 2)
	if after, _ := os.ReadFile(statePath); !bytes.Equal(before, after) {
		t.Fatal("a DEBIT rewrote the state file (want one journal record)")
	}
	s2, c := reopenCard(t, s, dir)
	if c.BalanceMinor != 4500 || c.OfflineSerial != 2 || c.OnlineSerial != 1 {
		t.Fatalf("after replay: %+v", c)
	}
	// The first purchase's proof is still there after the second.
	apdu(t, s2, "00A4040008"+hex.EncodeToString(testAID), emv.SWSuccess)
	if pr := apdu(t, s2, "805A000602000008", emv.SWSuccess); !bytes.Equal(pr[0:4], out[4:8]) || !bytes.Equal(pr[4:8], out[0:4]) {
		t.Fatalf("proof of serial 0 %x, want MAC2 %x TAC %x", pr, out[4:8], out[0:4])
	}

	// A torn record after the last good one (power cut before fdatasync
	// returned): ignored, then overwritten by the next DEBIT.
	j := s2.j
	junk := bytes.Repeat([]byte{0xAB}, 300)
	binary.BigEndian.PutUint32(junk, 296)
	if _, err := j.f.WriteAt(junk, j.off); err != nil {
		t.Fatal(err)
	}
	s3, c := reopenCard(t, s2, dir)
	if c.BalanceMinor != 4500 || c.OfflineSerial != 2 {
		t.Fatalf("after a torn record: %+v", c)
	}
	purchase(t, s3, 100, 3)
	s3b, c := reopenCard(t, s3, dir)
	if c.BalanceMinor != 4400 || c.OfflineSerial != 3 {
		t.Fatalf("after overwriting the torn record: %+v", c)
	}

	// A state rewrite (installing a second card) makes the journal's records
	// void: they are in the state now and must not apply again.
	s4, _ := reopenCard(t, s3b, dir)
	if _, err := s4.InstallTransit(transitProfileFor(t, s4, "3112000000000010", mustHex("A000000632010199"), vecDPK, vecDLK, vecDTK)); err != nil {
		t.Fatal(err)
	}
	s5, c := reopenCard(t, s4, dir)
	if c.BalanceMinor != 4400 || c.OfflineSerial != 3 || len(s5.TransitCards()) != 2 {
		t.Fatalf("after a state rewrite: %+v", s5.TransitCards())
	}

	// A full journal: the next DEBIT rewrites the state (new generation).
	purchase(t, s5, 100, 4)
	s5.j.off = journalBytes - 16
	purchase(t, s5, 100, 5)
	if s5.j.off != 0 || s5.j.seq != 0 {
		t.Fatalf("journal at %d/%d after the full-journal DEBIT", s5.j.off, s5.j.seq)
	}
	purchase(t, s5, 100, 6)
	if _, c = reopenCard(t, s5, dir); c.BalanceMinor != 4100 || c.OfflineSerial != 6 {
		t.Fatalf("after a full journal: %+v", c)
	}
}

// TestEPurseJournalVolatile: a volatile SE never touches the journal.
func TestEPurseJournalVolatile(t *testing.T) {
	s, dir := mustManufacture(t, &clock{t: time.Now()})
	mustInstallPurse(t, s, "3112000000000011")
	v, err := Open(dir, Options{Volatile: true})
	if err != nil {
		t.Fatal(err)
	}
	apdu(t, v, "00A4040008"+hex.EncodeToString(testAID), emv.SWSuccess)
	loadDirect(t, v, 1000)
	purchase(t, v, 100, 1)
	if _, err := os.Stat(filepath.Join(dir, journalFile)); !os.IsNotExist(err) {
		t.Fatalf("a volatile SE made a journal: %v", err)
	}
}
