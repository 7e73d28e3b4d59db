package main

import (
	"bytes"
	"os"
	"testing"
)

// TestCommittedFileIsGenerated fails when config/default.json was edited by
// hand or the generator changed without `go generate ./config`.
func TestCommittedFileIsGenerated(t *testing.T) {
	want, err := generate()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../default.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("config/default.json differs from the generator's output: run `go generate ./config`")
	}
}
