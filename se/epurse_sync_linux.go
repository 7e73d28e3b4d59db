package se

import (
	"os"
	"syscall"
)

// fdatasync flushes a file's data (and only the metadata needed to read it
// back): the preallocated journal needs no more.
func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
