package emv

import (
	"crypto/des"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// TestDESMatchesStdlib checks the table-driven DES core against crypto/des
// on random keys and blocks, single and double length, both directions.
func TestDESMatchesStdlib(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		var key [16]byte
		binary.BigEndian.PutUint64(key[:8], rng.Uint64())
		binary.BigEndian.PutUint64(key[8:], rng.Uint64())
		block := rng.Uint64()
		var in, want [8]byte
		binary.BigEndian.PutUint64(in[:], block)

		var dk desKey
		dk.setKeyBytes(key[:8])
		ref, err := des.NewCipher(key[:8])
		if err != nil {
			t.Fatal(err)
		}
		ref.Encrypt(want[:], in[:])
		if got := dk.encrypt(block); got != binary.BigEndian.Uint64(want[:]) {
			t.Fatalf("case %d: DES encrypt %016X, want %X", i, got, want)
		}
		ref.Decrypt(want[:], in[:])
		if got := dk.decrypt(block); got != binary.BigEndian.Uint64(want[:]) {
			t.Fatalf("case %d: DES decrypt %016X, want %X", i, got, want)
		}

		var tk tdesKey
		tk.setKeyBytes(key[:])
		k24 := append(append([]byte(nil), key[:]...), key[:8]...)
		tref, err := des.NewTripleDESCipher(k24)
		if err != nil {
			t.Fatal(err)
		}
		tref.Encrypt(want[:], in[:])
		if got := tk.encrypt(block); got != binary.BigEndian.Uint64(want[:]) {
			t.Fatalf("case %d: 3DES encrypt %016X, want %X", i, got, want)
		}
		tref.Decrypt(want[:], in[:])
		if got := tk.decrypt(block); got != binary.BigEndian.Uint64(want[:]) {
			t.Fatalf("case %d: 3DES decrypt %016X, want %X", i, got, want)
		}
	}
}

func BenchmarkDESKeySchedule(b *testing.B) {
	b.ReportAllocs()
	var k desKey
	key := uint64(0x0123456789ABCDEF)
	for b.Loop() {
		k.setKey(key)
		key++
	}
}
