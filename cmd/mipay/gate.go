package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/nfc"
	"github.com/mipay-oss/mipay/transit"
	"github.com/mipay-oss/mipay/transit/gate"
)

// defaultGateReader is where a gate's reader listens by default (the POS
// uses vpcd's 35963).
const defaultGateReader = "127.0.0.1:35964"

// runGate is `mipay gate [upload|hotlist|provision] --city ID --station ID --mode entry|exit|bus`.
func runGate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub := "run"
	if len(args) > 0 && (args[0] == "upload" || args[0] == "hotlist" || args[0] == "provision" || args[0] == "run") {
		sub, args = args[0], args[1:]
	}
	fs := newFlagSet("gate "+sub, "[run|upload|hotlist|provision] --city ID --station ID --mode entry|exit|bus [--listen ADDR]", stderr)
	city := fs.String("city", "", "the city: bj, sh, sz, gz, wh, cq")
	station := fs.String("station", "", "metro station id (e.g. sz01), or a bus route name (e.g. bus-1) with --mode bus")
	mode := fs.String("mode", "", "entry, exit or bus")
	listen := fs.String("listen", defaultGateReader, "the gate's NFC reader address (phones tap here)")
	data := fs.String("data", envOr("MIPAY_DATA", DefaultDataDir), "data directory (the gate's PSAM and records live under DATA/gates)")
	agency := fs.String("transit", envOr("MIPAY_TRANSIT_URL", defaultTransitURL), "the transit agencies")
	configPath := fs.String("config", "", "reference data file (default: the embedded one)")
	asJSON := fs.Bool("json", false, "print JSON lines")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *city == "" || *station == "" || *mode == "" {
		return usagef("gate: --city, --station and --mode are required")
	}
	m, err := gate.ParseMode(*mode)
	if err != nil {
		return usagef("gate: %s", mipay.ErrorMessage(err))
	}
	ref, err := loadReference(*configPath)
	if err != nil {
		return err
	}
	c, ok := ref.City(*city)
	if !ok || !c.Transit() {
		return usagef("gate: no transit city %q", *city)
	}
	token := os.Getenv("MIPAY_TRANSIT_OPERATOR_TOKEN")
	if token == "" {
		// The operator token of the agency sharing this data directory.
		if token, err = transit.OperatorToken(*data); err != nil {
			return err
		}
	}
	cfg := gate.Config{DataDir: *data, City: c, Station: *station, Mode: m, Agency: *agency, OperatorToken: token}
	out := func(v any, human string) {
		if *asJSON {
			_ = json.NewEncoder(stdout).Encode(v)
			return
		}
		fmt.Fprintln(stdout, human)
	}
	if sub == "provision" || (sub == "run" && !provisioned(ctx, cfg)) {
		p, err := gate.Provision(ctx, cfg)
		if err != nil {
			return cliError(fmt.Errorf("provisioning the gate's PSAM: %w", err))
		}
		out(map[string]string{"psam": p.ID(), "city": c.ID}, fmt.Sprintf("PSAM %s provisioned with the %s purchase key.", p.ID(), c.Name))
		if sub == "provision" {
			return nil
		}
	}
	g, err := gate.Open(ctx, cfg)
	if err != nil {
		return cliError(err)
	}
	defer g.Close()
	switch sub {
	case "upload":
		res, err := g.Upload(ctx)
		if err != nil {
			return cliError(err)
		}
		for _, r := range res {
			out(r, fmt.Sprintf("batch %s: %d records, %d cleared (%s CNY), %d exceptions, %d cards with serial gaps",
				r.BatchID, r.Records, r.Cleared, money(r.Amount), len(r.Exceptions), len(r.Gaps)))
		}
		if len(res) == 0 {
			out(map[string]int{"batches": 0}, "Nothing to upload.")
		}
		return nil
	case "hotlist":
		n, err := g.RefreshHotlist(ctx)
		if err != nil {
			return cliError(err)
		}
		out(map[string]int{"hotlisted": n}, fmt.Sprintf("Hotlist refreshed: %d cards blocked.", n))
		return nil
	}
	if n, err := g.RefreshHotlist(ctx); err != nil {
		fmt.Fprintf(stderr, "mipay gate: working offline with the last hotlist (%s)\n", mipay.ErrorMessage(err))
	} else {
		fmt.Fprintf(stderr, "hotlist: %d cards blocked\n", n)
	}
	r, err := nfc.Listen(*listen)
	if err != nil {
		return err
	}
	defer r.Close()
	fmt.Fprintf(stderr, "%s gate at %s (%s): tap with `mipay phone transit-tap --phone NAME --reader %s`\n", c.Name, *station, m, r.Addr())
	go gateHousekeeping(ctx, g, stderr)
	return g.Serve(ctx, r, func(res gate.Result, err error) {
		if err != nil {
			out(map[string]string{"error": err.Error()}, "tap failed: "+err.Error())
			return
		}
		out(res, res.String())
	})
}

func provisioned(ctx context.Context, cfg gate.Config) bool {
	g, err := gate.Open(ctx, cfg)
	if err != nil {
		return false
	}
	g.Close()
	return true
}

// Gate housekeeping while serving: the hotlist is refreshed and records are
// uploaded periodically; when the agency is unreachable the gate keeps
// working offline with what it has.
const (
	gateHotlistEvery = time.Minute
	gateUploadEvery  = 5 * time.Minute
)

func gateHousekeeping(ctx context.Context, g *gate.Gate, stderr io.Writer) {
	hot := time.NewTicker(gateHotlistEvery)
	up := time.NewTicker(gateUploadEvery)
	defer hot.Stop()
	defer up.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hot.C:
			if _, err := g.RefreshHotlist(ctx); err != nil && ctx.Err() == nil {
				fmt.Fprintf(stderr, "hotlist refresh failed (offline): %s\n", mipay.ErrorMessage(err))
			}
		case <-up.C:
			if _, err := g.Upload(ctx); err != nil && ctx.Err() == nil {
				fmt.Fprintf(stderr, "upload failed (will retry): %s\n", mipay.ErrorMessage(err))
			}
		}
	}
}
