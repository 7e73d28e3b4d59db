package se

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/mipay-oss/mipay/atomicfile"
)

// The e-purse journal: one durable write per e-purse transaction.
//
// The SE's state file is rewritten whole (write a temporary file, fsync,
// rename, fsync the directory: two flushes and a metadata change) for rare
// changes (installing cards, selecting one). A tap must not pay that: DEBIT
// FOR PURCHASE and CREDIT FOR LOAD append one sealed record to se.journal
// and fdatasync it before the answer leaves — the record is the new balance,
// serials, log entry, CAPP data and proof of one purse. INITIALIZE and UPDATE
// CAPP DATA CACHE write nothing: their effect is volatile until DEBIT, and a
// cut before DEBIT leaves the old state, as the standard requires.
//
// The journal is preallocated (zeros written and synced once) and records
// overwrite it in place, so fdatasync flushes data blocks only, no file size
// or extent change. Each record is sealed (AES-GCM, the state's key) with the
// journal generation and its sequence number as associated data; reading
// stops at the first record that does not open under the next number, so a
// torn last record (power cut during the write, before fdatasync returned,
// hence before any answer left) is ignored and later overwritten, and records
// of an older generation left in the file are never replayed.
//
// Every state file write starts a new generation (the state holds all the
// journal had): a crash between the state's rename and anything later leaves
// either the old state with its journal or the new state, whose generation
// no record in the file has yet. When the journal is full the next
// transaction writes the state file instead (one in journalBytes/record
// transactions).
const (
	journalFile = "se.journal"
	// journalBytes is the preallocated size: about 4,000 purchases between
	// state rewrites.
	journalBytes   = 1 << 20
	maxJournalRec  = 4 << 10
	journalAADHead = "mipay se journal v1"
)

// journalState is the open journal (callers hold SE.mu).
type journalState struct {
	f   *os.File
	off int64  // where the next record goes
	seq uint64 // the last record's number in this generation
}

// purseDelta is one journal record: a purse after a transaction.
type purseDelta struct {
	Card          string         `json:"c"`
	Balance       uint32         `json:"b"`
	OfflineSerial uint16         `json:"off"`
	OnlineSerial  uint16         `json:"on"`
	Rec           []byte         `json:"r"` // the log entry (23-byte layout)
	CAPP          map[int][]byte `json:"capp,omitempty"`
	Purchase      *proof         `json:"p,omitempty"`
	Load          *proof         `json:"l,omitempty"`
}

func journalAAD(gen, seq uint64) []byte {
	b := append([]byte(journalAADHead), 0)
	b = binary.BigEndian.AppendUint64(b, gen)
	return binary.BigEndian.AppendUint64(b, seq)
}

// newJournalGen gives the state a generation no journal record has.
func newJournalGen() (uint64, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(b[:]), nil
}

// openJournal opens (creating and preallocating if needed) the journal and
// replays the records of the state's generation into s.st. Callers hold mu.
func (s *SE) openJournal(create bool) error {
	path := filepath.Join(s.dir, journalFile)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		if !create {
			return nil
		}
		if f, err = createJournal(path); err != nil {
			return err
		}
	} else if err != nil {
		return fmt.Errorf("se: journal: %w", err)
	}
	s.j = &journalState{f: f}
	return s.replayJournal()
}

