package gate

import (
	"os"
	"syscall"
)

// fdatasync flushes the journal's data: it is preallocated, so no metadata
// needs to follow.
func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
