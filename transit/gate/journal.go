package gate

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// The gate's tap journal: its one durable write per tap.
//
// A tap's money is safe only if, at every instant, a debit the card may have
// made is recorded somewhere it can be cleared from. The gate therefore
// writes its record BEFORE it sends DEBIT FOR PURCHASE, as an intent (card,
// offline serial, terminal serial, amount, date, time, and the card's random
// so the PSAM can check a MAC2 later), into a preallocated file overwritten
// in place (no size or extent change to journal). From the moment write(2)
// returns, a killed gate process cannot lose it (the kernel has it); its
// fdatasync runs while the card makes its own debit durable, and the gate
// opens only after both — so a tap costs about one flush, not two in a row.
// What comes after the card's answer — the TAC ("completed"), then "opened"
// when the barrier opens — is written without waiting for the disk and
// reaches it with the next tap's fdatasync or the background flush
// FlushDelay later, in one flush for however many taps came in between
// (group commit). Upload mirrors the journal into the gate's SQLite store in
// one transaction.
//
// What a crash leaves (the card's own state is durable before it answers):
//
//   - killed before the intent is written: DEBIT was never sent; nothing
//     happened.
//   - intent written, no completion (gate or phone killed while the card
//     worked, or the card's answer was lost): the tap is "pending". When the
//     card comes back to this gate, GET TRANSACTION PROOF for that serial
//     says whether it debited: if so its MAC2 (checked with the PSAM and the
//     stored random) and TAC complete the record, and the gate opens without
//     charging again if that is within RecoveryWindow of the tap; if the card
//     has no such transaction the intent is void. The card keeps the proofs
//     of its last purchases (as deep as its log), so later taps elsewhere do
//     not erase it. A card that never comes back is reported in doubt, and
//     its phone's proofs clear it at the agency (transit/indoubt.go).
//   - completed, not opened (killed between the card's answer and the
//     barrier): the record clears; a tap of the card within RecoveryWindow
//     opens without charging.
//   - a power cut after opening may lose the unsynced completion: the
//     intent was durable before the opening, so the tap is pending and
//     completes as above (a re-tap within the window passes free: the
//     passenger paid once).
//   - a power cut while DEBIT is out and the intent's flush has not
//     returned (about one fsync; the gate has not opened) may lose the
//     intent while the card debits — the price of overlapping the two
//     flushes. A clean Close journals "closed"; after any other stop the
//     gate skips the next TSN (the lost intent's, since taps are one at a
//     time) and, for RecoveryWindow, reads each card's newest log record: a
//     purchase at this terminal with the serial just before the card's that
//     the gate does not know is that tap. Its proof's TAC and the skipped
//     TSN make the record (clearing's TAC check proves the TSN), and the
//     card passes without a new charge within the window.
//
// So the gate never opens on a debit that is not durable at the card and
// whose intent is not durable at the gate, and neither a killed process nor
// a power cut makes a card pay twice for one passage (a card that does not
// come back within the window pays for its new passage; its lost tap is
// then never cleared, so the agency's shadow balance keeps the fare, which
// a move or a refund pays back).
//
// Layout: slot 0 is the header (magic, generation); slots 1… hold one record
// each, numbered by slot, with the generation and a CRC-32C; reading stops at
// the first slot that is not the next record of the current generation.
// When the journal is full it is mirrored into SQLite, made durable there,
// and restarted under a new generation.

const (
	journalFile   = "gate.journal"
	slotBytes     = 128
	journalSlots  = 8192 // 1 MiB: about 2,700 taps between restarts
	journalMagic  = "MGJ1"
	headerMagic   = "MGJH"
	maxCardDigits = 19
	// FlushDelay bounds how long a completion waits for the disk when no
	// further tap flushes it.
	FlushDelay = 100 * time.Millisecond
	// RecoveryWindow is how long after a tap the gate still owes the
	// passenger a free passage when it cannot tell whether it opened.
	RecoveryWindow = 2 * time.Minute
)

