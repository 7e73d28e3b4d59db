package emv

import (
	"errors"
	"testing"
)

func TestParseDOL(t *testing.T) {
	// A qPBOC PDOL: TTQ, amount, other amount, country, TVR, currency,
	// date, type, UN.
	pdol := mustHex(t, "9F66049F02069F03069F1A0295055F2A029A039C019F3704")
	entries, err := ParseDOL(pdol)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 9 || entries[0] != (DOLEntry{0x9F66, 4}) || entries[8] != (DOLEntry{0x9F37, 4}) {
		t.Fatalf("entries = %+v", entries)
	}
	if DOLLength(entries) != 33 {
		t.Fatalf("DOLLength = %d", DOLLength(entries))
	}
	for _, bad := range []string{"9F", "9F66", "9F8181818101"} {
		t.Run("malformed "+bad, func(t *testing.T) {
			if _, err := ParseDOL(mustHex(t, bad)); !errors.Is(err, ErrMalformedDOL) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestBuildDOLPadding(t *testing.T) {
	cases := []struct {
		name  string
		entry DOLEntry
		value string // "" = missing
		want  string
	}{
		{"exact", DOLEntry{0x9F37, 4}, "11223344", "11223344"},
		{"n short left-padded", DOLEntry{0x9F02, 6}, "1000", "000000001000"},
		{"n long loses leftmost", DOLEntry{0x9F02, 3}, "000000001000", "001000"},
		{"b short right-padded", DOLEntry{0x9F66, 4}, "36", "36000000"},
		{"b long loses rightmost", DOLEntry{0x9F66, 2}, "36004000", "3600"},
		{"cn short padded with FF", DOLEntry{0x5A, 10}, "6228480000001234", "6228480000001234FFFF"},
		{"ans long loses rightmost", DOLEntry{0x9F4E, 3}, "414243444546", "414243"},
		{"missing gives zeros", DOLEntry{0x9F1A, 2}, "", "0000"},
		{"unknown tag treated as b", DOLEntry{0xDF7F, 3}, "01", "010000"},
		{"constructed gives zeros", DOLEntry{0x70, 2}, "AABB", "0000"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			values := map[uint32][]byte{}
			if c.value != "" {
				values[c.entry.Tag] = mustHex(t, c.value)
			}
			got := BuildDOL([]DOLEntry{c.entry}, values)
			if hexOf(got) != c.want {
				t.Fatalf("BuildDOL = %X, want %s", got, c.want)
			}
		})
	}
}

func TestSplitDOL(t *testing.T) {
	entries := []DOLEntry{{0x9F66, 4}, {0x9F02, 6}, {0x9F37, 4}}
	data := BuildDOL(entries, map[uint32][]byte{0x9F66: mustHex(t, "36004000"), 0x9F02: mustHex(t, "000000001000"), 0x9F37: mustHex(t, "CAFEBABE")})
	got, err := SplitDOL(entries, data)
	if err != nil {
		t.Fatal(err)
	}
	if hexOf(got[0x9F02]) != "000000001000" || hexOf(got[0x9F37]) != "CAFEBABE" {
		t.Fatalf("SplitDOL = %X", got)
	}
	if _, err := SplitDOL(entries, data[:5]); !errors.Is(err, ErrMalformedDOL) {
		t.Fatalf("short data: err = %v", err)
	}
}
