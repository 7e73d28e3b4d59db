package iso8583

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func seedMessages(f *testing.F) {
	f.Helper()
	for _, v := range []any{
		sample0200(f),
		&AuthResponse{MTI: "0210", STAN: "000123", TerminalID: "QP000001", ResponseCode: "00", ICC: AppendTLV(nil, TagIssuerAuthData, []byte{1, 2, 3, 4, 5, 6, 7, 8})},
		&Reversal{MTI: "0400", STAN: "000124", OriginalData: "020000012311260130000004802000000000000000"},
		&NetMgmt{MTI: "0800", STAN: "000001", NetworkMgmtCode: NetMgmtEcho},
		&AuthRequest{MTI: "0100", STAN: "000002", PINBlock: []byte{1, 2, 3, 4, 5, 6, 7, 8}, TokenData: "01016625094123456789004001V"},
	} {
		b, err := Pack(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("0200" + "80000000000000000000000000000000" + "00000000000000000000000000000000"))
	f.Add([]byte("0200" + "40000000000000000000000000000000" + "+5" + "12345"))
	f.Add([]byte("0200" + "0000000000000020" + "0000000000000000" + "999"))
}

// FuzzUnpackEquivalence: the fast codec and moov-io with Spec agree on every
// input (same fields and repack, or both refuse), and nothing panics.
func FuzzUnpackEquivalence(f *testing.F) {
	seedMessages(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := compareUnpack(b); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzUnpack: the fast codec alone (as the link and Describe run it): no
// panic, a bounded buffer, an accepted message repacks to its input modulo
// hex case and length-prefix spelling, and Describe never shows a full PAN.
func FuzzUnpack(f *testing.F) {
	seedMessages(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		m := &Message{}
		n, err := m.UnpackPrefix(b)
		if cap(m.buf) > 3*len(b)+512 {
			t.Fatalf("buffer %d for %d input bytes", cap(m.buf), len(b))
		}
		if err != nil {
			return
		}
		out, err := m.Pack()
		if err != nil {
			t.Fatalf("accepted message does not repack: %v", err)
		}
		again := &Message{}
		if err := again.Unpack(out); err != nil {
			t.Fatalf("repacked message does not unpack: %v", err)
		}
		if out2, _ := again.Pack(); !bytes.Equal(out, out2) {
			t.Fatal("pack is not stable")
		}
		s, err := Describe(b[:n])
		if err != nil {
			t.Fatalf("Describe refused an accepted message: %v", err)
		}
		if pan := m.String(FieldPAN); len(pan) >= 13 && bytes.Contains([]byte(s), []byte(pan)) {
			t.Fatal("Describe shows the full PAN")
		}
	})
}

// FuzzReadFrame: frames are bounded before allocation and the reader never
// panics on a hostile stream.
func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{0, 4, '0', '8', '0', '0'})
	f.Add([]byte{0xFF, 0xFF})
	f.Add([]byte{0, 10, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		const limit = 512
		r := bytes.NewReader(b)
		var buf []byte
		var err error
		for {
			buf, err = ReadFrame(r, buf, limit)
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrFrameTooLarge) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if len(buf) > limit || cap(buf) > limit {
				t.Fatalf("frame of %d bytes (cap %d) over the %d limit", len(buf), cap(buf), limit)
			}
		}
	})
}

// FuzzICC: DE55 and private-field parsers refuse bad input without
// panicking, and what they accept re-encodes to something they accept
// again with the same content.
func FuzzICC(f *testing.F) {
	f.Add(sampleICC(f))
	f.Add([]byte{0x9F, 0x26, 0x81, 0x02, 1, 2})
	f.Add([]byte{0x71, 0x03, 0x86, 0x01, 0x00})
	f.Add([]byte("01016625094123456789004001V"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if c, err := ParseICC(b); err == nil {
			enc := c.Encode()
			c2, err := ParseICC(enc)
			if err != nil {
				t.Fatalf("re-encoded DE55 refused: %v", err)
			}
			if !bytes.Equal(c2.Encode(), enc) {
				t.Fatal("ICC encode not stable")
			}
		}
		if _, err := ParseTLV(b); err == nil {
			out, err := SetTLV(b, TagIssuerAuthData, []byte{1, 2, 3, 4, 5, 6, 7, 8})
			if err != nil {
				t.Fatalf("SetTLV on valid TLV: %v", err)
			}
			if v, ok, err := FindTLV(out, TagIssuerAuthData); err != nil || !ok || len(v) != 8 {
				t.Fatal("SetTLV value not found")
			}
		}
		if td, err := ParseTokenData(string(b)); err == nil {
			if s, err := td.Encode(); err == nil {
				if td2, err := ParseTokenData(s); err != nil || td2 != td {
					t.Fatal("token data round trip")
				}
			}
		}
		_, _ = ParsePromotion(string(b))
	})
}
