package emv

// A DES/3DES core for the hot paths (ARQC verification on the switch, key
// derivation in the HSM): crypto/des builds its key schedule with a
// bit-by-bit permutation (about 1 µs a key on this machine) and is reached
// through cipher.Block, so every block buffer escapes to the heap. The
// ARQC path schedules 4 fresh keys per authorization (ICC MK halves,
// session key halves), so here the schedule is table driven (PC1 and PC2 as
// byte-indexed lookup tables) and blocks travel as uint64 values: no
// allocation. Block encryption (initial/final permutation, Feistel rounds)
// is a port of Go's crypto/des (BSD-style license, Copyright 2011 The Go
// Authors). TestDESMatchesStdlib checks it against crypto/des.

import "encoding/binary"

// desKey is a scheduled single-DES key.
type desKey struct {
	subkeys [16]uint64
}

// tdesKey is a scheduled double-length 3DES key K1‖K2 (EDE, K3 = K1).
type tdesKey struct {
	k1, k2 desKey
}

// desTables are computed once at package initialisation and only read.
type desTables struct {
	feistel [8][64]uint32
	pc1     [8][256]uint64 // PC1 contribution of each key byte
	pc2     [7][256]uint64 // PC2 (then unpack) contribution of each byte of the 56-bit input
}

var desTab = newDESTables()

func newDESTables() *desTables {
	t := new(desTables)
	for s := range desSBoxes {
		for i := 0; i < 4; i++ {
			for j := 0; j < 16; j++ {
				f := uint64(desSBoxes[s][i][j]) << (4 * (7 - uint(s)))
				f = permuteBits(f, desPermutationFunction[:])
				row := uint8(((i & 2) << 4) | i&1)
				col := uint8(j << 1)
				f = (f << 1) | (f >> 31)
				t.feistel[s][row|col] = uint32(f)
			}
		}
	}
	for b := 0; b < 8; b++ {
		for v := 0; v < 256; v++ {
			t.pc1[b][v] = permuteBits(uint64(v)<<(8*b), desPermutedChoice1[:])
		}
	}
	for b := 0; b < 7; b++ {
		for v := 0; v < 256; v++ {
			t.pc2[b][v] = desUnpack(permuteBits(uint64(v)<<(8*b), desPermutedChoice2[:]))
		}
	}
	return t
}

// permuteBits is the general DES bit permutation (slow; tables only).
func permuteBits(src uint64, permutation []uint8) (block uint64) {
	for position, n := range permutation {
		bit := (src >> n) & 1
		block |= bit << uint((len(permutation)-1)-position)
	}
	return block
}

// desUnpack spreads a 48-bit subkey to 8 6-bit groups in 8-bit lanes (as
// crypto/des does). It only moves bits, so it distributes over OR, which
// lets the PC2 tables hold unpacked contributions.
func desUnpack(x uint64) uint64 {
	return ((x>>(6*1))&0xff)<<(8*0) |
		((x>>(6*3))&0xff)<<(8*1) |
		((x>>(6*5))&0xff)<<(8*2) |
		((x>>(6*7))&0xff)<<(8*3) |
		((x>>(6*0))&0xff)<<(8*4) |
		((x>>(6*2))&0xff)<<(8*5) |
		((x>>(6*4))&0xff)<<(8*6) |
		((x>>(6*6))&0xff)<<(8*7)
}

// setKey schedules an 8-byte key (parity bits ignored).
func (k *desKey) setKey(key uint64) {
	t := desTab
	var pk uint64
	for b := 0; b < 8; b++ {
		pk |= t.pc1[b][byte(key>>(8*b))]
	}
	left, right := uint32(pk>>28), uint32(pk<<4)>>4
	for i := 0; i < 16; i++ {
		r := desKsRotations[i]
		left = ((left << (4 + r)) >> 4) | ((left << 4) >> (32 - r))
		right = ((right << (4 + r)) >> 4) | ((right << 4) >> (32 - r))
		in := uint64(left)<<28 | uint64(right)
		var sk uint64
		for b := 0; b < 7; b++ {
			sk |= t.pc2[b][byte(in>>(8*b))]
		}
		k.subkeys[i] = sk
	}
}

func (k *desKey) setKeyBytes(key []byte) { k.setKey(binary.BigEndian.Uint64(key)) }

func (k *tdesKey) setKeyBytes(key []byte) {
	k.k1.setKeyBytes(key[:8])
	k.k2.setKeyBytes(key[8:16])
}

func (k *desKey) encrypt(b uint64) uint64 { return desCrypt(&k.subkeys, b, false) }
func (k *desKey) decrypt(b uint64) uint64 { return desCrypt(&k.subkeys, b, true) }