func createJournal(path string) (*os.File, error) {
	tmp := path + ".new"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("se: journal: %w", err)
	}
	// Real zeros, not a sparse file or fallocate's unwritten extents: a
	// later write into them would change metadata and cost a journal commit.
	zeros := make([]byte, 64<<10)
	for off := 0; off < journalBytes; off += len(zeros) {
		if _, err := f.Write(zeros); err != nil {
			f.Close()
			return nil, fmt.Errorf("se: journal: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("se: journal: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		f.Close()
		return nil, fmt.Errorf("se: journal: %w", err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(path)); err != nil {
		f.Close()
		return nil, fmt.Errorf("se: journal: %w", err)
	}
	return f, nil
}

func (s *SE) replayJournal() error {
	j := s.j
	head := make([]byte, 4)
	for {
		if _, err := j.f.ReadAt(head, j.off); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("se: journal: %w", err)
		}
		n := int64(binary.BigEndian.Uint32(head))
		if n < int64(s.aead.NonceSize()) || n > maxJournalRec || j.off+4+n > journalBytes {
			return nil
		}
		blob := make([]byte, n)
		if _, err := j.f.ReadAt(blob, j.off+4); err != nil {
			return nil
		}
		ns := s.aead.NonceSize()
		pt, err := s.aead.Open(nil, blob[:ns], blob[ns:], journalAAD(s.st.JournalGen, j.seq+1))
		if err != nil {
			return nil // the end: zeros, a torn record, or an older generation
		}
		var d purseDelta
		if err := json.Unmarshal(pt, &d); err != nil {
			return fmt.Errorf("se: journal record %d: %w", j.seq+1, err)
		}
		if err := s.applyDelta(d); err != nil {
			return err
		}
		j.off += 4 + n
		j.seq++
	}
}

// applyDelta replays a record: the purse's state after the transaction.
func (s *SE) applyDelta(d purseDelta) error {
	p := s.purseByNumber(d.Card)
	if p == nil {
		return fmt.Errorf("se: journal names transit card %s, which the state does not hold", d.Card)
	}
	rec, err := ParseTransitRecord(d.Rec)
	if err != nil {
		return fmt.Errorf("se: journal: %w", err)
	}
	p.Balance, p.OfflineSerial, p.OnlineSerial = d.Balance, d.OfflineSerial, d.OnlineSerial
	p.pushLog(rec)
	for k, v := range d.CAPP {
		p.CAPP[k] = v
	}
	if d.Purchase != nil {
		p.pushPurchaseProof(*d.Purchase)
	}
	if d.Load != nil {
		l := *d.Load
		p.LastLoad = &l
	}
	return nil
}

// commitPurse makes a purse's transaction durable before its answer: one
// journal record, or the whole state when the journal is full, broken or
// not there yet. Callers hold mu and undo the change in memory on error.
func (s *SE) commitPurse(d purseDelta) error {
	if s.closed {
		return errClosed
	}
	if s.volatile {
		return nil
	}
	if s.j == nil {
		if err := s.openJournal(true); err != nil {
			return err
		}
	}
	pt, err := json.Marshal(d)
	if err != nil {
		return err
	}
	rec, err := s.sealJournal(pt)
	if err != nil {
		return err
	}
	if s.rewriteState || s.j.off+int64(len(rec)) > journalBytes {
		return s.persist() // a new generation: the journal starts over
	}
	if _, err := s.j.f.WriteAt(rec, s.j.off); err != nil {
		s.rewriteState = true
		return fmt.Errorf("se: journal write: %w", err)
	}
	if err := fdatasync(s.j.f); err != nil {
		// The record may or may not be on disk: the next transaction
		// rewrites the state under a new generation, which voids it.
		s.rewriteState = true
		return fmt.Errorf("se: journal sync: %w", err)
	}
	s.j.off += int64(len(rec))
	s.j.seq++
	return nil
}

func (s *SE) sealJournal(pt []byte) ([]byte, error) {
	ns := s.aead.NonceSize()
	out := make([]byte, 4, 4+ns+len(pt)+s.aead.Overhead())
	nonce := make([]byte, ns)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out = append(out, nonce...)
	out = s.aead.Seal(out, nonce, pt, journalAAD(s.st.JournalGen, s.j.seq+1))
	if len(out)-4 > maxJournalRec {
		return nil, fmt.Errorf("se: journal record of %d bytes", len(out)-4)
	}
	binary.BigEndian.PutUint32(out, uint32(len(out)-4))
	return out, nil
}

// journalRestarted is called after the state file was written under a new
// generation: the journal's records are void, the next one goes first.
func (s *SE) journalRestarted() {
	s.rewriteState = false
	if s.j != nil {
		s.j.off, s.j.seq = 0, 0
	}
}
