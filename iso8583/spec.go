package iso8583

import (
	moov "github.com/moov-io/iso8583"
	"github.com/moov-io/iso8583/encoding"
	"github.com/moov-io/iso8583/field"
	"github.com/moov-io/iso8583/prefix"
)

// Field numbers of the network spec. Only these data elements exist on the
// network; a message with any other bit set is refused.
const (
	FieldMTI                  = 0
	FieldBitmap               = 1
	FieldPAN                  = 2
	FieldProcessingCode       = 3
	FieldAmount               = 4
	FieldBillingAmount        = 6
	FieldTransmissionTime     = 7
	FieldBillingRate          = 10
	FieldSTAN                 = 11
	FieldLocalTime            = 12
	FieldLocalDate            = 13
	FieldExpiry               = 14
	FieldMCC                  = 18
	FieldAcquirerCountry      = 19
	FieldPOSEntryMode         = 22
	FieldPSN                  = 23
	FieldPOSCondition         = 25
	FieldAcquirerID           = 32
	FieldTrack2               = 35
	FieldRRN                  = 37
	FieldAuthCode             = 38
	FieldResponseCode         = 39
	FieldTerminalID           = 41
	FieldMerchantID           = 42
	FieldMerchantNameLocation = 43
	FieldCurrency             = 49
	FieldBillingCurrency      = 51
	FieldPINBlock             = 52
	FieldICC                  = 55
	FieldNetworkMgmtCode      = 70
	FieldOriginalData         = 90
	FieldReplacementAmounts   = 95
	FieldTokenData            = 123
	FieldPromotion            = 124
)

// Network management codes carried in DE70 of 0800/0810.
const (
	NetMgmtSignOn  = "001"
	NetMgmtSignOff = "002"
	NetMgmtEcho    = "301"
)

// Limits of the spec, used before anything is allocated.
const (
	// MaxFieldNumber is the highest data element of the spec. The bitmap is
	// the 128-bit bitmap of Spec87ASCII, so a third bitmap never appears in a
	// message we pack.
	MaxFieldNumber = 128
	// MaxLLLBytes is the largest value an LLLVAR field can declare.
	MaxLLLBytes = 999
)

func asciiFixed(n int, desc string) *field.String {
	return field.NewString(&field.Spec{Length: n, Description: desc, Enc: encoding.ASCII, Pref: prefix.ASCII.Fixed})
}

func asciiLL(max int, desc string) *field.String {
	return field.NewString(&field.Spec{Length: max, Description: desc, Enc: encoding.ASCII, Pref: prefix.ASCII.LL})
}

func asciiLLL(max int, desc string) *field.String {
	return field.NewString(&field.Spec{Length: max, Description: desc, Enc: encoding.ASCII, Pref: prefix.ASCII.LLL})
}

