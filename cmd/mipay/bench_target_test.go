package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/node/local"
)

// `mipay bench auth --target` drives parties it did not start (a running
// up, here started beside it with the reference data --write-config gives)
// and binds its phones in their data directory.
func TestBenchAuthTarget(t *testing.T) {
	if testing.Short() {
		t.Skip("starts every party")
	}
	refPath := filepath.Join(t.TempDir(), "bench-reference.json")
	if code, out, errOut := runCmd(t, "bench", "auth", "--write-config", refPath); code != 0 || !strings.Contains(out, refPath) {
		t.Fatalf("--write-config: exit %d: %s %s", code, out, errOut)
	}
	ref, err := loadReference(refPath)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sys := mustStartLocal(t, local.Options{DataDir: dir, Ref: ref})
	args := []string{"bench", "auth", "--target", "127.0.0.1", "--data", dir, "--config", refPath,
		"--wallet", sys.URL(node.RoleWallet), "--sms", sys.URL(node.RoleSMS), "--network", sys.Addr(node.RoleNetwork, "iso8583"),
		"--duration", "1s", "--concurrency", "4", "--json"}
	for run := range 2 { // a second run in the same data directory binds phones of its own
		code, out, errOut := runCmd(t, args...)
		if code != 0 {
			t.Fatalf("run %d: exit %d: %s", run, code, errOut)
		}
		var res BenchResult
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if res.Target != sys.Addr(node.RoleNetwork, "iso8583") || res.Auth.Requests == 0 || res.Auth.Errors != 0 {
			t.Fatalf("run %d: %+v", run, res)
		}
		if res.ResponseCodes["00"] != res.Auth.Requests || len(res.Writers) != 0 {
			t.Fatalf("run %d: codes %v, writers %v (the parties are not the bench's)", run, res.ResponseCodes, res.Writers)
		}
	}
	phones, err := os.ReadDir(filepath.Join(dir, "phones"))
	if err != nil || len(phones) != 8 {
		t.Fatalf("phones in the target's data directory: %d, %v; want 4 per run", len(phones), err)
	}
	t.Run("bad input", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"--wallet", "http://127.0.0.1:1"}, "go with --target"},
			{[]string{"--target", "127.0.0.1"}, "--target needs --data"},
			{[]string{"--target", "127.0.0.1", "--data", dir, "--network", "nohostport"}, "HOST:PORT"},
			{[]string{"--target", "127.0.0.1", "--data", dir, "--wallet", "ftp://x"}, "http(s) URL"},
			{[]string{"--target", "127.0.0.1", "--data", filepath.Join(dir, "missing")}, "data directory"},
			{[]string{"--target", "127.0.0.1", "--data", dir, "--port-base", "0"}, "--port-base"},
		} {
			code, _, errOut := runCmd(t, append([]string{"bench", "auth"}, tc.args...)...)
			if code != 2 || !strings.Contains(errOut, tc.want) {
				t.Errorf("%v: exit %d %q, want 2 and %q", tc.args, code, errOut, tc.want)
			}
		}
	})
}
