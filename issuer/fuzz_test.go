package issuer

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/mipay-oss/mipay/iso8583"
)

// FuzzISOHandler feeds arbitrary messages to the ISO 8583 handler: it must
// never panic, must answer every request with a response code from its
// table, and the ledger must stay balanced.
func FuzzISOHandler(f *testing.F) {
	th := MustOpenHost(f)
	for _, name := range []string{"debit", "credit", "poor"} {
		r := th.auth(name, 1250)
		m := isoAuth(f, r, &iso8583.TokenData{Token: "6290000000001234", RequestorID: miPay, CryptogramResult: "V"})
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		rev := iso8583.NewMessage("0400")
		rev.SetString(iso8583.FieldPAN, r.PAN)
		rev.SetString(iso8583.FieldAmount, "000000001250")
		rev.SetString(iso8583.FieldTransmissionTime, r.Transmission)
		rev.SetString(iso8583.FieldSTAN, r.STAN)
		rev.SetString(iso8583.FieldRRN, r.RRN)
		rev.SetString(iso8583.FieldTerminalID, r.Terminal)
		rev.SetString(iso8583.FieldAcquirerID, r.Acquirer)
		od, _ := iso8583.OriginalData{MTI: "0200", STAN: r.STAN, TransmissionTime: r.Transmission, AcquirerID: r.Acquirer}.Format()
		rev.SetString(iso8583.FieldOriginalData, od)
		if b, err = rev.Pack(); err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	handler := th.ISOHandler()
	f.Fuzz(func(t *testing.T, b []byte) {
		var m iso8583.Message
		if err := m.Unpack(b); err != nil {
			return
		}
		resp, err := handler(context.Background(), &m)
		if err != nil || resp == nil {
			t.Fatalf("no answer: %v", err)
		}
		code := ResponseCode(resp.String(iso8583.FieldResponseCode))
		if _, ok := responseText[code]; !ok {
			t.Fatalf("response code %q not in the table", code)
		}
		if resp.MTI() != iso8583.ResponseMTI(m.MTI()) {
			t.Fatalf("answer MTI %s to %s", resp.MTI(), m.MTI())
		}
	})
}

// FuzzDecisionRequest checks the binding request's validation: a request it
// accepts is well-formed, and nothing panics.
func FuzzDecisionRequest(f *testing.F) {
	f.Add(`{"pan":"6250120564973667","expiry":"3203","cvn2":"940","phone":"13800130033","deviceId":"d","seId":"s","tokenRequestorId":"50110030273","accountAgeDays":3,"deviceScore":4}`)
	f.Add(`{"pan":"","expiry":"9913","phone":"+86 138"}`)
	f.Fuzz(func(t *testing.T, s string) {
		var r DecisionRequest
		if json.Unmarshal([]byte(s), &r) != nil {
			return
		}
		if r.validate() != nil {
			return
		}
		if !validPAN(r.PAN) || !validExpiry(r.Expiry) || r.DeviceID == "" || len(r.DeviceID) > maxDeviceIDBytes {
			t.Fatalf("accepted %v", r)
		}
		if p := normalizePhone(r.Phone); len(p) > len(r.Phone) {
			t.Fatalf("normalized phone grew")
		}
	})
}
