package main

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/mipay-oss/mipay/emv"
	"github.com/mipay-oss/mipay/iso8583"
)

// maxEMVHexChars bounds every hex argument of `mipay emv` (64 KiB of data).
const maxEMVHexChars = 2 * 65536

const emvUsage = `Usage: mipay emv OPERATION [flags]

Operations (hex is uppercase on one line on stdout; bad input exits 2):
  derive-mk   --imk HEX --pan DIGITS --psn NN [--option a|b]
  session-key --mk HEX --atc HEX --scheme pboc|csk|mc-skd [--un HEX] [--r HEX]
  arqc        --key HEX --data HEX [--pad 1|2]
  arqc        --scheme pboc|csk|visa-cvn10|mc-skd --imk HEX --pan DIGITS --psn NN --atc HEX [--un HEX] --data HEX
  arpc        --key HEX --arqc HEX --arc HEX [--method 1|2] [--csu HEX] [--prop HEX]
  epurse session-key --key HEX --random HEX --serial HEX --terminal-serial HEX
  epurse session-key --load --key HEX --random HEX --serial HEX
  epurse mac  --key HEX --data HEX
  tlv HEX     indented tree with tag names
  iso8583 HEX every field of a framed or unframed message, PAN masked
`

// runEMV is `mipay emv`: the crypto and TLV toolbox of payment engineers.
func runEMV(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, emvUsage)
		return usagef("emv: no operation given")
	}
	op, rest := args[0], args[1:]
	switch op {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, emvUsage)
		return nil
	case "derive-mk":
		return emvDeriveMK(rest, stdout, stderr)
	case "session-key":
		return emvSessionKey(rest, stdout, stderr)
	case "arqc":
		return emvARQC(rest, stdout, stderr)
	case "arpc":
		return emvARPC(rest, stdout, stderr)
	case "epurse":
		return emvEPurse(rest, stdout, stderr)
	case "tlv":
		return emvTLV(rest, stdout)
	case "iso8583":
		return emvISO8583(rest, stdout)
	}
	return usagef("emv: unknown operation %q (run `mipay emv help`)", op)
}

// hexArg is a flag holding bytes written in hex (spaces allowed). A bad
// value is kept as err and reported by bytesOf: the flag package would echo
// the value, and it may be a key.
type hexArg struct {
	b   []byte
	set bool
	err error
}

func (h *hexArg) String() string { return strings.ToUpper(hex.EncodeToString(h.b)) }

func (h *hexArg) Set(s string) error {
	h.b, h.err = parseHex(s)
	h.set = true
	return nil
}

// parseHex decodes hex without echoing the input (it may be a key or PAN).
func parseHex(s string) ([]byte, error) {
	s = strings.Join(strings.Fields(s), "")
	if len(s) > maxEMVHexChars {
		return nil, fmt.Errorf("%d hex digits (max %d)", len(s), maxEMVHexChars)
	}
	if len(s)%2 != 0 {
		return nil, errors.New("odd number of hex digits")
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, errors.New("not hex")
	}
	return b, nil
}

// emvFlags is a FlagSet for one operation with the helpers the operations share.
type emvFlags struct {
	*flag.FlagSet
	op string
}

func newEMVFlags(op, synopsis string, stderr io.Writer) emvFlags {
	return emvFlags{FlagSet: newFlagSet("emv "+op, synopsis, stderr), op: op}
}

func (f emvFlags) hex(name, usage string) *hexArg {
	h := new(hexArg)
	f.Var(h, name, usage)
	return h
}

func (f emvFlags) parse(args []string) error {
	if err := parseFlags(f.FlagSet, args); err != nil {
		return err
	}
	return noArgs(f.FlagSet)
}

// bytesOf checks that a required hex flag is set and, when n > 0, has n bytes.
func (f emvFlags) bytesOf(name string, h *hexArg, n int) ([]byte, error) {
	if !h.set {
		return nil, usagef("emv %s: --%s is required", f.op, name)
	}
	if h.err != nil {
		return nil, usagef("emv %s: --%s: %v", f.op, name, h.err)
	}
	if n > 0 && len(h.b) != n {
		return nil, usagef("emv %s: --%s must be %d bytes (%d hex digits), got %d bytes", f.op, name, n, 2*n, len(h.b))
	}
	return h.b, nil
}

func (f emvFlags) key16(name string, h *hexArg) (emv.Key, error) {
	b, err := f.bytesOf(name, h, 16)
	if err != nil {
		return emv.Key{}, err
	}
	return emv.Key(b), nil
}

