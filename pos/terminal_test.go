package pos

import (
	"context"
	"testing"

	"github.com/mipay-oss/mipay/store"
)

func TestCountersNeverRepeat(t *testing.T) {
	ctx := context.Background()
	sc := store.Config{Dir: t.TempDir()}
	seen := map[int64]bool{}
	last := int64(0)
	for round := 0; round < 3; round++ {
		term, err := OpenTerminal(ctx, TerminalConfig{}, sc, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < counterBlock+5; i++ {
			v, err := term.next(ctx, "stan", 1, 999999)
			if err != nil {
				t.Fatal(err)
			}
			if seen[v] || v <= last {
				t.Fatalf("round %d: STAN %d after %d (seen before: %v)", round, v, last, seen[v])
			}
			seen[v], last = true, v
		}
		// A restart skips the rest of the reserved block, never reuses it.
		term.Close()
	}
}

func TestCounterWraps(t *testing.T) {
	ctx := context.Background()
	term, err := OpenTerminal(ctx, TerminalConfig{}, store.Config{Dir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer term.Close()
	var got []int64
	for i := 0; i < 5; i++ {
		v, err := term.next(ctx, "small", 1, 3)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	want := []int64{1, 2, 3, 1, 2}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}
