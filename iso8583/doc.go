// Package iso8583 is the card network's ISO 8583 message spec, its codecs,
// framing and a pipelined TCP link. The acquirer (pos), the switch (network)
// and the issuers (issuer) all speak it.
//
// # Spec
//
// Spec (a *moov-io/iso8583.MessageSpec) is the single source of truth: the
// encodings of moov-io's specs.Spec87ASCII (4-character ASCII MTI, 128-bit
// bitmap as 32 hex characters, ASCII fixed fields, LLVAR/LLLVAR with ASCII
// lengths) for the data elements the network uses:
//
//	 2 PAN (LL 19)               25 POS condition (2)        49 currency (3)
//	 3 processing code (6)       32 acquirer id (LL 11)      51 billing currency (3)
//	 4 amount (12)               35 track 2 (LL 37)          52 PIN block (8 bytes as 16 hex)
//	 6 billing amount (12)       37 RRN (12)                 55 ICC data (LLL 999, binary BER-TLV)
//	 7 transmission time (10)    38 auth code (6)            70 network mgmt code (3)
//	10 billing rate (8)          39 response code (2)        90 original data (42)
//	11 STAN (6)                  41 terminal id (8)          95 replacement amounts (42)
//	12/13 local time/date        42 merchant id (15)        123 token data (LLL 999, private)
//	14 expiry, 18 MCC, 19 country 43 name/location (40)      124 promotion (LLL 999, private)
//	22 entry mode, 23 PSN (3)
//
// Values are the exact wire text (no padding): FormatAmount, FormatSTAN,
// OriginalData.Format build them. DE123 carries token data between network
// and issuer (TokenData: token, token requestor id, assurance level,
// cryptogram validation result, token expiry) and DE124 a promotion
// (Promotion: original amount, discount, campaign, points), both as
// "TT LLL value" sub-elements (TokenDataElements, PromotionElements). DE55
// is kept as bytes so a pass-through is byte-exact; ParseICC/ICC.Encode
// give a struct of its tags and ParseTLV, FindTLV, SetTLV, AppendTLV edit
// it in place (e.g. add the ARPC, tag 91).
//
// # Messages and codecs
//
// Typed structs with `iso8583:"N"` tags: AuthRequest (0100/0200),
// AuthResponse (0110/0210), Reversal (0400/0420), ReversalResponse
// (0410/0430), NetMgmt (0800/0810).
//
//	b, err := iso8583.Pack(&iso8583.AuthRequest{MTI: "0200", …})
//	var resp iso8583.AuthResponse
//	err = iso8583.Unpack(b, &resp)
//
// Message is the flat form the link carries: Has, Field, String, Set,
// SetString, Unset, Marshal(struct), Unmarshal(&struct), Pack, AppendPack,
// Unpack, Response(copy fields…). It is a fast codec compiled at start-up
// from Spec; the tests prove it packs and unpacks byte-identically to
// moov-io's Message with Spec over random and fuzzed messages, so moov-io
// stays the reference while the hot path runs several times faster.
//
// Errors never carry field values (PAN, track 2, DE55): a *FieldError names
// the path and the rule ("field 35: length 40 exceeds max 37").
// AsMipayError turns them into *mipay.Error.
//
// # Framing and Describe
//
// On TCP every message is preceded by a 2-byte big-endian length:
// ReadFrame, WriteFrame, AppendFrame, AppendPackedFrame; at most
// DefaultMaxMessageBytes unless configured, refused with ErrFrameTooLarge
// before allocating. Describe(raw) renders a framed or unframed message one
// field per line with names, PAN and track 2 masked first 6 / last 4, DE55
// as a tag list.
package iso8583
