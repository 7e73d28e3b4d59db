package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/node/local"
)

// syncBuffer is an io.Writer safe for a running command and a test reading
// its output at the same time.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// runCmd runs mipay with args and returns its exit code, stdout and stderr.
func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr syncBuffer
	err := run(context.Background(), args, &stdout, &stderr)
	return exitCode(err), stdout.String(), stderr.String()
}

// mustRunJSON runs the command, which must exit 0, and decodes what it
// printed (with --json) as a T.
func mustRunJSON[T any](t *testing.T, args ...string) T {
	t.Helper()
	code, out, errOut := runCmd(t, args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var v T
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return v
}

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, 0},
		{"usage", usagef("bad %s", "flag"), 2},
		{"wrapped usage", fmt.Errorf("outer: %w", usagef("bad")), 2},
		{"explicit code", &exitCodeError{code: 3, err: errors.New("x")}, 3},
		{"other", errors.New("boom"), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := exitCode(tc.err); got != tc.want {
				t.Errorf("exitCode = %d, want %d", got, tc.want)
			}
		})
	}
	err := usagef("bad %d", 7)
	if err.Error() != "bad 7" || errors.Unwrap(err) == nil {
		t.Errorf("usagef error = %q, unwrap %v", err, errors.Unwrap(err))
	}
}

func TestDispatch(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       []string
		code       int
		stdout     string // substring
		stderr     string // substring
		stderrLine bool   // stderr must be exactly one line
	}{
		{"no command", nil, 2, "", "no command given", false},
		{"unknown command", []string{"fly"}, 2, "", `unknown command "fly"`, true},
		{"help", []string{"help"}, 0, "Commands:", "", false},
		{"--help", []string{"--help"}, 0, "version", "", false},
		{"version", []string{"version"}, 0, "mipay dev", "", false},
		{"version extra arg", []string{"version", "x"}, 2, "", `unexpected argument "x"`, true},
		{"version bad flag", []string{"version", "--x"}, 2, "", "flag provided but not defined", true},
		{"up -h", []string{"up", "-h"}, 0, "", "-port-base", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit code %d, want %d (stderr %q)", code, tc.code, stderr)
			}
			if !strings.Contains(stdout, tc.stdout) {
				t.Errorf("stdout %q does not contain %q", stdout, tc.stdout)
			}
			if !strings.Contains(stderr, tc.stderr) {
				t.Errorf("stderr %q does not contain %q", stderr, tc.stderr)
			}
			if tc.stderrLine && strings.Count(stderr, "\n") != 1 {
				t.Errorf("stderr is not one line: %q", stderr)
			}
		})
	}
}

func TestHelpListsEveryCommand(t *testing.T) {
	_, stdout, _ := runCmd(t, "help")
	seen := map[string]bool{}
	for _, c := range commands() {
		if seen[c.name] {
			t.Errorf("command %q is in the table twice", c.name)
		}
		seen[c.name] = true
		if !strings.Contains(stdout, "  "+c.name+" ") {
			t.Errorf("help does not list %q:\n%s", c.name, stdout)
		}
		if c.help == "" || strings.Contains(c.help, "\n") {
			t.Errorf("command %q: help must be one line", c.name)
		}
	}
}

func TestVersionShowsGo(t *testing.T) {
	_, stdout, _ := runCmd(t, "version")
	if !strings.Contains(stdout, "go: go1.") {
		t.Errorf("version output lacks the Go version: %q", stdout)
	}
}

// mustStartLocal starts every party in this process (node/local) and
// closes them when the test ends.
func mustStartLocal(t *testing.T, o local.Options) *local.System {
	t.Helper()
	sys, err := local.Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = sys.Close(ctx)
	})
	return sys
}
