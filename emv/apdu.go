package emv

import (
	"errors"
	"fmt"
)

// APDU bounds (ISO/IEC 7816-4 5.1).
const (
	// MaxShortDataBytes is the most command data a short APDU carries, in bytes.
	MaxShortDataBytes = 255
	// MaxShortNe is the most response data a short APDU asks for (Le 00).
	MaxShortNe = 256
	// MaxExtendedDataBytes is the most command data an extended APDU carries.
	MaxExtendedDataBytes = 65535
	// MaxExtendedNe is the most response data an extended APDU asks for (Le 0000).
	MaxExtendedNe = 65536
)

// ErrMalformedAPDU is wrapped by every APDU parsing error.
var ErrMalformedAPDU = errors.New("emv: malformed APDU")

// Command is an ISO 7816-4 command APDU. Ne is the number of response bytes
// expected: 0 means no Le field (cases 1 and 3); a short Le of 00 is Ne 256,
// an extended Le of 0000 is Ne 65536. Extended forces the extended encoding
// (it is also used whenever Data or Ne does not fit the short one).
type Command struct {
	CLA, INS, P1, P2 byte
	Data             []byte
	Ne               int
	Extended         bool
}

// ParseCommand parses a command APDU of case 1, 2, 3 or 4, short or
// extended. Data aliases b.
func ParseCommand(b []byte) (Command, error) {
	if len(b) < 4 {
		return Command{}, fmt.Errorf("%w: %d bytes, need at least 4", ErrMalformedAPDU, len(b))
	}
	c := Command{CLA: b[0], INS: b[1], P1: b[2], P2: b[3]}
	body := b[4:]
	switch {
	case len(body) == 0: // case 1
		return c, nil
	case len(body) == 1: // case 2S
		c.Ne = shortNe(body[0])
		return c, nil
	case body[0] != 0: // case 3S or 4S
		lc := int(body[0])
		switch len(body) {
		case 1 + lc:
			c.Data = body[1 : 1+lc : 1+lc]
		case 2 + lc:
			c.Data = body[1 : 1+lc : 1+lc]
			c.Ne = shortNe(body[1+lc])
		default:
			return Command{}, fmt.Errorf("%w: Lc %d does not match %d body bytes", ErrMalformedAPDU, lc, len(body))
		}
		return c, nil
	}
	// body[0] == 00 and more bytes follow: extended length.
	c.Extended = true
	if len(body) == 3 { // case 2E
		c.Ne = extendedNe(body[1], body[2])
		return c, nil
	}
	if len(body) < 3 {
		return Command{}, fmt.Errorf("%w: truncated extended length", ErrMalformedAPDU)
	}
	lc := int(body[1])<<8 | int(body[2])
	if lc == 0 {
		return Command{}, fmt.Errorf("%w: extended Lc of 0", ErrMalformedAPDU)
	}
	switch len(body) {
	case 3 + lc: // case 3E
		c.Data = body[3 : 3+lc : 3+lc]
	case 5 + lc: // case 4E
		c.Data = body[3 : 3+lc : 3+lc]
		c.Ne = extendedNe(body[3+lc], body[4+lc])
	default:
		return Command{}, fmt.Errorf("%w: extended Lc %d does not match %d body bytes", ErrMalformedAPDU, lc, len(body))
	}
	return c, nil
}

func shortNe(le byte) int {
	if le == 0 {
		return MaxShortNe
	}
	return int(le)
}

func extendedNe(hi, lo byte) int {
	n := int(hi)<<8 | int(lo)
	if n == 0 {
		return MaxExtendedNe
	}
	return n
}

// Bytes encodes the command, short when it fits unless Extended is set.
// Data beyond MaxExtendedDataBytes or Ne beyond MaxExtendedNe is an error.
func (c Command) Bytes() ([]byte, error) {
	if len(c.Data) > MaxExtendedDataBytes {
		return nil, fmt.Errorf("%w: %d data bytes (max %d)", ErrMalformedAPDU, len(c.Data), MaxExtendedDataBytes)
	}
	if c.Ne < 0 || c.Ne > MaxExtendedNe {
		return nil, fmt.Errorf("%w: Ne %d out of range", ErrMalformedAPDU, c.Ne)
	}
	ext := c.Extended || len(c.Data) > MaxShortDataBytes || c.Ne > MaxShortNe
	out := make([]byte, 0, 4+3+len(c.Data)+3)
	out = append(out, c.CLA, c.INS, c.P1, c.P2)
	if !ext {
		if len(c.Data) > 0 {
			out = append(out, byte(len(c.Data)))
			out = append(out, c.Data...)
		}
		if c.Ne > 0 {
			out = append(out, byte(c.Ne)) // 256 encodes as 00
		}
		return out, nil
	}
	if len(c.Data) > 0 {
		out = append(out, 0x00, byte(len(c.Data)>>8), byte(len(c.Data)))
		out = append(out, c.Data...)
	}
	if c.Ne > 0 {
		if len(c.Data) == 0 {
			out = append(out, 0x00)
		}
		out = append(out, byte(c.Ne>>8), byte(c.Ne)) // 65536 encodes as 0000
	}
	return out, nil
}

