// Package nfc is the contactless link between a terminal (POS or transit
// gate) and a phone, spoken with the vsmartcard virtual smart card protocol
// (the protocol between Debian's vsmartcard-vpcd pcscd driver and a virtual
// card, vpicc): the reader side listens (vpcd's default port is 35963), the
// card side connects — that connection is the tap.
//
// Every message is a 2-byte big-endian length and its bytes. A 1-byte
// message from the reader is a control: 00 power off, 01 power on, 02 reset,
// 04 get ATR (the card answers its ATR; the others get no answer). Any
// longer message is a command APDU, answered by one response APDU.
//
// Because this is vpcd's protocol, the emulated phone can be read by pcscd
// with the vsmartcard-vpcd driver and any PC/SC program (opensc-tool,
// pcsc_scan, pyscard): `mipay phone pay --reader 127.0.0.1:35963`.
package nfc

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// DefaultReaderAddr is vpcd's default listening address.
const DefaultReaderAddr = "127.0.0.1:35963"

// Control messages from the reader.
const (
	CtrlPowerOff byte = 0x00
	CtrlPowerOn  byte = 0x01
	CtrlReset    byte = 0x02
	CtrlGetATR   byte = 0x04
)

// Limits.
const (
	// MaxMessageBytes bounds one message: the 2-byte length cannot say more,
	// and an extended-length APDU fits.
	MaxMessageBytes = 0xFFFF
	// DefaultAPDUTimeout is how long a reader waits for a card's answer; a
	// phone that moved out of the field does not answer at all.
	DefaultAPDUTimeout = 2 * time.Second
)

// ContactlessATR is the ATR the phone's card emulation presents: the PC/SC
// part 3 pseudo-ATR of an ISO 14443-4 card with no historical bytes
// (3B 80 80 01 and TCK 01).
var ContactlessATR = []byte{0x3B, 0x80, 0x80, 0x01, 0x01}

// ErrRemoved is returned when the other side closed the link (the phone left
// the field, or the reader ended the session).
var ErrRemoved = errors.New("nfc: link closed")

// ReadMessage reads one length-prefixed message into buf (grown when short).
func ReadMessage(r io.Reader, buf []byte) ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
			return nil, ErrRemoved
		}
		return nil, fmt.Errorf("nfc: read length: %w", err)
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	if n == 0 {
		return nil, errors.New("nfc: empty message")
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("nfc: message of %d bytes cut short: %w", n, ErrRemoved)
	}
	return buf, nil
}

// WriteMessage writes one length-prefixed message.
func WriteMessage(w io.Writer, msg []byte) error {
	if len(msg) == 0 || len(msg) > MaxMessageBytes {
		return fmt.Errorf("nfc: message of %d bytes (want 1..%d)", len(msg), MaxMessageBytes)
	}
	var hdr [2]byte
	binary.BigEndian.PutUint16(hdr[:], uint16(len(msg)))
	if _, err := w.Write(append(hdr[:], msg...)); err != nil {
		return fmt.Errorf("nfc: write: %w", err)
	}
	return nil
}

// Card is what the phone's NFC controller routes the reader's commands to
// (the secure element).
type Card interface {
	// Transmit answers one command APDU with a response APDU.
	Transmit(apdu []byte) []byte
	// Reset ends the card session (field off, reset).
	Reset()
}

// Tap connects a card to the reader at addr and serves it until the reader
// closes the link or ctx ends. It returns nil when the reader ended the
// session normally (closed the connection).
func Tap(ctx context.Context, addr string, card Card) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("nfc: no reader at %s: %w", addr, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	return serveCard(conn, card)
}

func serveCard(conn io.ReadWriter, card Card) error {
	r := bufio.NewReader(conn)
	buf := make([]byte, 0, 512)
	defer card.Reset()
	for {
		msg, err := ReadMessage(r, buf)
		if errors.Is(err, ErrRemoved) {
			return nil
		}
		if err != nil {
			return err
		}
		buf = msg[:0]
		if len(msg) == 1 {
			switch msg[0] {
			case CtrlGetATR:
				if err := WriteMessage(conn, ContactlessATR); err != nil {
					return err
				}
			case CtrlPowerOff, CtrlReset:
				card.Reset()
			case CtrlPowerOn:
			default:
				// Unknown controls get no answer, as vpicc does.
			}
			continue
		}
		if err := WriteMessage(conn, card.Transmit(msg)); err != nil {
			return err
		}
	}
}
