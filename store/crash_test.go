package store_test

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/store"
)

// Environment of the crash test's child process.
const (
	envCrashChild = "MIPAY_STORE_CRASH_CHILD" // "1" in the child
	envCrashDir   = "MIPAY_STORE_CRASH_DIR"
	envCrashURL   = "MIPAY_STORE_CRASH_URL"
	envCrashBase  = "MIPAY_STORE_CRASH_BASE" // first id the child writes
)

// crashBudget bounds the wall time of the crash test per engine.
const crashBudget = 7 * time.Second

// TestMain lets the test binary act as the crash test's child.
func TestMain(m *testing.M) {
	if os.Getenv(envCrashChild) == "1" {
		crashChild()
		return
	}
	os.Exit(m.Run())
}

// crashChild writes through a Writer from many goroutines until killed,
// printing each acknowledged id on its own line.
func crashChild() {
	cfg := store.Config{Dir: os.Getenv(envCrashDir), URL: os.Getenv(envCrashURL)}
	base, _ := strconv.ParseInt(os.Getenv(envCrashBase), 10, 64)
	ctx := context.Background()
	db, err := store.Open(ctx, cfg, "party", testMigrations)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(3)
	}
	w := store.NewWriter(db, store.WriterConfig{})
	var next atomic.Int64
	next.Store(base)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			line := make([]byte, 0, 24)
			for {
				id := next.Add(1)
				err := w.Write(ctx, func(tx *sql.Tx) error {
					if _, err := tx.Exec("INSERT INTO items (id, val) VALUES ($1, $2)", id, "crash"); err != nil {
						return err
					}
					_, err := tx.Exec("UPDATE counters SET n = n + 1 WHERE name = 'c'")
					return err
				})
				if err != nil {
					fmt.Fprintln(os.Stderr, "child write:", err)
					os.Exit(4)
				}
				// One write(2) per line: a pipe write this small is atomic.
				line = strconv.AppendInt(line[:0], id, 10)
				line = append(line, '\n')
				if _, err := os.Stdout.Write(line); err != nil {
					os.Exit(5)
				}
			}
		}()
	}
	wg.Wait()
}

// TestCrash kills a child writing through the Writer with SIGKILL at random
// moments, many times; after each kill the store must open cleanly, pass an
// integrity check, and hold every write the child saw acknowledged.
func TestCrash(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	engines(t, func(t *testing.T, newCfg func(t *testing.T) store.Config) {
		cfg := newCfg(t)
		rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
		acked := map[int64]bool{}
		start := time.Now()
		rounds := 0
		for ; rounds < 60 && time.Since(start) < crashBudget; rounds++ {
			base := int64(rounds+1) * 1_000_000_000
			for id := range crashRound(t, cfg, base, rng) {
				acked[id] = true
			}
			checkAfterCrash(t, cfg, acked)
		}
		t.Logf("%d rounds, %d acknowledged writes, all present after SIGKILL", rounds, len(acked))
		if len(acked) == 0 {
			t.Fatal("the child never acknowledged a write: the test tested nothing")
		}
	})
}

// crashRound runs one child and kills it; it returns the ids the child
// printed as acknowledged.
func crashRound(t *testing.T, cfg store.Config, base int64, rng *rand.Rand) map[int64]bool {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		envCrashChild+"=1", envCrashDir+"="+cfg.Dir, envCrashURL+"="+cfg.URL,
		envCrashBase+"="+strconv.FormatInt(base, 10))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ids := map[int64]bool{}
	first := make(chan struct{})
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(out)
		once := sync.Once{}
		for sc.Scan() {
			// The child writes each line with one write(2) of a few
			// bytes, which a pipe delivers whole: no line is cut by the
			// kill.
			id, err := strconv.ParseInt(sc.Text(), 10, 64)
			if err != nil {
				continue
			}
			ids[id] = true
			once.Do(func() { close(first) })
		}
	}()
	// A quarter of the rounds are killed early (perhaps inside Open or a
	// migration), the rest at a random moment after writes flow.
	if rng.IntN(4) == 0 {
		time.Sleep(time.Duration(rng.IntN(30_000)) * time.Microsecond)
	} else {
		select {
		case <-first:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatal("child acknowledged no write within 10 s")
		}
		time.Sleep(time.Duration(rng.IntN(150_000)) * time.Microsecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-readDone
	_ = cmd.Wait()
	return ids
}

func checkAfterCrash(t *testing.T, cfg store.Config, acked map[int64]bool) {
	t.Helper()
	db, err := store.Open(context.Background(), cfg, "party", testMigrations)
	if err != nil {
		t.Fatalf("open after crash: %v", err)
	}
	defer db.Close()
	if db.Engine() == store.SQLite {
		var res string
		if err := db.DB.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil || res != "ok" {
			t.Fatalf("integrity_check = %q, %v", res, err)
		}
	}
	present := map[int64]bool{}
	rows, err := db.DB.Query("SELECT id FROM items")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		present[id] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	missing := 0
	for id := range acked {
		if !present[id] {
			missing++
			if missing <= 5 {
				t.Errorf("acknowledged write %d missing after SIGKILL", id)
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged writes missing", missing, len(acked))
	}
	// Each write also bumped the counter in the same savepoint: the two
	// must agree (no half-applied write).
	var n int64
	if err := db.DB.QueryRow("SELECT n FROM counters WHERE name = 'c'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != int64(len(present)) {
		t.Fatalf("counter = %d but %d items: a write was half applied", n, len(present))
	}
}
