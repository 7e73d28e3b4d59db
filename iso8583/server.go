package iso8583

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Handler answers one request. It runs concurrently with other requests of
// the same connection (up to ServerConfig.MaxConcurrentPerConn). ctx is
// cancelled when the server closes; handlers apply their own deadlines (an
// answer for a connection that closed meanwhile is dropped). It returns the response (nil: no answer is sent, as for an
// advice the handler wants to leave unanswered), or an error, which the
// server answers with DE39 96 (system malfunction) echoing the request's
// key fields: map business declines to a DE39 yourself.
type Handler func(ctx context.Context, req *Message) (*Message, error)

// ServerConfig configures a Server. Zero values take the Default… constants.
type ServerConfig struct {
	MaxConcurrentPerConn int           // handlers running per connection; reading waits beyond it
	MaxConns             int           // connections at once; more are closed at accept
	IdleTimeout          time.Duration // a connection silent this long is closed
	WriteTimeout         time.Duration
	MaxMessageBytes      int
	Logger               *slog.Logger
	// OnServed, if set, is called after each handled request with the
	// handler's duration and error: a cheap metrics hook.
	OnServed func(d time.Duration, err error)
}

func (c *ServerConfig) defaults() {
	if c.MaxConcurrentPerConn <= 0 {
		c.MaxConcurrentPerConn = DefaultServerConcurrency
	}
	if c.MaxConns <= 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	c.MaxMessageBytes = frameLimit(c.MaxMessageBytes)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Server accepts ISO 8583 connections and runs a Handler for each request.
// It answers 0800 (sign-on, sign-off, echo) itself with 0810 DE39 00.
// Responses of a connection go through one writer goroutine that batches
// them into few syscalls.
type Server struct {
	cfg     ServerConfig
	handler Handler
	stats   linkCounters
	ctx     context.Context
	cancel  context.CancelFunc

	mu     sync.Mutex
	lns    map[net.Listener]struct{}
	conns  map[*serverConn]struct{}
	closed bool
	wg     sync.WaitGroup
}

type serverConn struct {
	conn net.Conn
	out  chan *frameBuf
	dead chan struct{}
	once sync.Once
}

func (sc *serverConn) kill(error) {
	sc.once.Do(func() {
		close(sc.dead)
		_ = sc.conn.Close()
	})
}

// NewServer returns a server running h.
func NewServer(cfg ServerConfig, h Handler) *Server {
	cfg.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{cfg: cfg, handler: h, ctx: ctx, cancel: cancel,
		lns: map[net.Listener]struct{}{}, conns: map[*serverConn]struct{}{}}
}

// Stats returns the server's counters.
func (s *Server) Stats() LinkStats { return s.stats.snapshot() }

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("iso8583: server closed")

// Serve accepts connections on ln until Close; it always returns an error
// (ErrServerClosed after Close).
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.lns[ln] = struct{}{}
	s.mu.Unlock()
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		s.serveConn(conn)
	}
}

func (s *Server) serveConn(conn net.Conn) {
	s.mu.Lock()
	if s.closed || len(s.conns) >= s.cfg.MaxConns {
		s.mu.Unlock()
		s.cfg.Logger.Warn("iso8583 server refused a connection", "remote", conn.RemoteAddr().String(), "max_conns", s.cfg.MaxConns)
		_ = conn.Close()
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	sc := &serverConn{
		conn: conn,
		out:  make(chan *frameBuf, s.cfg.MaxConcurrentPerConn+16),
		dead: make(chan struct{}),
	}
	s.conns[sc] = struct{}{}
	s.wg.Add(2)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		writeLoop(conn, sc.out, sc.dead, s.cfg.WriteTimeout, &s.stats.sent, sc.kill)
	}()
	go func() {
		defer s.wg.Done()
		s.readLoop(sc)
		s.mu.Lock()
		delete(s.conns, sc)
		s.mu.Unlock()
	}()
}

