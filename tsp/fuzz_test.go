package tsp

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/mipay-oss/mipay/config"
)

// FuzzParseCardData: decrypted card data is outside input. It never panics,
// and an error never echoes the PAN.
func FuzzParseCardData(f *testing.F) {
	f.Add([]byte(`{"pan":"6210102803651527","expiry":"2911","cvn2":"123","name":"ZHANG WEI","phone":"13800130001"}`))
	f.Add([]byte(`{"pan":"6210102803651528","expiry":"2911"}`))
	f.Add([]byte(`{"pan":"62101028036515271234567","expiry":"2913"}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"pan":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseCardData(data)
		if err != nil {
			if c.PAN != "" {
				t.Fatal("card data returned with an error")
			}
			if len(c.PAN) >= 6 && strings.Contains(err.Error(), c.PAN) {
				t.Fatalf("error echoes the PAN: %v", err)
			}
			return
		}
		if !LuhnValid(c.PAN) || !validExpiry(c.Expiry) {
			t.Fatalf("accepted invalid card data %v", c)
		}
	})
}

// FuzzAuthorize: any request for a real token never panics, and only the
// genuine cryptogram is ever approved.
func FuzzAuthorize(f *testing.F) {
	fx := newAuthFixture(f)
	res, _ := fx.mustActiveToken(f, config.Debit, "dev-fuzz")
	c := fx.cardFor(f, res.TokenRef)
	genuine := c.tap(1250, true)
	f.Add(genuine.Token, genuine.EntryMode, genuine.ARQC, genuine.IAD, genuine.CTQ, int64(1250), uint16(1))
	f.Add(genuine.Token, "812", genuine.ARQC, genuine.IAD, genuine.CTQ, int64(1250), uint16(1))
	f.Add("6290000000000000", "07", []byte{}, []byte{7}, []byte{}, int64(-1), uint16(0))
	f.Fuzz(func(t *testing.T, token, entry string, arqc, iad, ctq []byte, amount int64, atc uint16) {
		req := genuine
		req.Token, req.EntryMode, req.ARQC, req.IAD, req.CTQ, req.AmountMinor = token, entry, arqc, iad, ctq, amount
		req.ICC.ATC = [2]byte{byte(atc >> 8), byte(atc)}
		out, err := fx.a.Authorize(context.Background(), req)
		if err != nil {
			t.Fatalf("error on bad input: %v", err)
		}
		if out.Approved && (!bytes.Equal(arqc, genuine.ARQC) || atc != 1 || amount != 1250) {
			t.Fatalf("approved a request that is not the genuine one: %+v", out)
		}
	})
}
