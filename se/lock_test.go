//go:build unix

package se

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mipay-oss/mipay"
)

// TestOpenLockedInProcess: a second Open of a held SE fails at once with an
// error naming the directory and the holder; a volatile Open still works;
// after Close the SE refuses changes and the next Open gets the lock.
func TestOpenLockedInProcess(t *testing.T) {
	m, dir := mustManufacture(t, &clock{t: time.Now()})
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir, Options{})
	if err == nil {
		t.Fatal("a second Open of a held SE succeeded")
	}
	var inUse *InUseError
	if !errors.Is(err, ErrInUse) || !errors.As(err, &inUse) || mipay.ErrorCode(err) != mipay.ECONFLICT {
		t.Fatalf("second Open: %v (code %s), want ECONFLICT wrapping ErrInUse", err, mipay.ErrorCode(err))
	}
	msg := mipay.ErrorMessage(err)
	if inUse.PID != os.Getpid() || !strings.Contains(msg, dir) || !strings.Contains(msg, fmt.Sprintf("pid %d", os.Getpid())) || !strings.Contains(msg, "retry") {
		t.Fatalf("second Open: pid %d, message %q", inUse.PID, msg)
	}
	v, err := Open(dir, Options{Volatile: true})
	if err != nil {
		t.Fatalf("volatile Open of a held SE: %v", err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrInUse) {
		t.Fatalf("closing a volatile SE released the holder's lock: %v", err)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.Wipe(); err == nil {
		t.Fatal("a closed SE accepted a change")
	}
	s2, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestManufactureWhileHeld: manufacturing into a directory whose lock is
// held fails with ErrInUse and writes nothing.
func TestManufactureWhileHeld(t *testing.T) {
	data := t.TempDir()
	f, err := OpenFactory(data)
	if err != nil {
		t.Fatal(err)
	}
	dir := data + "/p"
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Manufacture(dir, f, Options{}); !errors.Is(err, ErrInUse) {
		t.Fatalf("Manufacture into a held directory: %v", err)
	}
	if Exists(dir) {
		t.Fatal("a refused Manufacture wrote a state")
	}
	lock.Close()
	s, err := Manufacture(dir, f, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Manufacture(dir, f, Options{}); !errors.Is(err, ErrExists) {
		t.Fatalf("second Manufacture: %v", err)
	}
	s.Close()
}

const lockChildEnv = "MIPAY_SE_LOCK_CHILD"

// TestLockHolderChild is the child of TestOpenLockedAcrossProcesses: it
// opens the SE in $MIPAY_SE_LOCK_CHILD, says HELD and waits to be killed.
func TestLockHolderChild(t *testing.T) {
	dir := os.Getenv(lockChildEnv)
	if dir == "" {
		t.Skip("child process of TestOpenLockedAcrossProcesses")
	}
	if _, err := Open(dir, Options{}); err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	fmt.Println("HELD")
	time.Sleep(time.Minute)
	os.Exit(3) // not killed in time
}

// TestOpenLockedAcrossProcesses: while another process holds the SE, Open
// fails naming that process; once it is SIGKILLed the kernel drops its lock
// and Open succeeds.
func TestOpenLockedAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	m, dir := mustManufacture(t, &clock{t: time.Now()})
	m.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHolderChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), lockChildEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	lines := make(chan string, 8)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case l := <-lines:
		if l != "HELD" {
			t.Fatalf("child said %q", l)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("child did not open the SE")
	}

	_, err = Open(dir, Options{})
	var inUse *InUseError
	if !errors.As(err, &inUse) || inUse.PID != cmd.Process.Pid {
		t.Fatalf("Open while the child holds the SE: %v, want in use by pid %d", err, cmd.Process.Pid)
	}
	if !strings.Contains(mipay.ErrorMessage(err), fmt.Sprintf("pid %d", cmd.Process.Pid)) {
		t.Fatalf("message %q does not name the holder", mipay.ErrorMessage(err))
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for range lines {
	}
	werr := cmd.Wait()
	killed = true
	var ee *exec.ExitError
	if !errors.As(werr, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want killed by SIGKILL", werr)
	}
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("Open after the holder was killed: %v", err)
	}
	s.Close()
}
