package iso8583

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mipay-oss/mipay"
)

// MustServe starts a server for h on a loopback port and closes it with the test.
func MustServe(tb testing.TB, cfg ServerConfig, h Handler) (*Server, string) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := NewServer(cfg, h)
	go func() { _ = s.Serve(ln) }()
	tb.Cleanup(func() { _ = s.Close() })
	return s, ln.Addr().String()
}

// MustDial connects a client and closes it with the test.
func MustDial(tb testing.TB, cfg ClientConfig) *Client {
	tb.Helper()
	c, err := Dial(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// echoHandler answers every request with DE39 00 and the request's fields.
func echoHandler(_ context.Context, req *Message) (*Message, error) {
	resp := req.Response(FieldPAN, FieldProcessingCode, FieldAmount, FieldTransmissionTime, FieldSTAN,
		FieldRRN, FieldTerminalID, FieldMerchantID, FieldCurrency, FieldICC)
	resp.SetString(FieldResponseCode, "00")
	return resp, nil
}

func request(tb testing.TB, stan uint32, terminal string) *Message {
	tb.Helper()
	req := sample0200(tb)
	req.STAN = FormatSTAN(stan)
	req.TerminalID = terminal
	m := &Message{}
	if err := m.Marshal(req); err != nil {
		tb.Fatal(err)
	}
	return m
}

func TestLinkMatchesOutOfOrderAnswers(t *testing.T) {
	_, addr := MustServe(t, ServerConfig{}, func(ctx context.Context, req *Message) (*Message, error) {
		time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond) // answers overtake each other
		return echoHandler(ctx, req)
	})
	c := MustDial(t, ClientConfig{Addr: addr, MaxInFlight: 64})
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for i := range 400 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Same STAN on two terminals: the terminal id tells them apart.
			term := []string{"TERM0001", "TERM0002"}[i%2]
			req := request(t, uint32(i/2), term)
			resp, err := c.Send(context.Background(), req)
			if err != nil {
				errs <- err
				return
			}
			if resp.MTI() != "0210" || resp.String(FieldSTAN) != req.String(FieldSTAN) || resp.String(FieldTerminalID) != term {
				errs <- errors.New("answer matched to the wrong request")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestLinkTimeoutAndLateAnswer(t *testing.T) {
	release := make(chan struct{})
	_, addr := MustServe(t, ServerConfig{}, func(ctx context.Context, req *Message) (*Message, error) {
		<-release
		return echoHandler(ctx, req)
	})
	c := MustDial(t, ClientConfig{Addr: addr, RequestTimeout: 50 * time.Millisecond})
	_, err := c.Send(context.Background(), request(t, 1, "TERM0001"))
	if mipay.ErrorCode(err) != mipay.ETIMEOUT {
		t.Fatalf("err = %v, want timeout", err)
	}
	close(release)
	waitFor(t, func() bool { return c.Stats().Late == 1 })
	// The key is free again: the same STAN can be sent and answered.
	if _, err := c.Send(context.Background(), request(t, 1, "TERM0001")); err != nil {
		t.Fatal(err)
	}
}

func TestLinkBoundsInFlight(t *testing.T) {
	release := make(chan struct{})
	var running atomic.Int32
	_, addr := MustServe(t, ServerConfig{}, func(ctx context.Context, req *Message) (*Message, error) {
		running.Add(1)
		<-release
		return echoHandler(ctx, req)
	})
	c := MustDial(t, ClientConfig{Addr: addr, MaxInFlight: 2, RequestTimeout: 2 * time.Second})
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Send(context.Background(), request(t, uint32(i), "TERM0001")); err != nil {
				t.Error(err)
			}
		}()
	}
	waitFor(t, func() bool { return running.Load() == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Send(ctx, request(t, 3, "TERM0001")); mipay.ErrorCode(err) != mipay.ETIMEOUT {
		t.Fatalf("third request: %v, want it to wait for a slot and time out", err)
	}
	if running.Load() != 2 {
		t.Fatal("third request reached the server past the bound")
	}
	close(release)
	wg.Wait()
}

func TestLinkDuplicateKeyRefused(t *testing.T) {
	release := make(chan struct{})
	_, addr := MustServe(t, ServerConfig{}, func(ctx context.Context, req *Message) (*Message, error) {
		<-release
		return echoHandler(ctx, req)
	})
	c := MustDial(t, ClientConfig{Addr: addr})
	done := make(chan error)
	go func() {
		_, err := c.Send(context.Background(), request(t, 7, "TERM0001"))
		done <- err
	}()
	waitFor(t, func() bool { return c.Stats().InFlight == 1 })
	if _, err := c.Send(context.Background(), request(t, 7, "TERM0001")); mipay.ErrorCode(err) != mipay.ECONFLICT {
		t.Fatalf("err = %v, want conflict", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestLinkHandlerErrorAnswers96(t *testing.T) {
	_, addr := MustServe(t, ServerConfig{}, func(context.Context, *Message) (*Message, error) {
		return nil, errors.New("ledger down")
	})
	c := MustDial(t, ClientConfig{Addr: addr})
	resp, err := c.Send(context.Background(), request(t, 5, "TERM0001"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.String(FieldResponseCode) != "96" || resp.String(FieldSTAN) != "000005" {
		t.Fatalf("answer %s DE39 %s", resp.MTI(), resp.String(FieldResponseCode))
	}
}

func TestLinkSignOnAndEcho(t *testing.T) {
	var handled atomic.Int32
	s, addr := MustServe(t, ServerConfig{}, func(ctx context.Context, req *Message) (*Message, error) {
		handled.Add(1)
		return echoHandler(ctx, req)
	})
	c := MustDial(t, ClientConfig{Addr: addr, SignOn: true, EchoInterval: 20 * time.Millisecond})
	// Sign-on plus at least two idle echoes, all answered by the server
	// itself, none reaching the handler.
	waitFor(t, func() bool { return s.Stats().Received >= 3 && c.Stats().Received >= 3 })
	if handled.Load() != 0 {
		t.Fatal("0800 reached the handler")
	}
	if c.Stats().Timeouts != 0 {
		t.Fatal("an echo timed out")
	}
}

func TestLinkClientAnswersServerEcho(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan *Message, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		echo := NewMessage(MTINetMgmtRequest)
		echo.SetString(FieldSTAN, "000042")
		echo.SetString(FieldNetworkMgmtCode, NetMgmtEcho)
		frame, err := AppendPackedFrame(nil, echo, 0)
		if err != nil {
			return
		}
		if _, err := conn.Write(frame); err != nil {
			return
		}
		b, err := ReadFrame(conn, nil, 0)
		if err != nil {
			return
		}
		m := &Message{}
		if m.Unpack(b) == nil {
			got <- m
		}
	}()
	MustDial(t, ClientConfig{Addr: ln.Addr().String(), EchoInterval: -1})
	select {
	case m := <-got:
		if m.MTI() != "0810" || m.String(FieldSTAN) != "000042" || m.String(FieldResponseCode) != "00" {
			t.Fatalf("answer %s STAN %s DE39 %s", m.MTI(), m.String(FieldSTAN), m.String(FieldResponseCode))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("client did not answer the 0800")
	}
}

func TestLinkReconnects(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	block := make(chan struct{})
	s1 := NewServer(ServerConfig{}, func(ctx context.Context, req *Message) (*Message, error) {
		<-block
		return echoHandler(ctx, req)
	})
	go func() { _ = s1.Serve(ln) }()
	c := MustDial(t, ClientConfig{Addr: addr, ReconnectMin: 5 * time.Millisecond, ReconnectMax: 20 * time.Millisecond, RequestTimeout: 3 * time.Second})

	inFlight := make(chan error, 1)
	go func() {
		_, err := c.Send(context.Background(), request(t, 1, "TERM0001"))
		inFlight <- err
	}()
	waitFor(t, func() bool { return c.Stats().InFlight == 1 })
	close(block)
	_ = s1.Close() // drops the connection with the request in flight
	if err := <-inFlight; err != nil && mipay.ErrorCode(err) != mipay.EUNAVAILABLE {
		t.Fatalf("in-flight request: %v, want an answer or unavailable", err)
	}
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s not reusable: %v", addr, err)
	}
	s2 := NewServer(ServerConfig{}, echoHandler)
	go func() { _ = s2.Serve(ln2) }()
	defer s2.Close()
	// A request sent before the client has seen the old connection drop
	// fails as lost in flight (the caller reverses it); wait until the
	// link has reconnected to the new server.
	waitFor(t, func() bool { return c.Stats().Reconnects >= 1 })
	resp, err := c.Send(context.Background(), request(t, 2, "TERM0001"))
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if resp.String(FieldResponseCode) != "00" || c.Stats().Reconnects < 1 {
		t.Fatalf("DE39 %s reconnects %d", resp.String(FieldResponseCode), c.Stats().Reconnects)
	}
}

func TestLinkServerDropsGarbageAndOversize(t *testing.T) {
	s, addr := MustServe(t, ServerConfig{MaxMessageBytes: 1024}, echoHandler)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	garbage, _ := AppendFrame(nil, []byte("0200ZZ"), 0)
	if _, err := conn.Write(garbage); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return s.Stats().BadMessages == 1 })
	if _, err := conn.Write([]byte{0x7F, 0xFF}); err != nil { // declares 32767 bytes
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection stayed open after an oversize frame")
	}
}

func waitFor(tb testing.TB, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatal("condition not reached in 5s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestLinkHandlerPanicAnswers96(t *testing.T) {
	_, addr := MustServe(t, ServerConfig{}, func(context.Context, *Message) (*Message, error) {
		panic("bug")
	})
	c := MustDial(t, ClientConfig{Addr: addr})
	resp, err := c.Send(context.Background(), request(t, 6, "TERM0001"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.String(FieldResponseCode) != "96" {
		t.Fatalf("DE39 %s, want 96", resp.String(FieldResponseCode))
	}
}

func TestLinkCloseWakesWaiters(t *testing.T) {
	s, addr := MustServe(t, ServerConfig{}, echoHandler)
	c := MustDial(t, ClientConfig{Addr: addr, ReconnectMin: time.Hour, ReconnectMax: time.Hour, RequestTimeout: time.Minute})
	_ = s.Close()
	waitFor(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.cur == nil
	})
	done := make(chan error, 1)
	go func() {
		_, err := c.Send(context.Background(), request(t, 1, "TERM0001"))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	_ = c.Close()
	select {
	case err := <-done:
		if mipay.ErrorCode(err) != mipay.EUNAVAILABLE {
			t.Fatalf("err = %v, want unavailable", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Send still waiting after Close")
	}
}

func TestServerBoundsConnectionsAndIdle(t *testing.T) {
	_, addr := MustServe(t, ServerConfig{MaxConns: 1, IdleTimeout: 100 * time.Millisecond}, echoHandler)
	first, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	// Make sure the first connection is registered before the second one.
	echo := NewMessage(MTINetMgmtRequest)
	echo.SetString(FieldSTAN, "000001")
	echo.SetString(FieldNetworkMgmtCode, NetMgmtEcho)
	frame, err := AppendPackedFrame(nil, echo, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.Write(frame); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFrame(first, nil, 0); err != nil {
		t.Fatalf("echo on the first connection: %v", err)
	}
	second, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	_ = second.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := second.Read(make([]byte, 1)); err == nil {
		t.Fatal("second connection accepted beyond MaxConns")
	}
	// The first one, now silent, is closed after IdleTimeout.
	_ = first.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if _, err := first.Read(make([]byte, 1)); err == nil {
		t.Fatal("idle connection kept open")
	}
	if time.Since(start) > 4*time.Second {
		t.Fatal("idle connection closed by the test deadline, not the server")
	}
}

func TestServerBoundsHandlersPerConnection(t *testing.T) {
	release := make(chan struct{})
	var running, peak atomic.Int32
	_, addr := MustServe(t, ServerConfig{MaxConcurrentPerConn: 2}, func(ctx context.Context, req *Message) (*Message, error) {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-release
		running.Add(-1)
		return echoHandler(ctx, req)
	})
	c := MustDial(t, ClientConfig{Addr: addr})
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Send(context.Background(), request(t, uint32(i), "TERM0001")); err != nil {
				t.Error(err)
			}
		}()
	}
	waitFor(t, func() bool { return running.Load() == 2 })
	time.Sleep(20 * time.Millisecond) // give a third handler the chance to start wrongly
	if peak.Load() != 2 {
		t.Fatalf("%d handlers ran at once, bound is 2", peak.Load())
	}
	close(release)
	wg.Wait()
}
