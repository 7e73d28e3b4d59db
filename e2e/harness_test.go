// Package e2e drives mipay end to end the way a user does: every party
// started in-process on loopback ports with its real protocol (HTTP, ISO
// 8583 over TCP, APDUs over the vsmartcard link, events over an embedded
// NATS), a phone emulator with its SE, and QuickPass terminals.
package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/events"
	"github.com/mipay-oss/mipay/hsm"
	"github.com/mipay-oss/mipay/issuer"
	"github.com/mipay-oss/mipay/logmask"
	"github.com/mipay-oss/mipay/network"
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/phone"
	"github.com/mipay-oss/mipay/sms"
	"github.com/mipay-oss/mipay/store"
	"github.com/mipay-oss/mipay/tsp"
	"github.com/mipay-oss/mipay/wallet"
	"github.com/prometheus/client_golang/prometheus"
)

// system is every party of mipay running in this process.
type system struct {
	dataDir string
	ref     *config.Reference
	bus     *events.Bus
	hsm     *hsm.Soft
	peers   map[string]map[string]string
	parties []node.Party
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

type partyStart struct {
	role   string
	listen []string
	start  node.StartFunc
}

func startOrder() []partyStart {
	return []partyStart{
		{node.RoleSMS, []string{"http"}, sms.Start},
		{node.RoleIssuer, []string{"http", "iso8583"}, issuer.Start},
		{node.RoleTSP, []string{"http"}, tsp.Start},
		{node.RoleNetwork, []string{"http", "iso8583"}, network.Start},
		{node.RoleWallet, []string{"http"}, wallet.Start},
	}
}

// mustStart starts every party over a fresh (or the given) data directory.
func mustStart(tb testing.TB, dataDir string, mutate func(*config.Reference)) *system {
	tb.Helper()
	ctx := context.Background()
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
	s := &system{dataDir: dataDir, ref: ref, peers: map[string]map[string]string{}, logBuf: &syncBuffer{}}
	log := slog.New(logmask.NewHandler(slog.NewTextHandler(s.logBuf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	s.bus, err = events.Open(ctx, events.Config{Dir: filepath.Join(dataDir, "nats")}, log)
	if err != nil {
		tb.Fatal(err)
	}
	s.hsm, err = hsm.OpenSoft(ctx, hsm.SoftConfig{Dir: filepath.Join(dataDir, "hsm")})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.stop(tb) })
	st := store.Config{Dir: dataDir}
	if url := os.Getenv("MIPAY_E2E_POSTGRES"); url != "" {
		st.URL = url
	}
	for _, p := range startOrder() {
		listen := map[string]string{}
		for _, n := range p.listen {
			listen[n] = "127.0.0.1:0"
		}
		env := &node.Env{Role: p.role, DataDir: dataDir, Store: st, Bus: s.bus, HSM: s.hsm, Log: log.With("party", p.role),
			Ref: ref, Metrics: prometheus.NewRegistry(), Listen: listen, Peers: s.peers}
		party, err := p.start(ctx, env)
		if err != nil {
			tb.Fatalf("start %s: %v", p.role, err)
		}
		s.parties = append(s.parties, party)
		s.peers[p.role] = party.Addrs()
	}
	return s
}

func (s *system) stop(tb testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := len(s.parties) - 1; i >= 0; i-- {
		if err := s.parties[i].Close(ctx); err != nil {
			tb.Logf("close party %d: %v", i, err)
		}
	}
	s.parties = nil
	if s.hsm != nil {
		s.hsm.Close()
		s.hsm = nil
	}
	if s.bus != nil {
		s.bus.Close()
		s.bus = nil
	}
}

func (s *system) url(role string) string { return s.peers[role]["http"] }

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
