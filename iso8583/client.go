package iso8583

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mipay-oss/mipay"
)

// ClientConfig configures a Client. Zero values take the Default… constants.
type ClientConfig struct {
	Addr            string
	MaxInFlight     int           // requests awaiting an answer; Send waits for a slot
	RequestTimeout  time.Duration // per Send, from the call to the answer
	DialTimeout     time.Duration
	EchoInterval    time.Duration // 0800/301 after this long without traffic; < 0: never
	SignOn          bool          // send 0800/001 after each connect and require DE39 00
	ReconnectMin    time.Duration // first reconnect delay, doubled per failure …
	ReconnectMax    time.Duration // … up to this
	WriteTimeout    time.Duration
	MaxMessageBytes int
	Logger          *slog.Logger
	// Dial replaces net.Dialer (tests, TLS).
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// OnRoundTrip, if set, is called after each Send with its duration and
	// error (nil on an answer): a cheap metrics hook.
	OnRoundTrip func(d time.Duration, err error)
}

func (c *ClientConfig) defaults() {
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.EchoInterval == 0 {
		c.EchoInterval = DefaultEchoInterval
	}
	if c.ReconnectMin <= 0 {
		c.ReconnectMin = DefaultReconnectMin
	}
	if c.ReconnectMax < c.ReconnectMin {
		c.ReconnectMax = max(DefaultReconnectMax, c.ReconnectMin)
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	c.MaxMessageBytes = frameLimit(c.MaxMessageBytes)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Dial == nil {
		d := &net.Dialer{Timeout: c.DialTimeout}
		c.Dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
}

// Client sends requests over one TCP connection to an ISO 8583 server and
// matches answers by (MTI class, DE11, DE41), many in flight at once. It
// reconnects with bounded exponential backoff; requests in flight when a
// connection drops fail with EUNAVAILABLE (the caller decides whether to
// reverse or retry). Safe for concurrent use.
type Client struct {
	cfg   ClientConfig
	sem   chan struct{}
	stats linkCounters
	stan  atomic.Uint32 // STANs of the link's own 0800s

	mu     sync.Mutex
	cur    *clientConn   // nil while down
	up     chan struct{} // closed while cur != nil
	closed bool

	stop     chan struct{}
	runDone  chan struct{}
	lastUsed atomic.Int64 // unix nanos of the last frame in or out
}

// clientConn is one connection's state; a reconnect makes a new one.
type clientConn struct {
	client  *Client
	conn    net.Conn
	out     chan *frameBuf
	dead    chan struct{}
	once    sync.Once
	mu      sync.Mutex
	pending map[matchKey]*call
}

// call is one request awaiting its answer; pooled with its timer so a
// request allocates neither.
type call struct {
	ch    chan *Message // cap 1; nil message: connection lost
	timer *time.Timer
}

var callPool = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &call{ch: make(chan *Message, 1), timer: t}
}}

// getCall returns a call whose timer fires at deadline.
func getCall(deadline time.Time) *call {
	p := callPool.Get().(*call)
	p.timer.Reset(time.Until(deadline))
	return p
}

// putCall recycles p; the caller guarantees p is in no pending map and its
// channel is empty. Since Go 1.23 a stopped timer delivers nothing stale.
func putCall(p *call) {
	p.timer.Stop()
	callPool.Put(p)
}

// Dial starts a client for cfg.Addr. It tries to connect once within
// ctx and returns an error if that fails; afterwards it reconnects on its
// own until Close.
func Dial(ctx context.Context, cfg ClientConfig) (*Client, error) {
	cfg.defaults()
	c := &Client{
		cfg:     cfg,
		sem:     make(chan struct{}, cfg.MaxInFlight),
		up:      make(chan struct{}),
		stop:    make(chan struct{}),
		runDone: make(chan struct{}),
	}
	c.stan.Store(rand.Uint32N(1_000_000))
	cc, err := c.connect(ctx)
	if err != nil {
		return nil, mipay.WrapError(mipay.EUNAVAILABLE, err, "iso8583 link to %s is down", cfg.Addr)
	}
	go c.run(cc)
	return c, nil
}

