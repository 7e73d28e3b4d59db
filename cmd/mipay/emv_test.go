package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/mipay-oss/mipay/iso8583"
)

// runEMVCmd runs `mipay emv args…` and returns exit code, stdout, stderr.
func runEMVCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := runEMV(context.Background(), args, &stdout, &stderr)
	if err != nil {
		stderr.WriteString(err.Error() + "\n")
	}
	return exitCode(err), stdout.String(), stderr.String()
}

const toolIMK = "0123456789ABCDEFFEDCBA9876543210"

// The published vectors of /work/shared/vectors/emv-vectors.md through
// the toolbox.
func TestEMVToolVectors(t *testing.T) {
	visaData := "000000004000" + "000000000000" + "0124" + "8000048000" + "0124" + "191105" + "01" + "52BF4585" + "1800" + "001C"
	mcData := "000000009999" + "000000000000" + "0124" + "8000000000" + "0124" + "209906" + "00" + "ABCDEF12" + "1800" + "001C"
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"derive-mk option A", []string{"derive-mk", "--imk", toolIMK, "--pan", "12345678901234567", "--psn", "45", "--option", "a"}, "946DC1A8C78A624519BC4645CB073737"},
		{"derive-mk option A psn 01", []string{"derive-mk", "--imk", toolIMK, "--pan", "12345678901234567", "--psn", "01", "--option", "a"}, "73AD54688CEF2934B0979857E3C719F1"},
		{"derive-mk option B", []string{"derive-mk", "--imk", toolIMK, "--pan", "12345678901234567", "--psn", "45", "--option", "b"}, "F767ECC2263B2C543775CB62AB6B57D6"},
		{"derive-mk default is B above 16", []string{"derive-mk", "--imk", toolIMK, "--pan", "123456789012345679", "--psn", "00"}, "1083E9C8A72AA26BDC9B10570B73BACB"},
		{"derive-mk decimalised", []string{"derive-mk", "--imk", toolIMK, "--pan", "000000000000000005", "--psn", "23", "--option", "B"}, "2608BAA2378C92DAE0948A97E0CD230B"},
		{"derive-mk 16 digits", []string{"derive-mk", "--imk", toolIMK, "--pan", "1234567890123456", "--psn", "00"}, "154F349D8585CB7F6B0798E9839B10C1"},
		{"session-key csk from ATC", []string{"session-key", "--mk", toolIMK, "--atc", "001C", "--scheme", "csk"}, "E9FB384AF807B940FEDCEA613461B0C4"},
		{"session-key csk with R", []string{"session-key", "--mk", "154F349D8585CB7F6B0798E9839B10C1", "--scheme", "csk", "--r", "1234567890123456"}, "91E5C4FEF4F7CBD6D53776B6F7C4EA2F"},
		{"session-key visa cvn18", []string{"session-key", "--mk", "154F349D8585CB7F6B0798E9839B10C1", "--atc", "001C", "--scheme", "csk"}, "436B942AD637E08564B532B0EC97CB26"},
		{"session-key mc-skd", []string{"session-key", "--mk", "154F349D8585CB7F6B0798E9839B10C1", "--atc", "001C", "--scheme", "mc-skd", "--un", "ABCDEF12"}, "5D8F37BCD9E5DA68048CDFA2EA255D9E"},
		{"arqc key+data", []string{"arqc", "--key", "29B33180E567CE38EA4CBC9D753B0E61", "--data", "0123456789ABCDEF0123456789ABCDEF"}, "FA624250B008B59A"},
		{"arqc visa cvn10 key pad 1", []string{"arqc", "--key", "154F349D8585CB7F6B0798E9839B10C1", "--data", visaData + "03A06010", "--pad", "1"}, "29CCA15AE665FA2E"},
		{"arqc chain visa-cvn10", []string{"arqc", "--scheme", "visa-cvn10", "--imk", toolIMK, "--pan", "1234567890123456", "--psn", "00", "--atc", "001C", "--data", visaData + "03A06010"}, "29CCA15AE665FA2E"},
		{"arqc chain csk (visa cvn18)", []string{"arqc", "--scheme", "csk", "--imk", toolIMK, "--pan", "1234567890123456", "--psn", "00", "--atc", "001C", "--data", visaData + "06011203A0B800"}, "7A788EA6B8A3E733"},
		{"arqc chain mc-skd", []string{"arqc", "--scheme", "mc-skd", "--imk", toolIMK, "--pan", "1234567890123456", "--psn", "00", "--atc", "001C", "--un", "ABCDEF12", "--data", mcData + "A00003220000"}, "24CCF3DEE3158C70"},
		{"arpc method 1", []string{"arpc", "--key", "29B33180E567CE38EA4CBC9D753B0E61", "--arqc", "FA624250B008B59A", "--arc", "0000"}, "45D4255EEF10C920"},
		{"arpc method 1 visa", []string{"arpc", "--key", "154F349D8585CB7F6B0798E9839B10C1", "--arqc", "29CCA15AE665FA2E", "--arc", "3030", "--method", "1"}, "28993816AFAE4AEB"},
		{"arpc method 1 mastercard", []string{"arpc", "--key", "154F349D8585CB7F6B0798E9839B10C1", "--arqc", "24CCF3DEE3158C70", "--arc", "0010"}, "73F6BBF389A6586C"},
		{"arpc method 2", []string{"arpc", "--key", "29B33180E567CE38EA4CBC9D753B0E61", "--arqc", "FA624250B008B59A", "--method", "2", "--csu", "00000000"}, "CB56FA40"},
		{"arpc method 2 visa cvn18", []string{"arpc", "--key", "436B942AD637E08564B532B0EC97CB26", "--arqc", "7A788EA6B8A3E733", "--method", "2", "--csu", "00000000"}, "9AF514C1"},
		{"epurse purchase session key", []string{"epurse", "session-key", "--key", "11223344556677888877665544332211", "--random", "11223344", "--serial", "0000", "--terminal-serial", "00000001"}, "003238ABC57659DD"},
		{"epurse purchase session key 2-byte serial", []string{"epurse", "session-key", "--key", "11223344556677888877665544332211", "--random", "11223344", "--serial", "0000", "--terminal-serial", "0001"}, "003238ABC57659DD"},
		{"epurse mac1", []string{"epurse", "mac", "--key", "003238ABC57659DD", "--data", "00001000 06 001122334455 20120229135100"}, "F15CAB75"},
		{"epurse mac2", []string{"epurse", "mac", "--key", "003238ABC57659DD", "--data", "00001000"}, "56988A13"},
		{"lower-case hex", []string{"arqc", "--key", "29b33180e567ce38ea4cbc9d753b0e61", "--data", "0123456789abcdef0123456789abcdef"}, "FA624250B008B59A"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runEMVCmd(t, c.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			if out != c.want+"\n" {
				t.Fatalf("stdout = %q, want %q", out, c.want+"\n")
			}
		})
	}
}

