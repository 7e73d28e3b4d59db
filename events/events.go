// Package events is mipay's publish/subscribe over NATS JetStream. By default
// it runs an embedded nats-server in the process (JetStream on, store under the
// data directory, no TCP port unless asked); given a URL it uses an external
// server or cluster. All events live in one stream, "<prefix>.>".
//
// Two kinds of subscription:
//   - fan-out (durable ""): every subscriber gets every event published after
//     it subscribed — cache invalidation on every node;
//   - durable (a name): one JetStream durable consumer shared by every
//     subscriber with that name; each event is handled by one of them,
//     at least once, acknowledged when the handler returns nil and redelivered
//     with backoff when it fails, up to DefaultMaxDeliver times.
package events

import (
	"context"
	"encoding/json"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Event is the envelope of every published value.
type Event struct {
	ID      string          `json:"id"`      // unique; also the JetStream de-duplication id
	Subject string          `json:"subject"` // without the stream prefix, e.g. "token.state_changed"
	Time    time.Time       `json:"time"`    // when it was published (UTC)
	Data    json.RawMessage `json:"data"`    // the JSON-encoded value
}

// Decode unmarshals the event's data into v.
func (e Event) Decode(v any) error { return json.Unmarshal(e.Data, v) }

// Handler handles one event. For durable subscriptions a nil return
// acknowledges it and an error has it redelivered later, so handlers must be
// idempotent. ctx is cancelled after DefaultHandlerTimeout (or the
// subscription's timeout) and when the bus closes.
type Handler func(ctx context.Context, e Event) error

// Subscription is a running subscription.
type Subscription interface {
	// Close stops receiving and waits (bounded) for the handler in flight.
	Close() error
}

// Config says where the bus is.
type Config struct {
	// URL of an external NATS server or cluster ("nats://a:4222,nats://b:4222").
	// Empty: an embedded server.
	URL string
	// Dir holds the embedded server's JetStream store. Required when URL is "".
	Dir string
	// Listen, when set ("127.0.0.1:4222", port 0 picks one), makes the
	// embedded server also accept TCP clients there. Empty: in-process only.
	Listen string
	// Prefix names the stream and prefixes every subject. Default "MIPAY".
	Prefix string
	// Replicas of the stream on a cluster. Default 1.
	Replicas int
	// MaxAge is how long the stream keeps events. Default DefaultMaxAge.
	MaxAge time.Duration
	// SyncAlways makes the embedded server fsync every stored event before
	// acknowledging it (survives power loss, not only a process crash), at a
	// cost in publish latency. Default: JetStream's periodic sync.
	SyncAlways bool
	// Metrics, when set, receives mipay_events_published_total,
	// mipay_events_handled_total{subject,durable,result} and
	// mipay_events_handler_duration_seconds.
	Metrics prometheus.Registerer
	// MaxBytes bounds the stream; the oldest events are dropped beyond it.
	// JetStream reserves it from the server's storage, so tests on a
	// shared server use little. Default DefaultMaxStreamBytes.
	MaxBytes int64
}

// Bounds. Every one is applied to the stream or consumers Open and Subscribe
// create.
const (
	DefaultPrefix         = "MIPAY"
	DefaultMaxAge         = 7 * 24 * time.Hour
	DefaultMaxStreamBytes = 1 << 30 // 1 GiB of events, oldest dropped beyond it
	DefaultMaxEventBytes  = 1 << 20 // 1 MiB per encoded event
	DefaultDuplicates     = 2 * time.Minute
	DefaultHandlerTimeout = 30 * time.Second
	DefaultMaxDeliver     = 10 // attempts per event on a durable subscription
	DefaultMaxAckPending  = 1000
	DefaultPullBatch      = 32 // events buffered per durable subscriber
	// DefaultPullHeartbeat is the idle heartbeat a subscriber asks the
	// server for with each pull, and DefaultPullExpiry how long a pull
	// lasts. Under sustained load the JetStream client can lose track of
	// its pull (nats.go issue 1622: events left unprocessed, no pull
	// waiting at the server) and notices only after two missed heartbeats:
	// with the client's defaults (15 s of a 30 s pull) a subscriber then
	// stalled 30 s; TestBurstsHandledPromptly reproduces it.
	DefaultPullHeartbeat = 500 * time.Millisecond
	DefaultPullExpiry    = 5 * time.Second
	DefaultStartTimeout  = 30 * time.Second
	DefaultCloseTimeout  = 10 * time.Second
	MaxSubjectBytes      = 200
)

// retryDelay is the backoff before redelivering an event whose handler
// failed on the given attempt (1-based); it grows to 30 s and stays there.
func retryDelay(attempt uint64) time.Duration {
	switch {
	case attempt <= 1:
		return 100 * time.Millisecond
	case attempt == 2:
		return 500 * time.Millisecond
	case attempt == 3:
		return 2 * time.Second
	case attempt == 4:
		return 10 * time.Second
	default:
		return 30 * time.Second
	}
}
