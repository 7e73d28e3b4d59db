package gate_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/httpx"
	"github.com/mipay-oss/mipay/transit"
	"github.com/mipay-oss/mipay/transit/gate"
	"github.com/mipay-oss/mipay/transit/transittest"
)

func mustGate(tb testing.TB, a *transittest.Agency, data, city, station string, mode gate.Mode) *gate.Gate {
	tb.Helper()
	cfg := gate.Config{DataDir: data, City: a.City(tb, city), Station: station, Mode: mode, Agency: a.URL, OperatorToken: a.Token}
	if _, err := gate.Provision(context.Background(), cfg); err != nil {
		tb.Fatalf("provision %s/%s: %v", city, station, err)
	}
	g, err := gate.Open(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { g.Close() })
	return g
}

func tap(tb testing.TB, g *gate.Gate, ph *transittest.Phone) gate.Result {
	tb.Helper()
	r, err := g.Process(context.Background(), transittest.SECard{S: ph.SE})
	if err != nil {
		tb.Fatalf("tap: %v", err)
	}
	return r
}

func upload(tb testing.TB, gs ...*gate.Gate) []transit.BatchResult {
	tb.Helper()
	var out []transit.BatchResult
	for _, g := range gs {
		rs, err := g.Upload(context.Background())
		if err != nil {
			tb.Fatalf("upload: %v", err)
		}
		out = append(out, rs...)
	}
	return out
}

// TestFullDayPerCity: for each city, a card is issued and topped up, then
// rides the bus, enters and exits the metro (distance fare), and is refused
// at entry when the balance is too low. Clearing the gates' batches makes
// the shadow balance equal the card's balance.
func TestFullDayPerCity(t *testing.T) {
	ctx := context.Background()
	a := transittest.NewAgency(t)
	data := t.TempDir()
	for _, city := range a.Ref.Cities {
		if !city.Transit() {
			continue
		}
		t.Run(city.ID, func(t *testing.T) {
			st := city.Stations
			first, far := st[0].ID, st[len(st)-1].ID
			bus := mustGate(t, a, data, city.ID, "bus-1", gate.ModeBus)
			in := mustGate(t, a, data, city.ID, first, gate.ModeEntry)
			out := mustGate(t, a, data, city.ID, far, gate.ModeExit)
			near := mustGate(t, a, data, city.ID, st[1].ID, gate.ModeExit)
			ph := a.NewPhone(t, "rider-"+city.ID)
			card := ph.Issue(t, city.ID)
			const load = 2000
			if _, err := ph.TopUp(ctx, card, load, "day", transittest.CutNone); err != nil {
				t.Fatal(err)
			}
			balance := int64(load)
			if r := tap(t, bus, ph); !r.Open || r.ChargedMinor != city.BusFareMinor {
				t.Fatalf("bus: %+v", r)
			}
			balance -= city.BusFareMinor
			if r := tap(t, in, ph); !r.Open || r.ChargedMinor != 0 {
				t.Fatalf("entry: %+v", r)
			}
			fare, err := city.MetroFare(first, far)
			if err != nil {
				t.Fatal(err)
			}
			r := tap(t, out, ph)
			if !r.Open || r.ChargedMinor != fare || r.EntryStation != first {
				t.Fatalf("exit: %+v, want fare %d from %s", r, fare, first)
			}
			balance -= fare
			// A short trip costs the first band.
			if r := tap(t, in, ph); !r.Open {
				t.Fatalf("second entry: %+v", r)
			}
			short, _ := city.MetroFare(first, st[1].ID)
			if r := tap(t, near, ph); !r.Open || r.ChargedMinor != short {
				t.Fatalf("short exit: %+v, want %d", r, short)
			}
			balance -= short
			if short != city.FareForKM(0) || short > fare {
				t.Fatalf("short trip fare %d, long %d", short, fare)
			}
			// Ride buses until the balance is below the entry minimum.
			for balance >= city.MinEntryBalanceMinor {
				if r := tap(t, bus, ph); !r.Open {
					t.Fatalf("bus with %d: %+v", balance, r)
				}
				balance -= city.BusFareMinor
			}
			if r := tap(t, in, ph); r.Open || !strings.Contains(r.Reason, "below") {
				t.Fatalf("entry with %d (min %d): %+v", balance, city.MinEntryBalanceMinor, r)
			}
			if got := ph.Balance(t, card); got != balance {
				t.Fatalf("card balance %d, want %d", got, balance)
			}
			// Gates upload one after another: a gap may show until the last.
			brs := upload(t, bus, in, out, near)
			for _, br := range brs {
				if len(br.Exceptions) != 0 {
					t.Fatalf("batch %+v", br)
				}
			}
			if last := brs[len(brs)-1]; len(last.Gaps) != 0 {
				t.Fatalf("gaps after every gate uploaded: %+v", last.Gaps)
			}
			c, err := a.Svc.Card(ctx, card)
			if err != nil {
				t.Fatal(err)
			}
			if c.ClearedRecords != c.MaxSerial+1 {
				t.Fatalf("cleared %d records up to serial %d", c.ClearedRecords, c.MaxSerial)
			}
			if c.ShadowBalance != balance || c.ClearedMinor != load-balance {
				t.Fatalf("shadow %d cleared %d, card %d", c.ShadowBalance, c.ClearedMinor, balance)
			}
		})
	}
}

