package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mipay-oss/mipay/node/local"
)

// upTimeout bounds how long a test waits for `up` to come up or stop.
const upTimeout = 60 * time.Second

// listenFlags gives every endpoint of the wired parties port 0, so tests
// never collide with each other or a running mipay.
func listenFlags() []string {
	var args []string
	for _, s := range partySpecs() {
		for _, ep := range roleEndpoints()[s.role] {
			args = append(args, "--listen", s.role+"."+ep.name+"=127.0.0.1:0")
		}
	}
	return args
}

// runningCmd is a long-running command (up, serve) started by a test.
type runningCmd struct {
	cancel         context.CancelFunc
	done           chan error
	stdout, stderr *syncBuffer
}

func startCmd(t *testing.T, args ...string) *runningCmd {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rc := &runningCmd{cancel: cancel, done: make(chan error, 1), stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	go func() { rc.done <- run(ctx, args, rc.stdout, rc.stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-rc.done:
		case <-time.After(upTimeout):
			t.Errorf("command did not stop within %v", upTimeout)
		}
	})
	return rc
}

// waitReady waits until the command has printed its party table and returns
// the addresses it printed: role → endpoint → address.
func (rc *runningCmd) waitReady(t *testing.T) map[string]map[string]string {
	t.Helper()
	deadline := time.After(upTimeout)
	for !strings.Contains(rc.stdout.String(), "PARTY") || !strings.Contains(rc.stdout.String(), "\n\n") {
		select {
		case err := <-rc.done:
			t.Fatalf("command ended before it was ready: %v\nstderr:\n%s", err, rc.stderr)
		case <-deadline:
			t.Fatalf("not ready within %v\nstdout:\n%s\nstderr:\n%s", upTimeout, rc.stdout, rc.stderr)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return parseTable(t, rc.stdout.String())
}

// stop cancels the command (as Ctrl-C does) and checks that it shut down
// cleanly.
func (rc *runningCmd) stop(t *testing.T) {
	t.Helper()
	rc.cancel()
	select {
	case err := <-rc.done:
		rc.done <- err // for Cleanup
		if err != nil {
			t.Fatalf("shutdown: %v\nstderr:\n%s", err, rc.stderr)
		}
	case <-time.After(upTimeout):
		t.Fatalf("did not stop within %v", upTimeout)
	}
}

func parseTable(t *testing.T, out string) map[string]map[string]string {
	t.Helper()
	addrs := map[string]map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	in := false
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 3 && f[0] == "PARTY":
			in = true
		case in && len(f) == 0:
			return addrs
		case in && len(f) == 3:
			setPeer(addrs, f[0], f[1], f[2])
		case in:
			t.Fatalf("unexpected table line %q", sc.Text())
		}
	}
	t.Fatalf("no party table in output:\n%s", out)
	return nil
}

// checkParties checks that every wired party was printed and answers
// /healthz and /metrics on its HTTP endpoint.
func checkParties(t *testing.T, roles []string, addrs map[string]map[string]string) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	for _, role := range roles {
		base := addrs[role][endpointHTTP]
		if !strings.HasPrefix(base, "http://127.0.0.1:") {
			t.Errorf("party %s: HTTP address %q, want a loopback URL", role, base)
			continue
		}
		for _, path := range []string{"/healthz", "/metrics"} {
			resp, err := client.Get(base + path)
			if err != nil {
				t.Errorf("party %s: GET %s: %v", role, path, err)
				continue
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("party %s: GET %s: %s", role, path, resp.Status)
			}
			if path == "/metrics" && !strings.Contains(string(body), "go_goroutines") {
				t.Errorf("party %s: /metrics has no Go runtime metrics", role)
			}
		}
	}
}

func TestUpServesAndRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts every party twice")
	}
	data := filepath.Join(t.TempDir(), "data")
	args := append([]string{"up", "--data", data, "--log-level", "warn"}, listenFlags()...)
	var roles []string
	for _, s := range partySpecs() {
		roles = append(roles, s.role)
	}
	for _, round := range []string{"first start", "restart on the same data"} {
		t.Run(round, func(t *testing.T) {
			rc := startCmd(t, args...)
			addrs := rc.waitReady(t)
			if len(addrs) != len(roles) {
				t.Errorf("table lists %d parties, want %d (%v)", len(addrs), len(roles), roles)
			}
			checkParties(t, roles, addrs)
			if !strings.Contains(rc.stdout.String(), "DEMO CARDS") {
				t.Errorf("no demo cards printed:\n%s", rc.stdout)
			}
			rc.stop(t)
		})
	}
	if _, err := os.Stat(filepath.Join(data, "nats")); err != nil {
		t.Errorf("embedded NATS data: %v", err)
	}
}

func TestServeOneParty(t *testing.T) {
	specs := partySpecs()
	if len(specs) == 0 {
		t.Skip("no party wired in yet")
	}
	role := specs[0].role
	args := []string{"serve", role, "--data", t.TempDir(), "--log-level", "warn",
		"--peer", "wallet.http=http://10.9.9.9:8410"}
	for _, ep := range roleEndpoints()[role] {
		args = append(args, "--listen", role+"."+ep.name+"=127.0.0.1:0")
	}
	rc := startCmd(t, args...)
	addrs := rc.waitReady(t)
	if len(addrs) != 1 {
		t.Errorf("serve printed %d parties, want 1: %v", len(addrs), addrs)
	}
	checkParties(t, []string{role}, addrs)
	rc.stop(t)
}

