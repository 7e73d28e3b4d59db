package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// writerSnapshot is one group-commit writer's counters at an instant, read
// from its party's registry.
type writerSnapshot struct {
	batches, writes    uint64
	commitSum, waitSum float64
	waitCount          uint64
}

// WriterBreakdown is what one party's writer did during a load: where the
// durable part of an authorization's time goes.
type WriterBreakdown struct {
	Party          string  `json:"party"`
	Writer         string  `json:"writer"`
	Batches        uint64  `json:"batches"`
	WritesPerBatch float64 `json:"writesPerBatch"`
	CommitMillis   float64 `json:"commitMs"` // mean, one batch from BEGIN to COMMIT
	WaitMillis     float64 `json:"waitMs"`   // mean, one write from Write to durable
}

// snapshotWriters reads every writer's histograms from the registries.
func snapshotWriters(regs map[string]*prometheus.Registry) map[string]writerSnapshot {
	out := map[string]writerSnapshot{}
	for _, reg := range regs {
		mfs, err := reg.Gather()
		if err != nil {
			continue
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				h := m.GetHistogram()
				if h == nil {
					continue
				}
				key := labelOf(m, "party") + "/" + labelOf(m, "writer")
				s := out[key]
				switch mf.GetName() {
				case "mipay_store_writer_batch_writes":
					s.batches, s.writes = h.GetSampleCount(), uint64(h.GetSampleSum())
				case "mipay_store_writer_batch_seconds":
					s.commitSum = h.GetSampleSum()
				case "mipay_store_writer_write_seconds":
					s.waitSum, s.waitCount = h.GetSampleSum(), h.GetSampleCount()
				default:
					continue
				}
				out[key] = s
			}
		}
	}
	return out
}

func labelOf(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// writerBreakdown is the difference between two snapshots, busiest first.
func writerBreakdown(before, after map[string]writerSnapshot) []WriterBreakdown {
	var out []WriterBreakdown
	for key, a := range after {
		b := before[key]
		batches := a.batches - b.batches
		if batches == 0 {
			continue
		}
		party, writer, _ := strings.Cut(key, "/")
		if writer == "" {
			writer = "main"
		}
		d := WriterBreakdown{Party: party, Writer: writer, Batches: batches,
			WritesPerBatch: float64(a.writes-b.writes) / float64(batches),
			CommitMillis:   1000 * (a.commitSum - b.commitSum) / float64(batches)}
		if n := a.waitCount - b.waitCount; n > 0 {
			d.WaitMillis = 1000 * (a.waitSum - b.waitSum) / float64(n)
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool {
		return float64(out[i].Batches)*out[i].WritesPerBatch > float64(out[j].Batches)*out[j].WritesPerBatch // writes, untruncated
	})
	return out
}

func printBreakdown(w io.Writer, bd []WriterBreakdown) {
	if len(bd) == 0 {
		return
	}
	fmt.Fprintln(w, "durable writes during the load (per party writer):")
	for _, d := range bd {
		fmt.Fprintf(w, "  %-8s %-10s %7d batches  %6.1f writes/batch  commit %6.2f ms  write waits %6.2f ms\n",
			d.Party, d.Writer, d.Batches, d.WritesPerBatch, d.CommitMillis, d.WaitMillis)
	}
}
