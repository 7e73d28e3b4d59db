package httpx

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mipay-oss/mipay"
)

func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`{"pan":"x","expiry":"2612"}`, `{"expiry":1}`, `{} {}`, `{"a":1}`, `[`, ``, `{"nested":{"flag":true}}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		var c card
		err := DecodeJSONLimit(httptest.NewRecorder(), r, &c, 256)
		if err == nil {
			return
		}
		code := mipay.ErrorCode(err)
		if code != mipay.EINVALID && code != mipay.ETOOLARGE {
			t.Fatalf("code %q for %q: %v", code, body, err)
		}
		if len(mipay.ErrorMessage(err)) > 400 {
			t.Fatalf("unbounded message: %q", mipay.ErrorMessage(err))
		}
	})
}

func FuzzErrorFromAnswer(f *testing.F) {
	f.Add(400, `{"error":{"code":"invalid","message":"m"}}`)
	f.Add(502, `<html>`)
	f.Add(404, ``)
	f.Fuzz(func(t *testing.T, status int, body string) {
		err := errorFromAnswer(status, []byte(body), "peer")
		if err == nil || mipay.ErrorCode(err) == "" {
			t.Fatalf("no error for %d %q", status, body)
		}
	})
}
