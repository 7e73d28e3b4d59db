package main

// `mipay bench floor` measures, on this machine, the work every tokenized
// authorization must do whatever the code doing it, and nothing else:
//
//   - its messages over two ISO 8583 links: acquirer → switch and switch →
//     issuer, each a request and an answer, through the link code the
//     parties use (the "relay" below);
//   - one durable commit share in each of the four parties that must
//     remember it before the answer goes back or the cardholder sees it:
//     the TSP (the ATC it accepted), the issuer (the hold), the switch (its
//     record, which answers duplicates) and the wallet (the transaction);
//     each a one-row insert appended to a table without secondary indexes,
//     through the same group-commit writer and SQLite settings as theirs;
//   - one event through JetStream from the switch to the wallet: published,
//     stored, delivered, acknowledged.
//
// It leaves out everything else: cryptograms, token and limit checks, the
// ledger's rules, building and parsing the event, duplicate lookups,
// metrics. Each part runs alone at saturation and is timed in CPU (getrusage
// of the process, which runs the load generator too), so the sum is a lower
// bound on the CPU one authorization costs here and 1/sum × CPUs an upper
// bound on authorizations per second. The echo ceiling of `bench auth` is
// measured the same way, so the two can be compared.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing/fstest"
	"time"

	"database/sql"

	"github.com/mipay-oss/mipay/emv"
	"github.com/mipay-oss/mipay/events"
	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/pos"
	"github.com/mipay-oss/mipay/store"
)

// Floor bench bounds.
const (
	// DefaultFloorDuration is how long each part of the floor is driven.
	DefaultFloorDuration = 5 * time.Second
	// DefaultFloorConcurrency is the work in flight per part, as bench
	// auth's usual --concurrency.
	DefaultFloorConcurrency = 256
	// floorEventBytes is about the size of a transaction.authorized event.
	floorEventBytes = 420
	// floorRowBytes is about the size of one party's record of an
	// authorization (the switch's is larger: it keeps the answer).
	floorRowBytes = 160
	// floorEventsInFlight bounds events published and not yet handled.
	floorEventsInFlight = 4096
	// floorPublishBatch is the events per PublishBatch, as the switch's
	// outbox publishes them.
	floorPublishBatch = 256
	// floorEchoShare is the target: authorizations at 35% of the
	// echo ceiling.
	floorEchoShare = 0.35
)

// floorParties are the parties that commit something for every
// authorization.
var floorParties = [...]string{"tsp", "issuer", "switch", "wallet"}

// FloorPart is one measured part of the floor.
type FloorPart struct {
	Name      string  `json:"name"`
	What      string  `json:"what"`
	Ops       int64   `json:"ops"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"perSecond"`
	CPUMicros float64 `json:"cpuMicrosEach"`
	// InFloor is false for the echo, which the relay includes.
	InFloor bool `json:"inFloor"`
}

// FloorResult is what `bench floor` prints.
type FloorResult struct {
	Machine     string      `json:"machine"`
	CPUs        int         `json:"cpus"`
	Concurrency int         `json:"concurrency"`
	Parts       []FloorPart `json:"parts"`
	// FloorCPUMicros is the sum of the parts in the floor: the least CPU
	// an authorization costs here.
	FloorCPUMicros float64 `json:"floorCpuMicros"`
	// MaxPerSecond is CPUs / FloorCPUMicros: no implementation of the
	// same parties, storage and bus does more here.
	MaxPerSecond float64 `json:"maxPerSecond"`
	// EchoShareTarget is 35% of the echo ceiling, and EchoShareBudget the
	// CPU per authorization that reaching it allows.
	EchoShareTarget float64 `json:"echoShareTarget"`
	EchoShareBudget float64 `json:"echoShareBudgetCpuMicros"`
}

