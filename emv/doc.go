// Package emv holds the EMV / PBOC data formats and cryptography every
// payment party stands on: the card (se), the terminal (pos), the switch and
// TSP (through hsm), and the transit agencies. It knows no party and has no
// state: every function is pure, every parser of outside input is bounded
// and fuzzed.
//
// # BER-TLV (tlv.go)
//
//	type TLV struct{ Tag uint32; Value []byte; Children []TLV }
//	DecodeTLV(b) ([]TLV, error)      // bounded: MaxTLVDepth, MaxTagBytes, MaxLengthBytes
//	EncodeTLV(tlvs) []byte
//	AppendTLV(dst, tag, value) []byte; AppendTag; AppendLength
//	Find(tlvs, "6F.A5.BF0C.61.4F") (TLV, bool)   // path of hex tags
//	FindTag(tlvs, tag); Search(tlvs, tag)          // top level; depth first
//	ParseTag("9F26"); Constructed(tag); TagLen(tag)
//
// # Tag dictionary (tags.go)
//
//	LookupTag(tag) (TagInfo{Name, Format, Source}, bool); TagFormat(tag)
//	Pretty(w, tlvs) error   // indented tree with names; PAN (5A, 57) masked
//
// # DOL (dol.go)
//
//	ParseDOL(b) ([]DOLEntry, error); DOLLength(entries)
//	BuildDOL(entries, map[uint32][]byte) []byte   // EMV padding: n left, cn FF, others 00 right
//	SplitDOL(entries, data) (map[uint32][]byte, error)   // the card's side
//
// # ISO 7816-4 APDUs (apdu.go)
//
//	ParseCommand(b) (Command{CLA, INS, P1, P2, Data, Ne, Extended}, error)  // cases 1–4, short and extended
//	Command.Bytes() ([]byte, error)
//	ParseResponse(b) (Response{Data, SW}, error); Response.Bytes(); Response.OK()
//	SWSuccess, SWCommandNotAllowed (6986), SWFileNotFound (6A82), …, SWInsufficientBalance (9401), SWMACInvalid (9302)
//	SWText(sw) string
//
// # Keys (keys.go)
//
// Keys are double-length 3DES keys, type Key = [16]byte; derived keys carry
// odd parity.
//
//	DeriveICCMKOptionA / DeriveICCMKOptionB / DeriveICCMK(imk []byte, pan string, psn int) (Key, error)
//	NewIMK(imk) (*IMK, error)  // prepared key schedule; IMK.DeriveOptionA/DeriveOptionB/DeriveICCMK
//	SessionKeyPBOC(mk, atc)             // DESIGN.md: 3DES(MK, 0…0‖ATC) ‖ 3DES(MK, 0…0‖ATC^FFFF)
//	SessionKeyCommon(mk, r [8]byte)     // EMV CSK, Book 2 A1.3.1
//	SessionKeyVisaCVN18(mk, atc)        // CSK with R = ATC‖000000000000
//	SessionKeyMastercard(mk, atc, un)   // SKD, R = ATC‖0000‖UN
//	DiversifyKey(master, div [8]byte)   // 3DES(div) ‖ 3DES(NOT div), odd parity
//	OddParity(key []byte)               // in place
//
// # MACs and ciphers (mac.go)
//
//	MACAlg3(key16, data, PadMethod1|PadMethod2) ([8]byte, error)   // ISO 9797-1 alg 3 (retail MAC)
//	DESMAC(key8, data); AESCMAC(key, msg) ([16]byte, error); SM4Encrypt(key, block); TDESEncrypt(key, block)
//
// # Cryptograms (cryptogram.go)
//
//	TxData{Amount, AmountOther, Country, TVR, Currency, Date, Type, Unpredictable, AIP, ATC}
//	TxDataFromTLV(tlvs) (TxData, error); AppendTxData(dst, *TxData)
//	ARQCDataPBOC(t, cvr [4]) / ARQCDataVisaCVN10(t, cvr [4]) / ARQCDataVisaCVN18(t, iad) / ARQCDataMastercardCVN16(t, cvr [6])
//	ParseIADPBOC(b) (IADPBOC, error); IADPBOC.Bytes()
//	Scheme: SchemePBOC "pboc", SchemeCSK "csk", SchemeVisaCVN10 "visa-cvn10", SchemeMastercard "mc-skd"
//	  ParseScheme(s); Scheme.CryptogramKey(mk, atc, un); Scheme.Padding()
//	GenerateARQC(scheme, imk, pan, psn, atc, un, data) ([8]byte, error)   // the whole chain
//	VerifyARQCPBOC(imk *IMK, pan, psn, atc, data, arqc) (ok bool, sk Key, err error)   // switch fast path, 0 allocs
//	VerifyARQC(imk *IMK, scheme, pan, psn, atc, un, data, arqc) (ok bool, key Key, err error)   // any scheme
//	ARPCMethod1(key, arqc, arc [2]byte) [8]byte
//	ARPCMethod2(key, arqc, csu [4]byte, propAuth) ([4]byte, error)
//
// # E-purse, PBOC ED/EP / JT/T 978 style (epurse.go)
//
//	EPursePurchaseSessionKey(dpk, random [4], offlineSerial [2], termSerialLast2 [2]) [8]byte
//	EPurseLoadSessionKey(dlk, random [4], onlineSerial [2]) [8]byte      // random‖serial‖8000
//	EPurseMAC(key8, data) [4]byte                                         // DES CBC, IV 0, 80 00.., left 4
//	EPurseTx{Amount, Type, Terminal, Date, Time}
//	EPursePurchaseMAC1(sespk, tx); EPursePurchaseMAC2(sespk, amount); EPursePurchaseTAC(tacKey, tx, termSerial [4])
//	EPurseLoadMAC1(seslk, balance, tx); EPurseLoadMAC2(seslk, tx); EPurseLoadTAC(tacKey, newBalance, onlineSerial, tx)
//	EPurseTACKey(dtk) [8]byte   // left xor right
//	EPurseDiversifier(cardNumber) ([8]byte, error)   // rightmost 16 digits BCD, for DiversifyKey
//
// Errors wrap ErrMalformedTLV, ErrMalformedDOL, ErrMalformedAPDU or
// ErrBadInput; their text never holds a PAN or key bytes. Callers facing
// users wrap them in *mipay.Error.
package emv