// Spec is the network's ISO 8583 message spec and the single source of truth
// for every codec in this package: the fast codec (Message) compiles its
// field table from it at start-up, and the equivalence tests prove both
// produce the same bytes. Treat it as read-only.
//
// Encodings are those of moov-io's specs.Spec87ASCII: a 4-character ASCII
// MTI, the bitmap as 32 ASCII hex characters (128 bits; bit 1 would announce
// a third bitmap, as Spec87ASCII does), ASCII fixed fields, LLVAR/LLLVAR with
// ASCII decimal lengths. Differences from Spec87ASCII, all on purpose:
//   - fixed numeric fields carry no padding: the value is the exact wire text
//     (use FormatAmount and friends), so a value like DE3 "000000" round-trips
//     instead of being unpadded to "";
//   - DE52 is 8 binary bytes sent as 16 hex characters (Spec87ASCII's DE52
//     packs 16 bytes but unpacks 8);
//   - DE55 is binary BER-TLV behind an ASCII LLL length (length in bytes). It
//     is not a moov BER-TLV composite because the composite packs its tags in
//     hex order (and drops unknown ones unless told to store them), so a
//     terminal's DE55 would not survive a pass-through byte for byte
//     (TestMoovCompositeDE55NotByteExact); ParseICC/ICC and the TLV helpers
//     give the structure instead;
//   - DE70, DE95 and the private DE123 (token data) and DE124 (promotion)
//     are added; both private fields are LLLVAR text holding sub-elements
//     described by TokenDataElements and PromotionElements.
var Spec = &moov.MessageSpec{
	Name: "mipay network (ISO 8583:1987 ASCII)",
	Fields: map[int]field.Field{
		FieldMTI: asciiFixed(4, "Message Type Indicator"),
		FieldBitmap: field.NewBitmap(&field.Spec{
			Length:      16,
			Description: "Bitmap",
			Enc:         encoding.BytesToASCIIHex,
			Pref:        prefix.Hex.Fixed,
		}),
		FieldPAN:                  asciiLL(19, "Primary Account Number"),
		FieldProcessingCode:       asciiFixed(6, "Processing Code"),
		FieldAmount:               asciiFixed(12, "Transaction Amount"),
		FieldBillingAmount:        asciiFixed(12, "Cardholder Billing Amount"),
		FieldTransmissionTime:     asciiFixed(10, "Transmission Date & Time"),
		FieldBillingRate:          asciiFixed(8, "Cardholder Billing Conversion Rate"),
		FieldSTAN:                 asciiFixed(6, "Systems Trace Audit Number (STAN)"),
		FieldLocalTime:            asciiFixed(6, "Local Transaction Time"),
		FieldLocalDate:            asciiFixed(4, "Local Transaction Date"),
		FieldExpiry:               asciiFixed(4, "Expiration Date"),
		FieldMCC:                  asciiFixed(4, "Merchant Type"),
		FieldAcquirerCountry:      asciiFixed(3, "Acquiring Institution Country Code"),
		FieldPOSEntryMode:         asciiFixed(3, "Point of Service Entry Mode"),
		FieldPSN:                  asciiFixed(3, "Card Sequence Number"),
		FieldPOSCondition:         asciiFixed(2, "Point of Service Condition Code"),
		FieldAcquirerID:           asciiLL(11, "Acquiring Institution Identification Code"),
		FieldTrack2:               asciiLL(37, "Track 2 Data"),
		FieldRRN:                  asciiFixed(12, "Retrieval Reference Number"),
		FieldAuthCode:             asciiFixed(6, "Authorization Identification Response"),
		FieldResponseCode:         asciiFixed(2, "Response Code"),
		FieldTerminalID:           asciiFixed(8, "Card Acceptor Terminal Identification"),
		FieldMerchantID:           asciiFixed(15, "Card Acceptor Identification Code"),
		FieldMerchantNameLocation: asciiFixed(40, "Card Acceptor Name/Location"),
		FieldCurrency:             asciiFixed(3, "Transaction Currency Code"),
		FieldBillingCurrency:      asciiFixed(3, "Cardholder Billing Currency Code"),
		FieldPINBlock: field.NewBinary(&field.Spec{
			Length:      8,
			Description: "PIN Data",
			Enc:         encoding.BytesToASCIIHex,
			Pref:        prefix.ASCII.Fixed,
		}),
		FieldICC: field.NewBinary(&field.Spec{
			Length:      MaxLLLBytes,
			Description: "ICC Data (BER-TLV)",
			Enc:         encoding.Binary,
			Pref:        prefix.ASCII.LLL,
		}),
		FieldNetworkMgmtCode:    asciiFixed(3, "Network Management Information Code"),
		FieldOriginalData:       asciiFixed(42, "Original Data Elements"),
		FieldReplacementAmounts: asciiFixed(42, "Replacement Amounts"),
		FieldTokenData:          asciiLLL(MaxLLLBytes, "Token Data (private)"),
		FieldPromotion:          asciiLLL(MaxLLLBytes, "Promotion Data (private)"),
	},
}
