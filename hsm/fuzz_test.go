package hsm

import (
	"context"
	"errors"
	"testing"

	"github.com/mipay-oss/mipay/cryptobox"
)

// FuzzOpen feeds arbitrary sealed data (it comes back from databases and
// peers) to Open: it must fail cleanly with ErrAuth, never panic.
func FuzzOpen(f *testing.F) {
	s := MustOpenSoft(f, "")
	ctx := context.Background()
	mustEnsure(f, s, "k", AES256)
	good, err := s.Seal(ctx, "k", []byte("hello"), []byte("aad"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, []byte("aad"))
	f.Add([]byte{1}, []byte{})
	f.Add(make([]byte, 40), []byte("aad"))
	f.Fuzz(func(t *testing.T, sealed, aad []byte) {
		pt, err := s.Open(ctx, "k", sealed, aad)
		if err == nil {
			if string(pt) != "hello" {
				t.Fatalf("forged plaintext %q", pt)
			}
			return
		}
		if !errors.Is(err, ErrAuth) {
			t.Fatalf("err = %v", err)
		}
	})
}

// FuzzOpenBox feeds arbitrary blobs (they come from phones) to OpenBox.
func FuzzOpenBox(f *testing.F) {
	s := MustOpenSoft(f, "")
	ctx := context.Background()
	mustEnsure(f, s, "box", P256)
	pub, err := s.PublicKey(ctx, "box")
	if err != nil {
		f.Fatal(err)
	}
	good, err := cryptobox.Seal(pub, []byte("card"), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte{1, 4})
	f.Fuzz(func(t *testing.T, blob []byte) {
		pt, err := s.OpenBox(ctx, "box", blob, nil)
		if err == nil {
			if string(pt) != "card" {
				t.Fatalf("forged plaintext %q", pt)
			}
			return
		}
		if !errors.Is(err, ErrAuth) {
			t.Fatalf("err = %v", err)
		}
	})
}