func runBenchFloor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench floor", "[flags]", stderr)
	duration := fs.Duration("duration", DefaultFloorDuration, "how long to drive each part")
	concurrency := fs.Int("concurrency", DefaultFloorConcurrency, "work in flight in each part")
	data := fs.String("data", "", "directory for the floor's databases and event store (default: a fresh temporary one)")
	asJSON := fs.Bool("json", false, "print one JSON object")
	only := fs.String("parts", "", "measure only these parts, comma-separated (echo, links, durable, sqlite, sqlite-20, event); default all")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	switch {
	case *duration <= 0 || *duration > maxBenchDuration:
		return usagef("bench floor: --duration must be in (0, %s]", maxBenchDuration)
	case *concurrency < 1 || *concurrency > maxBenchConcurrency:
		return usagef("bench floor: --concurrency must be 1..%d", maxBenchConcurrency)
	}
	parts, err := floorPartsNamed(*only)
	if err != nil {
		return err
	}
	dir, cleanup, err := benchDataDir(*data, "mipay-bench-floor-")
	if err != nil {
		return err
	}
	defer cleanup()
	progress := stderr
	if *asJSON {
		progress = io.Discard
	}
	stopProfile, err := startCPUProfile(os.Getenv("MIPAY_BENCH_CPUPROFILE"))
	if err != nil {
		return err
	}
	res, err := measureFloor(ctx, parts, dir, *duration, *concurrency, progress)
	stopProfile()
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	printFloor(stdout, res)
	return nil
}

// floorPart is one part of the floor and how to measure it.
type floorPartSpec struct {
	name, what string
	inFloor    bool
	run        func(context.Context, string, time.Duration, int) (FloorPart, error)
}

var floorParts = []floorPartSpec{
	{"echo", "1 ISO 8583 hop: a 0200 and its echo (bench auth's ceiling)", false, floorEcho},
	{"links", "2 ISO 8583 hops: acquirer → switch → issuer and back", true, floorRelay},
	{"durable", "4 parties commit 1 row each through mipay's group-commit writer", false, floorWrites},
	{"sqlite", "4 parties commit 1 row each, 256 rows per plain transaction (SQLite alone)", true, floorSQLite(floorSQLiteBatch)},
	{"sqlite-20", "the same, 20 rows per transaction: what 10,000/s gathers in 2 ms", false, floorSQLite(floorSQLiteSmallBatch)},
	{"event", "1 event published, stored, delivered and acked (JetStream)", true, floorEvent},
}

// floorPartsNamed picks the parts a --parts list names ("": all).
func floorPartsNamed(list string) ([]floorPartSpec, error) {
	if list == "" {
		return floorParts, nil
	}
	var out []floorPartSpec
	for _, name := range strings.Split(list, ",") {
		i := slices.IndexFunc(floorParts, func(p floorPartSpec) bool { return p.name == name })
		if i < 0 {
			return nil, usagef("bench floor: --parts: no part %q (echo, links, durable, sqlite, sqlite-20, event)", name)
		}
		out = append(out, floorParts[i])
	}
	return out, nil
}

// measureFloor runs each part in turn.
func measureFloor(ctx context.Context, parts []floorPartSpec, dir string, d time.Duration, conc int, progress io.Writer) (*FloorResult, error) {
	res := &FloorResult{Machine: machineLine(), CPUs: runtime.GOMAXPROCS(0), Concurrency: conc}
	for _, p := range parts {
		fmt.Fprintf(progress, "measuring %s: %s…\n", p.name, p.what)
		fp, err := p.run(ctx, dir, d, conc)
		if err != nil {
			return nil, fmt.Errorf("bench floor: %s: %w", p.name, err)
		}
		fp.Name, fp.What, fp.InFloor = p.name, p.what, p.inFloor
		res.Parts = append(res.Parts, fp)
		if p.inFloor {
			res.FloorCPUMicros += fp.CPUMicros
		}
		if p.name == "echo" {
			res.EchoShareTarget = floorEchoShare * fp.PerSecond
		}
	}
	if res.FloorCPUMicros > 0 {
		res.MaxPerSecond = float64(res.CPUs) * 1e6 / res.FloorCPUMicros
	}
	if res.EchoShareTarget > 0 {
		res.EchoShareBudget = float64(res.CPUs) * 1e6 / res.EchoShareTarget
	}
	return res, nil
}