func TestHotlistedCardRefused(t *testing.T) {
	ctx := context.Background()
	a := transittest.NewAgency(t)
	g := mustGate(t, a, t.TempDir(), "bj", "bus-7", gate.ModeBus)
	ph := a.NewPhone(t, "lost")
	card := ph.Issue(t, "bj")
	if _, err := ph.TopUp(ctx, card, 1000, "t", transittest.CutNone); err != nil {
		t.Fatal(err)
	}
	if r := tap(t, g, ph); !r.Open {
		t.Fatalf("before hotlist: %+v", r)
	}
	var out struct {
		Hotlisted []string `json:"hotlisted"`
	}
	if err := clientOf(a, ph).Do(ctx, "POST", "/v1/devices/"+ph.DeviceID+"/hotlist", map[string]string{"reason": "DEVICE_LOST"}, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Hotlisted) != 1 || out.Hotlisted[0] != card {
		t.Fatalf("hotlisted %v", out.Hotlisted)
	}
	if r := tap(t, g, ph); !r.Open {
		t.Fatalf("gate without the new list still opens offline: %+v", r)
	}
	if n, err := g.RefreshHotlist(ctx); err != nil || n != 1 {
		t.Fatalf("refresh: %d %v", n, err)
	}
	bal := ph.Balance(t, card)
	if r := tap(t, g, ph); r.Open || !strings.Contains(r.Reason, "hotlisted") {
		t.Fatalf("hotlisted card: %+v", r)
	}
	if ph.Balance(t, card) != bal {
		t.Fatal("a refused tap debited the card")
	}
}

// TestClearingRejectsReplayAndAlteration: a replayed batch gets its stored
// answer, a record replayed in another batch is a duplicate, an altered
// amount fails its TAC, and a missing serial shows as a gap.
func TestClearingRejectsReplayAndAlteration(t *testing.T) {
	ctx := context.Background()
	a := transittest.NewAgency(t)
	g := mustGate(t, a, t.TempDir(), "gz", "bus-2", gate.ModeBus)
	ph := a.NewPhone(t, "c")
	card := ph.Issue(t, "gz")
	if _, err := ph.TopUp(ctx, card, 1000, "t", transittest.CutNone); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if r := tap(t, g, ph); !r.Open {
			t.Fatal(r)
		}
	}
	// Take the records as the gate would upload them.
	b := gateBatch(t, g)
	if len(b.Records) != 3 {
		t.Fatalf("%d records", len(b.Records))
	}
	first := transit.Batch{ID: "b1", City: "gz", Terminal: b.Terminal, Records: []transit.GateRecord{b.Records[0], b.Records[2]}}
	res, err := a.Svc.Clear(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	if res.Cleared != 2 || len(res.Gaps) != 1 || res.Gaps[0].Missing != 1 {
		t.Fatalf("first batch %+v, want 2 cleared and a gap of 1", res)
	}
	again, err := a.Svc.Clear(ctx, first)
	if err != nil || again.Cleared != 2 {
		t.Fatalf("same batch again: %+v %v", again, err)
	}
	altered := b.Records[1]
	altered.AmountMinor = 1
	replay := transit.Batch{ID: "b2", City: "gz", Terminal: b.Terminal, Records: []transit.GateRecord{b.Records[0], altered}}
	res, err = a.Svc.Clear(ctx, replay)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, e := range res.Exceptions {
		kinds[e.Kind]++
	}
	if res.Cleared != 0 || kinds[transit.ExDuplicate] != 1 || kinds[transit.ExBadTAC] != 1 {
		t.Fatalf("replay/altered batch %+v", res)
	}
	res, err = a.Svc.Clear(ctx, transit.Batch{ID: "b3", City: "gz", Terminal: b.Terminal, Records: []transit.GateRecord{b.Records[1]}})
	if err != nil || res.Cleared != 1 || len(res.Gaps) != 0 {
		t.Fatalf("the missing record: %+v %v", res, err)
	}
	c, _ := a.Svc.Card(ctx, card)
	if c.ShadowBalance != ph.Balance(t, card) {
		t.Fatalf("shadow %d, card %d", c.ShadowBalance, ph.Balance(t, card))
	}
}

