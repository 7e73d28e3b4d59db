package iso8583

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	moov "github.com/moov-io/iso8583"
	"github.com/moov-io/iso8583/field"
)

// The fast codec may only exist if it is byte-identical to moov-io with
// Spec. These tests compare both on random messages (packing) and on
// random, valid and mutated wire bytes (unpacking); FuzzUnpackEquivalence
// keeps looking.

// specFields lists the data elements of Spec (2..128).
func specFields() []int {
	var out []int
	for n := 2; n <= MaxFieldNumber; n++ {
		if compiled.defs[n].defined {
			out = append(out, n)
		}
	}
	return out
}

// randomValue returns a value for field n: valid most of the time, and
// sometimes too long, too short or not ASCII, so errors are compared too.
func randomValue(r *rand.Rand, n int, invalid bool) []byte {
	d := compiled.defs[n]
	l := d.length
	if d.digits > 0 {
		l = r.IntN(d.length + 1)
		if r.IntN(4) == 0 {
			l = min(l, 20) // short values are the common case
		}
	}
	if invalid {
		switch r.IntN(3) {
		case 0:
			l++
		case 1:
			if l > 0 {
				l--
			}
		}
	}
	v := make([]byte, l)
	for i := range v {
		switch {
		case d.enc != encASCII:
			v[i] = byte(r.IntN(256))
		case invalid && r.IntN(8) == 0:
			v[i] = byte(0x80 + r.IntN(128))
		default:
			v[i] = byte(r.IntN(128))
		}
	}
	return v
}

type flatField struct {
	n int
	v []byte
}

// randomFields returns an MTI and fields; invalid makes one value bad.
func randomFields(r *rand.Rand, all []int, invalid bool) (string, []flatField) {
	mti := []byte("0200")
	if r.IntN(10) == 0 {
		for i := range mti {
			mti[i] = byte(r.IntN(128))
		}
	} else {
		mti[1] = "1248"[r.IntN(4)]
		mti[2] = "0123"[r.IntN(4)]
	}
	var fields []flatField
	bad := -1
	if invalid {
		bad = all[r.IntN(len(all))]
	}
	for _, n := range all {
		if n != bad && r.IntN(3) != 0 {
			continue
		}
		fields = append(fields, flatField{n, randomValue(r, n, n == bad)})
	}
	return string(mti), fields
}

func packBoth(tb testing.TB, mti string, fields []flatField) (fast, ref []byte, fastErr, refErr error) {
	tb.Helper()
	m := NewMessage(mti)
	mm := moov.NewMessage(Spec)
	mm.MTI(mti)
	for _, f := range fields {
		m.Set(f.n, f.v)
		var err error
		if compiled.defs[f.n].binary {
			err = mm.BinaryField(f.n, f.v)
		} else {
			err = mm.Field(f.n, string(f.v))
		}
		if err != nil {
			tb.Fatalf("moov refused to set field %d: %v", f.n, err)
		}
	}
	fast, fastErr = m.Pack()
	ref, refErr = mm.Pack()
	return
}

// moovUnpack unpacks with moov-io, turning a panic into an error.
func moovUnpack(b []byte) (m *moov.Message, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("moov panicked: %v", p)
		}
	}()
	m = moov.NewMessage(Spec)
	return m, m.Unpack(b)
}

// compareUnpack unpacks b with both codecs and reports any difference.
// Inputs above MaxUnpackBytes are refused by the fast codec on purpose (no
// frame of the link can carry them) and are not compared.
func compareUnpack(b []byte) error {
	if len(b) > MaxUnpackBytes {
		return nil
	}
	fast := &Message{}
	_, fastErr := fast.UnpackPrefix(b)
	ref, refErr := moovUnpack(b)
	if (fastErr == nil) != (refErr == nil) {
		return fmt.Errorf("fast err %v, moov err %v", fastErr, refErr)
	}
	if fastErr != nil {
		return nil
	}
	mti, _ := ref.GetMTI()
	if mti != fast.MTI() {
		return fmt.Errorf("MTI differs")
	}
	refFields := ref.GetFields()
	var nums [MaxFieldNumber]int
	got := fast.FieldNumbers(nums[:0])
	if len(refFields) != len(got)+2 { // moov also lists MTI and bitmap
		return fmt.Errorf("fast has %d fields, moov %d", len(got), len(refFields)-2)
	}
	for _, n := range got {
		f, ok := refFields[n]
		if !ok {
			return fmt.Errorf("field %d only in fast", n)
		}
		var v []byte
		switch f := f.(type) {
		case *field.String:
			v = []byte(f.Value())
		case *field.Binary:
			v = f.Value()
		default:
			return fmt.Errorf("field %d: unexpected moov type %T", n, f)
		}
		if !bytes.Equal(v, fast.Field(n)) {
			return fmt.Errorf("field %d differs", n)
		}
	}
	// The typed view agrees too.
	for _, mk := range []func() any{func() any { return &AuthRequest{} }, func() any { return &Reversal{} }} {
		a, b := mk(), mk()
		errA := fast.Unmarshal(a)
		errB := ref.Unmarshal(b)
		if (errA == nil) != (errB == nil) {
			return fmt.Errorf("%T: fast Unmarshal err %v, moov %v", a, errA, errB)
		}
		if errA == nil && !reflect.DeepEqual(emptyToNil(a), emptyToNil(b)) {
			return fmt.Errorf("%T: typed values differ", a)
		}
	}
	// And repacking gives the same bytes.
	fb, fErr := fast.Pack()
	rb, rErr := ref.Pack()
	if (fErr == nil) != (rErr == nil) || !bytes.Equal(fb, rb) {
		return fmt.Errorf("repack differs: fast err %v, moov err %v", fErr, rErr)
	}
	return nil
}

