// Package e2e drives mipay end to end the way a user does: every party
// started in-process on loopback ports with its real protocol (HTTP, ISO
// 8583 over TCP, APDUs over the vsmartcard link, events over an embedded
// NATS), a phone emulator with its SE, and QuickPass terminals.
package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/logmask"
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/node/local"
	"github.com/mipay-oss/mipay/phone"
)

// system is every party of mipay running in this process.
type system struct {
	*local.System
	dataDir string
	ref     *config.Reference
	logBuf  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// mustStart starts every party over a fresh (or the given) data directory.
func mustStart(tb testing.TB, dataDir string, mutate func(*config.Reference)) *system {
	tb.Helper()
	if dataDir == "" {
		dataDir = tb.TempDir()
	}
	ref, err := config.Default()
	if err != nil {
		tb.Fatal(err)
	}
	if mutate != nil {
		mutate(ref)
	}
	s := &system{dataDir: dataDir, ref: ref, logBuf: &syncBuffer{}}
	log := slog.New(logmask.NewHandler(slog.NewTextHandler(s.logBuf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	sys, err := local.Start(context.Background(), local.Options{DataDir: dataDir, Ref: ref, Log: log})
	if err != nil {
		tb.Fatal(err)
	}
	s.System = sys
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := sys.Close(ctx); err != nil {
			tb.Logf("close: %v", err)
		}
	})
	return s
}

func (s *system) url(role string) string { return s.URL(role) }

// newPhone makes a named handset talking to this system.
func (s *system) newPhone(tb testing.TB, name string) *phone.Phone {
	tb.Helper()
	p, err := phone.Open(context.Background(), phone.Config{DataDir: s.dataDir, Name: name, WalletURL: s.url(node.RoleWallet), SMSURL: s.url(node.RoleSMS)})
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// demoCard finds a demo cardholder of an issuer.
func (s *system) demoCard(tb testing.TB, issuerID string, i int) config.Cardholder {
	tb.Helper()
	is, ok := s.ref.Issuer(issuerID)
	if !ok || len(is.Cardholders) <= i {
		tb.Fatalf("no demo cardholder %d of %s", i, issuerID)
	}
	return is.Cardholders[i]
}

// onboard registers an account on the phone with the cardholder's bank
// number, signs in and enrolls a finger.
func onboard(tb testing.TB, p *phone.Phone, number string) {
	tb.Helper()
	ctx := context.Background()
	email := fmt.Sprintf("%s-%d@example.com", p.Name(), time.Now().UnixNano())
	if _, err := p.Register(ctx, number, email, "correct horse battery staple"); err != nil {
		tb.Fatalf("register: %v", err)
	}
	if err := p.Login(ctx, number, "correct horse battery staple"); err != nil {
		tb.Fatalf("login: %v", err)
	}
	if err := p.EnrollFinger(ctx); err != nil {
		tb.Fatalf("enroll finger: %v", err)
	}
}
