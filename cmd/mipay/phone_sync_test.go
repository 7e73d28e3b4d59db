package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/node/local"
	"github.com/mipay-oss/mipay/phone"
	"github.com/mipay-oss/mipay/wallet"
)

// TestPhoneSync runs `mipay phone report-location` and `mipay phone sync`
// against every party in-process: the position reaches Mi Cloud, a queued
// RING and WIPE are run and answered.
func TestPhoneSync(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	sys := mustStartLocal(t, local.Options{DataDir: dir})
	walletURL := sys.URL(node.RoleWallet)
	p, err := phone.Open(ctx, phone.Config{DataDir: dir, Name: "syncer", WalletURL: walletURL, SMSURL: sys.URL(node.RoleSMS)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Register(ctx, "13900139077", "syncer@example.com", "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	if err := p.Login(ctx, "13900139077", "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	// The CLI commands below open the phone themselves: one opener at a time.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		var out, errb bytes.Buffer
		err := runPhone(ctx, append(args, "--phone", "syncer", "--data", dir, "--wallet", walletURL), &out, &errb)
		return out.String() + errb.String(), err
	}
	t.Run("bad position is a usage error", func(t *testing.T) {
		if _, err := run("sync", "--lat", "95", "--lon", "10"); err == nil {
			t.Fatal("latitude 95 accepted")
		}
		if _, err := run("report-location", "--lat", "10"); err == nil {
			t.Fatal("latitude without longitude accepted")
		}
	})
	t.Run("report location", func(t *testing.T) {
		out, err := run("report-location", "--lat", "22.54310", "--lon", "114.05790", "--accuracy", "12")
		if err != nil || !strings.Contains(out, "Reported 22.54310, 114.05790") {
			t.Fatalf("%v: %s", err, out)
		}
	})
	wp, ok := sys.Party(node.RoleWallet)
	if !ok {
		t.Fatal("no wallet party")
	}
	svc := wp.(*wallet.Party).Service()
	acct, err := svc.Authenticate(ctx, "test", "13900139077", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("sync with nothing waiting", func(t *testing.T) {
		out, err := run("sync")
		if err != nil || !strings.Contains(out, "Position reported: 22.54310") || !strings.Contains(out, "No commands waiting") {
			t.Fatalf("%v: %s", err, out)
		}
	})
	t.Run("sync runs ring and wipe", func(t *testing.T) {
		for _, kind := range []string{wallet.CommandRing, wallet.CommandWipe} {
			if _, err := svc.QueueCommand(ctx, acct.ID, p.DeviceID(), kind); err != nil {
				t.Fatal(err)
			}
		}
		out, err := run("sync", "--lat", "22.5", "--lon", "114.1")
		if err != nil || !strings.Contains(out, "RING: done") || !strings.Contains(out, "WIPE: done") || !strings.Contains(out, "RING RING") {
			t.Fatalf("%v: %s", err, out)
		}
		cmds, err := svc.Commands(ctx, acct.ID, p.DeviceID())
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cmds {
			if c.State != wallet.CommandDone {
				t.Fatalf("command %+v not done", c)
			}
		}
		locs, err := svc.Locations(ctx, acct.ID, p.DeviceID(), 1)
		if err != nil || len(locs) != 1 || locs[0].Latitude != 22.5 {
			t.Fatalf("locations %+v %v", locs, err)
		}
	})
}
