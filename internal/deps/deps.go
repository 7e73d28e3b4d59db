// Package deps pins the modules the parties are being built on until each is
// imported by real code; it is removed once every one of them is.
package deps

import (
	_ "github.com/emmansun/gmsm/cbcmac"
	_ "github.com/emmansun/gmsm/sm4"
	_ "github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "github.com/moov-io/bertlv"
	_ "github.com/moov-io/iso8583"
	_ "github.com/moov-io/iso8583-connection"
	_ "github.com/moov-io/iso8583/specs"
	_ "github.com/nats-io/nats-server/v2/server"
	_ "github.com/nats-io/nats.go"
	_ "github.com/nats-io/nats.go/jetstream"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/collectors"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/prometheus/client_golang/prometheus/testutil"
	_ "golang.org/x/crypto/argon2"
	_ "modernc.org/sqlite"
)