func TestPlanPeers(t *testing.T) {
	hf := hostFlags{host: "127.0.0.1", portBase: DefaultPortBase,
		peers: listFlag{"issuer.http=http://10.0.0.7:8430/", "network.iso8583=10.0.0.8:8500"}}
	local := []plannedParty{{spec: partySpec{role: "tsp"}, listen: map[string]string{"http": "0.0.0.0:9000"}}}
	peers, err := hf.planPeers(local)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ role, name, want string }{
		{"wallet", "http", "http://127.0.0.1:8410"},
		{"sms", "http", "http://127.0.0.1:8440"},
		{"tsp", "http", "http://127.0.0.1:9000"},
		{"issuer", "http", "http://10.0.0.7:8430"},
		{"issuer", "iso8583", "127.0.0.1:8431"},
		{"network", "iso8583", "10.0.0.8:8500"},
		{"network", "http", "http://127.0.0.1:8490"},
	} {
		if got := peers[tc.role][tc.name]; got != tc.want {
			t.Errorf("peer %s.%s = %q, want %q", tc.role, tc.name, got, tc.want)
		}
	}
	hf.peers = listFlag{"tsp.http=http://10.0.0.9:8420"}
	if _, err := hf.planPeers(local); err == nil || !strings.Contains(err.Error(), "runs in this process") {
		t.Errorf("--peer for a local party: %v", err)
	}
}

// TestBadInput checks that every kind of bad input fails before anything is
// created: exit code 2, one line naming the problem, data directory untouched.
func TestBadInput(t *testing.T) {
	tmp := t.TempDir()
	file := filepath.Join(tmp, "a-file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	corrupt := filepath.Join(tmp, "corrupt.json")
	if err := os.WriteFile(corrupt, []byte("{\n  \"version\": 1,\n  \"issuers\": [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	type tc struct {
		name string
		args []string
		env  map[string]string
		want []string
	}
	cases := []tc{
		{"unknown flag", []string{"up", "--colour", "red"}, nil, []string{"flag provided but not defined: -colour"}},
		{"extra argument", []string{"up", "now"}, nil, []string{`unexpected argument "now"`}},
		{"db URL not PostgreSQL", []string{"up", "--db", "mysql://root@localhost/x"}, nil, []string{"--db", "not a PostgreSQL URL", "postgres://"}},
		{"db URL malformed", []string{"up", "--db", "postgres://u:secret@host:port/db"}, nil, []string{"--db", "not a valid PostgreSQL URL"}},
		{"db URL from environment", []string{"up"}, map[string]string{envDatabaseURL: "sqlite:///x.db"}, []string{envDatabaseURL, "not a PostgreSQL URL"}},
		{"db unreachable", []string{"up", "--db", "postgres://u:secret@127.0.0.1:1/db?connect_timeout=2"}, nil, []string{"cannot connect to PostgreSQL", "127.0.0.1:1", "connection refused"}},
		{"nats unreachable", []string{"up", "--nats", "nats://127.0.0.1:1"}, nil, []string{"cannot reach NATS", "connection refused"}},
		{"nats URL", []string{"up", "--nats", "http://localhost:4222"}, nil, []string{"--nats", "not a NATS URL"}},
		{"nats URL from environment", []string{"up"}, map[string]string{envNATSURL: "localhost"}, []string{envNATSURL, "not a NATS URL"}},
		{"nats-listen with external NATS", []string{"up", "--nats", "nats://127.0.0.1:4222", "--nats-listen", "127.0.0.1:0"}, nil, []string{"--nats-listen"}},
		{"nats-listen in use", []string{"up", "--nats-listen", "BUSY"}, nil, []string{"--nats-listen", "address already in use"}},
		{"HSM key", []string{"up"}, map[string]string{envHSMKey: "abc"}, []string{envHSMKey, "64 hex"}},
		{"data dir is a file", []string{"up", "--data", file}, nil, []string{"--data", "is a file, not a directory"}},
		{"data dir under a file", []string{"up", "--data", filepath.Join(file, "sub")}, nil, []string{"--data", "is a file, not a directory"}},
		{"corrupt config", []string{"up", "--config", corrupt}, nil, []string{"--config", corrupt, "line 4", "unexpected end of file"}},
		{"missing config", []string{"up", "--config", filepath.Join(tmp, "nope.json")}, nil, []string{"--config", "no such file"}},
		{"log level", []string{"up", "--log-level", "loud"}, nil, []string{"--log-level"}},
		{"port base", []string{"up", "--port-base", "70000"}, nil, []string{"--port-base"}},
		{"listen syntax", []string{"up", "--listen", "wallet"}, nil, []string{"--listen", "ROLE.NAME=ADDRESS"}},
		{"serve without role", []string{"serve"}, nil, []string{"which party"}},
		{"serve unknown role", []string{"serve", "bank"}, nil, []string{`unknown party "bank"`}},
	}
	if specs := partySpecs(); len(specs) > 0 {
		key := specs[0].role + "." + endpointHTTP
		cases = append(cases,
			tc{"port in use", []string{"up", "--listen", key + "=" + busy.Addr().String()}, nil, []string{key, busy.Addr().String(), "address already in use", "--listen"}},
			tc{"listen unknown endpoint", []string{"up", "--listen", specs[0].role + ".ftp=127.0.0.1:0"}, nil, []string{"no endpoint \"ftp\""}},
			tc{"serve bad peer", []string{"serve", specs[0].role, "--peer", "wallet.http=10.0.0.1:8410"}, nil, []string{"--peer", "want a URL"}},
		)
	}
	if os.Geteuid() != 0 { // root writes anywhere
		ro := filepath.Join(tmp, "read-only")
		if err := os.Mkdir(ro, 0o500); err != nil {
			t.Fatal(err)
		}
		cases = append(cases, tc{"data dir not writable", []string{"up", "--data", filepath.Join(ro, "data")}, nil, []string{"--data", "permission denied"}})
	}
	for _, c := range cases {
		for i, a := range c.args {
			if a == "BUSY" {
				c.args[i] = busy.Addr().String()
			}
		}
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			data := filepath.Join(t.TempDir(), "data")
			args := c.args
			if !hasFlag(args, "--data") && len(args) > 0 && (args[0] == "up" || args[0] == "serve") {
				args = append(append([]string{}, args...), "--data", data)
			}
			code, stdout, stderr := runCmd(t, args...)
			if code != 2 {
				t.Errorf("exit code %d, want 2 (stderr %q)", code, stderr)
			}
			if strings.Count(stderr, "\n") != 1 {
				t.Errorf("error is not one line: %q", stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("error %q does not contain %q", stderr, w)
				}
			}
			if strings.Contains(stderr, "secret") {
				t.Errorf("error shows a password: %q", stderr)
			}
			if stdout != "" {
				t.Errorf("stdout not empty: %q", stdout)
			}
			if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("data directory was created (stat: %v)", err)
			}
			entries, _ := os.ReadDir(tmp)
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), ".mipay") {
					t.Errorf("left %s behind", e.Name())
				}
			}
		})
	}
}

