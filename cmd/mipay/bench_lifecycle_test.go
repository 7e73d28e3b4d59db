package main

import (
	"strings"
	"testing"
)

// TestBenchLifecycle runs `mipay bench lifecycle` with 20 tokens and 2
// rounds: every token is refused 62 after each switch-off and resumed after
// each found it, and the figures are there.
func TestBenchLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("starts every party and binds 20 cards")
	}
	r := mustRunJSON[LifecycleResult](t, "bench", "lifecycle", "--tokens", "20", "--rounds", "2", "--json", "--data", t.TempDir())
	if r.Tokens != 20 || r.Rounds != 2 {
		t.Fatalf("%+v", r)
	}
	for name, q := range map[string]Quantiles{"switch-off API": r.SwitchOffAPI, "all refused": r.AllRefused, "found API": r.FoundAPI, "all resumed": r.AllResumed} {
		if q.N != 2 || q.P50 <= 0 || q.P50 > q.P99 || q.P99 > q.Max {
			t.Errorf("%s: %+v", name, q)
		}
	}
	if r.PerToken.N != 40 || r.PerToken.Max != r.AllRefused.Max {
		t.Errorf("per token %+v, all refused %+v", r.PerToken, r.AllRefused)
	}
	// Every token: one refusal per round (62), one replay answer after
	// found (05), and a payment at least before the rounds (00).
	if r.ResponseCodes["62"] < 40 || r.ResponseCodes["05"] != 40 || r.ResponseCodes["00"] < 20 {
		t.Errorf("response codes %v", r.ResponseCodes)
	}
	for k := range r.ResponseCodes {
		if k != "00" && k != "05" && k != "62" {
			t.Errorf("unexpected response code %s: %v", k, r.ResponseCodes)
		}
	}
	if r.Probes != r.ResponseCodes["00"]+r.ResponseCodes["05"]+r.ResponseCodes["62"] {
		t.Errorf("%d probes, codes %v", r.Probes, r.ResponseCodes)
	}

	t.Run("text", func(t *testing.T) {
		code, out, errOut := runCmd(t, "bench", "lifecycle", "--tokens", "3", "--rounds", "1", "--data", t.TempDir())
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		for _, want := range []string{"3 tokens on one phone", "switch-off API", "all tokens refused (62)", "per token refused (62)", "all resumed after found", "62×"} {
			if !strings.Contains(out, want) {
				t.Errorf("no %q in\n%s", want, out)
			}
		}
	})
	t.Run("bad flags", func(t *testing.T) {
		for _, args := range [][]string{{"--tokens", "0"}, {"--tokens", "5001"}, {"--rounds", "0"}, {"--rounds", "x"}, {"extra"}} {
			if code, _, errOut := runCmd(t, append([]string{"bench", "lifecycle"}, args...)...); code != 2 || errOut == "" {
				t.Errorf("%v: exit %d %q", args, code, errOut)
			}
		}
	})
}