// Stats returns the client's counters.
func (c *Client) Stats() LinkStats { return c.stats.snapshot() }

// Close closes the connection, fails requests in flight and stops
// reconnecting.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.stop)
	cc := c.cur
	if cc == nil {
		close(c.up) // wakes Sends waiting for a reconnect; they see closed
	}
	c.mu.Unlock()
	if cc != nil {
		cc.kill(errors.New("client closed"))
	}
	<-c.runDone
	return nil
}

// connect dials, starts the connection's goroutines and signs on.
func (c *Client) connect(ctx context.Context) (*clientConn, error) {
	dctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	conn, err := c.cfg.Dial(dctx, c.cfg.Addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	cc := &clientConn{
		client:  c,
		conn:    conn,
		out:     make(chan *frameBuf, c.cfg.MaxInFlight+16),
		dead:    make(chan struct{}),
		pending: make(map[matchKey]*call, c.cfg.MaxInFlight),
	}
	go writeLoop(conn, cc.out, cc.dead, c.cfg.WriteTimeout, &c.stats.sent, cc.kill)
	go c.readLoop(cc)
	if c.cfg.SignOn {
		resp, err := c.roundTrip(ctx, cc, c.netMgmt(NetMgmtSignOn), time.Now().Add(c.cfg.RequestTimeout))
		if err != nil {
			cc.kill(err)
			return nil, err
		}
		if resp.String(FieldResponseCode) != "00" {
			cc.kill(errors.New("sign-on refused"))
			return nil, errors.New("sign-on refused with DE39 " + resp.String(FieldResponseCode))
		}
	}
	if !c.setCurrent(cc) {
		cc.kill(errors.New("client closed"))
		return nil, errors.New("client closed")
	}
	return cc, nil
}

// setCurrent publishes cc unless the client was closed meanwhile.
func (c *Client) setCurrent(cc *clientConn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.cur = cc
	close(c.up)
	return true
}

// run watches the current connection: echoes when idle, reconnects when it
// dies, until Close.
func (c *Client) run(cc *clientConn) {
	defer close(c.runDone)
	backoff := c.cfg.ReconnectMin
	for {
		c.watch(cc)
		c.mu.Lock()
		closed := c.closed
		c.mu.Unlock()
		if closed {
			return
		}
		for {
			// Jitter keeps many clients from reconnecting in lockstep.
			d := backoff/2 + rand.N(backoff/2+1)
			select {
			case <-c.stop:
				return
			case <-time.After(d):
			}
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				select {
				case <-c.stop:
					cancel()
				case <-ctx.Done():
				}
			}()
			next, err := c.connect(ctx)
			cancel()
			if err == nil {
				c.stats.reconnects.Add(1)
				c.cfg.Logger.Info("iso8583 link reconnected", "addr", c.cfg.Addr)
				cc = next
				backoff = c.cfg.ReconnectMin
				break
			}
			c.cfg.Logger.Warn("iso8583 reconnect failed", "addr", c.cfg.Addr, "err", err)
			backoff = min(backoff*2, c.cfg.ReconnectMax)
		}
	}
}

// watch returns when cc dies; meanwhile it echoes after EchoInterval of
// silence and kills the connection if an echo is not answered.
func (c *Client) watch(cc *clientConn) {
	if c.cfg.EchoInterval < 0 {
		<-cc.dead
		return
	}
	c.lastUsed.Store(time.Now().UnixNano())
	t := time.NewTicker(c.cfg.EchoInterval / 2)
	defer t.Stop()
	for {
		select {
		case <-cc.dead:
			return
		case <-t.C:
			if time.Since(time.Unix(0, c.lastUsed.Load())) < c.cfg.EchoInterval {
				continue
			}
			resp, err := c.roundTrip(context.Background(), cc, c.netMgmt(NetMgmtEcho), time.Now().Add(c.cfg.RequestTimeout))
			if err == nil && resp.String(FieldResponseCode) != "00" {
				err = errors.New("echo refused")
			}
			if err != nil {
				c.cfg.Logger.Warn("iso8583 echo failed; reconnecting", "addr", c.cfg.Addr, "err", err)
				cc.kill(err)
			}
		}
	}
}