func (f emvFlags) atc(h *hexArg) (uint16, error) {
	b, err := f.bytesOf("atc", h, 2)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint16(b), nil
}

// panPSN checks --pan and --psn; errors never echo the PAN.
func (f emvFlags) panPSN(pan, psn string) (string, int, error) {
	if pan == "" {
		return "", 0, usagef("emv %s: --pan is required", f.op)
	}
	if len(pan) < emv.MinPANDigits || len(pan) > emv.MaxPANDigits || strings.Trim(pan, "0123456789") != "" {
		return "", 0, usagef("emv %s: --pan must be %d–%d digits", f.op, emv.MinPANDigits, emv.MaxPANDigits)
	}
	if psn == "" {
		return "", 0, usagef("emv %s: --psn is required", f.op)
	}
	n, err := strconv.Atoi(psn)
	if err != nil || n < 0 || n > 99 || len(psn) > 2 {
		return "", 0, usagef("emv %s: --psn must be 00–99, got %q", f.op, psn)
	}
	return pan, n, nil
}

func printHex(w io.Writer, b []byte) error {
	_, err := fmt.Fprintf(w, "%X\n", b)
	return err
}

func emvDeriveMK(args []string, stdout, stderr io.Writer) error {
	f := newEMVFlags("derive-mk", "--imk HEX --pan DIGITS --psn NN [--option a|b]", stderr)
	imkArg := f.hex("imk", "issuer master key (16 bytes)")
	pan := f.String("pan", "", "PAN (8–19 digits)")
	psn := f.String("psn", "", "PAN sequence number (00–99)")
	option := f.String("option", "", "a or b (default: A up to 16 digits, B above)")
	if err := f.parse(args); err != nil {
		return err
	}
	imk, err := f.key16("imk", imkArg)
	if err != nil {
		return err
	}
	p, n, err := f.panPSN(*pan, *psn)
	if err != nil {
		return err
	}
	var mk emv.Key
	switch strings.ToLower(*option) {
	case "":
		mk, err = emv.DeriveICCMK(imk[:], p, n)
	case "a":
		mk, err = emv.DeriveICCMKOptionA(imk[:], p, n)
	case "b":
		mk, err = emv.DeriveICCMKOptionB(imk[:], p, n)
	default:
		return usagef("emv derive-mk: --option must be a or b, got %q", *option)
	}
	if err != nil {
		return usagef("emv derive-mk: %v", err)
	}
	return printHex(stdout, mk[:])
}

func emvSessionKey(args []string, stdout, stderr io.Writer) error {
	f := newEMVFlags("session-key", "--mk HEX --atc HEX --scheme pboc|csk|mc-skd [--un HEX] [--r HEX]", stderr)
	mkArg := f.hex("mk", "ICC master key (16 bytes)")
	atcArg := f.hex("atc", "application transaction counter (2 bytes)")
	scheme := f.String("scheme", "", "pboc, csk (EMV common session key, R = ATC‖000000000000) or mc-skd (R = ATC‖0000‖UN)")
	unArg := f.hex("un", "unpredictable number (4 bytes, mc-skd)")
	rArg := f.hex("r", "csk only: the whole 8-byte diversification value R instead of ATC‖000000000000")
	if err := f.parse(args); err != nil {
		return err
	}
	mk, err := f.key16("mk", mkArg)
	if err != nil {
		return err
	}
	var sk emv.Key
	switch emv.Scheme(*scheme) {
	case emv.SchemeCSK:
		if rArg.set {
			r, err := f.bytesOf("r", rArg, 8)
			if err != nil {
				return err
			}
			sk = emv.SessionKeyCommon(mk, [8]byte(r))
			break
		}
		atc, err := f.atc(atcArg)
		if err != nil {
			return err
		}
		sk = emv.SessionKeyVisaCVN18(mk, atc)
	case emv.SchemePBOC:
		atc, err := f.atc(atcArg)
		if err != nil {
			return err
		}
		sk = emv.SessionKeyPBOC(mk, atc)
	case emv.SchemeMastercard:
		atc, err := f.atc(atcArg)
		if err != nil {
			return err
		}
		un, err := f.bytesOf("un", unArg, 4)
		if err != nil {
			return err
		}
		sk = emv.SessionKeyMastercard(mk, atc, [4]byte(un))
	case "":
		return usagef("emv session-key: --scheme is required (pboc, csk or mc-skd)")
	default:
		return usagef("emv session-key: unknown scheme %q (want pboc, csk or mc-skd)", *scheme)
	}
	return printHex(stdout, sk[:])
}