func printFloor(w io.Writer, r *FloorResult) {
	fmt.Fprintf(w, "machine      %s\nconcurrency  %d\n", r.Machine, r.Concurrency)
	fmt.Fprintln(w, "what every authorization must do, measured alone (CPU of this process per operation):")
	for _, p := range r.Parts {
		mark := " "
		if p.InFloor {
			mark = "+"
		}
		fmt.Fprintf(w, " %s %-8s %9.0f/s  %7.1f µs CPU  %s\n", mark, p.Name, p.PerSecond, p.CPUMicros, p.What)
	}
	fmt.Fprintf(w, "floor        %.1f µs of CPU per authorization (the + lines): at most %.0f authorizations/s on %d CPUs\n",
		r.FloorCPUMicros, r.MaxPerSecond, r.CPUs)
	fmt.Fprintf(w, "35%% of echo  %.0f authorizations/s, a budget of %.1f µs of CPU each\n", r.EchoShareTarget, r.EchoShareBudget)
}

// floorLoad runs op from conc workers for d and returns how many succeeded
// and the process CPU they took. The first error stops it.
func floorLoad(ctx context.Context, d time.Duration, conc int, op func(ctx context.Context, worker int, i int) error) (FloorPart, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		ops      atomic.Int64
		firstErr error
		errOnce  sync.Once
		wg       sync.WaitGroup
	)
	runtime.GC() // start each part from the same heap
	cpu0, start := processCPU(), time.Now()
	deadline := start.Add(d)
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline) && ctx.Err() == nil; i++ {
				if err := op(ctx, w, i); err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
				ops.Add(1)
			}
		}()
	}
	wg.Wait()
	return floorPart(ops.Load(), time.Since(start), processCPU()-cpu0), firstErr
}

func floorPart(ops int64, elapsed, cpu time.Duration) FloorPart {
	p := FloorPart{Ops: ops, Seconds: elapsed.Seconds()}
	if ops > 0 {
		p.PerSecond = float64(ops) / elapsed.Seconds()
		p.CPUMicros = float64(cpu) / float64(time.Microsecond) / float64(ops)
	}
	return p
}

// floorMessage is a 0200 of the size and fields a QuickPass tap sends: the
// terminal's own FinancialRequest around a DE55 with the tags a qPBOC
// card's GPO answer and the terminal put there. The values are made up:
// nothing here checks them.
func floorMessage() (*iso8583.Message, error) {
	var icc []byte
	for _, t := range []struct {
		tag uint32
		n   int
	}{
		{0x9F26, 8}, {0x9F27, 1}, {0x9F10, 19}, {0x9F37, 4}, {0x9F36, 2}, {0x95, 5}, {0x9A, 3}, {0x9C, 1},
		{0x9F02, 6}, {0x5F2A, 2}, {0x82, 2}, {0x9F1A, 2}, {0x9F03, 6}, {0x9F33, 3}, {0x9F34, 3}, {0x9F35, 1},
		{0x9F1E, 8}, {0x84, 8}, {0x9F09, 2}, {0x9F41, 4}, {0x9F6C, 2}, {0x9F66, 4},
	} {
		icc = emv.AppendTLV(icc, t.tag, make([]byte, t.n))
	}
	read := &pos.Read{Token: "6234567890123456", Expiry: "3012", PSN: "01", Track2: "6234567890123456D30122010000000000", ICC: icc}
	m, err := pos.TerminalConfig{MerchantName: "MIPAY BENCH", Country: "156"}.FinancialRequest(read, benchAmountMinor, "156")
	if err != nil {
		return nil, err
	}
	m.SetString(7, "1126093000")
	m.SetString(12, "093000")
	m.SetString(13, "1126")
	return m, nil
}

// floorLink drives the 0200 through addr as bench auth drives the switch:
// a few pipelined connections, each worker with its own STAN and RRN.
func floorLink(ctx context.Context, addr string, d time.Duration, conc int) (FloorPart, error) {
	clients, closeLinks, err := dialBenchLinks(ctx, addr)
	if err != nil {
		return FloorPart{}, err
	}
	defer closeLinks()
	msgs := make([]*iso8583.Message, conc)
	for i := range msgs {
		m, err := floorMessage()
		if err != nil {
			return FloorPart{}, err
		}
		m.SetString(41, fmt.Sprintf("FL%06d", i))
		msgs[i] = m
	}
	return floorLoad(ctx, d, conc, func(ctx context.Context, w, i int) error {
		m := msgs[w]
		m.SetString(11, iso8583.FormatSTAN(uint32(i%999999+1)))
		m.SetString(37, fmt.Sprintf("%04d%08d", w, i))
		resp, err := clients[w%benchLinks].Send(ctx, m)
		if err != nil {
			return err
		}
		if resp.String(11) != m.String(11) {
			return errors.New("answer to another request")
		}
		return nil
	})
}