func (s *Server) readLoop(sc *serverConn) {
	defer sc.kill(nil)
	r := bufio.NewReaderSize(sc.conn, linkReadBufferBytes)
	// Handlers run on per-connection workers, started on demand up to
	// MaxConcurrentPerConn and kept for the connection's life: a worker's
	// stack has grown to the handler's depth once, where a goroutine per
	// request would grow a fresh stack every time (measurable at 50,000/s).
	work := make(chan *Message)
	var workers sync.WaitGroup
	started := 0
	defer func() {
		close(work)
		workers.Wait()
	}()
	var buf []byte
	var err error
	lastDeadline := time.Time{}
	for {
		// Refresh the idle deadline at most once a second: it is a timer
		// update, cheap but not free at 50,000 frames/s.
		if now := time.Now(); now.Sub(lastDeadline) > time.Second {
			if err := sc.conn.SetReadDeadline(now.Add(s.cfg.IdleTimeout)); err != nil {
				return
			}
			lastDeadline = now
		}
		buf, err = ReadFrame(r, buf, s.cfg.MaxMessageBytes)
		if err != nil {
			if errors.Is(err, ErrFrameTooLarge) {
				s.cfg.Logger.Warn("iso8583 server closed a connection", "remote", sc.conn.RemoteAddr().String(), "err", err)
			}
			return
		}
		s.stats.received.Add(1)
		req := &Message{}
		if err := req.Unpack(buf); err != nil {
			s.stats.bad.Add(1)
			s.cfg.Logger.Warn("iso8583 server dropped a message that does not unpack", "remote", sc.conn.RemoteAddr().String(), "err", err)
			continue
		}
		mti := req.Field(FieldMTI)
		if !isRequestMTI(mti) {
			s.stats.bad.Add(1)
			s.cfg.Logger.Warn("iso8583 server got an unexpected response", "mti", string(mti))
			continue
		}
		if isNetMgmt(mti) {
			s.send(sc, netMgmtResponse(req))
			continue
		}
		s.stats.inFlight.Add(1)
		select {
		case work <- req: // an idle worker took it
			continue
		default:
		}
		if started < s.cfg.MaxConcurrentPerConn {
			started++
			workers.Add(1)
			go s.worker(sc, req, work, &workers)
			continue
		}
		// Every worker busy: reading waits (back-pressure on the peer).
		select {
		case work <- req:
		case <-sc.dead:
			s.stats.inFlight.Add(-1)
			return
		}
	}
}

// worker handles first, then whatever the reader hands it until the
// connection's reader closes work.
func (s *Server) worker(sc *serverConn, first *Message, work <-chan *Message, wg *sync.WaitGroup) {
	defer wg.Done()
	for req := first; req != nil; req = <-work {
		s.handle(sc, req)
		s.stats.inFlight.Add(-1)
	}
}

func (s *Server) handle(sc *serverConn, req *Message) {
	start := time.Now()
	resp, err := s.callHandler(sc, req)
	if s.cfg.OnServed != nil {
		s.cfg.OnServed(time.Since(start), err)
	}
	if err != nil {
		s.stats.errors.Add(1)
		s.cfg.Logger.Error("iso8583 handler failed; answering 96", "mti", req.MTI(), "err", err)
		resp = req.Response(FieldProcessingCode, FieldAmount, FieldTransmissionTime, FieldSTAN,
			FieldAcquirerID, FieldRRN, FieldTerminalID, FieldMerchantID, FieldCurrency)
		resp.SetString(FieldResponseCode, "96")
	}
	if resp != nil {
		s.send(sc, resp)
	}
}

// callHandler runs the handler, turning a panic into an error so one bad
// message cannot take the party down.
func (s *Server) callHandler(sc *serverConn, req *Message) (resp *Message, err error) {
	defer func() {
		if p := recover(); p != nil {
			resp, err = nil, fmt.Errorf("iso8583 handler panicked: %v", p)
		}
	}()
	return s.handler(s.connCtx(sc), req)
}

// connCtx is the server's context; connections do not get their own so no
// allocation happens per request. A closed connection's late answers are
// dropped by send.
func (s *Server) connCtx(*serverConn) context.Context { return s.ctx }

func (s *Server) send(sc *serverConn, m *Message) {
	f := getFrame()
	var err error
	if f.b, err = AppendPackedFrame(f.b[:0], m, s.cfg.MaxMessageBytes); err != nil {
		putFrame(f)
		s.stats.errors.Add(1)
		s.cfg.Logger.Error("iso8583 response does not pack; not sent", "mti", m.MTI(), "err", err)
		return
	}
	select {
	case sc.out <- f:
	case <-sc.dead:
		putFrame(f)
	}
}

// Close stops accepting, closes every connection, cancels handlers' context
// and waits for the connection goroutines (and so the handlers) to finish.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for ln := range s.lns {
		_ = ln.Close()
	}
	conns := make([]*serverConn, 0, len(s.conns))
	for sc := range s.conns {
		conns = append(conns, sc)
	}
	s.mu.Unlock()
	s.cancel()
	for _, sc := range conns {
		sc.kill(nil)
	}
	s.wg.Wait()
	return nil
}