// Response is a response APDU: data and the status word SW1‖SW2.
type Response struct {
	Data []byte
	SW   uint16
}

// ParseResponse parses a response APDU (at least SW1 SW2). Data aliases b.
func ParseResponse(b []byte) (Response, error) {
	if len(b) < 2 {
		return Response{}, fmt.Errorf("%w: response of %d bytes, need at least 2", ErrMalformedAPDU, len(b))
	}
	n := len(b) - 2
	return Response{Data: b[:n:n], SW: uint16(b[n])<<8 | uint16(b[n+1])}, nil
}

// Bytes encodes the response: data‖SW1‖SW2.
func (r Response) Bytes() []byte {
	out := make([]byte, 0, len(r.Data)+2)
	out = append(out, r.Data...)
	return append(out, byte(r.SW>>8), byte(r.SW))
}

// OK reports whether the status word is 9000.
func (r Response) OK() bool { return r.SW == SWSuccess }

// Status words (ISO 7816-4, EMV, PBOC e-purse).
const (
	SWSuccess                 uint16 = 0x9000
	SWWrongLength             uint16 = 0x6700
	SWSecurityNotSatisfied    uint16 = 0x6982
	SWAuthMethodBlocked       uint16 = 0x6983
	SWReferenceDataInvalid    uint16 = 0x6984
	SWConditionsNotSatisfied  uint16 = 0x6985
	SWCommandNotAllowed       uint16 = 0x6986
	SWWrongData               uint16 = 0x6A80
	SWFunctionNotSupported    uint16 = 0x6A81
	SWFileNotFound            uint16 = 0x6A82
	SWRecordNotFound          uint16 = 0x6A83
	SWNotEnoughMemory         uint16 = 0x6A84
	SWIncorrectP1P2           uint16 = 0x6A86
	SWReferencedDataNotFound  uint16 = 0x6A88
	SWWrongP1P2               uint16 = 0x6B00
	SWINSNotSupported         uint16 = 0x6D00
	SWCLANotSupported         uint16 = 0x6E00
	SWUnknown                 uint16 = 0x6F00
	SWMemoryFailure           uint16 = 0x6581
	SWMACInvalid              uint16 = 0x9302
	SWApplicationLocked       uint16 = 0x9303
	SWInsufficientBalance     uint16 = 0x9401
	SWKeyIndexNotSupported    uint16 = 0x9403
	SWRequiredMACUnavailable  uint16 = 0x9406
	SWSelectedFileInvalidated uint16 = 0x6283
)

var swTexts = map[uint16]string{
	SWSuccess:                 "success",
	SWWrongLength:             "wrong length",
	SWSecurityNotSatisfied:    "security status not satisfied",
	SWAuthMethodBlocked:       "authentication method blocked",
	SWReferenceDataInvalid:    "referenced data invalidated",
	SWConditionsNotSatisfied:  "conditions of use not satisfied",
	SWCommandNotAllowed:       "command not allowed",
	SWWrongData:               "incorrect parameters in the data field",
	SWFunctionNotSupported:    "function not supported",
	SWFileNotFound:            "file or application not found",
	SWRecordNotFound:          "record not found",
	SWNotEnoughMemory:         "not enough memory space in the file",
	SWIncorrectP1P2:           "incorrect parameters P1-P2",
	SWReferencedDataNotFound:  "referenced data not found",
	SWWrongP1P2:               "wrong parameters P1-P2",
	SWINSNotSupported:         "instruction code not supported",
	SWCLANotSupported:         "class not supported",
	SWUnknown:                 "no precise diagnosis",
	SWMemoryFailure:           "memory failure",
	SWMACInvalid:              "MAC invalid",
	SWApplicationLocked:       "application permanently locked",
	SWInsufficientBalance:     "insufficient balance",
	SWKeyIndexNotSupported:    "key index not supported",
	SWRequiredMACUnavailable:  "required MAC unavailable",
	SWSelectedFileInvalidated: "selected file invalidated",
}

// SWText is a short English meaning of a status word.
func SWText(sw uint16) string {
	if s, ok := swTexts[sw]; ok {
		return s
	}
	switch sw >> 8 {
	case 0x61:
		return fmt.Sprintf("%d response bytes still available", sw&0xFF)
	case 0x6C:
		return fmt.Sprintf("wrong Le; exact length is %d", sw&0xFF)
	case 0x63:
		if sw&0xF0 == 0xC0 {
			return fmt.Sprintf("verification failed, %d tries left", sw&0x0F)
		}
		return "warning: state of non-volatile memory changed"
	case 0x62:
		return "warning: state of non-volatile memory unchanged"
	case 0x64, 0x65:
		return "execution error"
	}
	return fmt.Sprintf("unknown status %04X", sw)
}
