package issuer

import (
	"context"

	"github.com/mipay-oss/mipay/iso8583"
)

// Fields an answer echoes from its request.
var (
	authEchoFields = []int{iso8583.FieldPAN, iso8583.FieldProcessingCode, iso8583.FieldAmount, iso8583.FieldBillingAmount,
		iso8583.FieldTransmissionTime, iso8583.FieldBillingRate, iso8583.FieldSTAN, iso8583.FieldLocalTime, iso8583.FieldLocalDate,
		iso8583.FieldAcquirerID, iso8583.FieldRRN, iso8583.FieldTerminalID, iso8583.FieldMerchantID, iso8583.FieldCurrency,
		iso8583.FieldBillingCurrency, iso8583.FieldTokenData, iso8583.FieldPromotion}
	reversalEchoFields = []int{iso8583.FieldPAN, iso8583.FieldProcessingCode, iso8583.FieldAmount, iso8583.FieldBillingAmount,
		iso8583.FieldTransmissionTime, iso8583.FieldSTAN, iso8583.FieldAcquirerID, iso8583.FieldRRN, iso8583.FieldTerminalID,
		iso8583.FieldMerchantID, iso8583.FieldCurrency, iso8583.FieldOriginalData, iso8583.FieldTokenData}
)

// ISOHandler answers the switch's messages: 0100/0200 authorizations, their
// stand-in advices 0120/0220 and repeats (advice.go), and 0400/0420
// reversals for every hosted bank (found by PAN BIN). 0800s are answered by
// the link server itself. A malformed message gets DE39 30; the
// handler never returns an error for business outcomes.
func (h *Host) ISOHandler() iso8583.Handler {
	return func(ctx context.Context, req *iso8583.Message) (*iso8583.Message, error) {
		switch req.MTI() {
		case iso8583.MTIAuthRequest, iso8583.MTIFinancialRequest:
			return h.isoAuthorize(ctx, req), nil
		case iso8583.MTIReversalRequest, iso8583.MTIReversalAdvice:
			return h.isoReverse(ctx, req), nil
		case iso8583.MTIAuthAdvice, iso8583.MTIAuthAdviceRepeat, iso8583.MTIFinancialAdvice, iso8583.MTIFinancialAdviceRepeat:
			return h.isoAdvise(ctx, req), nil // advice.go
		default:
			resp := req.Response(authEchoFields...)
			resp.SetString(iso8583.FieldResponseCode, string(RCFormatError))
			return resp, nil
		}
	}
}

func (h *Host) isoAuthorize(ctx context.Context, m *iso8583.Message) *iso8583.Message {
	resp := m.Response(authEchoFields...)
	req, ok := authRequestOf(m)
	var res AuthResult
	if !ok {
		res.Code = RCFormatError
	} else {
		res = h.Authorize(ctx, req)
	}
	if res.AuthCode != "" {
		resp.SetString(iso8583.FieldAuthCode, res.AuthCode)
	}
	resp.SetString(iso8583.FieldResponseCode, string(res.Code))
	if res.Points {
		if f, err := pointsField(m, res); err == nil {
			resp.SetString(iso8583.FieldPromotion, f)
		} else {
			h.log.ErrorContext(ctx, "points field", "err", err)
		}
	}
	return resp
}

// authRequestOf reads an authorization from the wire; false when a field is
// malformed (amount not 12 digits, token data unreadable).
func authRequestOf(m *iso8583.Message) (AuthRequest, bool) {
	req := AuthRequest{
		MTI:             m.MTI(),
		PAN:             m.String(iso8583.FieldPAN),
		ProcessingCode:  m.String(iso8583.FieldProcessingCode),
		Currency:        m.String(iso8583.FieldCurrency),
		BillingCurrency: m.String(iso8583.FieldBillingCurrency),
		Transmission:    m.String(iso8583.FieldTransmissionTime),
		STAN:            m.String(iso8583.FieldSTAN),
		RRN:             m.String(iso8583.FieldRRN),
		Terminal:        m.String(iso8583.FieldTerminalID),
		Acquirer:        m.String(iso8583.FieldAcquirerID),
		Expiry:          m.String(iso8583.FieldExpiry),
		Country:         m.String(iso8583.FieldAcquirerCountry),
	}
	var err error
	if req.AmountMinor, err = iso8583.ParseAmount(m.String(iso8583.FieldAmount)); err != nil {
		return req, false
	}
	if m.Has(iso8583.FieldBillingAmount) {
		if req.BillingAmountMinor, err = iso8583.ParseAmount(m.String(iso8583.FieldBillingAmount)); err != nil {
			return req, false
		}
	}
	if m.Has(iso8583.FieldTokenData) {
		td, err := iso8583.ParseTokenData(m.String(iso8583.FieldTokenData))
		if err != nil {
			return req, false
		}
		if n := len(td.Token); n >= 4 {
			req.TokenLast4 = td.Token[n-4:]
		}
		req.TokenRequestorID, req.CryptogramResult = td.RequestorID, td.CryptogramResult
	}
	promo, ok := parsePromotion(m)
	if !ok {
		return req, false
	}
	req.Promotion = promo
	return req, true
}

func (h *Host) isoReverse(ctx context.Context, m *iso8583.Message) *iso8583.Message {
	resp := m.Response(reversalEchoFields...)
	req := ReversalRequest{
		MTI:          m.MTI(),
		PAN:          m.String(iso8583.FieldPAN),
		Transmission: m.String(iso8583.FieldTransmissionTime),
		STAN:         m.String(iso8583.FieldSTAN),
		RRN:          m.String(iso8583.FieldRRN),
		Terminal:     m.String(iso8583.FieldTerminalID),
		Acquirer:     m.String(iso8583.FieldAcquirerID),
	}
	ok := true
	if m.Has(iso8583.FieldAmount) {
		var err error
		req.AmountMinor, err = iso8583.ParseAmount(m.String(iso8583.FieldAmount))
		ok = err == nil
	}
	if m.Has(iso8583.FieldOriginalData) {
		od, err := iso8583.ParseOriginalData(m.String(iso8583.FieldOriginalData))
		if err != nil {
			ok = false
		} else {
			req.Original = &OriginalData{MTI: od.MTI, STAN: od.STAN, Transmission: od.TransmissionTime, Acquirer: od.AcquirerID}
		}
	}
	code := RCFormatError
	if ok {
		res := h.Reverse(ctx, req)
		code = res.Code
		if res.Points {
			if f, err := reversalPointsField(res); err == nil {
				resp.SetString(iso8583.FieldPromotion, f)
			} else {
				h.log.ErrorContext(ctx, "reversal points field", "err", err)
			}
		}
	}
	resp.SetString(iso8583.FieldResponseCode, string(code))
	return resp
}