func floorEcho(ctx context.Context, _ string, d time.Duration, conc int) (FloorPart, error) {
	addr, stop, err := startEcho()
	if err != nil {
		return FloorPart{}, err
	}
	defer stop()
	return floorLink(ctx, addr, d, conc)
}

// floorRelay puts a server in front of the echo that forwards each
// request on its own pipelined link, as the switch forwards to an issuer.
func floorRelay(ctx context.Context, _ string, d time.Duration, conc int) (FloorPart, error) {
	echo, stopEcho, err := startEcho()
	if err != nil {
		return FloorPart{}, err
	}
	defer stopEcho()
	up, err := iso8583.Dial(ctx, iso8583.ClientConfig{Addr: echo, MaxInFlight: maxBenchConcurrency, RequestTimeout: 10 * time.Second})
	if err != nil {
		return FloorPart{}, err
	}
	defer up.Close()
	relay, stopRelay, err := startLinkServer(func(ctx context.Context, req *iso8583.Message) (*iso8583.Message, error) {
		return up.Send(ctx, req)
	})
	if err != nil {
		return FloorPart{}, err
	}
	defer stopRelay()
	return floorLink(ctx, relay, d, conc)
}

// floorMigrations is the one table each party appends to: a rowid key, so
// a batch's rows share the rightmost pages, and no secondary index.
var floorMigrations fs.FS = fstest.MapFS{
	"0001_floor.sql": &fstest.MapFile{Data: []byte(
		`CREATE TABLE floor (id INTEGER PRIMARY KEY, ref TEXT NOT NULL, body BLOB NOT NULL);`)},
}

// openFloorDBs opens one database per party of floorParties, named prefix
// and the party, with the floor's table; closeAll closes them.
func openFloorDBs(ctx context.Context, dir, prefix string) (dbs []*store.DB, closeAll func(), err error) {
	closeAll = func() {
		for _, db := range dbs {
			db.Close()
		}
	}
	for _, party := range floorParties {
		db, err := store.Open(ctx, store.Config{Dir: dir}, prefix+party, floorMigrations)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		dbs = append(dbs, db)
	}
	return dbs, closeAll, nil
}

// floorWrites has each worker commit one row in each of the four parties'
// databases in turn, as an authorization goes TSP → issuer → switch and
// the wallet records it.
func floorWrites(ctx context.Context, dir string, d time.Duration, conc int) (FloorPart, error) {
	dbs, closeDBs, err := openFloorDBs(ctx, dir, "floor_")
	if err != nil {
		return FloorPart{}, err
	}
	defer closeDBs()
	writers := make([]*store.Writer, len(dbs))
	for i, db := range dbs {
		writers[i] = store.NewWriter(db, store.WriterConfig{})
		defer writers[i].Close()
	}
	body := make([]byte, floorRowBytes)
	return floorLoad(ctx, d, conc, func(ctx context.Context, w, i int) error {
		ref := fmt.Sprintf("%04d-%08d", w, i)
		for _, wr := range writers {
			if err := wr.Write(ctx, func(tx *sql.Tx) error {
				_, err := tx.ExecContext(ctx, `INSERT INTO floor (ref, body) VALUES ($1, $2)`, ref, body)
				return err
			}); err != nil {
				return err
			}
		}
		return nil
	})
}

// Rows per transaction of the sqlite parts. floorSQLiteBatch is more than
// any group commit of bench auth gathers: the floor. floorSQLiteSmallBatch
// is what a party's group commit can gather at 10,000 authorizations/s if
// each of the four commits an authorization waits for in turn may take
// 2 ms (a p99 under 10 ms leaves no more).
const (
	floorSQLiteBatch      = 256
	floorSQLiteSmallBatch = 20
)

// floorSQLite is the durable part without mipay's writer: each party's
// database takes its rows in transactions of floorSQLiteBatch inserts
// through one prepared statement, the four in parallel. It is what SQLite
// itself costs for the rows, the WAL and the fsyncs.
func floorSQLite(batch int) func(context.Context, string, time.Duration, int) (FloorPart, error) {
	return func(ctx context.Context, dir string, d time.Duration, _ int) (FloorPart, error) {
		return floorSQLiteBatches(ctx, dir, d, batch)
	}
}

