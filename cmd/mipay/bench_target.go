package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/node"
)

// benchTarget is where the parties of a benchmark are: started by the bench
// in this process, or a running `mipay up` (--target).
type benchTarget struct {
	ref         *config.Reference // the cardholders to bind
	dataDir     string            // the bench's phones (their SEs)
	walletURL   string
	smsURL      string
	networkAddr string // the switch's acquirer ISO 8583 listener
	// run tells this run's phones and accounts from an earlier run's in
	// the same data directory (0–9999).
	run int
}

// benchTargetFlags are --target and the endpoint overrides.
type benchTargetFlags struct {
	host, wallet, sms, network, config string
	portBase                           int
}

// resolve fills the endpoints a running up has on its fixed ports, checks
// the given ones and loads the reference data.
func (f benchTargetFlags) resolve() (benchTarget, error) {
	ends := roleEndpoints()
	port := func(role, endpoint string) string {
		for _, e := range ends[role] {
			if e.name == endpoint {
				return net.JoinHostPort(f.host, strconv.Itoa(f.portBase+e.offset))
			}
		}
		return ""
	}
	t := benchTarget{walletURL: f.wallet, smsURL: f.sms, networkAddr: f.network}
	if t.walletURL == "" {
		t.walletURL = "http://" + port(node.RoleWallet, endpointHTTP)
	}
	if t.smsURL == "" {
		t.smsURL = "http://" + port(node.RoleSMS, endpointHTTP)
	}
	if t.networkAddr == "" {
		t.networkAddr = port(node.RoleNetwork, endpointISO8583)
	}
	for flag, u := range map[string]string{"--wallet": t.walletURL, "--sms": t.smsURL} {
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return t, usagef("bench auth: %s %q is not an http(s) URL", flag, u)
		}
	}
	if _, _, err := net.SplitHostPort(t.networkAddr); err != nil {
		return t, usagef("bench auth: --network %q is not HOST:PORT", t.networkAddr)
	}
	ref, err := loadReference(f.config)
	if err != nil {
		return t, err
	}
	t.ref = ref
	return t, nil
}

// runTarget measures a running up: the bench's phones are made in the up's
// data directory (like `mipay phone`: its SE factory is the one the wallet
// trusts), named for this run.
func (b *authBench) runTarget(ctx context.Context, t benchTarget, dataDir string) (*BenchResult, error) {
	if fi, err := os.Stat(dataDir); err != nil || !fi.IsDir() {
		return nil, usagef("bench auth: --data %q is not the running up's data directory", dataDir)
	}
	t.dataDir = dataDir
	run, err := newBenchRun(dataDir)
	if err != nil {
		return nil, err
	}
	t.run = run
	fmt.Fprintf(b.progress, "driving the running parties (switch at %s, wallet at %s)…\n", t.networkAddr, t.walletURL)
	return b.measure(ctx, t, nil)
}

// benchRuns is how many runs' phones and accounts one data directory can
// hold (a run number has 4 digits in their names).
const benchRuns = 10000

// newBenchRun numbers a run on dataDir: the first number, from a random
// one on (wrapping around), whose phones are not in dataDir yet. A number
// drawn at random alone repeats an earlier run's sooner or later (half the
// time within about 120 runs): that run's phone names and accounts are
// taken, and the bench failed registering them again.
func newBenchRun(dataDir string) (int, error) {
	var r [2]byte
	_, _ = rand.Read(r[:])
	start := int(binary.BigEndian.Uint16(r[:]) % benchRuns)
	for i := range benchRuns {
		run := (start + i) % benchRuns
		_, err := os.Stat(filepath.Join(dataDir, "phones", fmt.Sprintf("bench-%04d-0", run)))
		if errors.Is(err, fs.ErrNotExist) {
			return run, nil
		}
		if err != nil {
			return 0, fmt.Errorf("bench: %w", err)
		}
	}
	return 0, fmt.Errorf("bench: the data directory %s holds the phones of %d bench runs, the most it can", dataDir, benchRuns)
}

// writeBenchReference writes benchReference() as JSON for `mipay up
// --config`, so a running up can be measured with the bench's limits.
func writeBenchReference(path string, stdout io.Writer) error {
	ref, err := benchReference()
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(ref, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: encode reference data: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("bench: write reference data: %w", err)
	}
	fmt.Fprintf(stdout, "wrote the benchmark's reference data to %s: start `mipay up --config %s`, then `mipay bench auth --target 127.0.0.1 --config %s`\n", path, path, path)
	return nil
}
