package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version is set at build time:
// go build -ldflags "-X main.version=1.2.3" ./cmd/mipay
var version = "dev"

func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", "", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "mipay %s\n", version)
	fmt.Fprintf(stdout, "go: %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if info, ok := debug.ReadBuildInfo(); ok {
		if info.Main.Version != "" && info.Main.Version != "(devel)" {
			fmt.Fprintf(stdout, "module: %s %s\n", info.Main.Path, info.Main.Version)
		}
		settings := map[string]string{}
		for _, s := range info.Settings {
			settings[s.Key] = s.Value
		}
		if rev := settings["vcs.revision"]; rev != "" {
			dirty := ""
			if settings["vcs.modified"] == "true" {
				dirty = " (modified)"
			}
			fmt.Fprintf(stdout, "commit: %s%s\n", rev, dirty)
		}
		if t := settings["vcs.time"]; t != "" {
			fmt.Fprintf(stdout, "commit time: %s\n", t)
		}
	}
	return nil
}
