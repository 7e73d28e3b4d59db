// Package gate is a transit gate (metro entry/exit, or a bus validator)
// with its PSAM: it reads the phone's e-purse over the NFC link, checks its
// local copy of the agency's hotlist, makes the offline purchase (metro
// entry writes the entry station into the card's CAPP record with a
// composite purchase, exit charges the distance fare, the bus charges its
// flat fare), checks the card's MAC2, opens or refuses, and keeps every
// record durable until the agency cleared the batch it was uploaded in. A
// tap costs the gate one durable write (its journal's intent, before DEBIT;
// see journal.go for what every crash leaves).
package gate

import (
	"bytes"
	"context"
	"database/sql"
	"embed"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/emv"
	"github.com/mipay-oss/mipay/httpx"
	"github.com/mipay-oss/mipay/nfc"
	"github.com/mipay-oss/mipay/store"
	"github.com/mipay-oss/mipay/transit"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations is the gate store's schema.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err)
	}
	return sub
}

// Mode is what the gate does.
type Mode string

// Modes.
const (
	ModeEntry Mode = "entry" // metro entry: records the station (amount 0)
	ModeExit  Mode = "exit"  // metro exit: charges the fare from the entry station
	ModeBus   Mode = "bus"   // bus validator: charges the flat fare
)

// ParseMode validates a --mode value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeEntry, ModeExit, ModeBus:
		return m, nil
	}
	return "", mipay.Errorf(mipay.EINVALID, "--mode %q: use entry, exit or bus", s)
}

// Bounds.
const (
	// MaxUploadRecords bounds one upload batch.
	MaxUploadRecords = 10_000
	// CAPP record 1 of SFI 17 holds the metro trip.
	cappRecord    = 1
	cappIn        = 1
	cappOut       = 2
	maxStationLen = 20
)

var stationRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,19}$`)

// Config configures a gate.
type Config struct {
	DataDir       string // the data directory: the gate lives in <DataDir>/gates/<city>-<station>-<mode>
	City          *config.City
	Station       string // a station id for metro modes; a route name for buses
	Mode          Mode
	Agency        string // the transit agency's URL
	OperatorToken string
	Now           func() time.Time
	// OnOpen, when set, is the barrier: called when the gate opens (after
	// the card's debit and the gate's intent are durable, before the
	// "opened" mark is journaled).
	OnOpen func(Result)
}

func (c *Config) validate() error {
	if c.City == nil || !c.City.Transit() {
		return mipay.Errorf(mipay.EINVALID, "the gate needs a transit city")
	}
	if !stationRE.MatchString(c.Station) {
		return mipay.Errorf(mipay.EINVALID, "--station %q: use up to 20 lower-case letters, digits and dashes", c.Station)
	}
	if _, err := ParseMode(string(c.Mode)); err != nil {
		return err
	}
	if c.Mode != ModeBus {
		if _, ok := c.City.Station(c.Station); !ok {
			return mipay.Errorf(mipay.EINVALID, "%s has no metro station %q", c.City.Name, c.Station)
		}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Dir is the gate's directory.
func (c *Config) Dir() string {
	return filepath.Join(c.DataDir, "gates", fmt.Sprintf("%s-%s-%s", c.City.ID, c.Station, c.Mode))
}

// Card is the phone in the reader's field (an *nfc.Session).
type Card interface {
	Transmit(ctx context.Context, apdu []byte) ([]byte, error)
}

// Result is what the gate did with a tap.
type Result struct {
	Open         bool          `json:"open"`
	Reason       string        `json:"reason,omitempty"` // why it refused
	CardNumber   string        `json:"cardNumber,omitempty"`
	ChargedMinor int64         `json:"chargedMinor"`
	BalanceMinor int64         `json:"balanceMinor"` // after the tap
	EntryStation string        `json:"entryStation,omitempty"`
	Recovered    bool          `json:"recovered,omitempty"` // an earlier cut-off tap completed
	Elapsed      time.Duration `json:"elapsed"`
}

func (r Result) String() string {
	if !r.Open {
		return "REFUSED: " + r.Reason
	}
	s := fmt.Sprintf("OPEN  card %s  charged %d.%02d  balance %d.%02d", r.CardNumber, r.ChargedMinor/100, r.ChargedMinor%100, r.BalanceMinor/100, r.BalanceMinor%100)
	if r.EntryStation != "" {
		s += "  from " + r.EntryStation
	}
	return s
}

// Gate is a provisioned gate.
type Gate struct {
	cfg      Config
	psam     *PSAM
	db       *store.DB
	agency   httpx.Client
	mu       sync.Mutex // one tap at a time; guards everything below
	tsn      uint32
	hot      map[string]bool
	j        *journal
	mirrored int                    // j.recs[:mirrored] are in the SQLite store
	pending  map[string]*pendingTap // by card number
	lost     *lostTap               // after an unclean stop: the intent a power cut may have taken
}

// lostTap is the one tap a power cut may have taken from the journal: the
// intent of the tap in flight is written before DEBIT but flushed while the
// card works, so after an unclean stop the next TSN may have gone to a card
// that debited. For RecoveryWindow the gate reads each card's newest log
// record: a purchase at this terminal with the serial just before the
// card's, unknown to the gate, is that tap (journal.go).
type lostTap struct {
	tsn   uint32
	until time.Time
}

// Tap states (gate_records.state).
const (
	statePending  = "pending"  // intent durable, the card's answer unknown
	stateUnopened = "unopened" // TAC known, the barrier may not have opened
	stateDone     = "done"
)

// pendingTap is a tap the gate still owes something: a DEBIT whose answer
// it does not know (the card may have debited), or a debit whose barrier
// may not have opened.
type pendingTap struct {
	state   string
	card    string
	serial  uint16
	tsn     [4]byte
	tx      emv.EPurseTx
	ps      *purchase
	created time.Time
}

// Provision makes the gate's PSAM and has the agency seal the city's
// purchase key to it.
func Provision(ctx context.Context, cfg Config) (*PSAM, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	dir := cfg.Dir()
	p, err := OpenPSAM(dir)
	if err != nil {
		if p, err = CreatePSAM(dir); err != nil {
			return nil, err
		}
	}
	c := httpx.Client{Base: cfg.Agency, Token: cfg.OperatorToken}
	var out struct {
		SealedKey []byte `json:"sealedKey"`
	}
	if err := c.Do(ctx, "POST", "/v1/cities/"+cfg.City.ID+"/psams", transit.PSAMRequest{PSAMID: p.ID(), Station: cfg.Station, PublicKey: p.PublicKey()}, &out); err != nil {
		return nil, err
	}
	if err := p.Install(cfg.City.ID, out.SealedKey); err != nil {
		return nil, err
	}
	return p, nil
}

// Open opens a provisioned gate.
func Open(ctx context.Context, cfg Config) (*Gate, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p, err := OpenPSAM(cfg.Dir())
	if err != nil {
		return nil, err
	}
	if p.City() != cfg.City.ID {
		return nil, mipay.Errorf(mipay.ECONFLICT, "the gate's PSAM is not provisioned for %s: run `mipay gate provision`", cfg.City.Name)
	}
	db, err := store.Open(ctx, store.Config{Dir: cfg.Dir()}, "gate", Migrations())
	if err != nil {
		return nil, err
	}
	j, err := openJournal(cfg.Dir())
	if err != nil {
		db.Close()
		return nil, err
	}
	g := &Gate{cfg: cfg, psam: p, db: db, agency: httpx.Client{Base: cfg.Agency, Token: cfg.OperatorToken}, hot: map[string]bool{},
		j: j, pending: map[string]*pendingTap{}}
	if err := g.recoverState(ctx); err != nil {
		j.close()
		db.Close()
		return nil, err
	}
	if err := g.loadHotlist(ctx); err != nil {
		j.close()
		db.Close()
		return nil, err
	}
	return g, nil
}

// recoverState brings the SQLite store up to the journal (what a crash left
// there) and reloads the taps the gate still owes something.
func (g *Gate) recoverState(ctx context.Context) error {
	if err := g.mirror(ctx); err != nil {
		return err
	}
	var maxTSN sql.NullInt64
	if err := g.db.DB.QueryRowContext(ctx, `SELECT MAX(tsn) FROM gate_records`).Scan(&maxTSN); err != nil {
		return err
	}
	g.tsn = uint32(maxTSN.Int64)
	for _, r := range g.j.recs { // a voided intent is gone from the store, its TSN stays used
		g.tsn = max(g.tsn, r.tsn)
	}
	if n := len(g.j.recs); !g.j.fresh && (n == 0 || g.j.recs[n-1].kind != recClosed) {
		// Not closed cleanly: the next TSN may be a lost tap's; skip it.
		g.tsn++
		g.lost = &lostTap{tsn: g.tsn, until: g.cfg.Now().Add(RecoveryWindow)}
	}
	rows, err := g.db.DB.QueryContext(ctx, `SELECT state, tsn, card_number, offline_serial, amount_minor, tx_type, terminal, tx_date, tx_time, random, created
		FROM gate_records WHERE state <> $1`, stateDone)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var st, card, term, date, tm, random string
		var tsn, serial, amount, created int64
		var typ int
		if err := rows.Scan(&st, &tsn, &card, &serial, &amount, &typ, &term, &date, &tm, &random, &created); err != nil {
			return err
		}
		p := &pendingTap{state: st, card: card, serial: uint16(serial), created: time.UnixMilli(created)}
		binary.BigEndian.PutUint32(p.tsn[:], uint32(tsn))
		p.tx = emv.EPurseTx{Amount: uint32(amount), Type: byte(typ)}
		var rnd [4]byte
		for _, f := range []struct {
			dst []byte
			hex string
		}{{p.tx.Terminal[:], term}, {p.tx.Date[:], date}, {p.tx.Time[:], tm}, {rnd[:], random}} {
			if b, err := hex.DecodeString(f.hex); err != nil || len(b) != len(f.dst) {
				if st == statePending {
					return fmt.Errorf("gate: pending record %d is malformed", tsn)
				}
			} else {
				copy(f.dst, b)
			}
		}
		if st == statePending {
			var ser [2]byte
			binary.BigEndian.PutUint16(ser[:], p.serial)
			if p.ps, _, err = g.psam.startPurchase(card, rnd, ser, p.tsn, p.tx); err != nil {
				return err
			}
		}
		g.pending[card] = p
	}
	return rows.Err()
}

// Close flushes the journal into the store and closes both (once).
func (g *Gate) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.j == nil {
		return nil
	}
	err := g.mirrorLocked(context.Background())
	err = errors.Join(err, g.record(jrec{kind: recClosed, tsn: g.tsn}, true))
	err = errors.Join(err, g.j.close())
	g.j = nil
	return errors.Join(err, g.db.Close())
}

// mirror copies the journal's new records into the SQLite store in one
// transaction (idempotent: a crash between the two replays them again).
func (g *Gate) mirror(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.mirrorLocked(ctx)
}

func (g *Gate) mirrorLocked(ctx context.Context) error {
	recs := g.j.recs[g.mirrored:]
	if len(recs) == 0 {
		return nil
	}
	err := g.db.Tx(ctx, func(tx *sql.Tx) error {
		for i := range recs {
			if err := g.applyRec(ctx, tx, &recs[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("gate: mirror the journal: %w", err)
	}
	g.mirrored += len(recs)
	return nil
}

func (g *Gate) applyRec(ctx context.Context, tx *sql.Tx, r *jrec) error {
	tsn := int64(r.tsn)
	var err error
	switch r.kind {
	case recIntent:
		_, err = tx.ExecContext(ctx, `INSERT INTO gate_records (tsn, card_number, offline_serial, amount_minor, tx_type, terminal, tx_date, tx_time, tac, station, created, state, random)
			VALUES ($1,$2,$3,$4,$5,$6,$7,$8,'',$9,$10,$11,$12) ON CONFLICT (tsn) DO NOTHING`, tsn, r.card, int64(r.serial), int64(r.amount), int(r.txType),
			fmt.Sprintf("%X", r.term), hex.EncodeToString(r.date[:]), hex.EncodeToString(r.time[:]), g.cfg.Station, r.created, statePending, hex.EncodeToString(r.random[:]))
	case recFound:
		_, err = tx.ExecContext(ctx, `INSERT INTO gate_records (tsn, card_number, offline_serial, amount_minor, tx_type, terminal, tx_date, tx_time, tac, station, created, state, random)
			VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13) ON CONFLICT (tsn) DO NOTHING`, tsn, r.card, int64(r.serial), int64(r.amount), int(r.txType),
			fmt.Sprintf("%X", r.term), hex.EncodeToString(r.date[:]), hex.EncodeToString(r.time[:]), fmt.Sprintf("%X", r.tac), g.cfg.Station, r.created,
			stateUnopened, hex.EncodeToString(r.random[:]))
	case recCompleted:
		// A pending tap reported in doubt goes up again, as a record.
		_, err = tx.ExecContext(ctx, `UPDATE gate_records SET tac = $2, state = $3, batch_id = '', uploaded = 0 WHERE tsn = $1 AND state = $4`,
			tsn, fmt.Sprintf("%X", r.tac), stateUnopened, statePending)
	case recOpened:
		_, err = tx.ExecContext(ctx, `UPDATE gate_records SET state = $2 WHERE tsn = $1 AND state = $3`, tsn, stateDone, stateUnopened)
	case recVoid:
		_, err = tx.ExecContext(ctx, `DELETE FROM gate_records WHERE tsn = $1 AND state = $2`, tsn, statePending)
	}
	return err
}

// rotate restarts a full journal: its records go to the store, made
// durable there, then a new generation begins.
func (g *Gate) rotate(ctx context.Context) error {
	if err := g.mirrorLocked(ctx); err != nil {
		return err
	}
	if g.db.Engine() == store.SQLite {
		// Whatever the store's synchronous setting, a completed checkpoint
		// has the committed records in the synced database file.
		var busy, logFrames, done int
		if err := g.db.DB.QueryRowContext(ctx, `PRAGMA wal_checkpoint(FULL)`).Scan(&busy, &logFrames, &done); err != nil {
			return fmt.Errorf("gate: checkpoint before the journal restarts: %w", err)
		}
		if busy != 0 {
			return errors.New("gate: the store is busy: the journal cannot restart yet")
		}
	}
	if err := g.j.restart(); err != nil {
		return err
	}
	g.mirrored = 0
	return nil
}

// record journals a record; durable says whether to wait for the disk.
func (g *Gate) record(r jrec, durable bool) error { return g.j.append(r, durable) }

// PSAM is the gate's PSAM.
func (g *Gate) PSAM() *PSAM { return g.psam }

func (g *Gate) loadHotlist(ctx context.Context) error {
	rows, err := g.db.DB.QueryContext(ctx, `SELECT card_number FROM gate_hotlist`)
	if err != nil {
		return err
	}
	defer rows.Close()
	hot := map[string]bool{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return err
		}
		hot[n] = true
	}
	g.mu.Lock()
	g.hot = hot
	g.mu.Unlock()
	return rows.Err()
}

// RefreshHotlist replaces the local hotlist with the agency's.
func (g *Gate) RefreshHotlist(ctx context.Context) (int, error) {
	var out struct {
		Cards []string `json:"cards"`
	}
	if err := g.agency.Do(ctx, "GET", "/v1/cities/"+g.cfg.City.ID+"/hotlist", nil, &out); err != nil {
		return 0, err
	}
	err := g.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM gate_hotlist`); err != nil {
			return err
		}
		for _, n := range out.Cards {
			if _, err := tx.ExecContext(ctx, `INSERT INTO gate_hotlist (card_number) VALUES ($1) ON CONFLICT DO NOTHING`, n); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return len(out.Cards), g.loadHotlist(ctx)
}

