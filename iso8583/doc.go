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
//	 2 PAN (LL 19)                   37 RRN (12)
//	 3 processing code (6)           38 auth code (6)
//	 4 amount (12)                   39 response code (2)
//	 6 billing amount (12)           41 terminal id (8)
//	 7 transmission time (10)        42 merchant id (15)
//	10 billing rate (8)              43 name/location (40)
//	11 STAN (6)                      49 currency (3)
//	12 local time (6)                51 billing currency (3)
//	13 local date (4)                52 PIN block (8 bytes as 16 hex)
//	14 expiry (4)                    55 ICC data (LLL 999, binary BER-TLV)
//	18 MCC (4)                       70 network management code (3)
//	19 acquirer country (3)          90 original data elements (42)
//	22 POS entry mode (3)            95 replacement amounts (42)
//	23 PSN (3)                      123 token data (LLL 999, private)
//	25 POS condition (2)            124 promotion (LLL 999, private)
//	32 acquirer id (LL 11)
//	35 track 2 (LL 37)
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
//
// # Link
//
// A pipelined TCP link (our own; moov-io/iso8583-connection is typed on
// moov's Message and so on its slower codec, see link.go):
//
//	srv := iso8583.NewServer(iso8583.ServerConfig{}, func(ctx context.Context, req *iso8583.Message) (*iso8583.Message, error) {
//		resp := req.Response(iso8583.FieldSTAN, iso8583.FieldTerminalID, …)
//		resp.SetString(iso8583.FieldResponseCode, "00")
//		return resp, nil
//	})
//	go srv.Serve(ln)       // Close() stops it
//
//	c, err := iso8583.Dial(ctx, iso8583.ClientConfig{Addr: addr})
//	resp, err := c.Send(ctx, req) // many goroutines at once
//
// Client: many requests in flight on one connection, answers matched by
// (MTI class, DE11, DE41); at most MaxInFlight awaiting answers (Send waits
// for a slot); RequestTimeout per request (ETIMEOUT); the same key twice in
// flight is refused (ECONFLICT); optional 0800 sign-on after each connect;
// an 0800 echo after EchoInterval without traffic, whose failure drops the
// connection; reconnect with jittered exponential backoff between
// ReconnectMin and ReconnectMax; Send waits for a reconnect within its
// deadline; requests in flight on a dropped connection fail with
// EUNAVAILABLE (the caller reverses or stands in). 0800s from the server are
// answered with 0810.
//
// Server: one reader per connection hands requests to worker goroutines
// (started on demand, at most MaxConcurrentPerConn; then reading pauses)
// that run the Handler concurrently; 0800 is answered with 0810 DE39 00 by
// the server itself; a handler error or panic is answered with DE39 96;
// answers leave through one writer goroutine per connection that flushes
// when its queue is empty (after one yield), batching many frames per
// syscall. Messages that do not unpack are dropped and counted; an
// oversize frame closes the connection.
//
// Both sides expose Stats() (LinkStats counters) and a hook
// (ClientConfig.OnRoundTrip, ServerConfig.OnServed) for metrics. Every
// limit has a Default… constant.
package iso8583
