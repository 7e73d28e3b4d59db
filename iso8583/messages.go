package iso8583

// Typed messages of the network. Each struct maps to the spec through
// `iso8583:"N"` tags (N = data element, 0 = MTI), the same tags moov-io's
// Message.Marshal/Unmarshal read, so a struct packs to the same bytes through
// either codec. Fields are the exact wire text: fixed numeric fields keep
// their leading zeros (Amount "000000012500"; see FormatAmount). Empty fields
// are left out of the message.
//
// One struct serves a request class and its advice/repeat variants; the MTI
// field says which (AuthRequest: 0100 or 0200, and their advices 0120/0220
// and repeats 0121/0221; Reversal: 0400 or 0420).

// AuthRequest is a 0100 authorization or 0200 financial request (POS →
// network → issuer). On the acquirer side PAN and Track2 carry the token;
// between network and issuer they carry the PAN and TokenData (DE123) the
// token. As an advice (0120/0220, repeated as 0121/0221: network → issuer)
// it tells of an approval the network gave in the issuer's stead: DE38 the
// network's approval code, DE39 its answer, DE90 the original's identity.
type AuthRequest struct {
	MTI                  string `iso8583:"0"`
	PAN                  string `iso8583:"2"`
	ProcessingCode       string `iso8583:"3"`
	Amount               string `iso8583:"4"`
	BillingAmount        string `iso8583:"6"`
	TransmissionTime     string `iso8583:"7"` // MMDDhhmmss UTC
	BillingRate          string `iso8583:"10"`
	STAN                 string `iso8583:"11"`
	LocalTime            string `iso8583:"12"` // hhmmss
	LocalDate            string `iso8583:"13"` // MMDD
	Expiry               string `iso8583:"14"` // YYMM
	MCC                  string `iso8583:"18"`
	AcquirerCountry      string `iso8583:"19"` // ISO 3166 numeric
	POSEntryMode         string `iso8583:"22"` // "072" contactless chip
	PSN                  string `iso8583:"23"`
	POSCondition         string `iso8583:"25"`
	AcquirerID           string `iso8583:"32"`
	Track2               string `iso8583:"35"`
	RRN                  string `iso8583:"37"`
	AuthCode             string `iso8583:"38"` // advices: the network's approval code
	ResponseCode         string `iso8583:"39"` // advices: the network's answer
	TerminalID           string `iso8583:"41"`
	MerchantID           string `iso8583:"42"`
	MerchantNameLocation string `iso8583:"43"`
	Currency             string `iso8583:"49"` // ISO 4217 numeric
	BillingCurrency      string `iso8583:"51"`
	PINBlock             []byte `iso8583:"52"`
	ICC                  []byte `iso8583:"55"`  // BER-TLV; see ParseICC
	OriginalData         string `iso8583:"90"`  // advices: see OriginalData.Format
	TokenData            string `iso8583:"123"` // see TokenData.Encode
	Promotion            string `iso8583:"124"` // see Promotion.Encode
}

// AuthResponse is a 0110 or 0210 answer (0130/0230 to an advice).
type AuthResponse struct {
	MTI              string `iso8583:"0"`
	PAN              string `iso8583:"2"`
	ProcessingCode   string `iso8583:"3"`
	Amount           string `iso8583:"4"`
	BillingAmount    string `iso8583:"6"`
	TransmissionTime string `iso8583:"7"`
	BillingRate      string `iso8583:"10"`
	STAN             string `iso8583:"11"`
	LocalTime        string `iso8583:"12"`
	LocalDate        string `iso8583:"13"`
	AcquirerID       string `iso8583:"32"`
	RRN              string `iso8583:"37"`
	AuthCode         string `iso8583:"38"`
	ResponseCode     string `iso8583:"39"`
	TerminalID       string `iso8583:"41"`
	MerchantID       string `iso8583:"42"`
	Currency         string `iso8583:"49"`
	BillingCurrency  string `iso8583:"51"`
	ICC              []byte `iso8583:"55"` // issuer data: 91 ARPC, 8A, 71/72 scripts
	TokenData        string `iso8583:"123"`
	Promotion        string `iso8583:"124"`
}