// Serve handles taps on r until ctx ends; report gets each outcome.
func (g *Gate) Serve(ctx context.Context, r *nfc.Reader, report func(Result, error)) error {
	for {
		sess, err := r.Wait(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			report(Result{}, err)
			continue
		}
		res, err := g.Process(ctx, sess)
		sess.Close()
		report(res, err)
	}
}

func apduErr(what string, resp []byte) error {
	if len(resp) < 2 {
		return fmt.Errorf("gate: %s: short answer", what)
	}
	w := binary.BigEndian.Uint16(resp[len(resp)-2:])
	return fmt.Errorf("gate: %s: %04X %s", what, w, emv.SWText(w))
}

func sw(resp []byte) uint16 {
	if len(resp) < 2 {
		return 0
	}
	return binary.BigEndian.Uint16(resp[len(resp)-2:])
}

func bcdNow(t time.Time) ([4]byte, [3]byte) {
	d, _ := hex.DecodeString(t.Format("20060102"))
	h, _ := hex.DecodeString(t.Format("150405"))
	return [4]byte(d), [3]byte(h)
}

// Process runs one tap: the gate opens only when the card's MAC2 checked
// and the record is durable. Refusals are Result.Open false; an error
// means the exchange failed (the phone left the field, a bad card).
func (g *Gate) Process(ctx context.Context, c Card) (Result, error) {
	start := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	res, err := g.process(ctx, c)
	res.Elapsed = time.Since(start)
	return res, err
}

