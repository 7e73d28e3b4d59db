package iso8583

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/mipay-oss/mipay"
)

func TestTypedRoundTrip(t *testing.T) {
	req := sample0200(t)
	b, err := Pack(req)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(req.ICC); n < 250 || n > 330 {
		t.Fatalf("sample DE55 is %d bytes, want about 290", n)
	}
	var got AuthRequest
	if err := Unpack(b, &got); err != nil {
		t.Fatal(err)
	}
	again, err := Pack(&got)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, again) {
		t.Fatalf("repack differs:\n%q\n%q", b, again)
	}
	if got.PAN != req.PAN || got.Track2 != req.Track2 || !bytes.Equal(got.ICC, req.ICC) || got.Amount != req.Amount {
		t.Fatalf("fields lost: %+v", got)
	}
}

func TestTypedPackMatchesMoov(t *testing.T) {
	cases := map[string]any{
		"0200 full": sample0200(t),
		"0210": &AuthResponse{MTI: "0210", STAN: "000123", TerminalID: "QP000001", ResponseCode: "00", AuthCode: "A1B2C3",
			ICC: AppendTLV(nil, TagIssuerAuthData, mustHex(t, "0102030405060708")), TokenData: "0100412340204abcd"},
		"0420": &Reversal{MTI: "0420", STAN: "000124", OriginalData: strings.Repeat("1", 42), ReplacementAmounts: strings.Repeat("0", 42), ResponseCode: "68"},
		"0800": &NetMgmt{MTI: "0800", STAN: "000001", NetworkMgmtCode: NetMgmtEcho, TransmissionTime: "1126013000"},
		"pin":  &AuthRequest{MTI: "0100", STAN: "000009", PINBlock: mustHex(t, "0123456789ABCDEF")},
	}
	for name, v := range cases {
		t.Run(name, func(t *testing.T) {
			want, err := moovPack(t, v)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Pack(v)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("fast codec differs from moov:\nfast %q\nmoov %q", got, want)
			}
		})
	}
}