// Reversal is a 0400 reversal request (POS without an answer) or a 0420
// reversal advice (network reversing a late approval). DE90 names the
// original; DE39 carries the reason.
type Reversal struct {
	MTI                  string `iso8583:"0"`
	PAN                  string `iso8583:"2"`
	ProcessingCode       string `iso8583:"3"`
	Amount               string `iso8583:"4"`
	BillingAmount        string `iso8583:"6"`
	TransmissionTime     string `iso8583:"7"`
	BillingRate          string `iso8583:"10"`
	STAN                 string `iso8583:"11"`
	LocalTime            string `iso8583:"12"`
	LocalDate            string `iso8583:"13"`
	Expiry               string `iso8583:"14"`
	MCC                  string `iso8583:"18"`
	AcquirerCountry      string `iso8583:"19"`
	POSEntryMode         string `iso8583:"22"`
	PSN                  string `iso8583:"23"`
	POSCondition         string `iso8583:"25"`
	AcquirerID           string `iso8583:"32"`
	RRN                  string `iso8583:"37"`
	AuthCode             string `iso8583:"38"`
	ResponseCode         string `iso8583:"39"`
	TerminalID           string `iso8583:"41"`
	MerchantID           string `iso8583:"42"`
	MerchantNameLocation string `iso8583:"43"`
	Currency             string `iso8583:"49"`
	BillingCurrency      string `iso8583:"51"`
	ICC                  []byte `iso8583:"55"`
	OriginalData         string `iso8583:"90"` // see OriginalData.Format
	ReplacementAmounts   string `iso8583:"95"`
	TokenData            string `iso8583:"123"`
	Promotion            string `iso8583:"124"`
}

// ReversalResponse is a 0410 or 0430 answer.
type ReversalResponse struct {
	MTI              string `iso8583:"0"`
	PAN              string `iso8583:"2"`
	ProcessingCode   string `iso8583:"3"`
	Amount           string `iso8583:"4"`
	BillingAmount    string `iso8583:"6"`
	TransmissionTime string `iso8583:"7"`
	STAN             string `iso8583:"11"`
	AcquirerID       string `iso8583:"32"`
	RRN              string `iso8583:"37"`
	ResponseCode     string `iso8583:"39"`
	TerminalID       string `iso8583:"41"`
	MerchantID       string `iso8583:"42"`
	Currency         string `iso8583:"49"`
	OriginalData     string `iso8583:"90"`
	TokenData        string `iso8583:"123"`
}

// NetMgmt is an 0800 network management request or its 0810 answer:
// sign-on (DE70 001), sign-off (002), echo (301).
type NetMgmt struct {
	MTI              string `iso8583:"0"`
	TransmissionTime string `iso8583:"7"`
	STAN             string `iso8583:"11"`
	AcquirerID       string `iso8583:"32"`
	ResponseCode     string `iso8583:"39"`
	NetworkMgmtCode  string `iso8583:"70"`
}

// MTIs of the network.
const (
	MTIAuthRequest       = "0100"
	MTIAuthResponse      = "0110"
	MTIFinancialRequest  = "0200"
	MTIFinancialResponse = "0210"
	// Advices of a stand-in approval (network → issuer), their repeats and
	// the issuer's acknowledgements. A repeat (fourth digit 1) is answered
	// with the advice's response MTI (0121 → 0130).
	MTIAuthAdvice              = "0120"
	MTIAuthAdviceRepeat        = "0121"
	MTIAuthAdviceResponse      = "0130"
	MTIFinancialAdvice         = "0220"
	MTIFinancialAdviceRepeat   = "0221"
	MTIFinancialAdviceResponse = "0230"
	MTIReversalRequest         = "0400"
	MTIReversalResponse        = "0410"
	MTIReversalAdvice          = "0420"
	MTIReversalAdviceResp      = "0430"
	MTINetMgmtRequest          = "0800"
	MTINetMgmtResponse         = "0810"
)
