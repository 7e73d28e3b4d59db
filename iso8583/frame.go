package iso8583

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Framing: every message on a TCP link is preceded by its length as a 2-byte
// big-endian binary number (header not counted).
const (
	// FrameHeaderBytes is the size of the length header.
	FrameHeaderBytes = 2
	// DefaultMaxMessageBytes bounds one message. Our largest legal message
	// (every field at its maximum, three LLLVARs of 999 bytes) is under 4 KiB.
	DefaultMaxMessageBytes = 8 << 10
	// maxFrameBytes is what a 2-byte header can express.
	maxFrameBytes = 0xFFFF
)

func frameLimit(maxBytes int) int {
	if maxBytes <= 0 {
		return DefaultMaxMessageBytes
	}
	return min(maxBytes, maxFrameBytes)
}

// ReadFrame reads one framed message from r into buf (reusing its capacity)
// and returns the message without header. A declared length above maxBytes
// (DefaultMaxMessageBytes if ≤ 0) is refused before anything is allocated,
// with an error wrapping ErrFrameTooLarge; the stream is then unusable. A
// stream that ends between frames returns io.EOF; inside a frame,
// io.ErrUnexpectedEOF.
func ReadFrame(r io.Reader, buf []byte, maxBytes int) ([]byte, error) {
	var hdr [FrameHeaderBytes]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return buf[:0], err
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	if limit := frameLimit(maxBytes); n > limit {
		return buf[:0], fmt.Errorf("%w: %d bytes declared, max %d", ErrFrameTooLarge, n, limit)
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return buf[:0], err
	}
	return buf, nil
}

// WriteFrame writes msg with its length header in one Write call, using
// scratch (may be nil) to build the frame; it returns scratch for reuse.
func WriteFrame(w io.Writer, msg, scratch []byte, maxBytes int) ([]byte, error) {
	frame, err := AppendFrame(scratch[:0], msg, maxBytes)
	if err != nil {
		return scratch, err
	}
	_, err = w.Write(frame)
	return frame, err
}

// AppendFrame appends the header and msg to dst.
func AppendFrame(dst, msg []byte, maxBytes int) ([]byte, error) {
	if limit := frameLimit(maxBytes); len(msg) > limit {
		return dst, fmt.Errorf("%w: %d bytes, max %d", ErrFrameTooLarge, len(msg), limit)
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(msg)))
	return append(dst, msg...), nil
}

// AppendPackedFrame packs m behind a frame header straight into dst: the
// link's write path, one buffer and no copy.
func AppendPackedFrame(dst []byte, m *Message, maxBytes int) ([]byte, error) {
	start := len(dst)
	dst = append(dst, 0, 0)
	out, err := m.AppendPack(dst)
	if err != nil {
		return dst[:start], err
	}
	n := len(out) - start - FrameHeaderBytes
	if limit := frameLimit(maxBytes); n > limit {
		return dst[:start], fmt.Errorf("%w: %d bytes, max %d", ErrFrameTooLarge, n, limit)
	}
	binary.BigEndian.PutUint16(out[start:], uint16(n))
	return out, nil
}

// Unframe returns the message inside raw if raw starts with a 2-byte length
// header matching the rest exactly, else raw itself (an unframed message).
// An ASCII MTI can never look like a matching header: "01" is 12337 bytes,
// above any frame this package writes.
func Unframe(raw []byte) []byte {
	if len(raw) >= FrameHeaderBytes && int(binary.BigEndian.Uint16(raw)) == len(raw)-FrameHeaderBytes {
		return raw[FrameHeaderBytes:]
	}
	return raw
}
