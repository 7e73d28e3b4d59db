package wallet

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestDeviceAttestation(t *testing.T) {
	e := mustWallet(t)
	u := e.mustUser()

	t.Run("good chain", func(t *testing.T) {
		s := e.vendor.issue(t, "SE-GOOD-1")
		a := e.call("POST", "/v1/devices", u.token, s.body("Xiaomi 14", false)).want(t, 201)
		if a.str("seId") != "SE-GOOD-1" || a.str("fingerprintEnrolled") != "false" || a.str("id") == "" {
			t.Errorf("device %s", a.raw)
		}
		if strings.Contains(string(a.raw), "sePublicKey") {
			t.Errorf("the device answer carries the SE key: %s", a.raw)
		}
		again := e.call("POST", "/v1/devices", u.token, s.body("Xiaomi 14", true)).want(t, 201)
		if again.str("id") != a.str("id") || again.str("fingerprintEnrolled") != "true" {
			t.Errorf("registering again: %s", again.raw)
		}
	})
	t.Run("untrusted root", func(t *testing.T) {
		other := mustVendor(t)
		a := e.call("POST", "/v1/devices", u.token, other.issue(t, "SE-ROGUE").body("Fake", true)).want(t, 403)
		if !strings.Contains(a.errMsg(), "trusted vendor") {
			t.Errorf("message %q", a.errMsg())
		}
	})
	t.Run("chain signed by an untrusted CA posing as the vendor", func(t *testing.T) {
		other := mustVendor(t)
		s := other.issue(t, "SE-ROGUE-2")
		s.chain[1] = e.vendor.der // claims the real vendor CA, but signed by another key
		e.call("POST", "/v1/devices", u.token, s.body("Fake", true)).want(t, 403)
	})
	t.Run("key mismatch", func(t *testing.T) {
		s := e.vendor.issue(t, "SE-MISMATCH")
		s.pub = e.vendor.issue(t, "SE-OTHER").pub
		a := e.call("POST", "/v1/devices", u.token, s.body("Xiaomi 14", true)).want(t, 403)
		if !strings.Contains(a.errMsg(), "sePublicKey") {
			t.Errorf("message %q", a.errMsg())
		}
	})
	t.Run("seId not the certificate's", func(t *testing.T) {
		s := e.vendor.issue(t, "SE-REAL")
		s.id = "SE-CLAIMED"
		e.call("POST", "/v1/devices", u.token, s.body("Xiaomi 14", true)).want(t, 403)
	})
	t.Run("not a certificate", func(t *testing.T) {
		s := e.vendor.issue(t, "SE-JUNK")
		s.chain[0] = []byte("junk")
		a := e.call("POST", "/v1/devices", u.token, s.body("Xiaomi 14", true)).want(t, 400)
		if !strings.Contains(a.errMsg(), "certificateChain[0]") {
			t.Errorf("message %q", a.errMsg())
		}
	})
	t.Run("not a P-256 point", func(t *testing.T) {
		s := e.vendor.issue(t, "SE-BADKEY")
		s.pub = make([]byte, 65)
		s.pub[0] = 4
		e.call("POST", "/v1/devices", u.token, s.body("Xiaomi 14", true)).want(t, 400)
	})
	t.Run("same SE on another account", func(t *testing.T) {
		other := e.mustUser()
		e.call("POST", "/v1/devices", other.token, u.se.body("Xiaomi 15", true)).want(t, 409)
	})
	t.Run("list", func(t *testing.T) {
		a := e.call("GET", "/v1/devices", u.token, nil).want(t, 200)
		if ds := a.body["devices"].([]any); len(ds) != 2 {
			t.Errorf("devices %s", a.raw)
		}
	})
	t.Run("no root configured", func(t *testing.T) {
		e2 := mustWallet(t, func(c *Config) { c.Roots = NewRoots(t.TempDir() + "/missing.pem") })
		u2 := e2.call("POST", "/v1/accounts", "", map[string]string{"phone": "13600136000", "email": "x@example.com", "password": "correct horse"}).want(t, 201)
		_ = u2
		s := e2.call("POST", "/v1/sessions", "", map[string]string{"login": "13600136000", "password": "correct horse"}).want(t, 201)
		e2.call("POST", "/v1/devices", s.str("token"), e.vendor.issue(t, "SE-NOROOT").body("M", true)).want(t, 503)
	})
}

func TestRootsAppearLater(t *testing.T) {
	dir := t.TempDir()
	r := NewRoots(dir + "/root.pem")
	if p, err := r.Pool(); err != nil || p != nil {
		t.Fatalf("pool before the file exists: %v %v", p, err)
	}
	v := mustVendor(t)
	v.writeRoot(t, dir)
	p, err := r.Pool()
	if err != nil || p == nil {
		t.Fatalf("pool after the file appeared: %v %v", p, err)
	}
	s := v.issue(t, "SE-LATE")
	if err := VerifyAttestation(Attestation{SEID: s.id, SEPublicKey: s.pub, Chain: s.chain}, p, v.cert.NotBefore.AddDate(1, 0, 0)); err != nil {
		t.Fatal(err)
	}
}

func TestFingerprint(t *testing.T) {
	e := mustWallet(t)
	u := e.mustUser()
	a := e.call("PUT", "/v1/devices/"+u.deviceID+"/fingerprint", u.token, map[string]any{"enrolled": false}).want(t, 200)
	if a.str("fingerprintEnrolled") != "false" {
		t.Fatalf("%s", a.raw)
	}
	b := e.call("POST", "/v1/devices/"+u.deviceID+"/cards", u.token, scenario("green")).want(t, 403)
	if !strings.Contains(b.errMsg(), "fingerprint") {
		t.Errorf("message %q", b.errMsg())
	}
	if e.tsp.count() != 0 || e.rows("cards") != 0 {
		t.Errorf("a binding without fingerprint reached the TSP or the store")
	}
	e.call("PUT", "/v1/devices/"+u.deviceID+"/fingerprint", u.token, map[string]any{"enrolled": true}).want(t, 200)
	e.call("POST", "/v1/devices/"+u.deviceID+"/cards", u.token, scenario("green")).want(t, 201)
}

func TestTSPKeyRelay(t *testing.T) {
	e := mustWallet(t)
	a := e.call("GET", "/v1/tsp-key", "", nil).want(t, 200)
	k, err := base64.StdEncoding.DecodeString(a.str("key"))
	if err != nil || len(k) != 65 || a.str("kid") != "tsp/box" || a.str("tokenRequestorId") != "50110030273" {
		t.Fatalf("key %s", a.raw)
	}
	b := e.call("GET", "/v1/tsp-key", "", nil).want(t, 200)
	if b.str("key") != a.str("key") {
		t.Errorf("the key was not cached")
	}
}
