package tsp

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/mipay-oss/mipay/httpx"
	"github.com/mipay-oss/mipay/logmask"
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/store"
)

// Environment variables holding the API's bearer secrets. When unset, the
// secrets live in files under the data directory (created on first start,
// mode 0600), so `mipay up` parties sharing the directory find them.
const (
	EnvRequestorToken = "MIPAY_TSP_REQUESTOR_TOKEN"
	EnvIssuerToken    = "MIPAY_TSP_ISSUER_TOKEN"
	requestorFile     = "requestor.token"
	issuerFile        = "issuer.token"
	maxSecretBytes    = 256
)

// CredentialsDir is where the secret files live: <dataDir>/tsp.
func CredentialsDir(dataDir string) string { return filepath.Join(dataDir, "tsp") }

// LoadCredentials returns the API's bearer secrets from the environment or
// the data directory, creating missing files with random secrets.
func LoadCredentials(dataDir string) (Credentials, error) {
	var c Credentials
	var err error
	if c.RequestorToken, err = secret(dataDir, EnvRequestorToken, requestorFile); err != nil {
		return c, err
	}
	if c.IssuerToken, err = secret(dataDir, EnvIssuerToken, issuerFile); err != nil {
		return c, err
	}
	return c, nil
}

func secret(dataDir, envName, file string) (string, error) {
	if v := strings.TrimSpace(os.Getenv(envName)); v != "" {
		return v, nil
	}
	if dataDir == "" {
		return "", fmt.Errorf("tsp: %s is unset and there is no data directory for %s", envName, file)
	}
	dir := CredentialsDir(dataDir)
	path := filepath.Join(dir, file)
	if b, err := os.ReadFile(path); err == nil {
		if v := strings.TrimSpace(string(b)); v != "" && len(v) <= maxSecretBytes {
			return v, nil
		}
		return "", fmt.Errorf("tsp: %s is empty or over %d bytes", path, maxSecretBytes)
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("tsp: read %s: %w", path, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("tsp: %w", err)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("tsp: random secret: %w", err)
	}
	v := base64.RawURLEncoding.EncodeToString(raw[:])
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return secret(dataDir, envName, file) // another process made it first
	}
	if err != nil {
		return "", fmt.Errorf("tsp: create %s: %w", path, err)
	}
	_, werr := f.WriteString(v + "\n")
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		return "", fmt.Errorf("tsp: write %s: %w", path, err)
	}
	return v, nil
}

// Party is the running TSP.
type Party struct {
	db      *store.DB
	w       *store.Writer
	srv     *http.Server
	url     string
	served  chan error
	Service *Service
	Vault   *Vault
}

// Start ensures the TSP's keys in the HSM, opens the vault and serves the
// HTTP API on env.Listen["http"]. The issuer API is env.Peer("issuer",
// "http").
func Start(ctx context.Context, env *node.Env) (node.Party, error) {
	return StartParty(ctx, env)
}

// StartParty is Start returning the concrete type.
func StartParty(ctx context.Context, env *node.Env) (*Party, error) {
	addr := env.Listen["http"]
	if addr == "" {
		return nil, errors.New("tsp: no HTTP listen address (env.Listen[\"http\"])")
	}
	issuerURL := env.Peer(node.RoleIssuer, "http")
	if issuerURL == "" {
		return nil, errors.New("tsp: no issuer HTTP address (env.Peers[\"issuer\"][\"http\"])")
	}
	if env.HSM == nil || env.Ref == nil {
		return nil, errors.New("tsp: the environment has no HSM or reference data")
	}
	if err := EnsureKeys(ctx, env.HSM, env.Ref); err != nil {
		return nil, err
	}
	cred, err := LoadCredentials(env.DataDir)
	if err != nil {
		return nil, err
	}
	db, err := store.Open(ctx, env.Store, PartyName, Migrations())
	if err != nil {
		return nil, fmt.Errorf("tsp: %w", err)
	}
	var bus Publisher
	if env.Bus != nil {
		bus = env.Bus
	}
	// Defence in depth: the TSP's own lines never carry a full PAN, and the
	// masking handler makes sure of it for anything that slips through.
	log := env.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if _, masked := log.Handler().(*logmask.Handler); !masked {
		log = slog.New(logmask.NewHandler(log.Handler()))
	}
	vault := NewVault(db)
	w := store.NewWriter(db, store.WriterConfig{Registerer: env.Metrics, Name: "vault"})
	vault.UseWriter(w)
	svc, err := NewService(ServiceConfig{
		Vault: vault, Keys: NewHSMKeys(env.HSM), Issuers: NewHTTPIssuer(issuerURL, nil),
		Ref: env.Ref, Bus: bus, Log: log, NoticeWorkers: DefaultNoticeWorkers,
	})
	if err != nil {
		w.Close()
		db.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		svc.Close(ctx)
		w.Close()
		db.Close()
		return nil, fmt.Errorf("tsp: listen on %s: %w", addr, err)
	}
	p := &Party{
		db:      db,
		w:       w,
		srv:     httpx.NewServer(PartyName, NewAPI(svc, cred).Handler(), log, env.Metrics),
		url:     "http://" + ln.Addr().String(),
		served:  make(chan error, 1),
		Service: svc,
		Vault:   vault,
	}
	go func() { p.served <- p.srv.Serve(ln) }()
	log.Info("token service provider listening", "party", PartyName, "http", p.url)
	return p, nil
}

// Addrs implements node.Party.
func (p *Party) Addrs() map[string]string { return map[string]string{"http": p.url} }

// Close implements node.Party.
func (p *Party) Close(ctx context.Context) error {
	err := httpx.Shutdown(ctx, p.srv)
	if serr := <-p.served; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return errors.Join(err, p.Service.Close(ctx), p.w.Close(), p.db.Close())
}
