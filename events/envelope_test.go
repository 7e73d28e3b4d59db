package events

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// TestEnvelopeIsMarshal: the envelope written by hand is byte for byte what
// json.Marshal of the Event gives, for values as publishers pass them.
func TestEnvelopeIsMarshal(t *testing.T) {
	tm := time.Date(2026, 11, 26, 10, 0, 0, 123456789, time.UTC)
	for _, tc := range []struct {
		name        string
		id, subject string
		v           any
	}{
		{"struct", "abc123", "transaction.authorized", payload{N: 7, Text: "12.50 CNY <ok> & \"quoted\""}},
		{"raw", "id-1", "transaction.reversed", json.RawMessage(`{ "a" : [1, 2,  3], "b":"<x>" }`)},
		{"string", "é\u2028", "a.b", "line\nbreak"},
		{"null", "n", "a.b", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := json.Marshal(tc.v)
			if err != nil {
				t.Fatal(err)
			}
			want, err := json.Marshal(Event{ID: tc.id, Subject: tc.subject, Time: tm, Data: data})
			if err != nil {
				t.Fatal(err)
			}
			got, err := envelope(tc.id, tc.subject, tm, data)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("envelope\n got %s\nwant %s", got, want)
			}
		})
	}
}