func (k *tdesKey) encrypt(b uint64) uint64 { return k.k1.encrypt(k.k2.decrypt(k.k1.encrypt(b))) }
func (k *tdesKey) decrypt(b uint64) uint64 { return k.k1.decrypt(k.k2.encrypt(k.k1.decrypt(b))) }

func desCrypt(subkeys *[16]uint64, b uint64, decrypt bool) uint64 {
	b = desInitialPermutation(b)
	left, right := uint32(b>>32), uint32(b)
	left = (left << 1) | (left >> 31)
	right = (right << 1) | (right >> 31)
	if decrypt {
		for i := 0; i < 8; i++ {
			left, right = desFeistel(left, right, subkeys[15-2*i], subkeys[15-(2*i+1)])
		}
	} else {
		for i := 0; i < 8; i++ {
			left, right = desFeistel(left, right, subkeys[2*i], subkeys[2*i+1])
		}
	}
	left = (left << 31) | (left >> 1)
	right = (right << 31) | (right >> 1)
	return desFinalPermutation((uint64(right) << 32) | uint64(left))
}

func desFeistel(l, r uint32, k0, k1 uint64) (uint32, uint32) {
	fb := &desTab.feistel
	t := r ^ uint32(k0>>32)
	l ^= fb[7][t&0x3f] ^ fb[5][(t>>8)&0x3f] ^ fb[3][(t>>16)&0x3f] ^ fb[1][(t>>24)&0x3f]
	t = ((r << 28) | (r >> 4)) ^ uint32(k0)
	l ^= fb[6][t&0x3f] ^ fb[4][(t>>8)&0x3f] ^ fb[2][(t>>16)&0x3f] ^ fb[0][(t>>24)&0x3f]
	t = l ^ uint32(k1>>32)
	r ^= fb[7][t&0x3f] ^ fb[5][(t>>8)&0x3f] ^ fb[3][(t>>16)&0x3f] ^ fb[1][(t>>24)&0x3f]
	t = ((l << 28) | (l >> 4)) ^ uint32(k1)
	r ^= fb[6][t&0x3f] ^ fb[4][(t>>8)&0x3f] ^ fb[2][(t>>16)&0x3f] ^ fb[0][(t>>24)&0x3f]
	return l, r
}

func desInitialPermutation(block uint64) uint64 {
	b1 := block >> 48
	b2 := block << 48
	block ^= b1 ^ b2 ^ b1<<48 ^ b2>>48
	b1 = block >> 32 & 0xff00ff
	b2 = (block & 0xff00ff00)
	block ^= b1<<32 ^ b2 ^ b1<<8 ^ b2<<24
	b1 = block & 0x0f0f00000f0f0000
	b2 = block & 0x0000f0f00000f0f0
	block ^= b1 ^ b2 ^ b1>>12 ^ b2<<12
	b1 = block & 0x3300330033003300
	b2 = block & 0x00cc00cc00cc00cc
	block ^= b1 ^ b2 ^ b1>>6 ^ b2<<6
	b1 = block & 0xaaaaaaaa55555555
	block ^= b1 ^ b1>>33 ^ b1<<33
	return block
}

func desFinalPermutation(block uint64) uint64 {
	b1 := block & 0xaaaaaaaa55555555
	block ^= b1 ^ b1>>33 ^ b1<<33
	b1 = block & 0x3300330033003300
	b2 := block & 0x00cc00cc00cc00cc
	block ^= b1 ^ b2 ^ b1>>6 ^ b2<<6
	b1 = block & 0x0f0f00000f0f0000
	b2 = block & 0x0000f0f00000f0f0
	block ^= b1 ^ b2 ^ b1>>12 ^ b2<<12
	b1 = block >> 32 & 0xff00ff
	b2 = (block & 0xff00ff00)
	block ^= b1<<32 ^ b2 ^ b1<<8 ^ b2<<24
	b1 = block >> 48
	b2 = block << 48
	block ^= b1 ^ b2 ^ b1<<48 ^ b2>>48
	return block
}

// DES constants (FIPS 46-3), in crypto/des's bit numbering.

var desPermutationFunction = [32]byte{
	16, 25, 12, 11, 3, 20, 4, 15,
	31, 17, 9, 6, 27, 14, 1, 22,
	30, 24, 8, 18, 0, 5, 29, 23,
	13, 19, 2, 26, 10, 21, 28, 7,
}

var desPermutedChoice1 = [56]byte{
	7, 15, 23, 31, 39, 47, 55, 63,
	6, 14, 22, 30, 38, 46, 54, 62,
	5, 13, 21, 29, 37, 45, 53, 61,
	4, 12, 20, 28, 1, 9, 17, 25,
	33, 41, 49, 57, 2, 10, 18, 26,
	34, 42, 50, 58, 3, 11, 19, 27,
	35, 43, 51, 59, 36, 44, 52, 60,
}

