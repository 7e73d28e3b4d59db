package promo

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/mipay-oss/mipay/store"
	"github.com/prometheus/client_golang/prometheus"
)

// Service is an engine over its own store, as a switch process runs it:
// the "promo" SQLite file or PostgreSQL schema, the default campaigns seeded
// on first start, campaigns reloaded every DefaultRefreshInterval, stranded
// reservations swept every DefaultSweepInterval.
type Service struct {
	*Engine
	db     *store.DB
	cancel context.CancelFunc
	done   chan struct{}
}

// Start opens the engine's store at cfg, seeds the defaults once and starts
// the reload loop. Close stops it and closes the store.
func Start(ctx context.Context, cfg store.Config, log *slog.Logger, reg prometheus.Registerer) (*Service, error) {
	db, err := store.Open(ctx, cfg, Party, Migrations())
	if err != nil {
		return nil, fmt.Errorf("promo: %w", err)
	}
	e, err := Open(ctx, Config{DB: db, Log: log, Writer: store.WriterConfig{Registerer: reg}})
	if err != nil {
		db.Close()
		return nil, err
	}
	if _, err := e.SeedDefaults(ctx); err != nil {
		e.Close()
		db.Close()
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	s := &Service{Engine: e, db: db, cancel: cancel, done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); e.Run(rctx, DefaultRefreshInterval) }()
	// Reservations stranded by a crash between reserve and record are given
	// back (sweep.go).
	go func() { defer wg.Done(); e.RunSweeper(rctx, DefaultSweepInterval, DefaultSweepAge) }()
	go func() { wg.Wait(); close(s.done) }()
	return s, nil
}

// DB is the engine's store.
func (s *Service) DB() *store.DB { return s.db }

// Close stops the reload loop and the writer and closes the store.
func (s *Service) Close() error {
	s.cancel()
	<-s.done
	err := s.Engine.Close()
	if cerr := s.db.Close(); err == nil {
		err = cerr
	}
	return err
}