func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

// TestUpOverPostgres runs `up` twice over PostgreSQL (MIPAY_TEST_POSTGRES),
// in a database of its own so that the parties' schemas meet no other test.
func TestUpOverPostgres(t *testing.T) {
	base := os.Getenv("MIPAY_TEST_POSTGRES")
	if base == "" {
		t.Skip("MIPAY_TEST_POSTGRES not set")
	}
	if testing.Short() {
		t.Skip("starts every party twice")
	}
	dbURL := createTestDatabase(t, base)
	data := filepath.Join(t.TempDir(), "data")
	args := append([]string{"up", "--data", data, "--db", dbURL, "--log-level", "warn"}, listenFlags()...)
	var roles []string
	for _, s := range partySpecs() {
		roles = append(roles, s.role)
	}
	for _, round := range []string{"first start", "restart"} {
		t.Run(round, func(t *testing.T) {
			rc := startCmd(t, args...)
			addrs := rc.waitReady(t)
			if !strings.Contains(rc.stdout.String(), "PostgreSQL") {
				t.Errorf("table does not say PostgreSQL:\n%s", rc.stdout)
			}
			checkParties(t, roles, addrs)
			rc.stop(t)
		})
	}
	for _, s := range partySpecs() {
		if _, err := os.Stat(filepath.Join(data, s.role+".db")); err == nil {
			t.Errorf("party %s made a SQLite file although --db was given", s.role)
		}
	}
}

// createTestDatabase creates a fresh database on the server of base and
// returns its URL; it is dropped when the test ends.
func createTestDatabase(t *testing.T, base string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to MIPAY_TEST_POSTGRES: %v", err)
	}
	defer conn.Close(context.Background())
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	name := "mipay_up_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("drop database %s: %v", name, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// TestEveryPartyHasPorts checks that each party up starts has fixed ports
// for exactly the endpoints it listens on.
func TestEveryPartyHasPorts(t *testing.T) {
	for _, p := range local.Parties() {
		var have []string
		for _, ep := range roleEndpoints()[p.Role] {
			have = append(have, ep.name)
		}
		if !slices.Equal(have, p.Listen) {
			t.Errorf("party %s listens on %v, fixed ports are for %v", p.Role, p.Listen, have)
		}
	}
	ports := map[int]string{}
	for role, eps := range roleEndpoints() {
		for _, ep := range eps {
			if ep.offset < 0 || ep.offset > maxPortOffset {
				t.Errorf("%s.%s: offset %d out of 0–%d", role, ep.name, ep.offset, maxPortOffset)
			}
			if other, dup := ports[ep.offset]; dup {
				t.Errorf("%s.%s and %s share offset %d", role, ep.name, other, ep.offset)
			}
			ports[ep.offset] = role + "." + ep.name
		}
	}
}