// gateBatch uploads nothing: it reads the gate's pending records through a
// throwaway agency-side view (the batch the gate would send).
func gateBatch(tb testing.TB, g *gate.Gate) transit.Batch {
	tb.Helper()
	b, err := g.PendingBatch(context.Background())
	if err != nil || b == nil {
		tb.Fatalf("pending batch: %v", err)
	}
	return *b
}

// TestMoveKeepsBalanceAndHistory: a card moved to another phone of the
// account arrives there with its cleared balance; the old card is
// hotlisted; the city's yearly rule stops a second move.
func TestMoveKeepsBalanceAndHistory(t *testing.T) {
	ctx := context.Background()
	a := transittest.NewAgency(t)
	data := t.TempDir()
	bus := mustGate(t, a, data, "bj", "bus-1", gate.ModeBus)
	old := a.NewPhone(t, "mover")
	card := old.Issue(t, "bj")
	if _, err := old.TopUp(ctx, card, 3000, "t", transittest.CutNone); err != nil {
		t.Fatal(err)
	}
	tap(t, bus, old)
	tap(t, bus, old)
	upload(t, bus)
	want := old.Balance(t, card)
	newPhone := a.NewPhone(t, "mover")
	moved, err := old.Move(ctx, t, card, newPhone)
	if err != nil {
		t.Fatal(err)
	}
	if got := newPhone.Balance(t, moved); got != want {
		t.Fatalf("moved balance %d, want %d", got, want)
	}
	oc, _ := a.Svc.Card(ctx, card)
	if oc.Status != transit.CardMoved || oc.MovedTo != moved {
		t.Fatalf("old card %+v", oc)
	}
	if n, err := bus.RefreshHotlist(ctx); err != nil || n != 1 {
		t.Fatalf("hotlist %d %v", n, err)
	}
	if r := tap(t, bus, old); r.Open {
		t.Fatal("the old card still rides")
	}
	if r := tap(t, bus, newPhone); !r.Open {
		t.Fatalf("new card: %+v", r)
	}
	var h transit.History
	if err := clientOf(a, newPhone).Do(ctx, "GET", "/v1/cards/"+moved, nil, &h); err != nil {
		t.Fatal(err)
	}
	if len(h.Moves) != 1 || h.Moves[0].From != card || h.Loads[0].Kind != transit.LoadTransfer {
		t.Fatalf("history %+v", h)
	}
	// Beijing allows one move a year.
	third := a.NewPhone(t, "mover")
	if _, err := newPhone.Move(ctx, t, moved, third); err == nil {
		t.Fatal("second move within a year allowed")
	}
	a.Advance(366 * 24 * time.Hour)
	if _, err := newPhone.Move(ctx, t, moved, third); err != nil {
		t.Fatalf("move a year later: %v", err)
	}
}

func TestGateConfig(t *testing.T) {
	ref, _ := config.Default()
	sz, _ := ref.City("sz")
	for _, c := range []gate.Config{
		{City: sz, Station: "nowhere", Mode: gate.ModeEntry},
		{City: sz, Station: "BAD STATION", Mode: gate.ModeBus},
		{City: sz, Station: "sz01", Mode: "fly"},
	} {
		if _, err := gate.Open(context.Background(), c); err == nil {
			t.Fatalf("opened %+v", c)
		}
	}
}

