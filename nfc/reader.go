package nfc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// Reader is the terminal side: it listens, and each accepted connection is
// a card in the field.
type Reader struct {
	ln      net.Listener
	timeout time.Duration
}

// Listen starts a reader on addr ("127.0.0.1:35963"; port 0 picks one).
func Listen(addr string) (*Reader, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("nfc: reader cannot listen on %s (is another terminal using it? pick another --listen): %w", addr, err)
	}
	return &Reader{ln: ln, timeout: DefaultAPDUTimeout}, nil
}

// Addr is where the reader listens.
func (r *Reader) Addr() string { return r.ln.Addr().String() }

// Close stops listening.
func (r *Reader) Close() error { return r.ln.Close() }

// Wait blocks until a card taps (connects), or ctx ends. The card is powered
// on and its ATR read.
func (r *Reader) Wait(ctx context.Context) (*Session, error) {
	stop := context.AfterFunc(ctx, func() { r.ln.Close() })
	defer stop()
	conn, err := r.ln.Accept()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("nfc: accept: %w", err)
	}
	s := &Session{conn: conn, r: bufio.NewReader(conn), timeout: r.timeout}
	if err := s.control(CtrlPowerOn); err != nil {
		conn.Close()
		return nil, err
	}
	atr, err := s.exchange(ctx, []byte{CtrlGetATR})
	if err != nil {
		conn.Close()
		return nil, err
	}
	s.ATR = append([]byte(nil), atr...)
	return s, nil
}

// Session is one card in the field.
type Session struct {
	conn    net.Conn
	r       *bufio.Reader
	timeout time.Duration
	buf     []byte
	ATR     []byte
}

func (s *Session) control(c byte) error {
	_ = s.conn.SetWriteDeadline(time.Now().Add(s.timeout))
	return WriteMessage(s.conn, []byte{c})
}

func (s *Session) exchange(ctx context.Context, msg []byte) ([]byte, error) {
	deadline := time.Now().Add(s.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = s.conn.SetDeadline(deadline)
	if err := WriteMessage(s.conn, msg); err != nil {
		return nil, err
	}
	resp, err := ReadMessage(s.r, s.buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, fmt.Errorf("nfc: card did not answer within %v: %w", s.timeout, ErrRemoved)
		}
		return nil, err
	}
	s.buf = resp[:0]
	return resp, nil
}

// Transmit sends a command APDU and returns the card's response APDU (a copy).
func (s *Session) Transmit(ctx context.Context, apdu []byte) ([]byte, error) {
	if len(apdu) < 4 {
		return nil, fmt.Errorf("nfc: command APDU of %d bytes (want at least 4)", len(apdu))
	}
	resp, err := s.exchange(ctx, apdu)
	if err != nil {
		return nil, err
	}
	if len(resp) < 2 {
		return nil, fmt.Errorf("nfc: response of %d bytes has no status word", len(resp))
	}
	return append([]byte(nil), resp...), nil
}

// Close powers the card off and ends the session (the phone leaves the field).
func (s *Session) Close() error {
	_ = s.control(CtrlPowerOff)
	return s.conn.Close()
}
