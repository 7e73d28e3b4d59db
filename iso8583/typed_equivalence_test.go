package iso8583

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"testing"

	moov "github.com/moov-io/iso8583"
)

// randomStruct fills every tagged field of the struct *v points to with a
// random valid value for its data element (or leaves it empty).
func randomStruct(r *rand.Rand, v any) {
	rv := reflect.ValueOf(v).Elem()
	p, err := planFor(rv.Type())
	if err != nil {
		panic(err)
	}
	for _, f := range p.fields {
		if f.num == FieldMTI {
			rv.Field(f.index).SetString("0" + string("1248"[r.IntN(4)]) + string("0123"[r.IntN(4)]) + "0")
			continue
		}
		if r.IntN(3) == 0 {
			continue
		}
		val := randomValue(r, f.num, false)
		if len(val) == 0 {
			continue // empty means absent in both codecs
		}
		if f.isBytes {
			rv.Field(f.index).SetBytes(val)
		} else {
			rv.Field(f.index).SetString(string(val))
		}
	}
}

func TestTypedCodecsAgree(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	newOf := []func() any{
		func() any { return &AuthRequest{} }, func() any { return &AuthResponse{} },
		func() any { return &Reversal{} }, func() any { return &ReversalResponse{} },
		func() any { return &NetMgmt{} },
	}
	for i := range 3000 {
		mk := newOf[i%len(newOf)]
		v := mk()
		randomStruct(r, v)
		fast, err := Pack(v)
		if err != nil {
			t.Fatalf("%T %d: fast: %v", v, i, err)
		}
		ref, err := moovPack(t, v)
		if err != nil {
			t.Fatalf("%T %d: moov: %v", v, i, err)
		}
		if !bytes.Equal(fast, ref) {
			t.Fatalf("%T %d: packs differ:\nfast %q\nmoov %q", v, i, fast, ref)
		}
		gotFast, gotRef := mk(), mk()
		if err := Unpack(fast, gotFast); err != nil {
			t.Fatal(err)
		}
		mm := moov.NewMessage(Spec)
		if err := mm.Unpack(fast); err != nil {
			t.Fatal(err)
		}
		if err := mm.Unmarshal(gotRef); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(gotFast, gotRef) || !reflect.DeepEqual(gotFast, v) {
			t.Fatalf("%T %d: unpacked structs differ", v, i)
		}
	}
}