func clientOf(a *transittest.Agency, ph *transittest.Phone) *httpx.Client {
	return &httpx.Client{Base: a.URL, Token: ph.Bearer}
}

// TestSwitchOffEventHotlists: the wallet's device.switched_off hotlists the
// device's cards; device.found lifts it.
func TestSwitchOffEventHotlists(t *testing.T) {
	ctx := context.Background()
	a := transittest.NewAgency(t)
	ph := a.NewPhone(t, "e")
	card := ph.Issue(t, "cq")
	status := func() string {
		c, err := a.Svc.Card(ctx, card)
		if err != nil {
			t.Fatal(err)
		}
		return c.Status
	}
	for i := range 2 { // at least once: twice changes nothing more
		if err := a.Svc.HandleDeviceEvent(ctx, transit.SubjectDeviceSwitchedOff, transit.DeviceEvent{DeviceID: ph.DeviceID}); err != nil || status() != transit.CardHotlisted {
			t.Fatalf("switched off (%d): %s %v", i, status(), err)
		}
	}
	if hl, err := a.Svc.HotlistOf(ctx, "cq"); err != nil || len(hl) != 1 || hl[0] != card {
		t.Fatalf("hotlist %v %v", hl, err)
	}
	if err := a.Svc.HandleDeviceEvent(ctx, transit.SubjectDeviceFound, transit.DeviceEvent{DeviceID: ph.DeviceID}); err != nil || status() != transit.CardActive {
		t.Fatalf("found: %s %v", status(), err)
	}
}

// lossyCard delivers the DEBIT to the SE but loses its answer, as when the
// phone leaves the field at that instant.
type lossyCard struct{ transittest.SECard }

func (c lossyCard) Transmit(ctx context.Context, apdu []byte) ([]byte, error) {
	r, _ := c.SECard.Transmit(ctx, apdu)
	if len(apdu) > 2 && apdu[0] == 0x80 && apdu[1] == 0x54 {
		return nil, errors.New("phone left the field")
	}
	return r, nil
}

// TestTapCutAtDebit: the card debited but the gate never heard; when the
// phone taps again the gate takes the card's proof, records the tap once and
// opens without charging again.
func TestTapCutAtDebit(t *testing.T) {
	ctx := context.Background()
	a := transittest.NewAgency(t)
	data := t.TempDir()
	bus := mustGate(t, a, data, "sh", "bus-9", gate.ModeBus)
	exit := mustGate(t, a, data, "sh", "sh05", gate.ModeExit)
	ph := a.NewPhone(t, "cut")
	card := ph.Issue(t, "sh")
	if _, err := ph.TopUp(ctx, card, 1000, "t", transittest.CutNone); err != nil {
		t.Fatal(err)
	}
	city := a.City(t, "sh")
	if _, err := bus.Process(ctx, lossyCard{transittest.SECard{S: ph.SE}}); err == nil {
		t.Fatal("the lost answer was not noticed")
	}
	if got := ph.Balance(t, card); got != 1000-city.BusFareMinor {
		t.Fatalf("the card holds %d", got)
	}
	r := tap(t, bus, ph)
	if !r.Open || !r.Recovered || r.BalanceMinor != 1000-city.BusFareMinor {
		t.Fatalf("second tap: %+v", r)
	}
	if got := ph.Balance(t, card); got != 1000-city.BusFareMinor {
		t.Fatalf("charged twice: the card holds %d", got)
	}
	// Exit without an entry: the highest fare.
	r = tap(t, exit, ph)
	if !r.Open || r.ChargedMinor != city.MaxMetroFare() || r.EntryStation != "" {
		t.Fatalf("exit without entry: %+v", r)
	}
	upload(t, bus, exit)
	c, _ := a.Svc.Card(ctx, card)
	if c.ShadowBalance != ph.Balance(t, card) || c.ClearedRecords != 2 {
		t.Fatalf("cleared %+v, card %d", c, ph.Balance(t, card))
	}
}

