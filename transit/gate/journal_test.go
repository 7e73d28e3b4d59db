package gate

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/mipay-oss/mipay/transit/transittest"
)

func openTestGate(t *testing.T, a *transittest.Agency, data string) *Gate {
	t.Helper()
	cfg := Config{DataDir: data, City: a.City(t, "gz"), Station: "bus-5", Mode: ModeBus, Agency: a.URL, OperatorToken: a.Token}
	if _, err := OpenPSAM(cfg.Dir()); err != nil {
		if _, err := Provision(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
	}
	g, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestJournalRestartAndReplay: a full journal restarts under a new
// generation after its records reached the store; a gate that died without
// closing replays its journal into the store at the next open (once, however
// often it reopens); a damaged slot ends the journal there — a debit whose
// "opened" mark is lost lets the card through once more without a charge.
func TestJournalRestartAndReplay(t *testing.T) {
	ctx := context.Background()
	a := transittest.NewAgency(t)
	data := t.TempDir()
	g := openTestGate(t, a, data)
	ph := a.NewPhone(t, "j")
	card := ph.Issue(t, "gz")
	if _, err := ph.TopUp(ctx, card, 5000, "t", transittest.CutNone); err != nil {
		t.Fatal(err)
	}
	tap := func(g *Gate) {
		t.Helper()
		r, err := g.Process(ctx, transittest.SECard{S: ph.SE})
		if err != nil || !r.Open {
			t.Fatalf("tap: %+v %v", r, err)
		}
	}
	tap(g)
	tap(g)
	oldGen := g.j.gen
	g.j.next = journalSlots - 2 // as if full: the next tap restarts it
	tap(g)
	if g.j.gen == oldGen || g.j.next != 4 || len(g.j.recs) != 3 {
		t.Fatalf("after the restart: gen %x→%x, next %d, %d records", oldGen, g.j.gen, g.j.next, len(g.j.recs))
	}
	var inStore int
	if err := g.db.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM gate_records WHERE state = 'done'`).Scan(&inStore); err != nil || inStore != 2 {
		t.Fatalf("%d done records in the store before the restart (%v), want 2", inStore, err)
	}
	tap(g)
	// The process dies: no Close, nothing mirrored since the restart (the
	// file is closed as the kernel would, after its last write).
	cutPower(t, g, -1)

	// Damage the last record (tap 4's "opened"): the journal ends before
	// it, so tap 4 is a debit whose barrier may not have opened.
	f, err := os.OpenFile(filepath.Join(g.cfg.Dir(), journalFile), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("MGJ1 garbage"), int64(6)*slotBytes); err != nil {
		t.Fatal(err)
	}
	f.Close()
	g2 := openTestGate(t, a, data)
	if n, err := g2.Pending(ctx); err != nil || n != 4 {
		t.Fatalf("after reopening: %d records to upload (%v), want 4", n, err)
	}
	// Not closed cleanly: TSN 5 is skipped (a power cut may have taken it).
	if p := g2.pending[card]; p == nil || p.state != stateUnopened || g2.tsn != 5 || g2.lost == nil || g2.lost.tsn != 5 {
		t.Fatalf("after reopening: pending %+v, tsn %d", p, g2.tsn)
	}
	bal := ph.Balance(t, card)
	r, err := g2.Process(ctx, transittest.SECard{S: ph.SE})
	if err != nil || !r.Open || !r.Recovered || ph.Balance(t, card) != bal {
		t.Fatalf("re-tap after an unopened debit: %+v %v, balance %d→%d", r, err, bal, ph.Balance(t, card))
	}
	if err := g2.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 { // replaying again changes nothing
		g3 := openTestGate(t, a, data)
		if n, err := g3.Pending(ctx); err != nil || n != 4 || len(g3.pending) != 0 || g3.tsn != 5 || g3.lost != nil {
			t.Fatalf("reopened: %d to upload (%v), pending %v, tsn %d", n, err, g3.pending, g3.tsn)
		}
		if err := g3.Close(); err != nil {
			t.Fatal(err)
		}
	}
	g4 := openTestGate(t, a, data)
	defer g4.Close()
	tap(g4)
	res, err := g4.Upload(ctx)
	if err != nil || len(res) != 1 || res[0].Cleared != 5 || len(res[0].Exceptions) != 0 {
		t.Fatalf("upload: %+v %v", res, err)
	}
	c, _ := a.Svc.Card(ctx, card)
	if c.ShadowBalance != ph.Balance(t, card) || c.ClearedRecords != 5 {
		t.Fatalf("cleared %+v, card %d", c, ph.Balance(t, card))
	}
}

// cutAfterDebit delivers DEBIT to the card but loses its answer.
type cutAfterDebit struct{ transittest.SECard }

func (c cutAfterDebit) Transmit(ctx context.Context, apdu []byte) ([]byte, error) {
	r, _ := c.SECard.Transmit(ctx, apdu)
	if len(apdu) > 2 && apdu[0] == 0x80 && apdu[1] == 0x54 {
		return nil, errors.New("power cut")
	}
	return r, nil
}

// TestPowerCutLostIntent: a power cut while DEBIT was out took the gate's
// intent (its flush had not returned) after the card debited. After the
// unclean restart the gate finds the tap in the card's log (at this
// terminal, the serial before the card's, unknown here), records it under
// the skipped TSN — the agency's TAC check proves the guess — and lets the
// card through without a new charge; cards whose last tap it knows are
// untouched.
func TestPowerCutLostIntent(t *testing.T) {
	ctx := context.Background()
	a := transittest.NewAgency(t)
	data := t.TempDir()
	g := openTestGate(t, a, data)
	ph, other := a.NewPhone(t, "cut"), a.NewPhone(t, "other")
	card, otherCard := ph.Issue(t, "gz"), other.Issue(t, "gz")
	for _, p := range []struct {
		ph   *transittest.Phone
		card string
	}{{ph, card}, {other, otherCard}} {
		if _, err := p.ph.TopUp(ctx, p.card, 5000, "t", transittest.CutNone); err != nil {
			t.Fatal(err)
		}
		if r, err := g.Process(ctx, transittest.SECard{S: p.ph.SE}); err != nil || !r.Open {
			t.Fatalf("tap: %+v %v", r, err)
		}
	}
	if _, err := g.Process(ctx, cutAfterDebit{transittest.SECard{S: ph.SE}}); err == nil {
		t.Fatal("the cut was not noticed")
	}
	bal := ph.Balance(t, card)
	if bal != 5000-2*a.City(t, "gz").BusFareMinor {
		t.Fatalf("the card holds %d", bal)
	}
	// The power cut: the last intent never reached the disk.
	last := len(g.j.recs)
	if g.j.recs[last-1].kind != recIntent {
		t.Fatalf("last record %c", g.j.recs[last-1].kind)
	}
	cutPower(t, g, last)

	g2 := openTestGate(t, a, data)
	defer g2.Close()
	if g2.lost == nil || g2.lost.tsn != 3 || len(g2.pending) != 0 {
		t.Fatalf("after the unclean restart: lost %+v, pending %v", g2.lost, g2.pending)
	}
	fare := a.City(t, "gz").BusFareMinor
	if r, err := g2.Process(ctx, transittest.SECard{S: other.SE}); err != nil || !r.Open || r.Recovered || r.ChargedMinor != fare {
		t.Fatalf("a card whose last tap the gate knows: %+v %v", r, err)
	}
	r, err := g2.Process(ctx, transittest.SECard{S: ph.SE})
	if err != nil || !r.Open || !r.Recovered || ph.Balance(t, card) != bal {
		t.Fatalf("re-tap after the lost intent: %+v %v, balance %d→%d", r, err, bal, ph.Balance(t, card))
	}
	if g2.lost != nil {
		t.Fatal("still looking for the lost tap")
	}
	if r, err := g2.Process(ctx, transittest.SECard{S: ph.SE}); err != nil || !r.Open || r.Recovered || r.ChargedMinor != fare {
		t.Fatalf("next passage: %+v %v", r, err)
	}
	res, err := g2.Upload(ctx)
	if err != nil || len(res) != 1 || res[0].Cleared != 5 || len(res[0].Exceptions) != 0 {
		t.Fatalf("upload: %+v %v", res, err)
	}
	for _, p := range []struct {
		ph   *transittest.Phone
		card string
	}{{ph, card}, {other, otherCard}} {
		c, _ := a.Svc.Card(ctx, p.card)
		if c.ShadowBalance != p.ph.Balance(t, p.card) {
			t.Fatalf("card %s: shadow %d, card %d", p.card, c.ShadowBalance, p.ph.Balance(t, p.card))
		}
	}
}

// TestKilledAfterFindingTheLostTap: after a power cut took an intent (as in
// TestPowerCutLostIntent), the gate finds the lost tap in the card's log and
// journals it, and is killed right after that write, before any other (a
// SIGKILL or a second power cut: nothing after the write reached the
// journal). The lost tap's session random is gone, so its record must not
// come back as an intent whose MAC2 recovery checks: that check fails, the
// record is voided, the card's debit is never cleared and the card pays
// again for the passage it was owed.
func TestKilledAfterFindingTheLostTap(t *testing.T) {
	ctx := context.Background()
	a := transittest.NewAgency(t)
	data := t.TempDir()
	g := openTestGate(t, a, data)
	ph := a.NewPhone(t, "cut")
	card := ph.Issue(t, "gz")
	if _, err := ph.TopUp(ctx, card, 5000, "t", transittest.CutNone); err != nil {
		t.Fatal(err)
	}
	if r, err := g.Process(ctx, transittest.SECard{S: ph.SE}); err != nil || !r.Open {
		t.Fatalf("tap: %+v %v", r, err)
	}
	if _, err := g.Process(ctx, cutAfterDebit{transittest.SECard{S: ph.SE}}); err == nil {
		t.Fatal("the cut was not noticed")
	}
	// The power cut: the last intent never reached the disk.
	last := len(g.j.recs)
	cutPower(t, g, last)

	g2 := openTestGate(t, a, data)
	if g2.lost == nil || g2.lost.tsn != 2 {
		t.Fatalf("after the unclean restart: lost %+v", g2.lost)
	}
	bal := ph.Balance(t, card)
	// The gate finds the lost tap (it would open) and dies after its first
	// journal write for it: every slot after that write is as never written.
	if r, err := g2.Process(ctx, transittest.SECard{S: ph.SE}); err != nil || !r.Recovered {
		t.Fatalf("re-tap after the lost intent: %+v %v", r, err)
	}
	first := -1
	for i, r := range g2.j.recs {
		if r.tsn == 2 {
			first = i
			break
		}
	}
	if first < 0 {
		t.Fatal("the found tap was not journaled")
	}
	g2.j.syncMu.Lock()
	g2.j.closed = true
	for slot := first + 2; slot < g2.j.next; slot++ { // recs[i] is in slot i+1
		if _, err := g2.j.f.WriteAt(make([]byte, slotBytes), int64(slot)*slotBytes); err != nil {
			t.Fatal(err)
		}
	}
	g2.j.f.Close()
	g2.j.syncMu.Unlock()
	g2.db.Close()

	g3 := openTestGate(t, a, data)
	defer g3.Close()
	r, err := g3.Process(ctx, transittest.SECard{S: ph.SE})
	if err != nil || !r.Open || !r.Recovered || ph.Balance(t, card) != bal {
		t.Fatalf("re-tap after the kill: %+v %v, balance %d→%d", r, err, bal, ph.Balance(t, card))
	}
	res, err := g3.Upload(ctx)
	if err != nil || len(res) != 1 || len(res[0].Exceptions) != 0 || len(res[0].Gaps) != 0 {
		t.Fatalf("upload: %+v %v", res, err)
	}
	c, _ := a.Svc.Card(ctx, card)
	if c.ClearedRecords != 2 || c.ShadowBalance != ph.Balance(t, card) {
		t.Fatalf("cleared %d records, shadow balance %d; the card made 2 debits, holds %d", c.ClearedRecords, c.ShadowBalance, ph.Balance(t, card))
	}
}

// cutPower stops g as a dying process would: no Close, the journal file
// closed as the kernel closes it. lostSlot >= 0 also zeroes that journal
// slot, as a power cut that took a write which had not reached the disk.
func cutPower(t *testing.T, g *Gate, lostSlot int) {
	t.Helper()
	g.j.syncMu.Lock()
	g.j.closed = true
	if lostSlot >= 0 {
		if _, err := g.j.f.WriteAt(make([]byte, slotBytes), int64(lostSlot)*slotBytes); err != nil {
			g.j.syncMu.Unlock()
			t.Fatal(err)
		}
	}
	g.j.f.Close()
	g.j.syncMu.Unlock()
	g.db.Close()
}