// The load session key has no published vector. It is 3DES(DLK,
// random‖online serial‖8000), the same block as a purchase session key with
// offline serial = online serial and terminal serial 8000: both must agree,
// and differ from another terminal serial.
func TestEMVToolEPurseLoad(t *testing.T) {
	key := "11223344556677888877665544332211"
	code, load, errOut := runEMVCmd(t, "epurse", "session-key", "--load", "--key", key, "--random", "11223344", "--serial", "0007")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	_, same, _ := runEMVCmd(t, "epurse", "session-key", "--key", key, "--random", "11223344", "--serial", "0007", "--terminal-serial", "8000")
	_, other, _ := runEMVCmd(t, "epurse", "session-key", "--key", key, "--random", "11223344", "--serial", "0007", "--terminal-serial", "8001")
	if len(load) != 17 || load != same || load == other {
		t.Fatalf("load %q, purchase with 8000 %q, with 8001 %q", load, same, other)
	}
	if code, _, _ := runEMVCmd(t, "epurse", "session-key", "--load", "--key", key, "--random", "11223344", "--serial", "0007", "--terminal-serial", "8000"); code != 2 {
		t.Fatalf("--load with --terminal-serial: exit %d", code)
	}
}

func TestEMVToolTLV(t *testing.T) {
	code, out, errOut := runEMVCmd(t, "tlv", "6F30840E325041592E5359532E4444463031A51EBF0C1B61194F08A000000333010101500A50424F43204445424954870101")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"6F File Control Information (FCI) Template\n",
		"      61 Application Template\n",
		"        4F Application Identifier (AID) - card: A000000333010101\n",
		"        50 Application Label: 50424F43204445424954 \"PBOC DEBIT\"\n",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("tree lacks %q:\n%s", want, out)
		}
	}
}

