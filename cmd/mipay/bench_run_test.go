package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// A --target run never takes the number of an earlier run whose phones
// are in the data directory (their names and accounts are taken).
func TestNewBenchRunSkipsEarlierRuns(t *testing.T) {
	dir := t.TempDir()
	const free = 1234
	for run := range benchRuns {
		if run == free {
			continue
		}
		if err := os.MkdirAll(filepath.Join(dir, "phones", fmt.Sprintf("bench-%04d-0", run)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		if run, err := newBenchRun(dir); err != nil || run != free {
			t.Fatalf("newBenchRun = %d, %v; want the one free run %d", run, err, free)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "phones", fmt.Sprintf("bench-%04d-0", free)), 0o755); err != nil {
		t.Fatal(err)
	}
	if run, err := newBenchRun(dir); err == nil {
		t.Fatalf("newBenchRun = %d with every run taken, want an error", run)
	}
}