func emvARQC(args []string, stdout, stderr io.Writer) error {
	f := newEMVFlags("arqc", "--key HEX --data HEX [--pad 1|2] | --scheme S --imk HEX --pan DIGITS --psn NN --atc HEX [--un HEX] --data HEX", stderr)
	keyArg := f.hex("key", "cryptogram key (16 bytes): session key, or the ICC MK for Visa CVN 10")
	dataArg := f.hex("data", "the data the card MACs")
	pad := f.Int("pad", emv.PadMethod2, "ISO 9797-1 padding method, 1 or 2 (with --key)")
	scheme := f.String("scheme", "", "whole chain from the IMK: pboc, csk, visa-cvn10 or mc-skd")
	imkArg := f.hex("imk", "issuer master key (16 bytes, with --scheme)")
	pan := f.String("pan", "", "PAN (with --scheme)")
	psn := f.String("psn", "", "PAN sequence number 00–99 (with --scheme)")
	atcArg := f.hex("atc", "ATC (2 bytes, with --scheme)")
	unArg := f.hex("un", "unpredictable number (4 bytes, mc-skd)")
	if err := f.parse(args); err != nil {
		return err
	}
	if *scheme != "" {
		if _, err := emv.ParseScheme(*scheme); err != nil {
			return usagef("emv arqc: unknown scheme %q (want pboc, csk, visa-cvn10 or mc-skd)", *scheme)
		}
	}
	data, err := f.bytesOf("data", dataArg, 0)
	if err != nil {
		return err
	}
	if *scheme == "" {
		if imkArg.set || *pan != "" || *psn != "" || atcArg.set {
			return usagef("emv arqc: --imk/--pan/--psn/--atc need --scheme")
		}
		key, err := f.key16("key", keyArg)
		if err != nil {
			return err
		}
		if *pad != emv.PadMethod1 && *pad != emv.PadMethod2 {
			return usagef("emv arqc: --pad must be 1 or 2, got %d", *pad)
		}
		arqc, err := emv.MACAlg3(key[:], data, *pad)
		if err != nil {
			return usagef("emv arqc: %v", err)
		}
		return printHex(stdout, arqc[:])
	}
	s, err := emv.ParseScheme(*scheme)
	if err != nil {
		return usagef("emv arqc: unknown scheme %q (want pboc, csk, visa-cvn10 or mc-skd)", *scheme)
	}
	if keyArg.set {
		return usagef("emv arqc: --key and --scheme exclude each other")
	}
	imk, err := f.key16("imk", imkArg)
	if err != nil {
		return err
	}
	p, n, err := f.panPSN(*pan, *psn)
	if err != nil {
		return err
	}
	atc, err := f.atc(atcArg)
	if err != nil {
		return err
	}
	var un [4]byte
	if s == emv.SchemeMastercard || unArg.set {
		b, err := f.bytesOf("un", unArg, 4)
		if err != nil {
			return err
		}
		un = [4]byte(b)
	}
	arqc, err := emv.GenerateARQC(s, imk[:], p, n, atc, un, data)
	if err != nil {
		return usagef("emv arqc: %v", err)
	}
	return printHex(stdout, arqc[:])
}

func emvARPC(args []string, stdout, stderr io.Writer) error {
	f := newEMVFlags("arpc", "--key HEX --arqc HEX --arc HEX [--method 1|2] [--csu HEX] [--prop HEX]", stderr)
	keyArg := f.hex("key", "ARPC key (16 bytes)")
	arqcArg := f.hex("arqc", "the card's ARQC (8 bytes)")
	arcArg := f.hex("arc", "authorisation response code (2 bytes, method 1)")
	method := f.Int("method", 1, "ARPC method, 1 or 2")
	csuArg := f.hex("csu", "card status update (4 bytes, method 2)")
	propArg := f.hex("prop", "proprietary authentication data (0–8 bytes, method 2)")
	if err := f.parse(args); err != nil {
		return err
	}
	key, err := f.key16("key", keyArg)
	if err != nil {
		return err
	}
	arqc, err := f.bytesOf("arqc", arqcArg, 8)
	if err != nil {
		return err
	}
	switch *method {
	case 1:
		arc, err := f.bytesOf("arc", arcArg, 2)
		if err != nil {
			return err
		}
		arpc := emv.ARPCMethod1(key, [8]byte(arqc), [2]byte(arc))
		return printHex(stdout, arpc[:])
	case 2:
		csu, err := f.bytesOf("csu", csuArg, 4)
		if err != nil {
			return err
		}
		var prop []byte
		if propArg.set {
			if prop, err = f.bytesOf("prop", propArg, 0); err != nil {
				return err
			}
		}
		arpc, err := emv.ARPCMethod2(key, [8]byte(arqc), [4]byte(csu), prop)
		if err != nil {
			return usagef("emv arpc: %v", err)
		}
		return printHex(stdout, arpc[:])
	}
	return usagef("emv arpc: --method must be 1 or 2, got %d", *method)
}

