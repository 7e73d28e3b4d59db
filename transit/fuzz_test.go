package transit

import (
	"encoding/json"
	"testing"
)

// FuzzGateRecord: a gate record from an upload (JSON) either is refused as
// malformed or yields TAC input within the e-purse's bounds (the serial
// indexes the cleared-serial bitmap).
func FuzzGateRecord(f *testing.F) {
	f.Add([]byte(`{"cardNumber":"3112000000000001","offlineSerial":3,"amountMinor":200,"type":6,"terminal":"112233445566","tsn":9,"date":"20261126","time":"083000","tac":"0A0B0C0D"}`))
	f.Add([]byte(`{"offlineSerial":65536,"type":9,"terminal":"zz","date":"2026112","tac":""}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r GateRecord
		if json.Unmarshal(b, &r) != nil {
			return
		}
		tx, _, _, ok := tacInput(&r)
		if !ok {
			return
		}
		if r.OfflineSerial < 0 || r.OfflineSerial>>3 >= clearedBitsBytes {
			t.Fatalf("serial %d accepted", r.OfflineSerial)
		}
		if int64(tx.Amount) != r.AmountMinor {
			t.Fatalf("amount %d became %d", r.AmountMinor, tx.Amount)
		}
	})
}

// FuzzInitForLoad: any body is refused or parsed without panicking.
func FuzzInitForLoad(f *testing.F) {
	f.Add(make([]byte, 16))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := parseInitForLoad(b)
		if err == nil && len(b) != 16 {
			t.Fatalf("parsed %d bytes: %+v", len(b), in)
		}
	})
}
