package transit

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestStoredRecordsFormat: the batch records' line format round-trips
// (a station with spaces, quotes and a newline included), the JSON of rows
// written before it still reads, and damage is an error.
func TestStoredRecordsFormat(t *testing.T) {
	recs := []GateRecord{
		{CardNumber: "3101000012345678", OfflineSerial: 7, AmountMinor: 200, Type: 6, Terminal: "112233445566", TSN: 4294967295,
			Date: "20261126", Time: "083000", TAC: "0A0B0C0D", Station: "bus-1"},
		{CardNumber: "3101000000000001", OfflineSerial: 0, AmountMinor: 0, Type: 9, Terminal: "AABBCCDDEEFF", TSN: 1,
			Date: "20261126", Time: "235959", TAC: "FFFFFFFF", Station: "a \"b\" c\nd"},
		{CardNumber: "3101000000000002", OfflineSerial: 65535, AmountMinor: 4294967295, Type: 6, Terminal: "000000000000", TSN: 0,
			Date: "20261231", Time: "000000", TAC: "00000000"},
	}
	got, err := decodeRecords(encodeRecords(recs))
	if err != nil || !reflect.DeepEqual(got, recs) {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	js, _ := json.Marshal(recs)
	if got, err := decodeRecords(string(js)); err != nil || !reflect.DeepEqual(got, recs) {
		t.Fatalf("JSON rows: %+v %v", got, err)
	}
	if got, err := decodeRecords(recordsV2); err != nil || len(got) != 0 {
		t.Fatalf("no records: %+v %v", got, err)
	}
	for _, bad := range []string{"v3\n", "v2\n1 2 3\n", "v2\n3101 x 1 6 AA 1 d t tac \"s\"\n", "v2\n3101 1 1 6 AA 1 d t tac s\n"} {
		if _, err := decodeRecords(bad); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}

// FuzzStoredRecords: whatever station text a gate sends, a cleared record
// reads back as it was stored, and any stored text decodes or errs without
// panicking.
func FuzzStoredRecords(f *testing.F) {
	f.Add("bus-1", "v2\n")
	f.Add("a \"b\"\n\x00 c", "v2\n1 2 3 4 5 6 7 8 9 \"x\"\n")
	f.Fuzz(func(t *testing.T, station, stored string) {
		recs := []GateRecord{{CardNumber: "3101000012345678", OfflineSerial: 1, AmountMinor: 2, Type: 6, Terminal: "112233445566",
			TSN: 3, Date: "20261126", Time: "083000", TAC: "0A0B0C0D", Station: station}}
		got, err := decodeRecords(encodeRecords(recs))
		if err != nil || !reflect.DeepEqual(got, recs) {
			t.Fatalf("station %q: %+v %v", station, got, err)
		}
		_, _ = decodeRecords(stored)
	})
}
