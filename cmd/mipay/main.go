// Command mipay is the one binary of mipay: `mipay up` runs every party on
// loopback ports, `mipay serve ROLE` runs one party, and the other
// sub-commands are clients and tools. See README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, restore the default action so that a second
	// Ctrl-C ends a shutdown that hangs.
	go func() { <-ctx.Done(); stop() }()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err))
}
