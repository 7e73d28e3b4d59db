package iso8583

import (
	"bytes"
	"encoding/hex"
	"testing"

	moov "github.com/moov-io/iso8583"
)

func mustHex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// sampleICC is a full DE55 of a QuickPass 0200: every tag of DESIGN.md
// step 3 plus CTQ, TTQ and issuer-proprietary data: 290 bytes.
func sampleICC(tb testing.TB) []byte {
	tb.Helper()
	c := &ICC{
		ARQC:             mustHex(tb, "8E1A2B3C4D5E6F70"),
		CID:              mustHex(tb, "80"),
		IAD:              mustHex(tb, "07010103A0A802010A0100000000005FE32B7E"),
		UnpredictableNum: mustHex(tb, "1A2B3C4D"),
		ATC:              mustHex(tb, "0042"),
		TVR:              mustHex(tb, "0000000000"),
		TransactionDate:  mustHex(tb, "261126"),
		TransactionType:  mustHex(tb, "00"),
		AmountAuthorised: mustHex(tb, "000000012500"),
		CurrencyCode:     mustHex(tb, "0156"),
		AIP:              mustHex(tb, "7C00"),
		TerminalCountry:  mustHex(tb, "0156"),
		AmountOther:      mustHex(tb, "000000000000"),
		TerminalCaps:     mustHex(tb, "E0E1C8"),
		CVMResults:       mustHex(tb, "1F0302"),
		TerminalType:     mustHex(tb, "22"),
		IFDSerial:        []byte("QP000001"),
		DFName:           mustHex(tb, "A000000333010101"),
		AppVersion:       mustHex(tb, "0030"),
		TransactionSeq:   mustHex(tb, "00000042"),
		CTQ:              mustHex(tb, "0280"),
		Other:            []TLV{{Tag: 0x9F66, Value: mustHex(tb, "2A000080")}, {Tag: 0xDF31, Value: bytes.Repeat([]byte{0x11}, 129)}},
	}
	return c.Encode()
}

// sample0200 is a realistic 0200 from a QuickPass terminal with a full DE55.
func sample0200(tb testing.TB) *AuthRequest {
	tb.Helper()
	return &AuthRequest{
		MTI:                  MTIFinancialRequest,
		PAN:                  "6250947000000014",
		ProcessingCode:       "000000",
		Amount:               "000000012500",
		TransmissionTime:     "1126013000",
		STAN:                 "000123",
		LocalTime:            "093000",
		LocalDate:            "1126",
		Expiry:               "2912",
		MCC:                  "5411",
		AcquirerCountry:      "156",
		POSEntryMode:         "072",
		PSN:                  "001",
		POSCondition:         "00",
		AcquirerID:           "48020000",
		Track2:               "6250947000000014=29122011234567890",
		RRN:                  "633012000123",
		TerminalID:           "QP000001",
		MerchantID:           "898310154110001",
		MerchantNameLocation: "MI HOME SHOP            BEIJING      CN ",
		Currency:             "156",
		ICC:                  sampleICC(tb),
	}
}

// moovPack packs a tagged struct with moov-io and Spec: the reference.
func moovPack(tb testing.TB, v any) ([]byte, error) {
	tb.Helper()
	m := moov.NewMessage(Spec)
	if err := m.Marshal(v); err != nil {
		return nil, err
	}
	return m.Pack()
}