func (g *Gate) process(ctx context.Context, c Card) (Result, error) {
	city := g.cfg.City
	aid := city.AIDBytes()
	sel, err := c.Transmit(ctx, append(append([]byte{0x00, 0xA4, 0x04, 0x00, byte(len(aid))}, aid...), 0x00))
	if err != nil {
		return Result{}, err
	}
	if sw(sel) != emv.SWSuccess {
		return Result{Reason: "no " + city.Name + " transit card on this phone"}, nil
	}
	number, err := cardNumberOf(sel[:len(sel)-2])
	if err != nil {
		return Result{}, err
	}
	res := Result{CardNumber: number}
	if g.hot[number] {
		res.Reason = "card is blocked (hotlisted): see the service desk"
		return res, nil
	}
	if p := g.pending[number]; p != nil {
		if done, err := g.recover(ctx, c, p, &res); err != nil || done {
			return res, err
		}
	}
	if !g.j.room(3) { // intent, completion, opened
		if err := g.rotate(ctx); err != nil {
			return res, err
		}
	}
	var amount uint32
	txType, p1 := emv.EPurseTypePurchase, byte(0x01)
	var capp []byte
	now := g.cfg.Now()
	switch g.cfg.Mode {
	case ModeBus:
		amount = uint32(city.BusFareMinor)
	case ModeEntry:
		txType, p1 = emv.EPurseTypeCompositePurchase, 0x03
		capp = g.cappRecord(cappIn, now)
	case ModeExit:
		txType, p1 = emv.EPurseTypeCompositePurchase, 0x03
		fare := city.MaxMetroFare()
		rec, err := c.Transmit(ctx, []byte{0x00, 0xB2, cappRecord, transitSFICAPP<<3 | 0x04, 0x00})
		if err != nil {
			return res, err
		}
		if entry, ok := parseCAPP(rec); ok && entry.status == cappIn {
			if f, err := city.MetroFare(entry.station, g.cfg.Station); err == nil {
				fare, res.EntryStation = f, entry.station
			}
		}
		amount = uint32(fare)
		capp = g.cappRecord(cappOut, now)
	}
	var term [6]byte = g.psam.Terminal()
	init, err := c.Transmit(ctx, append([]byte{0x80, 0x50, p1, 0x02, 0x0B, 0x01}, append(binary.BigEndian.AppendUint32(nil, amount), append(term[:], 0x0F)...)...))
	if err != nil {
		return res, err
	}
	switch sw(init) {
	case emv.SWSuccess:
	case emv.SWInsufficientBalance:
		res.Reason = "balance too low: top up in the app"
		return res, nil
	default:
		return res, apduErr("INITIALIZE FOR PURCHASE", init)
	}
	if len(init) != 17 {
		return res, fmt.Errorf("gate: INITIALIZE answer of %d bytes", len(init)-2)
	}
	balance := binary.BigEndian.Uint32(init)
	if g.cfg.Mode == ModeEntry && int64(balance) < city.MinEntryBalanceMinor {
		res.BalanceMinor = int64(balance)
		res.Reason = fmt.Sprintf("balance %d.%02d is below the %d.%02d needed to enter: top up in the app", balance/100, balance%100,
			city.MinEntryBalanceMinor/100, city.MinEntryBalanceMinor%100)
		return res, nil
	}
	serial := [2]byte(init[4:6])
	random := [4]byte(init[11:15])
	if g.lost != nil {
		if done, err := g.findLostTap(ctx, c, number, binary.BigEndian.Uint16(serial[:]), now, &res); err != nil || done {
			return res, err
		}
	}
	g.tsn++
	var tsn [4]byte
	binary.BigEndian.PutUint32(tsn[:], g.tsn)
	date, tm := bcdNow(now)
	tx := emv.EPurseTx{Amount: amount, Type: txType, Terminal: term, Date: date, Time: tm}
	ps, mac1, err := g.psam.startPurchase(number, random, serial, tsn, tx)
	if err != nil {
		return res, err
	}
	// The gate's one durable write: written before DEBIT (a killed gate
	// keeps it, and so knows which card, serial and session to settle), made
	// durable while the card makes its own debit durable; the gate opens
	// only when both are (journal.go).
	intentSynced, err := g.j.appendAsync(jrec{kind: recIntent, tsn: g.tsn, card: number, serial: binary.BigEndian.Uint16(serial[:]), amount: amount,
		txType: txType, term: term, date: date, time: tm, random: random, created: now.UnixMilli()})
	if err != nil {
		return res, err
	}
	pt := &pendingTap{state: statePending, card: number, serial: binary.BigEndian.Uint16(serial[:]), tsn: tsn, tx: tx, ps: ps, created: now}
	g.pending[number] = pt
	if capp != nil {
		r, err := c.Transmit(ctx, append([]byte{0x80, 0xDC, cappRecord, transitSFICAPP << 3, byte(len(capp))}, capp...))
		if err != nil {
			return res, err
		}
		if sw(r) != emv.SWSuccess {
			return res, g.void(pt, apduErr("UPDATE CAPP DATA CACHE", r))
		}
	}
	debit := append([]byte{0x80, 0x54, 0x01, 0x00, 0x0F}, tsn[:]...)
	debit = append(append(append(debit, date[:]...), tm[:]...), mac1[:]...)
	out, err := c.Transmit(ctx, append(debit, 0x08))
	if serr := <-intentSynced; serr != nil && err == nil {
		// The card answered, but the gate's intent is not known to be on
		// disk: no opening on that. The tap stays pending (the kernel has
		// the intent) and settles when the card comes back.
		return res, serr
	}
	if err != nil {
		// The card may have debited: the tap stays pending, settled with
		// GET TRANSACTION PROOF when the card comes back.
		return res, err
	}
	if sw(out) != emv.SWSuccess || len(out) != 10 {
		return res, g.void(pt, apduErr("DEBIT FOR PURCHASE", out))
	}
	if !ps.verifyMAC2(out[4:8]) {
		res.Reason = "the card's answer does not verify (MAC2): see the service desk"
		return res, g.void(pt, nil)
	}
	res.ChargedMinor, res.BalanceMinor = int64(amount), int64(balance-amount)
	return res, g.complete(pt, [4]byte(out[0:4]), &res)
}

