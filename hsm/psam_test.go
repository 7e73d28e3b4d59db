package hsm

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/mipay-oss/mipay/cryptobox"
)

func TestExportPSAMKey(t *testing.T) {
	ctx := context.Background()
	s, err := OpenSoft(ctx, SoftConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	master := []byte{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11}
	if err := s.ImportKey(ctx, "transit/sz/epurse-dpk", TDES2, master); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureKey(ctx, "transit/sz/epurse-dlk", TDES2); err != nil {
		t.Fatal(err)
	}
	psam, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	aad := []byte("psam gate-1")
	t.Run("purchase master opens in the PSAM", func(t *testing.T) {
		blob, err := s.ExportPSAMKey(ctx, "transit/sz/epurse-dpk", psam.PublicKey(), aad)
		if err != nil {
			t.Fatal(err)
		}
		got, err := cryptobox.Open(psam, blob, aad)
		if err != nil {
			t.Fatal(err)
		}
		want := append([]byte(nil), master...)
		for i := range want { // ImportKey applies odd parity
			want[i] = oddParityByte(want[i])
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("exported %x, want %x", got, want)
		}
	})
	t.Run("load master refused", func(t *testing.T) {
		if _, err := s.ExportPSAMKey(ctx, "transit/sz/epurse-dlk", psam.PublicKey(), aad); err == nil {
			t.Fatal("load master left the HSM")
		}
	})
	t.Run("missing key", func(t *testing.T) {
		_, err := s.ExportPSAMKey(ctx, "transit/bj/epurse-dpk", psam.PublicKey(), aad)
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
	})
}

func oddParityByte(b byte) byte {
	n := 0
	for v := b >> 1; v != 0; v >>= 1 {
		n += int(v & 1)
	}
	if n%2 == 0 {
		return b | 1
	}
	return b &^ 1
}
