package phone_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/phone"
	"github.com/mipay-oss/mipay/se"
)

// TestOpenHeldPhone: a phone open in one place (here: this process) cannot
// be opened again until it is closed; the error names the phone and says
// what to do. Opening it needs no server.
func TestOpenHeldPhone(t *testing.T) {
	ctx := context.Background()
	cfg := phone.Config{DataDir: t.TempDir(), Name: "held", WalletURL: "http://127.0.0.1:1", SMSURL: "http://127.0.0.1:1"}
	p, err := phone.Open(ctx, cfg) // first use: the SE is made, then held
	if err != nil {
		t.Fatal(err)
	}
	_, err = phone.Open(ctx, cfg)
	if err == nil {
		t.Fatal("a held phone opened twice")
	}
	msg := mipay.ErrorMessage(err)
	if !errors.Is(err, se.ErrInUse) || mipay.ErrorCode(err) != mipay.ECONFLICT ||
		!strings.Contains(msg, "phone held is in use by this process (pid ") || !strings.Contains(msg, "retry") {
		t.Fatalf("second open: %v (message %q)", err, msg)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p2, err := phone.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	if err := p2.Close(); err != nil {
		t.Fatal(err)
	}
}