// TestFoundItLiftsSwitchOffHotlist: the portal's switch-off hotlists the
// phone's cards (the gate refuses them once it has the list); "found it"
// takes off exactly those — a card the user hotlisted by itself stays — and
// the gate accepts the phone again after its next hotlist sync.
func TestFoundItLiftsSwitchOffHotlist(t *testing.T) {
	ctx := context.Background()
	a := transittest.NewAgency(t)
	g := mustGate(t, a, t.TempDir(), "wh", "bus-3", gate.ModeBus)
	ph := a.NewPhone(t, "owner")
	card := ph.Issue(t, "wh")
	if _, err := ph.TopUp(ctx, card, 1000, "t", transittest.CutNone); err != nil {
		t.Fatal(err)
	}
	// Another phone of the account whose card the user hotlisted by itself.
	other := a.NewPhone(t, "owner")
	otherCard := other.Issue(t, "wh")
	cl := clientOf(a, ph)
	if err := cl.Do(ctx, "POST", "/v1/cards/"+otherCard+"/hotlist", map[string]string{"reason": "CARD_LOST"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := cl.Do(ctx, "POST", "/v1/devices/"+ph.DeviceID+"/hotlist", map[string]string{"reason": "DEVICE_LOST"}, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := g.RefreshHotlist(ctx); err != nil || n != 2 {
		t.Fatalf("refresh after switch-off: %d %v", n, err)
	}
	if r := tap(t, g, ph); r.Open || !strings.Contains(r.Reason, "hotlisted") {
		t.Fatalf("switched-off phone at the gate: %+v", r)
	}
	var out struct {
		Restored []string `json:"restored"`
	}
	// Found it on the other device lifts nothing: its card was hotlisted by the user.
	if err := cl.Do(ctx, "POST", "/v1/devices/"+other.DeviceID+"/found", nil, &out); err != nil || len(out.Restored) != 0 {
		t.Fatalf("found on the other device: %v %v", out.Restored, err)
	}
	if err := cl.Do(ctx, "POST", "/v1/devices/"+ph.DeviceID+"/found", nil, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Restored) != 1 || out.Restored[0] != card {
		t.Fatalf("restored %v", out.Restored)
	}
	if r := tap(t, g, ph); r.Open {
		t.Fatalf("the gate opened before its hotlist sync: %+v", r)
	}
	if n, err := g.RefreshHotlist(ctx); err != nil || n != 1 {
		t.Fatalf("refresh after found: %d %v", n, err)
	}
	if r := tap(t, g, ph); !r.Open || r.ChargedMinor != a.City(t, "wh").BusFareMinor {
		t.Fatalf("found phone at the gate: %+v", r)
	}
	if c, err := a.Svc.Card(ctx, otherCard); err != nil || c.Status != transit.CardHotlisted {
		t.Fatalf("the card the user hotlisted: %+v %v", c, err)
	}
	// Someone else's session cannot lift it.
	stranger := a.NewPhone(t, "stranger")
	if err := clientOf(a, stranger).Do(ctx, "POST", "/v1/devices/"+other.DeviceID+"/found", nil, nil); err == nil {
		t.Fatal("a stranger's found it was accepted")
	}
}

// TestLateRecoveryCharges: a debit whose answer was lost is still recorded
// (and cleared) when the card comes back after gate.RecoveryWindow, but
// that later tap is a new passage and pays.
func TestLateRecoveryCharges(t *testing.T) {
	ctx := context.Background()
	a := transittest.NewAgency(t)
	now := time.Now()
	cfg := gate.Config{DataDir: t.TempDir(), City: a.City(t, "cq"), Station: "bus-4", Mode: gate.ModeBus, Agency: a.URL,
		OperatorToken: a.Token, Now: func() time.Time { return now }}
	if _, err := gate.Provision(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	g, err := gate.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	ph := a.NewPhone(t, "late")
	card := ph.Issue(t, "cq")
	if _, err := ph.TopUp(ctx, card, 1000, "t", transittest.CutNone); err != nil {
		t.Fatal(err)
	}
	fare := a.City(t, "cq").BusFareMinor
	if _, err := g.Process(ctx, lossyCard{transittest.SECard{S: ph.SE}}); err == nil {
		t.Fatal("the lost answer was not noticed")
	}
	now = now.Add(gate.RecoveryWindow + time.Minute)
	r := tap(t, g, ph)
	if !r.Open || r.Recovered || r.ChargedMinor != fare || ph.Balance(t, card) != 1000-2*fare {
		t.Fatalf("late tap: %+v, balance %d", r, ph.Balance(t, card))
	}
	res := upload(t, g)
	if len(res) != 1 || res[0].Cleared != 2 {
		t.Fatalf("upload %+v", res)
	}
	c, _ := a.Svc.Card(ctx, card)
	if c.ShadowBalance != ph.Balance(t, card) {
		t.Fatalf("shadow %d, card %d", c.ShadowBalance, ph.Balance(t, card))
	}
}

// droppingCard loses the DEBIT before it reaches the card (the card never
// debits).
type droppingCard struct{ transittest.SECard }

func (c droppingCard) Transmit(ctx context.Context, apdu []byte) ([]byte, error) {
	if len(apdu) > 2 && apdu[0] == 0x80 && apdu[1] == 0x54 {
		return nil, errors.New("phone left the field")
	}
	return c.SECard.Transmit(ctx, apdu)
}

// TestInDoubtTapsClearedByTheCardsProof: two gates lose a DEBIT's answer
// and never see the card again — at one the card did not debit, at the
// other it did (same offline serial). After RecoveryWindow they report the
// taps in doubt; the phone's proofs clear exactly the real debit (its TAC
// verifies only over that gate's session), and the agency's balance is the
// card's again.
func TestInDoubtTapsClearedByTheCardsProof(t *testing.T) {
	ctx := context.Background()
	a := transittest.NewAgency(t)
	now := time.Now()
	clock := func() time.Time { return now }
	data := t.TempDir()
	open := func(station string) *gate.Gate {
		cfg := gate.Config{DataDir: data, City: a.City(t, "sz"), Station: station, Mode: gate.ModeBus, Agency: a.URL, OperatorToken: a.Token, Now: clock}
		if _, err := gate.Provision(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		g, err := gate.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { g.Close() })
		return g
	}
	ga, gc, gb := open("bus-a"), open("bus-c"), open("bus-b")
	ph := a.NewPhone(t, "doubt")
	card := ph.Issue(t, "sz")
	if _, err := ph.TopUp(ctx, card, 1000, "t", transittest.CutNone); err != nil {
		t.Fatal(err)
	}
	fare := a.City(t, "sz").BusFareMinor
	if _, err := ga.Process(ctx, droppingCard{transittest.SECard{S: ph.SE}}); err == nil {
		t.Fatal("the dropped DEBIT was not noticed")
	}
	if _, err := gc.Process(ctx, lossyCard{transittest.SECard{S: ph.SE}}); err == nil {
		t.Fatal("the lost answer was not noticed")
	}
	if r := tap(t, gb, ph); !r.Open || r.ChargedMinor != fare {
		t.Fatalf("tap at b: %+v", r)
	}
	if got := ph.Balance(t, card); got != 1000-2*fare {
		t.Fatalf("the card holds %d", got)
	}
	if res := upload(t, ga, gc); len(res) != 0 {
		t.Fatalf("in-doubt taps reported before the recovery window ended: %+v", res)
	}
	now = now.Add(gate.RecoveryWindow + time.Second)
	res := upload(t, ga, gc, gb)
	inDoubt, cleared := 0, 0
	for _, r := range res {
		inDoubt, cleared = inDoubt+r.InDoubt, cleared+r.Cleared
	}
	if inDoubt != 2 || cleared != 1 {
		t.Fatalf("uploads: %+v", res)
	}
	if again := upload(t, ga, gc); len(again) != 0 {
		t.Fatalf("in-doubt taps reported twice: %+v", again)
	}
	n, err := ph.ReportProofs(ctx, card)
	if err != nil || n != 1 {
		t.Fatalf("proofs cleared %d (%v), want the one real debit", n, err)
	}
	c, _ := a.Svc.Card(ctx, card)
	if c.ShadowBalance != ph.Balance(t, card) || c.ClearedRecords != 2 {
		t.Fatalf("after the proofs: %+v, card %d", c, ph.Balance(t, card))
	}
	if n, err := ph.ReportProofs(ctx, card); err != nil || n != 0 {
		t.Fatalf("proofs reported again cleared %d (%v)", n, err)
	}
	// Someone else's session cannot report (nor learn anything).
	stranger := a.NewPhone(t, "stranger")
	body := map[string][]transit.CardProof{"proofs": {{OfflineSerial: 0, TAC: "00000000"}}}
	if err := clientOf(a, stranger).Do(ctx, "POST", "/v1/cards/"+card+"/proofs", body, nil); err == nil {
		t.Fatal("a stranger reported proofs of the card")
	}
}
