package emv

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestDecodeTLVMalformed(t *testing.T) {
	deep := []byte{}
	for range MaxTLVDepth + 1 {
		deep = append([]byte{0x70, byte(len(deep))}, deep...)
	}
	cases := []struct{ name, hex string }{
		{"truncated multi-byte tag", "9F"},
		{"tag longer than 4 bytes", "9F8181810100"},
		{"missing length", "9F26"},
		{"length beyond data", "9F260801"},
		{"long-form length beyond data", "5A8201FF00"},
		{"indefinite length", "708000"},
		{"4-byte length", "5A8400000001AA"},
		{"huge 8-byte length", "5A88FFFFFFFFFFFFFFFF"},
		{"truncated long-form length", "5A82FF"},
		{"bad child", "70035A0501"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeTLV(mustHex(t, c.hex))
			if !errors.Is(err, ErrMalformedTLV) {
				t.Fatalf("err = %v, want ErrMalformedTLV", err)
			}
		})
	}
	t.Run("nesting deeper than MaxTLVDepth", func(t *testing.T) {
		if _, err := DecodeTLV(deep); !errors.Is(err, ErrMalformedTLV) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("nesting at MaxTLVDepth is fine", func(t *testing.T) {
		if _, err := DecodeTLV(deep[2:]); err != nil {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestDecodeTLVForms(t *testing.T) {
	t.Run("padding 00 skipped", func(t *testing.T) {
		tlvs, err := DecodeTLV(mustHex(t, "00009F360200010000"))
		if err != nil || len(tlvs) != 1 || tlvs[0].Tag != 0x9F36 {
			t.Fatalf("tlvs = %+v, %v", tlvs, err)
		}
	})
	t.Run("long form lengths", func(t *testing.T) {
		v := bytes.Repeat([]byte{0xAB}, 300)
		enc := AppendTLV(nil, 0x9F4B, v)
		if !bytes.Equal(enc[:5], mustHex(t, "9F4B82012C")) {
			t.Fatalf("header %X", enc[:5])
		}
		tlvs, err := DecodeTLV(enc)
		if err != nil || !bytes.Equal(tlvs[0].Value, v) {
			t.Fatalf("decode: %v", err)
		}
		if got := AppendLength(nil, 200); !bytes.Equal(got, []byte{0x81, 200}) {
			t.Fatalf("length 200 = %X", got)
		}
		if got := AppendLength(nil, 0x10000); !bytes.Equal(got, []byte{0x83, 1, 0, 0}) {
			t.Fatalf("length 65536 = %X", got)
		}
	})
	t.Run("3-byte tag", func(t *testing.T) {
		tlvs, err := DecodeTLV(mustHex(t, "DF8101020102"))
		if err != nil || tlvs[0].Tag != 0xDF8101 || TagLen(0xDF8101) != 3 {
			t.Fatalf("tlvs = %+v, %v", tlvs, err)
		}
		if enc := EncodeTLV(tlvs); hexOf(enc) != "DF8101020102" {
			t.Fatalf("encode = %X", enc)
		}
	})
	t.Run("empty constructed", func(t *testing.T) {
		tlvs, err := DecodeTLV(mustHex(t, "7000"))
		if err != nil || len(tlvs) != 1 || len(tlvs[0].Children) != 0 {
			t.Fatalf("tlvs = %+v, %v", tlvs, err)
		}
	})
	t.Run("empty input", func(t *testing.T) {
		tlvs, err := DecodeTLV(nil)
		if err != nil || len(tlvs) != 0 {
			t.Fatalf("tlvs = %+v, %v", tlvs, err)
		}
	})
}

func TestFind(t *testing.T) {
	tlvs, err := DecodeTLV(mustHex(t, "6F2F840E325041592E5359532E4444463031A51DBF0C1A61184F07A0000000041010500A4D617374657263617264870101"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"6F.A5.BF0C.61.99", "6F.XX", "", "6F..84", "84"} {
		t.Run("miss "+path, func(t *testing.T) {
			if v, ok := Find(tlvs, path); ok {
				t.Fatalf("Find(%q) = %+v", path, v)
			}
		})
	}
	t.Run("lower-case path", func(t *testing.T) {
		if v, ok := Find(tlvs, "6f.a5.bf0c.61.87"); !ok || hexOf(v.Value) != "01" {
			t.Fatalf("Find = %+v, %v", v, ok)
		}
	})
	t.Run("Search depth first", func(t *testing.T) {
		if v, ok := Search(tlvs, 0x4F); !ok || hexOf(v.Value) != "A0000000041010" {
			t.Fatalf("Search = %+v, %v", v, ok)
		}
	})
}

func TestPretty(t *testing.T) {
	tlvs, err := DecodeTLV(mustHex(t, "6F30840E325041592E5359532E4444463031A51EBF0C1B61194F08A000000333010101500A50424F43204445424954870101"))
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	if err := Pretty(&sb, tlvs); err != nil {
		t.Fatal(err)
	}
	want := `6F File Control Information (FCI) Template
  84 Dedicated File (DF) Name: 325041592E5359532E4444463031 "2PAY.SYS.DDF01"
  A5 File Control Information (FCI) Proprietary Template
    BF0C File Control Information (FCI) Issuer Discretionary Data
      61 Application Template
        4F Application Identifier (AID) - card: A000000333010101
        50 Application Label: 50424F43204445424954 "PBOC DEBIT"
        87 Application Priority Indicator: 01
`
	if sb.String() != want {
		t.Fatalf("Pretty =\n%s\nwant\n%s", sb.String(), want)
	}
	t.Run("PAN masked", func(t *testing.T) {
		var sb strings.Builder
		tlvs, _ := DecodeTLV(mustHex(t, "5A08622848000000123457116228480000001234D2512201000012345F"))
		if err := Pretty(&sb, tlvs); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(sb.String(), "6228480000001234") || !strings.Contains(sb.String(), "622848******1234") {
			t.Fatalf("PAN not masked:\n%s", sb.String())
		}
	})
}

func TestDictionaryCoversDesignTags(t *testing.T) {
	// Every tag DESIGN.md names (GPO answer, DE55, records, PPSE) and the
	// qPBOC tags the POS and SE use.
	tags := []uint32{0x9F26, 0x9F27, 0x9F10, 0x9F37, 0x9F36, 0x95, 0x9A, 0x9C, 0x9F02, 0x5F2A,
		0x82, 0x9F1A, 0x9F03, 0x9F33, 0x9F34, 0x9F35, 0x9F1E, 0x84, 0x9F09, 0x9F41, 0x94,
		0x9F6C, 0x9F66, 0x9F5D, 0x9F4E, 0x9F74, 0xDF60, 0xDF61, 0x5A, 0x57, 0x5F24, 0x5F34,
		0x9F38, 0x8C, 0x91, 0x6F, 0xA5, 0xBF0C, 0x61, 0x4F, 0x50, 0x87, 0x77, 0x70}
	for _, tag := range tags {
		if info, ok := LookupTag(tag); !ok || info.Name == "" || info.Tag != tag {
			t.Errorf("tag %X missing from the dictionary", tag)
		}
	}
	if TagFormat(0x9F02) != FormatN || TagFormat(0x5A) != FormatCN || TagFormat(0x9F4E) != FormatANS {
		t.Fatal("formats wrong")
	}
}
