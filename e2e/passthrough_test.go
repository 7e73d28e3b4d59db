package e2e

import (
	"context"
	"net"
	"testing"

	"github.com/mipay-oss/mipay/iso8583"
)

// startPassThrough listens at addr (the address the switch knows the issuer
// host by), dials the real host at upstream, and serves there the handler
// handler makes with that connection, until the test ends. The proxies of
// the issuer tests (issuerProxy, adviceProxy) differ only in their handler.
func startPassThrough(tb testing.TB, addr, upstream string, handler func(up *iso8583.Client) iso8583.Handler) {
	tb.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	up, err := iso8583.Dial(context.Background(), iso8583.ClientConfig{Addr: upstream})
	if err != nil {
		ln.Close()
		tb.Fatal(err)
	}
	srv := iso8583.NewServer(iso8583.ServerConfig{}, handler(up))
	go srv.Serve(ln)
	tb.Cleanup(func() {
		ln.Close()
		srv.Close()
		up.Close()
	})
}
