package main

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// envRunMain makes the test binary act as mipay itself, so tests can check
// main's signal handling and exit codes in a real process.
const envRunMain = "MIPAY_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(envRunMain) == "1" {
		main() // exits
	}
	os.Exit(m.Run())
}

// mipayProcess returns a command running this test binary as mipay.
func mipayProcess(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), envRunMain+"=1")
	return cmd
}

func TestProcessBadInputExitCode(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	out, err := mipayProcess(t, "up", "--data", data, "--db", "mysql://x").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("exit: %v, want code 2 (output %q)", err, out)
	}
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "--db") {
		t.Errorf("output %q: want one line about --db", out)
	}
	if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data directory created (stat: %v)", err)
	}
}

// TestProcessSignalShutdown starts `mipay up` as a process and stops it with
// SIGTERM, as a service manager would: it must exit 0 after a graceful
// shutdown.
func TestProcessSignalShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts every party")
	}
	args := append([]string{"up", "--data", t.TempDir(), "--log-level", "warn"}, listenFlags()...)
	cmd := mipayProcess(t, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		signalled := false
		for sc.Scan() {
			if !signalled && strings.HasPrefix(sc.Text(), "Ctrl-C stops") {
				signalled = true
				close(ready)
			}
		}
		exited <- cmd.Wait()
	}()
	select {
	case <-ready:
	case err := <-exited:
		t.Fatalf("mipay up exited before it was ready: %v\n%s", err, &stderr)
	case <-time.After(upTimeout):
		cmd.Process.Kill()
		t.Fatalf("mipay up not ready within %v\n%s", upTimeout, &stderr)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("after SIGTERM: %v\n%s", err, &stderr)
		}
	case <-time.After(DefaultShutdownTimeout + 10*time.Second):
		cmd.Process.Kill()
		t.Fatalf("mipay up did not stop after SIGTERM\n%s", &stderr)
	}
}
