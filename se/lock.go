package se

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/mipay-oss/mipay"
)

// An SE's directory is used by one process at a time: Open (and Manufacture,
// while it makes the SE) takes an exclusive advisory lock (flock) on
// se.lock in the directory, and Close releases it. The kernel releases it
// too when the process ends, however it ends, so a killed process leaves no
// stale lock behind. The lock file holds the holder's process id, for the
// message a second opener gets; it is never removed (removing a lock file
// lets two processes lock two different files).
//
// A volatile SE (Options.Volatile) writes nothing, so Open takes no lock for
// it: a load generator may read a copy of an SE another process holds.
const lockFile = "se.lock"

// ErrInUse is wrapped by the error Open returns when another SE (of this
// process or another one) holds the directory: errors.Is(err, se.ErrInUse).
var ErrInUse = errors.New("se: the secure element is in use")

// InUseError says which directory is held, and by which process when the
// lock file tells (PID 0: unknown). errors.As finds it in Open's error.
type InUseError struct {
	Dir string
	PID int
}

func (e *InUseError) Error() string {
	if e.PID > 0 {
		return fmt.Sprintf("se: %s is locked by process %d", e.Dir, e.PID)
	}
	return fmt.Sprintf("se: %s is locked by another process", e.Dir)
}

func (e *InUseError) Is(target error) bool { return target == ErrInUse }

// Holder says who holds the lock, for a message: "another mipay process
// (pid 42)", or "this process (pid 42)" when an SE of this process has it.
func (e *InUseError) Holder() string {
	switch {
	case e.PID <= 0:
		return "another mipay process"
	case e.PID == os.Getpid():
		return fmt.Sprintf("this process (pid %d)", e.PID)
	}
	return fmt.Sprintf("another mipay process (pid %d)", e.PID)
}

// lockDir takes the directory's lock without waiting. A directory held
// elsewhere is a *mipay.Error (ECONFLICT) wrapping an *InUseError.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("se: lock: %w", err)
	}
	held, err := tryLock(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("se: lock %s: %w", path, err)
	}
	if !held {
		e := &InUseError{Dir: dir, PID: holderPID(f)}
		f.Close()
		return nil, mipay.WrapError(mipay.ECONFLICT, e,
			"the secure element in %s is in use by %s: retry when it has finished", dir, e.Holder())
	}
	// Best effort: the pid is only for messages.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

func holderPID(f *os.File) int {
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b[:n])))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}