func floorSQLiteBatches(ctx context.Context, dir string, d time.Duration, batch int) (FloorPart, error) {
	dbs, closeDBs, err := openFloorDBs(ctx, dir, fmt.Sprintf("floor_sqlite%d_", batch))
	if err != nil {
		return FloorPart{}, err
	}
	defer closeDBs()
	body := make([]byte, floorRowBytes)
	var rows [len(floorParties)]int64
	errs := make(chan error, len(dbs))
	runtime.GC()
	cpu0, start := processCPU(), time.Now()
	deadline := start.Add(d)
	for i, db := range dbs {
		go func() {
			for n := 0; time.Now().Before(deadline); {
				err := db.Tx(ctx, func(tx *sql.Tx) error {
					st, err := tx.PrepareContext(ctx, `INSERT INTO floor (ref, body) VALUES (?, ?)`)
					if err != nil {
						return err
					}
					defer st.Close()
					for range batch {
						if _, err := st.ExecContext(ctx, fmt.Sprintf("%d-%08d", i, n), body); err != nil {
							return err
						}
						n++
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
				rows[i] += int64(batch)
			}
			errs <- nil
		}()
	}
	for range dbs {
		err = errors.Join(err, <-errs)
	}
	elapsed, cpu := time.Since(start), processCPU()-cpu0
	// An authorization needs a row in each: the slowest party sets the pace.
	return floorPart(slices.Min(rows[:]), elapsed, cpu), err
}

// floorEvent publishes events in batches, as the switch's outbox does, to
// a durable consumer with the wallet's concurrency, and counts those
// handled and acknowledged.
func floorEvent(ctx context.Context, dir string, d time.Duration, _ int) (FloorPart, error) {
	bus, err := events.Open(ctx, events.Config{Dir: dir + "/floor-events"}, slog.New(slog.DiscardHandler))
	if err != nil {
		return FloorPart{}, err
	}
	defer bus.Close()
	var handled atomic.Int64
	room := make(chan struct{}, floorEventsInFlight)
	sub, err := bus.Subscribe(ctx, "floor.event", "floor", func(context.Context, events.Event) error {
		handled.Add(1)
		<-room
		return nil
	}, events.WithConcurrency(64)) // the wallet's (wallet/party.go)
	if err != nil {
		return FloorPart{}, err
	}
	defer sub.Close()
	payload := json.RawMessage(`{"pad":"` + strings.Repeat("x", floorEventBytes-10) + `"}`)
	batch := make([]events.Outgoing, floorPublishBatch)
	// Ids unique to this run: JetStream drops an id it stored within its
	// duplicate window, and a run again on the same --data would repeat them.
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	runtime.GC()
	cpu0, start := processCPU(), time.Now()
	deadline := start.Add(d)
	n := 0
	for time.Now().Before(deadline) {
		for i := range batch {
			if err := waitRoom(room); err != nil {
				return FloorPart{}, err
			}
			batch[i] = events.Outgoing{ID: fmt.Sprintf("floor-%s-%d", run, n), Subject: "floor.event", Data: payload}
			n++
		}
		if _, err := bus.PublishBatch(ctx, batch); err != nil {
			return FloorPart{}, err
		}
	}
	// Every event published is timed to its acknowledgement: wait for the
	// last ones (bounded) before reading the clock.
	wait := time.Now().Add(floorStall)
	for handled.Load() < int64(n) {
		if time.Now().After(wait) {
			return FloorPart{}, fmt.Errorf("%d of %d events handled a minute after the last was published", handled.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
	return floorPart(int64(n), time.Since(start), processCPU()-cpu0), nil
}

// floorStall bounds how long the event part waits for the subscriber to
// make room: an event never handled must end the part, not hang it.
const floorStall = time.Minute

func waitRoom(room chan struct{}) error {
	select {
	case room <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(floorStall)
	defer t.Stop()
	select {
	case room <- struct{}{}:
		return nil
	case <-t.C:
		return fmt.Errorf("no event handled for %s: %d in flight", floorStall, len(room))
	}
}
