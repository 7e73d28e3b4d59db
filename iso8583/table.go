package iso8583

import (
	"fmt"

	moov "github.com/moov-io/iso8583"
	"github.com/moov-io/iso8583/encoding"
	"github.com/moov-io/iso8583/field"
	"github.com/moov-io/iso8583/prefix"
)

// encKind is how a field's value is written on the wire.
type encKind uint8

const (
	encASCII  encKind = iota + 1 // bytes as-is, each must be ≤ 0x7F
	encBinary                    // bytes as-is
	encHex                       // each byte as two uppercase hex characters
)

// fieldDef is one row of the compact table the fast codec runs on. It is
// read from the moov MessageSpec (Spec) at start-up so the declarative spec
// stays the single source of truth.
type fieldDef struct {
	defined bool
	binary  bool    // moov field type: *field.Binary (else *field.String)
	enc     encKind //
	digits  int     // length prefix digits (ASCII decimal); 0 = fixed length
	length  int     // fixed length, or maximum length for variable fields (in value bytes)
	name    string  // Description from the spec
}

// table is the compiled spec.
type table struct {
	defs          [MaxFieldNumber + 1]fieldDef
	bitmapBytes   int  // bytes per bitmap (16 for Spec87ASCII's 128-bit bitmap)
	autoExpand    bool // bit 1 of each bitmap announces another one
	presenceEvery int  // bitmapBytes*8: bits 1, 1+presenceEvery, … are presence bits
}

// compiled is the table of Spec; built once, never written afterwards.
var compiled = mustCompile(Spec)

func mustCompile(spec *moov.MessageSpec) *table {
	t, err := compile(spec)
	if err != nil {
		panic("iso8583: spec not supported by the fast codec: " + err.Error())
	}
	return t
}

// compile turns a moov spec into a table, refusing anything the fast codec
// does not implement exactly (so a spec change cannot silently diverge).
func compile(spec *moov.MessageSpec) (*table, error) {
	t := &table{}
	for id, f := range spec.Fields {
		if id < 0 || id > MaxFieldNumber {
			return nil, fmt.Errorf("field %d: outside 0..%d", id, MaxFieldNumber)
		}
		s := f.Spec()
		if id == FieldBitmap {
			bm, ok := f.(*field.Bitmap)
			if !ok || s.Enc != encoding.BytesToASCIIHex || s.Pref != prefix.Hex.Fixed {
				return nil, fmt.Errorf("bitmap: only hex ASCII fixed bitmaps are supported")
			}
			_ = bm
			t.bitmapBytes = s.Length
			if t.bitmapBytes == 0 {
				t.bitmapBytes = 8
			}
			t.autoExpand = !s.DisableAutoExpand
			t.presenceEvery = t.bitmapBytes * 8
			t.defs[id] = fieldDef{defined: true, name: s.Description}
			continue
		}
		if s.Pad != nil {
			return nil, fmt.Errorf("field %d: padding is not supported", id)
		}
		if s.Packer != nil || s.Unpacker != nil {
			return nil, fmt.Errorf("field %d: custom packers are not supported", id)
		}
		d := fieldDef{defined: true, length: s.Length, name: s.Description}
		switch f.(type) {
		case *field.String:
		case *field.Binary:
			d.binary = true
		default:
			return nil, fmt.Errorf("field %d: type %T not supported", id, f)
		}
		switch s.Enc {
		case encoding.ASCII:
			d.enc = encASCII
		case encoding.Binary:
			d.enc = encBinary
		case encoding.BytesToASCIIHex:
			d.enc = encHex
		default:
			return nil, fmt.Errorf("field %d: encoding not supported", id)
		}
		switch s.Pref {
		case prefix.ASCII.Fixed:
			d.digits = 0
		case prefix.ASCII.L:
			d.digits = 1
		case prefix.ASCII.LL:
			d.digits = 2
		case prefix.ASCII.LLL:
			d.digits = 3
		case prefix.ASCII.LLLL:
			d.digits = 4
		default:
			return nil, fmt.Errorf("field %d: length prefix not supported", id)
		}
		if d.digits > 0 && s.Length > pow10(d.digits)-1 {
			return nil, fmt.Errorf("field %d: max length %d does not fit %d digits", id, s.Length, d.digits)
		}
		if id == FieldMTI && (d.digits != 0 || d.enc != encASCII || d.binary) {
			return nil, fmt.Errorf("MTI: must be fixed ASCII text")
		}
		t.defs[id] = d
	}
	if !t.defs[FieldMTI].defined || !t.defs[FieldBitmap].defined {
		return nil, fmt.Errorf("spec needs an MTI and a bitmap")
	}
	if t.bitmapBytes*8 < MaxFieldNumber && t.autoExpand {
		// Fields above the first bitmap work with auto-expanding bitmaps
		// too, but our spec never needs it; keep the codec simple.
		return nil, fmt.Errorf("bitmap: %d bits; the fast codec expects one bitmap to cover fields 2..%d", t.bitmapBytes*8, MaxFieldNumber)
	}
	return t, nil
}

func pow10(n int) int {
	p := 1
	for range n {
		p *= 10
	}
	return p
}
