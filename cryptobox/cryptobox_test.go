package cryptobox

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"testing"
)

func mustKey(tb testing.TB) *ecdh.PrivateKey {
	tb.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func TestSealOpen(t *testing.T) {
	k := mustKey(t)
	blob, err := Seal(k.PublicKey(), []byte("6212345678901234"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	if len(blob) != Overhead+16 {
		t.Fatalf("blob length %d", len(blob))
	}
	pt, err := Open(k, blob, []byte("aad"))
	if err != nil || !bytes.Equal(pt, []byte("6212345678901234")) {
		t.Fatalf("open: %q %v", pt, err)
	}
	t.Run("wrong aad", func(t *testing.T) {
		if _, err := Open(k, blob, []byte("other")); err == nil {
			t.Fatal("opened with wrong aad")
		}
	})
	t.Run("wrong key", func(t *testing.T) {
		if _, err := Open(mustKey(t), blob, []byte("aad")); err == nil {
			t.Fatal("opened with wrong key")
		}
	})
	t.Run("tampered", func(t *testing.T) {
		bad := bytes.Clone(blob)
		bad[len(bad)-1] ^= 1
		if _, err := Open(k, bad, []byte("aad")); err == nil {
			t.Fatal("opened tampered blob")
		}
	})
	t.Run("truncated", func(t *testing.T) {
		for n := 0; n < Overhead; n++ {
			if _, err := Open(k, blob[:n], []byte("aad")); err == nil {
				t.Fatalf("opened %d-byte blob", n)
			}
		}
	})
}

func FuzzOpen(f *testing.F) {
	k, _ := ecdh.P256().GenerateKey(rand.Reader)
	blob, _ := Seal(k.PublicKey(), []byte("x"), nil)
	f.Add(blob)
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = Open(k, b, nil)
	})
}
