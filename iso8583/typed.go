package iso8583

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unsafe"
)

// structField is one tagged field of a typed message struct.
type structField struct {
	index    int     // struct field index
	offset   uintptr // byte offset in the struct: the hot path reads and writes through it
	num      int     // data element (0 = MTI)
	isBytes  bool    // []byte, else string
	keepZero bool
}

type structPlan struct {
	fields []structField
}

// plans caches one plan per struct type, like encoding/json's type cache;
// entries are immutable once stored.
var plans sync.Map // reflect.Type → *structPlan

func planFor(t reflect.Type) (*structPlan, error) {
	if p, ok := plans.Load(t); ok {
		return p.(*structPlan), nil
	}
	p := &structPlan{}
	for i := range t.NumField() {
		sf := t.Field(i)
		tag := sf.Tag.Get("iso8583")
		if tag == "" {
			tag = sf.Tag.Get("index")
		}
		if tag == "" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		n, err := strconv.Atoi(name)
		if err != nil || n < 0 || n > MaxFieldNumber || n == FieldBitmap || !compiled.defs[n].defined {
			return nil, fmt.Errorf("iso8583: %s.%s: tag %q is not a field of the spec", t.Name(), sf.Name, tag)
		}
		f := structField{index: i, offset: sf.Offset, num: n, keepZero: opts == "keepzero"}
		switch {
		case sf.Type.Kind() == reflect.String:
		case sf.Type.Kind() == reflect.Slice && sf.Type.Elem().Kind() == reflect.Uint8:
			f.isBytes = true
		default:
			return nil, fmt.Errorf("iso8583: %s.%s: type %s not supported (string or []byte)", t.Name(), sf.Name, sf.Type)
		}
		if f.isBytes != compiled.defs[n].binary {
			return nil, fmt.Errorf("iso8583: %s.%s: field %d needs a %s", t.Name(), sf.Name, n, map[bool]string{true: "[]byte", false: "string"}[compiled.defs[n].binary])
		}
		p.fields = append(p.fields, f)
	}
	actual, _ := plans.LoadOrStore(t, p)
	return actual.(*structPlan), nil
}

// structPointer returns the address of the struct v is or points to, and
// its type. A struct passed by value is copied first (one allocation).
func structPointer(v any) (unsafe.Pointer, reflect.Type, error) {
	rv := reflect.ValueOf(v)
	switch {
	case rv.Kind() == reflect.Pointer && !rv.IsNil() && rv.Elem().Kind() == reflect.Struct:
		return rv.UnsafePointer(), rv.Type().Elem(), nil
	case rv.Kind() == reflect.Struct:
		c := reflect.New(rv.Type())
		c.Elem().Set(rv)
		return c.UnsafePointer(), rv.Type(), nil
	}
	return nil, nil, fmt.Errorf("iso8583: %T is not a message struct", v)
}

// marshalBufBytes fits a 0200 with a full DE55 (values about 600 bytes).
const marshalBufBytes = 1024

// Marshal sets m's fields from the tagged struct v (AuthRequest, …) after
// resetting m. Empty values are left out unless tagged ",keepzero".
func (m *Message) Marshal(v any) error {
	base, t, err := structPointer(v)
	if err != nil {
		return err
	}
	p, err := planFor(t)
	if err != nil {
		return err
	}
	m.Reset()
	if cap(m.buf) < marshalBufBytes {
		// One allocation for a typical message instead of a few growths.
		m.buf = make([]byte, 0, marshalBufBytes)
	}
	for _, f := range p.fields {
		ptr := unsafe.Add(base, f.offset)
		if f.isBytes {
			b := *(*[]byte)(ptr)
			if len(b) == 0 && !f.keepZero {
				continue
			}
			m.Set(f.num, b)
		} else {
			s := *(*string)(ptr)
			if s == "" && !f.keepZero {
				continue
			}
			m.SetString(f.num, s)
		}
	}
	return nil
}

// Unmarshal fills the tagged struct v (a pointer) from m. Tagged fields the
// message lacks are set to their zero value; fields of m without a struct
// field are ignored. All values share one allocation, independent of m.
func (m *Message) Unmarshal(v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("iso8583: Unmarshal needs a non-nil pointer to a message struct, got %T", v)
	}
	p, err := planFor(rv.Type().Elem())
	if err != nil {
		return err
	}
	base := rv.UnsafePointer()
	// One private copy of the buffer backs every value: strings are
	// substrings of it, byte slices are capacity-limited sub-slices. Spans
	// never overlap, so writing into a byte slice cannot change a string.
	var own []byte
	var all string
	if len(m.buf) > 0 {
		own = make([]byte, len(m.buf))
		copy(own, m.buf)
		all = unsafe.String(&own[0], len(own))
	}
	for _, f := range p.fields {
		ptr := unsafe.Add(base, f.offset)
		if !m.Has(f.num) {
			if f.isBytes {
				*(*[]byte)(ptr) = nil
			} else {
				*(*string)(ptr) = ""
			}
			continue
		}
		s := m.spans[f.num]
		off, end := int(s.off), int(s.off)+int(s.n)
		if f.isBytes {
			*(*[]byte)(ptr) = own[off:end:end]
		} else {
			*(*string)(ptr) = all[off:end]
		}
	}
	return nil
}

var messagePool = sync.Pool{New: func() any { return &Message{buf: make([]byte, 0, 512)} }}

// maxPooledBytes keeps one huge message from pinning a huge buffer in the pool.
const maxPooledBytes = 16 << 10

func getMessage() *Message { return messagePool.Get().(*Message) }

func putMessage(m *Message) {
	if cap(m.buf) > maxPooledBytes {
		return
	}
	m.Reset()
	messagePool.Put(m)
}

// Pack packs the tagged struct v (AuthRequest, Reversal, …) into wire bytes
// (no frame header) with the fast codec.
func Pack(v any) ([]byte, error) {
	m := getMessage()
	defer putMessage(m)
	if err := m.Marshal(v); err != nil {
		return nil, err
	}
	return m.Pack()
}

// Unpack parses wire bytes b (no frame header) into the tagged struct v (a
// pointer) with the fast codec.
func Unpack(b []byte, v any) error {
	m := getMessage()
	defer putMessage(m)
	if err := m.Unpack(b); err != nil {
		return err
	}
	return m.Unmarshal(v)
}