// void says a pending tap's card did not debit (it refused): the intent is
// cancelled. err is passed through.
func (g *Gate) void(p *pendingTap, err error) error {
	delete(g.pending, p.card)
	if jerr := g.record(jrec{kind: recVoid, tsn: binary.BigEndian.Uint32(p.tsn[:])}, false); jerr != nil {
		return errors.Join(err, jerr)
	}
	return err
}

// complete records the card's TAC, opens the barrier and records that.
// Neither write waits for the disk: the intent is durable, and the card's
// debit and proof are durable at the card (journal.go).
func (g *Gate) complete(p *pendingTap, tac [4]byte, res *Result) error {
	tsn := binary.BigEndian.Uint32(p.tsn[:])
	if err := g.record(jrec{kind: recCompleted, tsn: tsn, tac: tac}, false); err != nil {
		return err
	}
	p.state = stateUnopened
	g.open(p, res)
	return nil
}

// open opens the barrier for a tap whose TAC is recorded.
func (g *Gate) open(p *pendingTap, res *Result) {
	res.Open = true
	if g.cfg.OnOpen != nil {
		g.cfg.OnOpen(*res)
	}
	delete(g.pending, p.card)
	// If this mark is lost the gate only owes a free passage it already
	// gave, within RecoveryWindow.
	_ = g.record(jrec{kind: recOpened, tsn: binary.BigEndian.Uint32(p.tsn[:])}, false)
}

