package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"testing"
)

func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo starts every party")
	}
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"demo", "--json", "--data", t.TempDir()}, &out, &errb)
	if err != nil {
		t.Fatalf("demo: %v\n%s\n%s", err, out.String(), errb.String())
	}
	sc := bufio.NewScanner(&out)
	steps := 0
	for sc.Scan() {
		var s demoStep
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatalf("not one JSON object per line: %q", sc.Text())
		}
		if !s.OK {
			t.Errorf("step %q: %s", s.Step, s.Detail)
		}
		steps++
	}
	if steps < 10 {
		t.Fatalf("%d steps", steps)
	}
}