func TestFastCodecPacksLikeMoov(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	all := specFields()
	const messages = 12000
	var packed, refused int
	for i := range messages {
		invalid := i%5 == 0
		mti, fields := randomFields(r, all, invalid)
		fast, ref, fastErr, refErr := packBoth(t, mti, fields)
		if (fastErr == nil) != (refErr == nil) {
			t.Fatalf("message %d: fast err %v, moov err %v", i, fastErr, refErr)
		}
		if fastErr != nil {
			refused++
			continue
		}
		if !bytes.Equal(fast, ref) {
			t.Fatalf("message %d differs:\nfast %q\nmoov %q", i, fast, ref)
		}
		packed++
	}
	if packed < messages/2 || refused < messages/10 {
		t.Fatalf("corpus too one-sided: %d packed, %d refused", packed, refused)
	}
	t.Logf("%d messages byte-identical, %d refused by both", packed, refused)
}

func TestFastCodecUnpacksLikeMoov(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	all := specFields()
	const messages = 12000
	var ok, refused int
	for i := range messages {
		mti, fields := randomFields(r, all, false)
		_, wire, _, err := packBoth(t, mti, fields)
		if err != nil {
			continue // an MTI moov cannot pack: nothing to unpack
		}
		in := mutate(r, wire, i%2 == 1)
		if err := compareUnpack(in); err != nil {
			t.Fatalf("message %d (%q): %v", i, in, err)
		}
		if _, err := (&Message{}).UnpackPrefix(in); err == nil {
			ok++
		} else {
			refused++
		}
	}
	if ok < messages/3 || refused < messages/10 {
		t.Fatalf("corpus too one-sided: %d unpacked, %d refused", ok, refused)
	}
	t.Logf("%d unpacked identically, %d refused by both", ok, refused)
}

// emptyToNil makes empty byte slices nil so a present-but-empty binary
// field compares equal whichever codec produced it.
func emptyToNil(v any) any {
	rv := reflect.ValueOf(v).Elem()
	for i := range rv.NumField() {
		f := rv.Field(i)
		if f.Kind() == reflect.Slice && f.Len() == 0 {
			f.SetZero()
		}
	}
	return v
}

// mutate returns b unchanged or with a few random edits when damage is set:
// flipped or replaced bytes (often digits of length prefixes), truncation,
// insertions, bitmap bits.
func mutate(r *rand.Rand, b []byte, damage bool) []byte {
	out := append([]byte(nil), b...)
	if !damage {
		return out
	}
	for range 1 + r.IntN(3) {
		if len(out) == 0 {
			break
		}
		i := r.IntN(len(out))
		switch r.IntN(7) {
		case 0:
			out[i] ^= 1 << r.IntN(8)
		case 1:
			out[i] = "0123456789+-AF af"[r.IntN(17)]
		case 2:
			out = out[:i]
		case 3:
			out = append(out[:i], append([]byte{byte(r.IntN(256))}, out[i:]...)...)
		case 4:
			if len(out) >= 36 { // a bitmap hex digit
				out[4+r.IntN(32)] = "0123456789ABCDEFabcdef"[r.IntN(22)]
			}
		case 5:
			out = append(out, byte(r.IntN(256)))
		case 6:
			if len(out) >= 36 {
				out[4] = '8' + byte(r.IntN(8)) // announce another bitmap
				out = append(out[:36], append(bytes.Repeat([]byte{'0'}, 32), out[36:]...)...)
			}
		}
	}
	return out
}