func TestErrorsCarryNoValues(t *testing.T) {
	pan := "62509470000000149999" // 20 digits: over DE2's max 19
	track2 := strings.Repeat("6250947000000014=", 3)
	cases := map[string]struct {
		v      any
		field  string
		secret string
	}{
		"PAN too long":    {&AuthRequest{MTI: "0200", PAN: pan}, "field 2", pan},
		"track2 too long": {&AuthRequest{MTI: "0200", Track2: track2}, "field 35", track2},
		"STAN short":      {&AuthRequest{MTI: "0200", STAN: "12345"}, "field 11", "12345"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Pack(c.v)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != c.field {
				t.Fatalf("err = %v, want a FieldError on %s", err, c.field)
			}
			if strings.Contains(err.Error(), c.secret) {
				t.Fatalf("error leaks the value: %v", err)
			}
		})
	}
	t.Run("unpack track2 over max", func(t *testing.T) {
		raw := []byte("0200" + "00000000200000000000000000000000" + "40" + strings.Repeat("5", 40))
		err := new(Message).Unpack(raw)
		if err == nil || err.Error() != "field 35: length 40 exceeds max 37" {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestUnpackRefuses(t *testing.T) {
	good, err := Pack(sample0200(t))
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"empty":          nil,
		"short MTI":      []byte("02"),
		"bad bitmap hex": []byte("0200ZZ000000000000000000000000000000"),
		"unknown field":  []byte("0200" + "20000000000000000000000000000000" + "1"), // bit 3 set? no: bit 3 is DE3; use bit 5
		"truncated":      good[:len(good)-1],
		"trailing":       append(append([]byte{}, good...), '9'),
		"non-ASCII":      []byte("02\xff0"),
		"LL sign":        []byte("0200" + "40000000000000000000000000000000" + "-1"),
	}
	cases["unknown field"] = []byte("0200" + "08000000000000000000000000000000" + "123456789012") // bit 5: not in spec
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			if err := new(Message).Unpack(raw); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestTLVHelpers(t *testing.T) {
	de55 := sampleICC(t)
	c, err := ParseICC(de55)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c.Encode(), de55) {
		t.Fatal("ICC encode is not the inverse of parse")
	}
	arpc := mustHex(t, "AABBCCDD00110000")
	with91, err := SetTLV(de55, TagIssuerAuthData, arpc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(with91, de55) {
		t.Fatal("SetTLV changed existing tags")
	}
	v, ok, err := FindTLV(with91, TagIssuerAuthData)
	if err != nil || !ok || !bytes.Equal(v, arpc) {
		t.Fatalf("FindTLV = %X %v %v", v, ok, err)
	}
	replaced, err := SetTLV(with91, TagIssuerAuthData, []byte{1})
	if err != nil || len(replaced) != len(de55)+3 {
		t.Fatalf("replace: len %d err %v", len(replaced), err)
	}
	for name, bad := range map[string][]byte{
		"truncated value":  {0x9F, 0x26, 0x08, 1, 2},
		"long tag":         {0x9F, 0xFF, 0xFF, 0xFF, 0x01, 0x00},
		"huge length":      {0x9F, 0x26, 0x84, 0xFF, 0xFF, 0xFF, 0xFF},
		"truncated length": {0x9F, 0x26, 0x82, 0x01},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseTLV(bad); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, err := ParseICC(append(AppendTLV(nil, TagATC, []byte{0, 1}), AppendTLV(nil, TagATC, []byte{0, 2})...)); err == nil {
		t.Fatal("duplicate tag accepted")
	}
}

func TestPrivateFields(t *testing.T) {
	td := TokenData{Token: "6250941234567890", RequestorID: "50110030273", AssuranceLevel: "20", CryptogramResult: CryptogramValid, TokenExpiry: "2912"}
	s, err := td.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if want := "01016" + "6250941234567890" + "02011" + "50110030273" + "03002" + "20" + "04001" + "V" + "05004" + "2912"; s != want {
		t.Fatalf("DE123 = %s, want %s", s, want)
	}
	got, err := ParseTokenData(s)
	if err != nil || got != td {
		t.Fatalf("ParseTokenData = %+v, %v", got, err)
	}
	p := Promotion{OriginalAmount: "000000012500", DiscountAmount: "000000000500", CampaignID: "ICBC-2026-11"}
	ps, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if gp, err := ParsePromotion(ps); err != nil || gp != p {
		t.Fatalf("ParsePromotion = %+v, %v", gp, err)
	}
	for name, bad := range map[string]string{
		"truncated": "0101662509",
		"too long":  "01020" + strings.Repeat("1", 20),
		"twice":     "04001V04001V",
		"sign":      "01-01",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseTokenData(bad); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, err := (TokenData{Token: strings.Repeat("1", 20)}).Encode(); err == nil {
		t.Fatal("20-digit token accepted")
	}
}

func TestOriginalDataAndAmount(t *testing.T) {
	o := OriginalData{MTI: "0200", STAN: "000123", TransmissionTime: "1126013000", AcquirerID: "48020000"}
	s, err := o.Format()
	if err != nil {
		t.Fatal(err)
	}
	if s != "0200"+"000123"+"1126013000"+"00048020000"+"00000000000" {
		t.Fatalf("DE90 = %q", s)
	}
	back, err := ParseOriginalData(s)
	if err != nil || back.STAN != "000123" || back.AcquirerID != "00048020000" {
		t.Fatalf("ParseOriginalData = %+v, %v", back, err)
	}
	a, err := FormatAmount(12500)
	if err != nil || a != "000000012500" {
		t.Fatalf("FormatAmount = %q %v", a, err)
	}
	if v, err := ParseAmount(a); err != nil || v != 12500 {
		t.Fatalf("ParseAmount = %d %v", v, err)
	}
	if _, err := FormatAmount(-1); err == nil {
		t.Fatal("negative amount accepted")
	}
	if ResponseMTI("0200") != "0210" || ResponseMTI("0420") != "0430" || ResponseMTI("0210") != "0210" {
		t.Fatal("ResponseMTI")
	}
}

func TestSampleICCSize(t *testing.T) {
	if n := len(sampleICC(t)); n != 290 {
		t.Fatalf("sample DE55 is %d bytes, the benchmark needs 290", n)
	}
}

func TestTypedArguments(t *testing.T) {
	byPtr, err := Pack(&NetMgmt{MTI: "0800", STAN: "000001", NetworkMgmtCode: NetMgmtEcho})
	if err != nil {
		t.Fatal(err)
	}
	byValue, err := Pack(NetMgmt{MTI: "0800", STAN: "000001", NetworkMgmtCode: NetMgmtEcho})
	if err != nil || !bytes.Equal(byPtr, byValue) {
		t.Fatalf("struct by value: %q, %v", byValue, err)
	}
	var nm NetMgmt
	for name, v := range map[string]any{"nil": nil, "not a struct": 42, "nil pointer": (*NetMgmt)(nil)} {
		t.Run(name, func(t *testing.T) {
			if _, err := Pack(v); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if err := Unpack(byPtr, nm); err == nil {
		t.Fatal("Unpack into a non-pointer accepted")
	}
	// Absent fields are cleared.
	nm.ResponseCode = "05"
	if err := Unpack(byPtr, &nm); err != nil || nm.ResponseCode != "" || nm.STAN != "000001" {
		t.Fatalf("Unpack = %+v, %v", nm, err)
	}
	type bad struct {
		PAN int `iso8583:"2"`
	}
	if _, err := Pack(&bad{PAN: 1}); err == nil {
		t.Fatal("int field accepted")
	}
	type notInSpec struct {
		X string `iso8583:"5"`
	}
	if _, err := Pack(&notInSpec{X: "1"}); err == nil {
		t.Fatal("field 5 accepted")
	}
}

func TestAsMipayError(t *testing.T) {
	_, err := Pack(&AuthRequest{MTI: "0200", PAN: "62509470000000149999"})
	me := AsMipayError(err)
	if mipay.ErrorCode(me) != mipay.EINVALID || mipay.ErrorMessage(me) != "iso8583 field 2: length 20 exceeds max 19" {
		t.Fatalf("got %q %q", mipay.ErrorCode(me), mipay.ErrorMessage(me))
	}
	_, err = ReadFrame(bytes.NewReader([]byte{0xFF, 0xFF}), nil, 0)
	if mipay.ErrorCode(AsMipayError(err)) != mipay.ETOOLARGE {
		t.Fatalf("frame too large: %v", AsMipayError(err))
	}
	if AsMipayError(nil) != nil {
		t.Fatal("nil error converted")
	}
}