var desPermutedChoice2 = [48]byte{
	42, 39, 45, 32, 55, 51, 53, 28,
	41, 50, 35, 46, 33, 37, 44, 52,
	30, 48, 40, 49, 29, 36, 43, 54,
	15, 4, 25, 19, 9, 1, 26, 16,
	5, 11, 23, 8, 12, 7, 17, 0,
	22, 3, 10, 14, 6, 20, 27, 24,
}

var desSBoxes = [8][4][16]uint8{
	// S-box 1
	{
		{14, 4, 13, 1, 2, 15, 11, 8, 3, 10, 6, 12, 5, 9, 0, 7},
		{0, 15, 7, 4, 14, 2, 13, 1, 10, 6, 12, 11, 9, 5, 3, 8},
		{4, 1, 14, 8, 13, 6, 2, 11, 15, 12, 9, 7, 3, 10, 5, 0},
		{15, 12, 8, 2, 4, 9, 1, 7, 5, 11, 3, 14, 10, 0, 6, 13},
	},
	// S-box 2
	{
		{15, 1, 8, 14, 6, 11, 3, 4, 9, 7, 2, 13, 12, 0, 5, 10},
		{3, 13, 4, 7, 15, 2, 8, 14, 12, 0, 1, 10, 6, 9, 11, 5},
		{0, 14, 7, 11, 10, 4, 13, 1, 5, 8, 12, 6, 9, 3, 2, 15},
		{13, 8, 10, 1, 3, 15, 4, 2, 11, 6, 7, 12, 0, 5, 14, 9},
	},
	// S-box 3
	{
		{10, 0, 9, 14, 6, 3, 15, 5, 1, 13, 12, 7, 11, 4, 2, 8},
		{13, 7, 0, 9, 3, 4, 6, 10, 2, 8, 5, 14, 12, 11, 15, 1},
		{13, 6, 4, 9, 8, 15, 3, 0, 11, 1, 2, 12, 5, 10, 14, 7},
		{1, 10, 13, 0, 6, 9, 8, 7, 4, 15, 14, 3, 11, 5, 2, 12},
	},
	// S-box 4
	{
		{7, 13, 14, 3, 0, 6, 9, 10, 1, 2, 8, 5, 11, 12, 4, 15},
		{13, 8, 11, 5, 6, 15, 0, 3, 4, 7, 2, 12, 1, 10, 14, 9},
		{10, 6, 9, 0, 12, 11, 7, 13, 15, 1, 3, 14, 5, 2, 8, 4},
		{3, 15, 0, 6, 10, 1, 13, 8, 9, 4, 5, 11, 12, 7, 2, 14},
	},
	// S-box 5
	{
		{2, 12, 4, 1, 7, 10, 11, 6, 8, 5, 3, 15, 13, 0, 14, 9},
		{14, 11, 2, 12, 4, 7, 13, 1, 5, 0, 15, 10, 3, 9, 8, 6},
		{4, 2, 1, 11, 10, 13, 7, 8, 15, 9, 12, 5, 6, 3, 0, 14},
		{11, 8, 12, 7, 1, 14, 2, 13, 6, 15, 0, 9, 10, 4, 5, 3},
	},
	// S-box 6
	{
		{12, 1, 10, 15, 9, 2, 6, 8, 0, 13, 3, 4, 14, 7, 5, 11},
		{10, 15, 4, 2, 7, 12, 9, 5, 6, 1, 13, 14, 0, 11, 3, 8},
		{9, 14, 15, 5, 2, 8, 12, 3, 7, 0, 4, 10, 1, 13, 11, 6},
		{4, 3, 2, 12, 9, 5, 15, 10, 11, 14, 1, 7, 6, 0, 8, 13},
	},
	// S-box 7
	{
		{4, 11, 2, 14, 15, 0, 8, 13, 3, 12, 9, 7, 5, 10, 6, 1},
		{13, 0, 11, 7, 4, 9, 1, 10, 14, 3, 5, 12, 2, 15, 8, 6},
		{1, 4, 11, 13, 12, 3, 7, 14, 10, 15, 6, 8, 0, 5, 9, 2},
		{6, 11, 13, 8, 1, 4, 10, 7, 9, 5, 0, 15, 14, 2, 3, 12},
	},
	// S-box 8
	{
		{13, 2, 8, 4, 6, 15, 11, 1, 10, 9, 3, 14, 5, 0, 12, 7},
		{1, 15, 13, 8, 10, 3, 7, 4, 12, 5, 6, 11, 0, 14, 9, 2},
		{7, 11, 4, 1, 9, 12, 14, 2, 0, 6, 10, 13, 15, 3, 5, 8},
		{2, 1, 14, 7, 4, 10, 8, 13, 15, 12, 9, 0, 3, 5, 6, 11},
	},
}

var desKsRotations = [16]uint8{1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1}