func (c *Client) netMgmt(code string) *Message {
	m := NewMessage(MTINetMgmtRequest)
	m.SetString(FieldTransmissionTime, time.Now().UTC().Format("0102150405"))
	m.SetString(FieldSTAN, FormatSTAN(c.stan.Add(1)))
	m.SetString(FieldNetworkMgmtCode, code)
	return m
}

// kill closes the connection and fails its pending requests. It first
// withdraws cc as the client's current connection, so whoever sees cc.dead
// closed also sees the client waiting for the next one.
func (cc *clientConn) kill(err error) {
	cc.once.Do(func() {
		c := cc.client
		c.mu.Lock()
		if c.cur == cc {
			c.cur = nil
			c.up = make(chan struct{})
		}
		c.mu.Unlock()
		close(cc.dead)
		_ = cc.conn.Close()
		cc.mu.Lock()
		for k, p := range cc.pending {
			delete(cc.pending, k)
			p.ch <- nil
		}
		cc.mu.Unlock()
	})
}

func (c *Client) readLoop(cc *clientConn) {
	r := bufio.NewReaderSize(cc.conn, linkReadBufferBytes)
	var buf []byte
	var err error
	for {
		buf, err = ReadFrame(r, buf, c.cfg.MaxMessageBytes)
		if err != nil {
			cc.kill(err)
			return
		}
		c.stats.received.Add(1)
		c.lastUsed.Store(time.Now().UnixNano())
		m := &Message{}
		if err := m.Unpack(buf); err != nil {
			c.stats.bad.Add(1)
			c.cfg.Logger.Warn("iso8583 link dropped a message that does not unpack", "addr", c.cfg.Addr, "err", err)
			continue
		}
		mti := m.Field(FieldMTI)
		if isRequestMTI(mti) {
			if isNetMgmt(mti) {
				c.answer(cc, netMgmtResponse(m))
			} else {
				c.stats.bad.Add(1)
				c.cfg.Logger.Warn("iso8583 client got a request it does not serve", "mti", string(mti))
			}
			continue
		}
		k, ok := keyOf(m)
		var p *call
		if ok {
			cc.mu.Lock()
			p = cc.pending[k]
			delete(cc.pending, k)
			cc.mu.Unlock()
		}
		if p == nil {
			c.stats.late.Add(1)
			continue
		}
		p.ch <- m
	}
}

func (c *Client) answer(cc *clientConn, m *Message) {
	f := getFrame()
	var err error
	if f.b, err = AppendPackedFrame(f.b[:0], m, c.cfg.MaxMessageBytes); err != nil {
		putFrame(f)
		return
	}
	select {
	case cc.out <- f:
	case <-cc.dead:
		putFrame(f)
	}
}

// Send sends req and returns its answer. req must carry DE11 (and DE41 for
// terminal traffic), and the answer must echo both as sent; no other
// request with the same MTI class, STAN and terminal may be in flight. req
// is packed before Send returns and may be reused afterwards. Errors are *mipay.Error: ETIMEOUT (no answer
// within RequestTimeout or ctx), EUNAVAILABLE (link down), ECONFLICT
// (same key in flight), EINVALID (req does not pack).
func (c *Client) Send(ctx context.Context, req *Message) (*Message, error) {
	start := time.Now()
	resp, err := c.send(ctx, req, start)
	if c.cfg.OnRoundTrip != nil {
		c.cfg.OnRoundTrip(time.Since(start), err)
	}
	return resp, err
}

