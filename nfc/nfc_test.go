package nfc

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"
)

type echoCard struct {
	mu     sync.Mutex
	resets int
}

func (c *echoCard) Transmit(apdu []byte) []byte {
	return append(append([]byte(nil), apdu...), 0x90, 0x00)
}
func (c *echoCard) Reset() { c.mu.Lock(); c.resets++; c.mu.Unlock() }

func TestTap(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	card := &echoCard{}
	done := make(chan error, 1)
	go func() { done <- Tap(ctx, r.Addr(), card) }()
	s, err := r.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.ATR, ContactlessATR) {
		t.Fatalf("ATR % X", s.ATR)
	}
	for i := 0; i < 3; i++ {
		cmd := []byte{0x00, 0xA4, 0x04, 0x00, byte(i)}
		resp, err := s.Transmit(ctx, cmd)
		if err != nil || !bytes.Equal(resp, append(cmd, 0x90, 0x00)) {
			t.Fatalf("transmit %d: % X %v", i, resp, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("tap ended with %v", err)
	}
	if card.resets == 0 {
		t.Fatal("card not reset when the field went off")
	}
}

func TestNoReader(t *testing.T) {
	r, _ := Listen("127.0.0.1:0")
	addr := r.Addr()
	r.Close()
	if err := Tap(context.Background(), addr, &echoCard{}); err == nil {
		t.Fatal("tapped a reader that is not there")
	}
}

func TestCardSilent(t *testing.T) {
	ctx := context.Background()
	r, _ := Listen("127.0.0.1:0")
	defer r.Close()
	r.timeout = 100 * time.Millisecond
	go func() {
		// A card that connects and never answers the ATR request.
		conn, err := dialRaw(r.Addr())
		if err == nil {
			time.Sleep(time.Second)
			conn.Close()
		}
	}()
	if _, err := r.Wait(ctx); err == nil {
		t.Fatal("a silent card gave a session")
	}
}

func FuzzReadMessage(f *testing.F) {
	f.Add([]byte{0x00, 0x01, 0x04})
	f.Add([]byte{0xFF, 0xFF, 0x00})
	f.Add([]byte{0x00, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		msg, err := ReadMessage(bytes.NewReader(b), nil)
		if err == nil && (len(msg) == 0 || len(msg) > len(b)-2) {
			t.Fatalf("message of %d bytes from %d input bytes", len(msg), len(b))
		}
	})
}
