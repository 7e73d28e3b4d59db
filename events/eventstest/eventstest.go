// Package eventstest gives tests an event bus: an embedded one in a temp
// directory, or one on the shared server named by MIPAY_TEST_NATS with a
// stream of its own that is deleted when the test ends.
package eventstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// EnvNATS names the external server tests may use.
const EnvNATS = "MIPAY_TEST_NATS"

// StreamBytes is the stream bound of test buses (JetStream reserves it on
// the shared server).
const StreamBytes = 64 << 20

const openTimeout = 30 * time.Second

// Open returns an embedded bus in a temp directory, closed when tb ends.
func Open(tb testing.TB) *events.Bus {
	tb.Helper()
	return open(tb, events.Config{Dir: tb.TempDir(), MaxBytes: StreamBytes})
}

// OpenExternal returns a bus on the server of MIPAY_TEST_NATS with a unique
// prefix (so tests do not see each other's events); the stream is deleted
// and the bus closed when tb ends. It skips tb when the variable is unset.
func OpenExternal(tb testing.TB) *events.Bus {
	tb.Helper()
	url := os.Getenv(EnvNATS)
	if url == "" {
		tb.Skip(EnvNATS + " not set")
	}
	return OpenExternalPrefix(tb, url, UniquePrefix(tb))
}

// OpenExternalPrefix is OpenExternal with a given URL and prefix; several
// buses with one prefix stand for several nodes of a party.
func OpenExternalPrefix(tb testing.TB, url, prefix string) *events.Bus {
	tb.Helper()
	b := open(tb, events.Config{URL: url, Prefix: prefix, MaxBytes: StreamBytes})
	tb.Cleanup(func() { deleteStream(tb, url, prefix) })
	return b
}

// UniquePrefix is a fresh stream prefix.
func UniquePrefix(tb testing.TB) string {
	tb.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		tb.Fatal(err)
	}
	return "MIPAYTEST_" + strings.ToUpper(hex.EncodeToString(b[:]))
}

func open(tb testing.TB, cfg events.Config) *events.Bus {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
	defer cancel()
	b, err := events.Open(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatalf("events.Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := b.Close(); err != nil {
			tb.Errorf("events: Close: %v", err)
		}
	})
	return b
}

func deleteStream(tb testing.TB, url, prefix string) {
	nc, err := nats.Connect(url)
	if err != nil {
		tb.Logf("eventstest: deleting stream %s: %v", prefix, err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := js.DeleteStream(ctx, prefix); err != nil && !strings.Contains(err.Error(), "not found") {
		tb.Logf("eventstest: deleting stream %s: %v", prefix, err)
	}
}