func emvEPurse(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("emv epurse: want session-key or mac")
	}
	switch args[0] {
	case "session-key":
		return emvEPurseSessionKey(args[1:], stdout, stderr)
	case "mac":
		return emvEPurseMAC(args[1:], stdout, stderr)
	}
	return usagef("emv epurse: unknown operation %q (want session-key or mac)", args[0])
}

func emvEPurseSessionKey(args []string, stdout, stderr io.Writer) error {
	f := newEMVFlags("epurse session-key", "[--load] --key HEX --random HEX --serial HEX [--terminal-serial HEX]", stderr)
	load := f.Bool("load", false, "load session key (random‖online serial‖8000) instead of purchase")
	keyArg := f.hex("key", "DPK (purchase) or DLK (load), 16 bytes")
	randomArg := f.hex("random", "card pseudo-random number (4 bytes)")
	serialArg := f.hex("serial", "offline (purchase) or online (load) transaction serial (2 bytes)")
	termArg := f.hex("terminal-serial", "terminal transaction serial (4 bytes, or its last 2), purchase only")
	if err := f.parse(args); err != nil {
		return err
	}
	key, err := f.key16("key", keyArg)
	if err != nil {
		return err
	}
	random, err := f.bytesOf("random", randomArg, 4)
	if err != nil {
		return err
	}
	serial, err := f.bytesOf("serial", serialArg, 2)
	if err != nil {
		return err
	}
	if *load {
		if termArg.set {
			return usagef("emv epurse session-key: --terminal-serial is for purchase, not --load")
		}
		sk := emv.EPurseLoadSessionKey(key, [4]byte(random), [2]byte(serial))
		return printHex(stdout, sk[:])
	}
	ts, err := f.bytesOf("terminal-serial", termArg, 0)
	if err != nil {
		return err
	}
	if len(ts) != 2 && len(ts) != 4 {
		return usagef("emv epurse session-key: --terminal-serial must be 2 or 4 bytes, got %d", len(ts))
	}
	sk := emv.EPursePurchaseSessionKey(key, [4]byte(random), [2]byte(serial), [2]byte(ts[len(ts)-2:]))
	return printHex(stdout, sk[:])
}

func emvEPurseMAC(args []string, stdout, stderr io.Writer) error {
	f := newEMVFlags("epurse mac", "--key HEX --data HEX", stderr)
	keyArg := f.hex("key", "session or TAC key (8 bytes)")
	dataArg := f.hex("data", "data to MAC")
	if err := f.parse(args); err != nil {
		return err
	}
	key, err := f.bytesOf("key", keyArg, 8)
	if err != nil {
		return err
	}
	data, err := f.bytesOf("data", dataArg, 0)
	if err != nil {
		return err
	}
	mac := emv.EPurseMAC([8]byte(key), data)
	return printHex(stdout, mac[:])
}

// positionalHex takes the one hex argument of tlv and iso8583 (spaces and
// several arguments are joined, so pasted dumps work).
func positionalHex(op string, args []string) ([]byte, error) {
	if len(args) == 0 {
		return nil, usagef("emv %s: want HEX", op)
	}
	b, err := parseHex(strings.Join(args, ""))
	if err != nil {
		return nil, usagef("emv %s: %v", op, err)
	}
	return b, nil
}

func emvTLV(args []string, stdout io.Writer) error {
	b, err := positionalHex("tlv", args)
	if err != nil {
		return err
	}
	tlvs, err := emv.DecodeTLV(b)
	if err != nil {
		return usagef("emv tlv: %v", err)
	}
	return emv.Pretty(stdout, tlvs)
}

func emvISO8583(args []string, stdout io.Writer) error {
	b, err := positionalHex("iso8583", args)
	if err != nil {
		return err
	}
	s, err := iso8583.Describe(b)
	if err != nil {
		return usagef("emv iso8583: %v", err)
	}
	_, err = io.WriteString(stdout, s)
	return err
}
