package wallet

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

// TestDeviceAnswerCarriesAttestedKeyDigest: the device answers (register,
// list) carry the digest of the attested SE key, never the key.
func TestDeviceAnswerCarriesAttestedKeyDigest(t *testing.T) {
	e := mustWallet(t)
	u := e.mustUser()
	s := e.vendor.issue(t, "SE-DIGEST-1")
	sum := sha256.Sum256(s.pub)
	want := hex.EncodeToString(sum[:])
	a := e.call("POST", "/v1/devices", u.token, s.body("Xiaomi 14", true)).want(t, 201)
	if a.str("seKeySha256") != want || strings.Contains(string(a.raw), "sePublicKey") {
		t.Fatalf("register answer %s", a.raw)
	}
	l := e.call("GET", "/v1/devices", u.token, nil).want(t, 200)
	if !strings.Contains(string(l.raw), `"seKeySha256":"`+want+`"`) {
		t.Fatalf("device list %s", l.raw)
	}
}