func TestEMVToolISO8583(t *testing.T) {
	m := iso8583.NewMessage("0100")
	m.SetString(2, "6250941234567890014")
	m.SetString(3, "000000")
	m.SetString(4, "000000001000")
	m.SetString(11, "000123")
	m.SetString(41, "QP000001")
	raw, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	framed, err := iso8583.AppendFrame(nil, raw, 0)
	if err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string][]byte{"unframed": raw, "framed": framed} {
		t.Run(name, func(t *testing.T) {
			code, out, errOut := runEMVCmd(t, "iso8583", hex.EncodeToString(in))
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			if strings.Contains(out, "6250941234567890014") {
				t.Fatalf("full PAN shown:\n%s", out)
			}
			for _, want := range []string{"MTI   0100", "625094", "QP000001", "DE011"} {
				if !strings.Contains(out, want) {
					t.Fatalf("description lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

func TestEMVToolBadInput(t *testing.T) {
	cases := []struct {
		name   string
		args   []string
		secret string // must not appear in the error
	}{
		{"no operation", nil, ""},
		{"unknown operation", []string{"frobnicate"}, ""},
		{"odd hex", []string{"arqc", "--key", "29B33180E567CE38EA4CBC9D753B0E6", "--data", "00"}, "29B33180E567CE38EA4CBC9D753B0E6"},
		{"not hex", []string{"arqc", "--key", "ZZB33180E567CE38EA4CBC9D753B0E61", "--data", "00"}, "ZZB33180E567CE38EA4CBC9D753B0E61"},
		{"wrong key length", []string{"arqc", "--key", "29B33180E567CE38", "--data", "00"}, ""},
		{"missing data", []string{"arqc", "--key", "29B33180E567CE38EA4CBC9D753B0E61"}, ""},
		{"bad pad", []string{"arqc", "--key", "29B33180E567CE38EA4CBC9D753B0E61", "--data", "00", "--pad", "3"}, ""},
		{"unknown scheme", []string{"arqc", "--scheme", "amex", "--imk", toolIMK, "--pan", "1234567890123456", "--psn", "00", "--atc", "001C", "--data", "00"}, ""},
		{"mc-skd without un", []string{"arqc", "--scheme", "mc-skd", "--imk", toolIMK, "--pan", "1234567890123456", "--psn", "00", "--atc", "001C", "--data", "00"}, ""},
		{"imk without scheme", []string{"arqc", "--key", toolIMK, "--imk", toolIMK, "--data", "00"}, ""},
		{"bad PSN", []string{"derive-mk", "--imk", toolIMK, "--pan", "1234567890123456", "--psn", "100"}, ""},
		{"PSN not a number", []string{"derive-mk", "--imk", toolIMK, "--pan", "1234567890123456", "--psn", "x1"}, ""},
		{"PAN with letters", []string{"derive-mk", "--imk", toolIMK, "--pan", "62259912345678A1", "--psn", "00"}, "62259912345678A1"},
		{"PAN too long", []string{"derive-mk", "--imk", toolIMK, "--pan", "62259912345678901234", "--psn", "00"}, "62259912345678901234"},
		{"bad option", []string{"derive-mk", "--imk", toolIMK, "--pan", "1234567890123456", "--psn", "00", "--option", "c"}, ""},
		{"session-key unknown scheme", []string{"session-key", "--mk", toolIMK, "--atc", "001C", "--scheme", "visa"}, ""},
		{"session-key no scheme", []string{"session-key", "--mk", toolIMK, "--atc", "001C"}, ""},
		{"session-key short ATC", []string{"session-key", "--mk", toolIMK, "--atc", "1C", "--scheme", "pboc"}, ""},
		{"arpc bad method", []string{"arpc", "--key", toolIMK, "--arqc", "FA624250B008B59A", "--arc", "0000", "--method", "3"}, ""},
		{"arpc method 2 without csu", []string{"arpc", "--key", toolIMK, "--arqc", "FA624250B008B59A", "--method", "2"}, ""},
		{"arpc short arqc", []string{"arpc", "--key", toolIMK, "--arqc", "FA62", "--arc", "0000"}, ""},
		{"epurse no op", []string{"epurse"}, ""},
		{"epurse mac 16-byte key", []string{"epurse", "mac", "--key", toolIMK, "--data", "00"}, ""},
		{"epurse purchase without terminal serial", []string{"epurse", "session-key", "--key", toolIMK, "--random", "11223344", "--serial", "0000"}, ""},
		{"unknown flag", []string{"arqc", "--frob", "1"}, ""},
		{"stray argument", []string{"arqc", "--key", toolIMK, "--data", "00", "extra"}, ""},
		{"tlv malformed", []string{"tlv", "9F2608AABB"}, ""},
		{"tlv odd hex", []string{"tlv", "9F2"}, ""},
		{"tlv no hex", []string{"tlv"}, ""},
		{"iso8583 truncated", []string{"iso8583", "30323030"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runEMVCmd(t, c.args...)
			if code != 2 {
				t.Fatalf("exit %d, want 2 (stdout %q, stderr %q)", code, out, errOut)
			}
			if out != "" {
				t.Fatalf("stdout = %q, want nothing", out)
			}
			lines := strings.Split(strings.TrimSpace(errOut), "\n")
			if last := lines[len(lines)-1]; last == "" || strings.Contains(last, "\n") {
				t.Fatalf("error line = %q", last)
			}
			if c.secret != "" && strings.Contains(errOut, c.secret) {
				t.Fatalf("error leaks input %q: %s", c.secret, errOut)
			}
		})
	}
}