// recover settles a tap the gate still owes something. A pending tap asks
// the card with GET TRANSACTION PROOF whether it debited: if so its MAC2
// (checked by the PSAM with the session's random) and TAC complete the
// record; if not, the intent is void. A completed tap whose barrier may not
// have opened, or a recovered debit, lets the passenger through without a
// new charge when it is within RecoveryWindow; after that the record stays
// (cleared as usual) and this tap is a new purchase.
func (g *Gate) recover(ctx context.Context, c Card, p *pendingTap, res *Result) (bool, error) {
	tsn := binary.BigEndian.Uint32(p.tsn[:])
	if p.state == statePending {
		var s [2]byte
		binary.BigEndian.PutUint16(s[:], p.serial)
		proof, err := c.Transmit(ctx, []byte{0x80, 0x5A, 0x00, p.tx.Type, 0x02, s[0], s[1], 0x08})
		if err != nil {
			return false, err
		}
		if sw(proof) != emv.SWSuccess || len(proof) != 10 || !p.ps.verifyMAC2(proof[0:4]) {
			return false, g.void(p, nil) // the card did not debit: a fresh purchase follows
		}
		if err := g.record(jrec{kind: recCompleted, tsn: tsn, tac: [4]byte(proof[4:8])}, false); err != nil {
			return true, err
		}
		p.state = stateUnopened
	}
	if g.cfg.Now().Sub(p.created) > RecoveryWindow {
		delete(g.pending, p.card)
		return false, g.record(jrec{kind: recOpened, tsn: tsn}, false)
	}
	bal, err := c.Transmit(ctx, []byte{0x80, 0x5C, 0x00, 0x02, 0x04})
	if err == nil && sw(bal) == emv.SWSuccess && len(bal) == 6 {
		res.BalanceMinor = int64(binary.BigEndian.Uint32(bal))
	}
	res.Recovered, res.ChargedMinor = true, int64(p.tx.Amount)
	g.open(p, res)
	return true, nil
}

