package emv

import (
	"bytes"
	"encoding/hex"
	"testing"
)

func seedHex(f *testing.F, hexes ...string) {
	f.Helper()
	for _, h := range hexes {
		b, err := hex.DecodeString(h)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func countTLV(tlvs []TLV) int {
	n := len(tlvs)
	for _, t := range tlvs {
		n += countTLV(t.Children)
	}
	return n
}

func equalTLV(a, b []TLV) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Tag != b[i].Tag || len(a[i].Children) != len(b[i].Children) {
			return false
		}
		if len(a[i].Children) == 0 && !bytes.Equal(a[i].Value, b[i].Value) {
			return false
		}
		if !equalTLV(a[i].Children, b[i].Children) {
			return false
		}
	}
	return true
}

func FuzzDecodeTLV(f *testing.F) {
	seedHex(f,
		"6F2F840E325041592E5359532E4444463031A51DBF0C1A61184F07A0000000041010500A4D617374657263617264870101",
		"6F30840E325041592E5359532E4444463031A51EBF0C1B61194F08A000000333010101500A50424F43204445424954870101",
		"9F2608FA624250B008B59A9F2701809F100807010103A0A000019F3602001C",
		"5A88FFFFFFFFFFFFFFFF", "708000", "9F8181818101", "DF810102AABB", "0000", "7003700170",
	)
	f.Fuzz(func(t *testing.T, b []byte) {
		tlvs, err := DecodeTLV(b)
		if err != nil {
			return
		}
		// Every object takes at least 2 input bytes: what the decoder holds
		// is bounded by the input's length.
		if n := countTLV(tlvs); n > len(b)/2 {
			t.Fatalf("%d objects from %d bytes", n, len(b))
		}
		again, err := DecodeTLV(EncodeTLV(tlvs))
		if err != nil {
			t.Fatalf("re-encoding does not decode: %v", err)
		}
		if !equalTLV(tlvs, again) {
			t.Fatal("decode(encode(x)) != x")
		}
	})
}

func FuzzParseDOL(f *testing.F) {
	seedHex(f, "9F66049F02069F03069F1A0295055F2A029A039C019F3704", "9F", "9F66", "9F8181818101", "5A0A70FF")
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := ParseDOL(b)
		if err != nil {
			return
		}
		if len(entries) > len(b)/2 {
			t.Fatalf("%d entries from %d bytes", len(entries), len(b))
		}
		values := map[uint32][]byte{}
		for i, e := range entries {
			values[e.Tag] = bytes.Repeat([]byte{byte(i)}, i%7)
		}
		data := BuildDOL(entries, values)
		if len(data) != DOLLength(entries) {
			t.Fatalf("BuildDOL gave %d bytes, DOL asks for %d", len(data), DOLLength(entries))
		}
		if _, err := SplitDOL(entries, data); err != nil {
			t.Fatalf("SplitDOL of BuildDOL: %v", err)
		}
	})
}

func FuzzParseCommand(f *testing.F) {
	seedHex(f, "00A40400", "00B2010C00", "80CA9F361C", "80DC010C03AABBCC",
		"00A404000E325041592E5359532E444446303100", "00B00000000100", "80E200000003AABBCC0000",
		"80A800000683043600000000",
		"00A4040000", "00A40400000005AABB")
	f.Fuzz(func(t *testing.T, b []byte) {
		cmd, err := ParseCommand(b)
		if err != nil {
			return
		}
		enc, err := cmd.Bytes()
		if err != nil {
			t.Fatalf("parsed command does not encode: %v", err)
		}
		if !bytes.Equal(enc, b) {
			t.Fatalf("Bytes = %X, input %X", enc, b)
		}
	})
}

func FuzzParseResponse(f *testing.F) {
	seedHex(f, "9000", "6986", "6F0A9000", "90", "")
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseResponse(b)
		if err != nil {
			if len(b) >= 2 {
				t.Fatalf("refused %d bytes: %v", len(b), err)
			}
			return
		}
		if !bytes.Equal(r.Bytes(), b) {
			t.Fatalf("Bytes = %X, input %X", r.Bytes(), b)
		}
		_ = SWText(r.SW)
	})
}