// Journal record kinds.
const (
	recIntent    byte = 'I'
	recCompleted byte = 'C'
	// recFound is a lost tap found in the card's log (findLostTap): its
	// intent and the card's TAC in one record, so no crash can leave it an
	// intent without its session random, which recovery would void.
	recFound  byte = 'F'
	recOpened byte = 'O'
	recVoid   byte = 'V'
	recClosed byte = 'S' // a clean Close: nothing was in flight
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// jrec is one journal record.
type jrec struct {
	kind    byte
	tsn     uint32
	card    string
	serial  uint16
	amount  uint32
	txType  byte
	term    [6]byte
	date    [4]byte
	time    [3]byte
	random  [4]byte
	created int64 // unix ms
	tac     [4]byte
}

func (r *jrec) encode(gen uint64, slot int) []byte {
	b := make([]byte, slotBytes)
	copy(b, journalMagic)
	binary.BigEndian.PutUint64(b[4:], gen)
	binary.BigEndian.PutUint32(b[12:], uint32(slot))
	b[16] = r.kind
	binary.BigEndian.PutUint32(b[17:], r.tsn)
	switch r.kind {
	case recIntent, recFound:
		b[21] = byte(len(r.card))
		copy(b[22:41], r.card)
		binary.BigEndian.PutUint16(b[41:], r.serial)
		binary.BigEndian.PutUint32(b[43:], r.amount)
		b[47] = r.txType
		copy(b[48:54], r.term[:])
		copy(b[54:58], r.date[:])
		copy(b[58:61], r.time[:])
		copy(b[61:65], r.random[:])
		binary.BigEndian.PutUint64(b[65:], uint64(r.created))
		if r.kind == recFound {
			copy(b[73:77], r.tac[:])
		}
	case recCompleted:
		copy(b[21:25], r.tac[:])
	}
	binary.BigEndian.PutUint32(b[slotBytes-4:], crc32.Checksum(b[:slotBytes-4], castagnoli))
	return b
}

func decodeRec(b []byte, gen uint64, slot int) (jrec, bool) {
	if string(b[:4]) != journalMagic || binary.BigEndian.Uint64(b[4:]) != gen || binary.BigEndian.Uint32(b[12:]) != uint32(slot) ||
		crc32.Checksum(b[:slotBytes-4], castagnoli) != binary.BigEndian.Uint32(b[slotBytes-4:]) {
		return jrec{}, false
	}
	r := jrec{kind: b[16], tsn: binary.BigEndian.Uint32(b[17:])}
	switch r.kind {
	case recIntent, recFound:
		n := int(b[21])
		if n == 0 || n > maxCardDigits {
			return jrec{}, false
		}
		r.card = string(b[22 : 22+n])
		r.serial = binary.BigEndian.Uint16(b[41:])
		r.amount = binary.BigEndian.Uint32(b[43:])
		r.txType = b[47]
		copy(r.term[:], b[48:54])
		copy(r.date[:], b[54:58])
		copy(r.time[:], b[58:61])
		copy(r.random[:], b[61:65])
		r.created = int64(binary.BigEndian.Uint64(b[65:]))
		if r.kind == recFound {
			copy(r.tac[:], b[73:77])
		}
	case recCompleted:
		copy(r.tac[:], b[21:25])
	case recOpened, recVoid, recClosed:
	default:
		return jrec{}, false
	}
	return r, true
}

// journal is the open tap journal. Appends come from the tap path (one at
// a time, under Gate.mu); the flusher only calls fdatasync.
type journal struct {
	f     *os.File
	gen   uint64
	next  int    // the next slot
	recs  []jrec // this generation's records, in order (mirrored to SQLite on demand)
	fresh bool   // made by this open: no tap can have been in flight

	flushMu sync.Mutex
	timer   *time.Timer
	dirty   bool

	syncMu sync.RWMutex // background flushes (shared) against close (exclusive)
	closed bool
}

func openJournal(dir string) (*journal, error) {
	path := filepath.Join(dir, journalFile)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return createJournal(path)
	}
	if err != nil {
		return nil, fmt.Errorf("gate: journal: %w", err)
	}
	j := &journal{f: f, next: 1}
	head := make([]byte, slotBytes)
	if _, err := f.ReadAt(head, 0); err != nil || string(head[:4]) != headerMagic ||
		crc32.Checksum(head[:slotBytes-4], castagnoli) != binary.BigEndian.Uint32(head[slotBytes-4:]) {
		f.Close()
		return nil, fmt.Errorf("gate: journal %s has no valid header", path)
	}
	j.gen = binary.BigEndian.Uint64(head[4:])
	buf := make([]byte, slotBytes)
	for j.next < journalSlots {
		if _, err := f.ReadAt(buf, int64(j.next)*slotBytes); err != nil {
			f.Close()
			return nil, fmt.Errorf("gate: journal: %w", err)
		}
		r, ok := decodeRec(buf, j.gen, j.next)
		if !ok {
			break
		}
		j.recs = append(j.recs, r)
		j.next++
	}
	return j, nil
}