// findLostTap looks, after an unclean stop, for the tap a power cut took
// from the journal (lostTap): the card's newest log record is a purchase at
// this terminal with the serial just before the card's and the gate knows
// nothing of it. Its proof's TAC and the lost TSN make the record (clearing
// checks the TAC; the MAC2 cannot be checked, the session's random is gone);
// within RecoveryWindow of the tap the card passes without a new charge.
func (g *Gate) findLostTap(ctx context.Context, c Card, number string, cardSerial uint16, now time.Time, res *Result) (bool, error) {
	if now.After(g.lost.until) {
		g.lost = nil
		return false, nil
	}
	rec, err := c.Transmit(ctx, []byte{0x00, 0xB2, 0x01, transitSFILog<<3 | 0x04, 0x00})
	if err != nil {
		return false, err
	}
	if sw(rec) != emv.SWSuccess || len(rec) != 25 {
		return false, nil
	}
	serial := binary.BigEndian.Uint16(rec[0:2])
	typ, term := rec[9], g.psam.Terminal()
	if serial+1 != cardSerial || (typ != emv.EPurseTypePurchase && typ != emv.EPurseTypeCompositePurchase) || !bytes.Equal(rec[10:16], term[:]) {
		return false, nil
	}
	if known, err := g.knows(ctx, number, serial); err != nil || known {
		return false, err
	}
	proof, err := c.Transmit(ctx, []byte{0x80, 0x5A, 0x00, typ, 0x02, rec[0], rec[1], 0x08})
	if err != nil {
		return false, err
	}
	if sw(proof) != emv.SWSuccess || len(proof) != 10 {
		return false, nil
	}
	tx := emv.EPurseTx{Amount: binary.BigEndian.Uint32(rec[5:9]), Type: typ, Terminal: term, Date: [4]byte(rec[16:20]), Time: [3]byte(rec[20:23])}
	at, err := time.ParseInLocation("20060102150405", hex.EncodeToString(rec[16:23]), now.Location())
	if err != nil {
		at = now.Add(-RecoveryWindow - time.Second) // not a time this gate writes: no free passage
	}
	tsn := g.lost.tsn
	g.lost = nil
	// One record, the tap and its TAC, durable before the barrier: an
	// intent first and its completion after would leave, killed between
	// the two, an intent without the session's random, whose MAC2 check
	// fails on recovery — the debit voided, the card charged again.
	if err := g.record(jrec{kind: recFound, tsn: tsn, card: number, serial: serial, amount: tx.Amount, txType: typ,
		term: term, date: tx.Date, time: tx.Time, created: at.UnixMilli(), tac: [4]byte(proof[4:8])}, true); err != nil {
		return false, err
	}
	p := &pendingTap{state: stateUnopened, card: number, serial: serial, tx: tx, created: at}
	binary.BigEndian.PutUint32(p.tsn[:], tsn)
	if now.Sub(at) > RecoveryWindow {
		return false, g.record(jrec{kind: recOpened, tsn: tsn}, false)
	}
	res.Recovered, res.ChargedMinor = true, int64(tx.Amount)
	bal, err := c.Transmit(ctx, []byte{0x80, 0x5C, 0x00, 0x02, 0x04})
	if err == nil && sw(bal) == emv.SWSuccess && len(bal) == 6 {
		res.BalanceMinor = int64(binary.BigEndian.Uint32(bal))
	}
	g.open(p, res)
	return true, nil
}

// knows reports whether the gate has a record or intent of the card's
// offline serial.
func (g *Gate) knows(ctx context.Context, number string, serial uint16) (bool, error) {
	for i := range g.j.recs {
		if r := &g.j.recs[i]; (r.kind == recIntent || r.kind == recFound) && r.card == number && r.serial == serial {
			return true, nil
		}
	}
	var n int
	err := g.db.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM gate_records WHERE card_number = $1 AND offline_serial = $2`, number, int64(serial)).Scan(&n)
	return n > 0, err
}

// transitSFILog is the e-purse's transaction log (se.SFILog).
const transitSFILog = 0x18

// transitSFICAPP is the e-purse's CAPP file (se.SFICAPP).
const transitSFICAPP = 0x17

type cappTrip struct {
	status  byte
	station string
}

// cappRecord: status(1) ‖ terminal(6) ‖ unix seconds(4) ‖ station length(1) ‖ station.
func (g *Gate) cappRecord(status byte, now time.Time) []byte {
	term := g.psam.Terminal()
	b := append([]byte{status}, term[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(now.Unix()))
	b = append(b, byte(len(g.cfg.Station)))
	return append(b, g.cfg.Station...)
}

func parseCAPP(resp []byte) (cappTrip, bool) {
	if sw(resp) != emv.SWSuccess || len(resp) < 14 {
		return cappTrip{}, false
	}
	b := resp[:len(resp)-2]
	n := int(b[11])
	if n > maxStationLen || len(b) < 12+n {
		return cappTrip{}, false
	}
	return cappTrip{status: b[0], station: string(b[12 : 12+n])}, true
}

// cardNumberOf reads tag 5A of the e-purse's FCI.
func cardNumberOf(fci []byte) (string, error) {
	tlvs, err := emv.DecodeTLV(fci)
	if err != nil {
		return "", fmt.Errorf("gate: FCI: %w", err)
	}
	t, ok := emv.Search(tlvs, 0x5A)
	if !ok || len(t.Value) == 0 || len(t.Value) > 10 {
		return "", errors.New("gate: the FCI has no card number")
	}
	s := hex.EncodeToString(t.Value)
	s = string(bytes.TrimRight([]byte(s), "f"))
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return "", errors.New("gate: the card number is not BCD")
		}
	}
	return s, nil
}

// Pending counts the records not yet cleared by the agency (a tap whose
// card's answer is still unknown is not a record yet).
func (g *Gate) Pending(ctx context.Context) (int, error) {
	if err := g.mirror(ctx); err != nil {
		return 0, err
	}
	var n int
	err := g.db.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM gate_records WHERE uploaded = 0 AND state <> $1`, statePending).Scan(&n)
	return n, err
}

