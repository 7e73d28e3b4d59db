package tsp

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/mipay-oss/mipay"
)

func TestLuhn(t *testing.T) {
	for _, c := range []struct {
		in   string
		want bool
	}{
		{"6210102803651527", true},
		{"6210102803651528", false},
		{"79927398713", true},
		{"79927398710", false},
		{"", false},
		{"1", false},
		{"62101028036515a7", false},
	} {
		t.Run(c.in, func(t *testing.T) {
			if got := LuhnValid(c.in); got != c.want {
				t.Fatalf("LuhnValid(%q) = %v, want %v", c.in, got, c.want)
			}
		})
	}
	t.Run("check digit", func(t *testing.T) {
		if d := LuhnDigit("7992739871"); d != '3' {
			t.Fatalf("LuhnDigit = %c, want 3", d)
		}
	})
}

func TestParseCardData(t *testing.T) {
	ok := `{"pan":"6210102803651527","expiry":"2911","cvn2":"123","name":"ZHANG WEI","phone":"13800130001"}`
	if c, err := ParseCardData([]byte(ok)); err != nil || c.PAN != "6210102803651527" {
		t.Fatalf("valid card data: %v %v", c, err)
	}
	for name, in := range map[string]string{
		"luhn":          `{"pan":"6210102803651528","expiry":"2911"}`,
		"short pan":     `{"pan":"621010","expiry":"2911"}`,
		"letters":       `{"pan":"621010280365152X","expiry":"2911"}`,
		"no pan":        `{"expiry":"2911"}`,
		"bad month":     `{"pan":"6210102803651527","expiry":"2913"}`,
		"bad cvn2":      `{"pan":"6210102803651527","expiry":"2911","cvn2":"12"}`,
		"bad phone":     `{"pan":"6210102803651527","expiry":"2911","phone":"12ab"}`,
		"unknown field": `{"pan":"6210102803651527","expiry":"2911","pin":"1234"}`,
		"not json":      `pan=6210102803651527`,
		"trailing":      `{"pan":"6210102803651527","expiry":"2911"} {}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseCardData([]byte(in))
			if code := mipay.ErrorCode(err); code != mipay.EINVALID {
				t.Fatalf("code = %q (%v), want invalid", code, err)
			}
			if strings.Contains(err.Error(), "6210102803651527") || strings.Contains(err.Error(), "2803651") {
				t.Fatalf("error leaks the PAN: %v", err)
			}
		})
	}
	t.Run("luhn reason", func(t *testing.T) {
		_, err := ParseCardData([]byte(`{"pan":"6210102803651528","expiry":"2911"}`))
		if mipay.ErrorReason(err) != "LUHN" {
			t.Fatalf("reason = %q", mipay.ErrorReason(err))
		}
	})
	t.Run("string masks", func(t *testing.T) {
		c := CardData{PAN: "6210102803651527", CVN2: "123"}
		s := c.String() + c.GoString()
		if strings.Contains(s, "2803651527") || strings.Contains(s, "123}") {
			t.Fatalf("String leaks: %s", s)
		}
	})
}

func TestNewDPAN(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		d, err := newDPAN("629000")
		if err != nil {
			t.Fatal(err)
		}
		if len(d) != DPANDigits || !strings.HasPrefix(d, "629000") || !LuhnValid(d) {
			t.Fatalf("bad DPAN %s", d)
		}
		seen[d] = true
	}
	if len(seen) < 990 {
		t.Fatalf("only %d distinct DPANs of 1000", len(seen))
	}
	for _, bad := range []string{"", "62900", "62900a", "6290001234567"} {
		if _, err := newDPAN(bad); err == nil {
			t.Fatalf("newDPAN(%q) accepted", bad)
		}
	}
}

func TestPARAndRefs(t *testing.T) {
	mac := make([]byte, 32)
	for i := range mac {
		mac[i] = byte(i * 7)
	}
	p := parFromMAC(mac)
	if len(p) != PARLength || !strings.HasPrefix(p, PARBINController) {
		t.Fatalf("PAR %q", p)
	}
	for _, c := range p {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			t.Fatalf("PAR %q has %q", p, c)
		}
	}
	if parFromMAC(mac) != p {
		t.Fatal("PAR not deterministic")
	}
	ref, err := newTokenRef()
	if err != nil || !validTokenRef(ref) {
		t.Fatalf("token ref %q %v", ref, err)
	}
	for _, bad := range []string{"", "DTSP", ref + "0", strings.ToUpper(ref), "XTSP" + ref[4:], "../../etc/passwd"} {
		if validTokenRef(bad) {
			t.Fatalf("validTokenRef(%q) = true", bad)
		}
	}
	if r := panRefFromMAC(mac); len(r) != 36 {
		t.Fatalf("pan ref %q", r)
	}
}

func TestTransition(t *testing.T) {
	type tc struct {
		from   State
		action Action
		who    CausedBy
		susBy  CausedBy
		want   State
		code   string
	}
	for _, c := range []tc{
		{StateInactive, ActionActivate, CausedByTSP, "", StateActive, ""},
		{StateActive, ActionActivate, CausedByTSP, "", StateActive, mipay.ECONFLICT},
		{StateActive, ActionSuspend, CausedByCardholder, "", StateSuspended, ""},
		{StateInactive, ActionSuspend, CausedByCardholder, "", StateInactive, mipay.ECONFLICT},
		{StateSuspended, ActionSuspend, CausedByIssuer, "", StateSuspended, mipay.ECONFLICT},
		{StateSuspended, ActionResume, CausedByCardholder, CausedByCardholder, StateActive, ""},
		{StateSuspended, ActionResume, CausedByCardholder, CausedByIssuer, StateSuspended, mipay.EFORBIDDEN},
		{StateSuspended, ActionResume, CausedByIssuer, CausedByIssuer, StateActive, ""},
		{StateActive, ActionResume, CausedByCardholder, "", StateActive, mipay.ECONFLICT},
		{StateInactive, ActionResume, CausedByCardholder, "", StateInactive, mipay.ECONFLICT},
		{StateInactive, ActionDelete, CausedByCardholder, "", StateDeactivated, ""},
		{StateActive, ActionDelete, CausedByTokenRequestor, "", StateDeactivated, ""},
		{StateSuspended, ActionDelete, CausedByIssuer, "", StateDeactivated, ""},
		{StateDeactivated, ActionDelete, CausedByIssuer, "", StateDeactivated, mipay.ECONFLICT},
		{StateDeactivated, ActionResume, CausedByIssuer, "", StateDeactivated, mipay.ECONFLICT},
		{StateActive, Action("explode"), CausedByIssuer, "", StateActive, mipay.EINVALID},
	} {
		t.Run(string(c.from)+"/"+string(c.action)+"/"+string(c.who), func(t *testing.T) {
			got, err := Transition(c.from, c.action, c.who, c.susBy)
			if mipay.ErrorCode(err) != c.code || got != c.want {
				t.Fatalf("Transition = %s, %v; want %s, code %q", got, err, c.want, c.code)
			}
		})
	}
}

func TestProfileRecords(t *testing.T) {
	tok := &Token{Ref: "DTSP00", DPAN: "6290001234567894", Expiry: "2911", PSN: 1, CardType: "credit", KeyIndex: 1}
	p, err := buildProfile(tok, []byte{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	if p.AID != AIDCredit || len(p.Records) != 2 {
		t.Fatalf("profile %+v", p)
	}
	r1, _ := hex.DecodeString(p.Records[0].Data)
	// 70 L 57 0F 6290001234567894 D 2911 220 00000 F (29 nibbles + pad)
	wantT2 := "570F6290001234567894D291122000000F"
	if !strings.Contains(strings.ToUpper(hex.EncodeToString(r1)), strings.ToUpper(wantT2)) {
		t.Fatalf("record 1 %X lacks track 2 %s", r1, wantT2)
	}
	if r1[0] != 0x70 || int(r1[1]) != len(r1)-2 {
		t.Fatalf("record 1 template %X", r1)
	}
	r2 := strings.ToUpper(p.Records[1].Data)
	for _, want := range []string{"5A086290001234567894", "5F2403291130", "5F34010" + "1", "5F28020156"} {
		if !strings.Contains(r2, want) {
			t.Fatalf("record 2 %s lacks %s", r2, want)
		}
	}
	t.Run("leap february", func(t *testing.T) {
		b, err := expiryYYMMDD("2802")
		if err != nil || hex.EncodeToString(b) != "280229" {
			t.Fatalf("%x %v", b, err)
		}
	})
}
