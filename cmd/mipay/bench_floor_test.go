package main

import (
	"math"
	"strings"
	"testing"
)

// TestBenchFloor runs every part of `mipay bench floor` briefly: each did
// work, and the floor is the sum of the parts marked in it.
func TestBenchFloor(t *testing.T) {
	if testing.Short() {
		t.Skip("drives links, databases and JetStream")
	}
	dir := t.TempDir()
	r := mustRunJSON[FloorResult](t, "bench", "floor", "--duration", "300ms", "--concurrency", "8", "--json", "--data", dir)
	if r.Concurrency != 8 || r.CPUs < 1 || len(r.Parts) != len(floorParts) {
		t.Fatalf("%+v", r)
	}
	sum := 0.0
	for i, p := range r.Parts {
		if p.Name != floorParts[i].name || p.InFloor != floorParts[i].inFloor {
			t.Errorf("part %d: %+v", i, p)
		}
		if p.Ops <= 0 || p.PerSecond <= 0 || p.CPUMicros <= 0 || p.Seconds < 0.3 {
			t.Errorf("%s did no measured work: %+v", p.Name, p)
		}
		if p.InFloor {
			sum += p.CPUMicros
		}
	}
	if math.Abs(sum-r.FloorCPUMicros) > 1e-6 || r.FloorCPUMicros <= 0 {
		t.Errorf("floor %.3f, parts in it sum to %.3f", r.FloorCPUMicros, sum)
	}
	if want := float64(r.CPUs) * 1e6 / r.FloorCPUMicros; math.Abs(r.MaxPerSecond-want) > 1e-6*want {
		t.Errorf("max %.1f/s, want %.1f", r.MaxPerSecond, want)
	}
	if echo := r.Parts[0]; math.Abs(r.EchoShareTarget-0.35*echo.PerSecond) > 1e-6*echo.PerSecond {
		t.Errorf("35%% of echo %.1f, echo %.1f/s", r.EchoShareTarget, echo.PerSecond)
	}

	t.Run("again on the same data", func(t *testing.T) {
		// The event part's ids must not repeat the first run's: JetStream
		// would drop them as duplicates and the part would never finish.
		code, _, errOut := runCmd(t, "bench", "floor", "--duration", "200ms", "--concurrency", "4", "--parts", "event", "--data", dir)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
	})
	t.Run("text, one part", func(t *testing.T) {
		code, out, errOut := runCmd(t, "bench", "floor", "--duration", "200ms", "--concurrency", "4", "--parts", "sqlite-20", "--data", dir)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		for _, want := range []string{"sqlite-20", "µs CPU", "floor "} {
			if !strings.Contains(out, want) {
				t.Errorf("no %q in\n%s", want, out)
			}
		}
		if strings.Contains(out, " links ") {
			t.Errorf("a part not asked for was measured:\n%s", out)
		}
	})
	t.Run("bad flags", func(t *testing.T) {
		for _, args := range [][]string{
			{"--duration", "0s"},
			{"--duration", "11m"},
			{"--concurrency", "0"},
			{"--concurrency", "100000"},
			{"--parts", "links,nosuch"},
			{"extra"},
		} {
			code, out, errOut := runCmd(t, append([]string{"bench", "floor"}, args...)...)
			if code != 2 || errOut == "" || out != "" {
				t.Errorf("%v: exit %d, out %q, err %q", args, code, out, errOut)
			}
		}
	})
}