// Upload sends the records not yet cleared, in batches. A batch's id is
// durable on its records before it is sent, so a retry after a cut sends
// the same batch and gets the agency's stored answer (no double clearing).
func (g *Gate) Upload(ctx context.Context) ([]transit.BatchResult, error) {
	var out []transit.BatchResult
	if err := g.mirror(ctx); err != nil {
		return nil, err
	}
	for {
		b, err := g.nextBatch(ctx)
		if err != nil || b == nil {
			return out, err
		}
		var res transit.BatchResult
		if err := g.agency.Do(ctx, "POST", "/v1/cities/"+g.cfg.City.ID+"/batches", b, &res); err != nil {
			return out, err
		}
		if err := g.db.Tx(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `UPDATE gate_records SET uploaded = 1 WHERE batch_id = $1`, b.ID)
			return err
		}); err != nil {
			return out, err
		}
		out = append(out, res)
	}
}

func (g *Gate) nextBatch(ctx context.Context) (*transit.Batch, error) {
	var id string
	err := g.db.DB.QueryRowContext(ctx, `SELECT batch_id FROM gate_records WHERE uploaded = 0 AND batch_id <> '' LIMIT 1`).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		id = fmt.Sprintf("%s-%d", g.psam.ID(), g.cfg.Now().UnixNano())
		var n int64
		err = g.db.Tx(ctx, func(tx *sql.Tx) error {
			// Records with their TAC, and intents pending for longer than
			// RecoveryWindow (reported in doubt: the card's own proof,
			// reported by its phone, can clear them at the agency).
			r, err := tx.ExecContext(ctx, `UPDATE gate_records SET batch_id = $1 WHERE tsn IN (SELECT tsn FROM gate_records
				WHERE uploaded = 0 AND batch_id = '' AND (state <> $3 OR created < $4) ORDER BY tsn LIMIT $2)`,
				id, MaxUploadRecords, statePending, g.cfg.Now().Add(-RecoveryWindow).UnixMilli())
			if err != nil {
				return err
			}
			n, err = r.RowsAffected()
			return err
		})
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, nil
		}
	} else if err != nil {
		return nil, err
	}
	rows, err := g.db.DB.QueryContext(ctx, `SELECT tsn, card_number, offline_serial, amount_minor, tx_type, terminal, tx_date, tx_time, tac, station, state
		FROM gate_records WHERE batch_id = $1 ORDER BY tsn`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	b := &transit.Batch{ID: id, City: g.cfg.City.ID, Terminal: g.psam.ID()}
	for rows.Next() {
		var r transit.GateRecord
		var st string
		if err := rows.Scan(&r.TSN, &r.CardNumber, &r.OfflineSerial, &r.AmountMinor, &r.Type, &r.Terminal, &r.Date, &r.Time, &r.TAC, &r.Station, &st); err != nil {
			return nil, err
		}
		if st == statePending {
			b.InDoubt = append(b.InDoubt, r)
			continue
		}
		b.Records = append(b.Records, r)
	}
	return b, rows.Err()
}

// PendingBatch is the batch the next Upload sends first (operators, tests).
func (g *Gate) PendingBatch(ctx context.Context) (*transit.Batch, error) {
	if err := g.mirror(ctx); err != nil {
		return nil, err
	}
	return g.nextBatch(ctx)
}
