package issuer

import (
	"strconv"
	"sync/atomic"
	"time"
)

// idGen makes time-ordered ids: the Unix millisecond in the high bits and a
// counter in the low 20, strictly increasing within the process (a clock
// step back does not make an id go back). Time order keeps the store's
// primary-key inserts at the end of the index (cheap) and makes "since T" a
// key range. A restart continues above the largest stored id.
type idGen struct {
	last atomic.Uint64
}

const idCounterBits = 20

// next returns prefix + 16 hex digits.
func (g *idGen) next(prefix string, now time.Time) string {
	floor := uint64(now.UnixMilli()) << idCounterBits
	for {
		last := g.last.Load()
		v := max(floor, last+1)
		if g.last.CompareAndSwap(last, v) {
			return prefix + hex16(v)
		}
	}
}

// floorID is the smallest id of time t: ids >= it were made at t or later.
func floorID(prefix string, t time.Time) string {
	return prefix + hex16(uint64(max(t.UnixMilli(), 0))<<idCounterBits)
}

// observe moves the generator above a stored id.
func (g *idGen) observe(prefix, id string) {
	if len(id) != len(prefix)+16 || id[:len(prefix)] != prefix {
		return
	}
	v, err := strconv.ParseUint(id[len(prefix):], 16, 64)
	if err != nil {
		return
	}
	for {
		last := g.last.Load()
		if v <= last || g.last.CompareAndSwap(last, v) {
			return
		}
	}
}

func hex16(v uint64) string {
	const digits = "0123456789abcdef"
	var b [16]byte
	for i := 15; i >= 0; i-- {
		b[i] = digits[v&0xf]
		v >>= 4
	}
	return string(b[:])
}
