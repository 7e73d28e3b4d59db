package iso8583

import (
	"bytes"
	"testing"

	moov "github.com/moov-io/iso8583"
	"github.com/moov-io/iso8583/encoding"
	"github.com/moov-io/iso8583/field"
	"github.com/moov-io/iso8583/prefix"
	"github.com/moov-io/iso8583/sort"
)

// TestMoovCompositeDE55NotByteExact is the evidence behind DE55 being a
// binary field: moov-io's BER-TLV composite, even storing unknown tags,
// packs tags in hex order, so a terminal's DE55 (in its own order) would
// not pass through the switch byte for byte.
func TestMoovCompositeDE55NotByteExact(t *testing.T) {
	sub := map[string]field.Field{}
	for tag := range tagNames {
		sub[TagHex(tag)] = field.NewBinary(&field.Spec{Description: tagNames[tag], Enc: encoding.Binary, Pref: prefix.BerTLV})
	}
	fields := map[int]field.Field{}
	for n, f := range Spec.Fields {
		fields[n] = f
	}
	fields[FieldICC] = field.NewComposite(&field.Spec{
		Length:      MaxLLLBytes,
		Description: "ICC Data (BER-TLV composite)",
		Pref:        prefix.ASCII.LLL,
		Tag: &field.TagSpec{
			Enc:                 encoding.BerTLVTag,
			Sort:                sort.StringsByHex,
			SkipUnknownTLVTags:  true,
			StoreUnknownTLVTags: true,
		},
		Subfields: sub,
	})
	compositeSpec := &moov.MessageSpec{Name: "DE55 as composite", Fields: fields}

	wire, err := Pack(sample0200(t))
	if err != nil {
		t.Fatal(err)
	}
	m := moov.NewMessage(compositeSpec)
	if err := m.Unpack(wire); err != nil {
		t.Fatalf("composite unpack: %v", err)
	}
	repacked, err := m.Pack()
	if err != nil {
		t.Fatalf("composite repack: %v", err)
	}
	if bytes.Equal(repacked, wire) {
		t.Fatal("the composite round-trips byte-exactly: DE55 could be modelled as moov's BER-TLV composite")
	}
	if len(repacked) != len(wire) {
		t.Logf("composite changes the length too: %d → %d", len(wire), len(repacked))
	}
}
