package emv

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestParseCommandCases(t *testing.T) {
	long := strings.Repeat("AB", 300)
	cases := []struct {
		name     string
		hex      string
		data     string
		ne       int
		extended bool
	}{
		{"case 1", "00A40400", "", 0, false},
		{"case 2S", "00B2010C00", "", 256, false},
		{"case 2S Le 1C", "80CA9F361C", "", 0x1C, false},
		{"case 3S", "80DC010C03AABBCC", "AABBCC", 0, false},
		{"case 4S select PPSE", "00A404000E325041592E5359532E444446303100", "325041592E5359532E4444463031", 256, false},
		{"case 2E", "00B00000000100", "", 256, true},
		{"case 2E Le 0000", "00B00000000000", "", 65536, true},
		{"case 3E", "80E2000000012C" + long, long, 0, true},
		{"case 4E", "80E2000000012C" + long + "0000", long, 65536, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw := mustHex(t, c.hex)
			cmd, err := ParseCommand(raw)
			if err != nil {
				t.Fatal(err)
			}
			if hexOf(cmd.Data) != c.data || cmd.Ne != c.ne || cmd.Extended != c.extended {
				t.Fatalf("cmd = data %X ne %d ext %v", cmd.Data, cmd.Ne, cmd.Extended)
			}
			enc, err := cmd.Bytes()
			if err != nil || !bytes.Equal(enc, raw) {
				t.Fatalf("Bytes = %X, %v; want %X", enc, err, raw)
			}
		})
	}
}

func TestParseCommandMalformed(t *testing.T) {
	for _, c := range []struct{ name, hex string }{
		{"too short", "00A404"},
		{"Lc beyond data", "00A4040005AABB"},
		{"Lc short of data", "00A4040001AABBCCDD"},
		{"truncated extended", "00A4040000AA"},
		{"extended Lc 0 with data", "00A4040000000000AA"},
		{"extended Lc beyond data", "00A40400000005AABB"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := ParseCommand(mustHex(t, c.hex)); !errors.Is(err, ErrMalformedAPDU) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestCommandBytesChoosesExtended(t *testing.T) {
	cmd := Command{CLA: 0x80, INS: 0xE2, Data: make([]byte, 256)}
	enc, err := cmd.Bytes()
	if err != nil || len(enc) != 4+3+256 || enc[4] != 0 || enc[5] != 1 || enc[6] != 0 {
		t.Fatalf("enc header %X, %v", enc[:7], err)
	}
	if _, err := (Command{Ne: 65537}).Bytes(); !errors.Is(err, ErrMalformedAPDU) {
		t.Fatalf("Ne 65537: %v", err)
	}
	if _, err := (Command{Data: make([]byte, 65536)}).Bytes(); !errors.Is(err, ErrMalformedAPDU) {
		t.Fatalf("65536 data bytes: %v", err)
	}
	enc, _ = Command{Ne: 300}.Bytes()
	if hexOf(enc) != "00000000"+"00012C" {
		t.Fatalf("case 2E enc = %X", enc)
	}
}

func TestParseResponse(t *testing.T) {
	r, err := ParseResponse(mustHex(t, "6F0A9000"))
	if err != nil || hexOf(r.Data) != "6F0A" || !r.OK() {
		t.Fatalf("r = %+v, %v", r, err)
	}
	if hexOf(r.Bytes()) != "6F0A9000" {
		t.Fatalf("Bytes = %X", r.Bytes())
	}
	r, err = ParseResponse(mustHex(t, "6986"))
	if err != nil || r.SW != SWCommandNotAllowed || len(r.Data) != 0 || r.OK() {
		t.Fatalf("r = %+v, %v", r, err)
	}
	if _, err := ParseResponse([]byte{0x90}); !errors.Is(err, ErrMalformedAPDU) {
		t.Fatalf("1 byte: %v", err)
	}
}

func TestSWText(t *testing.T) {
	for sw, want := range map[uint16]string{
		0x9000: "success", 0x6986: "command not allowed", 0x6A82: "file or application not found",
		0x9401: "insufficient balance", 0x9302: "MAC invalid", 0x6A83: "record not found",
		0x6110: "16 response bytes still available", 0x6C08: "wrong Le; exact length is 8",
		0x63C2: "verification failed, 2 tries left", 0x1234: "unknown status 1234",
	} {
		if got := SWText(sw); got != want {
			t.Errorf("SWText(%04X) = %q, want %q", sw, got, want)
		}
	}
}