func createJournal(path string) (*journal, error) {
	tmp := path + ".new"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("gate: journal: %w", err)
	}
	// Real zeros (not a sparse file): writes into them change no metadata.
	if _, err := f.Write(make([]byte, journalSlots*slotBytes)); err != nil {
		f.Close()
		return nil, fmt.Errorf("gate: journal: %w", err)
	}
	j := &journal{f: f, fresh: true}
	if err := j.restart(); err != nil {
		f.Close()
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		f.Close()
		return nil, fmt.Errorf("gate: journal: %w", err)
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("gate: journal: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("gate: journal: %w", err)
	}
	return j, nil
}

// restart begins a new generation (durably): the records of the old one no
// longer read. Callers have made them durable elsewhere first.
func (j *journal) restart() error {
	var g [8]byte
	if _, err := rand.Read(g[:]); err != nil {
		return err
	}
	head := make([]byte, slotBytes)
	copy(head, headerMagic)
	copy(head[4:], g[:])
	binary.BigEndian.PutUint32(head[slotBytes-4:], crc32.Checksum(head[:slotBytes-4], castagnoli))
	if _, err := j.f.WriteAt(head, 0); err != nil {
		return fmt.Errorf("gate: journal: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("gate: journal: %w", err)
	}
	j.gen, j.next, j.recs = binary.BigEndian.Uint64(g[:]), 1, nil
	return nil
}

// room reports whether n more records fit.
func (j *journal) room(n int) bool { return j.next+n <= journalSlots }

// append writes a record; durable makes it (and everything before it)
// reach the disk before returning, otherwise a flush follows within
// FlushDelay.
func (j *journal) append(r jrec, durable bool) error {
	if !j.room(1) {
		return errors.New("gate: journal full")
	}
	if _, err := j.f.WriteAt(r.encode(j.gen, j.next), int64(j.next)*slotBytes); err != nil {
		return fmt.Errorf("gate: journal write: %w", err)
	}
	j.next++
	j.recs = append(j.recs, r)
	if durable {
		if err := fdatasync(j.f); err != nil {
			return fmt.Errorf("gate: journal sync: %w", err)
		}
		j.flushMu.Lock()
		j.dirty = false
		j.flushMu.Unlock()
		return nil
	}
	j.flushMu.Lock()
	j.dirty = true
	if j.timer == nil {
		j.timer = time.AfterFunc(FlushDelay, j.flush)
	}
	j.flushMu.Unlock()
	return nil
}

// appendAsync writes a record now (a killed process cannot lose it: the
// kernel has it) and makes it durable in the background: the channel says
// when fdatasync returned, and with what. The gate overlaps that flush with
// the card's own (DEBIT), and opens only after both.
func (j *journal) appendAsync(r jrec) (<-chan error, error) {
	if err := j.append(r, false); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() {
		j.syncMu.RLock()
		defer j.syncMu.RUnlock()
		if j.closed {
			done <- nil // close synced it
			return
		}
		err := fdatasync(j.f)
		if err != nil {
			err = fmt.Errorf("gate: journal sync: %w", err)
		}
		done <- err
	}()
	return done, nil
}

// flush makes the records written so far durable (the background group
// commit of completions).
func (j *journal) flush() {
	j.flushMu.Lock()
	j.timer = nil
	dirty := j.dirty
	j.dirty = false
	j.flushMu.Unlock()
	if dirty {
		j.syncMu.RLock()
		defer j.syncMu.RUnlock()
		if j.closed {
			return // close synced
		}
		if err := fdatasync(j.f); err != nil {
			// The next durable append retries the flush; until then the
			// intents already on disk keep every tap recoverable.
			j.flushMu.Lock()
			j.dirty = true
			j.flushMu.Unlock()
		}
	}
}

func (j *journal) close() error {
	j.flushMu.Lock()
	if j.timer != nil {
		j.timer.Stop()
		j.timer = nil
	}
	j.flushMu.Unlock()
	j.syncMu.Lock()
	defer j.syncMu.Unlock()
	j.closed = true
	err := fdatasync(j.f)
	return errors.Join(err, j.f.Close())
}
