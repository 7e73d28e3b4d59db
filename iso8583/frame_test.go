package iso8583

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	var w bytes.Buffer
	var scratch []byte
	var err error
	msgs := [][]byte{[]byte("0800abc"), bytes.Repeat([]byte{'x'}, 300), {}}
	for _, m := range msgs {
		if scratch, err = WriteFrame(&w, m, scratch, 0); err != nil {
			t.Fatal(err)
		}
	}
	var buf []byte
	for i, want := range msgs {
		buf, err = ReadFrame(&w, buf, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, want) {
			t.Fatalf("frame %d = %q", i, buf)
		}
	}
	if _, err := ReadFrame(&w, buf, 0); err != io.EOF {
		t.Fatalf("end: %v, want EOF", err)
	}
}

func TestFrameBounds(t *testing.T) {
	t.Run("declared too large", func(t *testing.T) {
		_, err := ReadFrame(bytes.NewReader([]byte{0xFF, 0xFF, 1, 2}), nil, 1024)
		if !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("truncated body", func(t *testing.T) {
		_, err := ReadFrame(bytes.NewReader([]byte{0, 5, 1, 2}), nil, 0)
		if err != io.ErrUnexpectedEOF {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("write too large", func(t *testing.T) {
		_, err := WriteFrame(io.Discard, make([]byte, 100), nil, 50)
		if !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestDescribe(t *testing.T) {
	req := sample0200(t)
	td, err := TokenData{Token: "6250941234567890", CryptogramResult: CryptogramValid}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	req.TokenData = td
	req.PINBlock = mustHex(t, "0412AC89ABCDEF67")
	raw, err := Pack(req)
	if err != nil {
		t.Fatal(err)
	}
	framed, err := AppendFrame(nil, raw, 0)
	if err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string][]byte{"unframed": raw, "framed": framed} {
		t.Run(name, func(t *testing.T) {
			s, err := Describe(in)
			if err != nil {
				t.Fatal(err)
			}
			for _, secret := range []string{req.PAN, "6250941234567890", "29122011234567890", "0412AC89ABCDEF67"} {
				if strings.Contains(s, secret) {
					t.Fatalf("description leaks %q:\n%s", secret, s)
				}
			}
			for _, want := range []string{
				"MTI   0200\n",
				"DE002 Primary Account Number: 625094******0014\n",
				"DE035 Track 2 Data: 625094******0014=*****************\n",
				"      9F26 Application Cryptogram: 8E1A2B3C4D5E6F70\n",
				"      9F6C Card Transaction Qualifiers: 0280\n",
				"      01 Token: 625094******7890\n",
				"DE041 Card Acceptor Terminal Identification: QP000001\n",
			} {
				if !strings.Contains(s, want) {
					t.Fatalf("description lacks %q:\n%s", want, s)
				}
			}
		})
	}
	if _, err := Describe([]byte("0200")); err == nil {
		t.Fatal("truncated message described")
	}
}