func (c *Client) send(ctx context.Context, req *Message, start time.Time) (*Message, error) {
	deadline := start.Add(c.cfg.RequestTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	p := getCall(deadline)
	defer putCall(p)
	timer := p.timer
	select {
	case c.sem <- struct{}{}:
	default:
		select {
		case c.sem <- struct{}{}:
		case <-timer.C:
			c.stats.timeouts.Add(1)
			return nil, mipay.Errorf(mipay.ETIMEOUT, "iso8583 request timed out waiting for a free slot")
		case <-ctx.Done():
			return nil, mipay.WrapError(mipay.ETIMEOUT, ctx.Err(), "iso8583 request cancelled")
		}
	}
	defer func() { <-c.sem }()

	// Wait for a live connection (reconnecting) within the same deadline.
	for {
		c.mu.Lock()
		cc, up, closed := c.cur, c.up, c.closed
		c.mu.Unlock()
		if closed {
			return nil, mipay.Errorf(mipay.EUNAVAILABLE, "iso8583 link closed")
		}
		if cc != nil {
			select {
			case <-cc.dead:
				continue // already withdrawn: the next read sees the new state
			default:
			}
			return c.roundTripCall(ctx, cc, req, p)
		}
		select {
		case <-up:
		case <-timer.C:
			c.stats.timeouts.Add(1)
			return nil, mipay.Errorf(mipay.EUNAVAILABLE, "iso8583 link to %s is down", c.cfg.Addr)
		case <-ctx.Done():
			return nil, mipay.WrapError(mipay.ETIMEOUT, ctx.Err(), "iso8583 request cancelled")
		}
	}
}

// roundTrip is Send on a given connection with its own deadline (sign-on,
// echo).
func (c *Client) roundTrip(ctx context.Context, cc *clientConn, req *Message, deadline time.Time) (*Message, error) {
	p := getCall(deadline)
	defer putCall(p)
	return c.roundTripCall(ctx, cc, req, p)
}

// roundTripCall sends req on cc and waits for the answer until p's timer or
// ctx. On return p is in no pending map and its channel is empty.
func (c *Client) roundTripCall(ctx context.Context, cc *clientConn, req *Message, p *call) (*Message, error) {
	k, ok := keyOf(req)
	if !ok || !isRequestMTI(req.Field(FieldMTI)) {
		return nil, mipay.Errorf(mipay.EINVALID, "iso8583 request needs a request MTI and a 6-digit STAN (field 11)")
	}
	f := getFrame()
	var err error
	if f.b, err = AppendPackedFrame(f.b[:0], req, c.cfg.MaxMessageBytes); err != nil {
		putFrame(f)
		return nil, AsMipayError(err)
	}
	cc.mu.Lock()
	select {
	case <-cc.dead:
		cc.mu.Unlock()
		putFrame(f)
		return nil, mipay.Errorf(mipay.EUNAVAILABLE, "iso8583 link to %s is down", c.cfg.Addr)
	default:
	}
	if _, dup := cc.pending[k]; dup {
		cc.mu.Unlock()
		putFrame(f)
		return nil, mipay.Errorf(mipay.ECONFLICT, "iso8583 request with this STAN and terminal already in flight")
	}
	cc.pending[k] = p
	cc.mu.Unlock()
	c.stats.inFlight.Add(1)
	defer c.stats.inFlight.Add(-1)
	c.lastUsed.Store(time.Now().UnixNano())

	// out has room for every slot, so this only waits if the writer died.
	select {
	case cc.out <- f:
	case <-cc.dead:
		putFrame(f)
	}

	select {
	case m := <-p.ch:
		if m == nil {
			return nil, mipay.Errorf(mipay.EUNAVAILABLE, "iso8583 link to %s lost with the request in flight", c.cfg.Addr)
		}
		return m, nil
	case <-p.timer.C:
		err = mipay.Errorf(mipay.ETIMEOUT, "iso8583 request timed out")
		c.stats.timeouts.Add(1)
	case <-ctx.Done():
		err = mipay.WrapError(mipay.ETIMEOUT, ctx.Err(), "iso8583 request cancelled")
	}
	// Take the call back unless the reader (or kill) already took it; then
	// its message is on the way and must be drained before reuse.
	cc.mu.Lock()
	mine := cc.pending[k] == p
	if mine {
		delete(cc.pending, k)
	}
	cc.mu.Unlock()
	if !mine {
		<-p.ch
	}
	return nil, err
}
