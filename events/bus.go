package events

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mipay-oss/mipay/logmask"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Bus is a connection to the event stream. It is safe for concurrent use.
type Bus struct {
	prefix string
	log    *slog.Logger
	srv    *server.Server // nil when external
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	m      *metrics // nil without Config.Metrics

	ctx    context.Context // cancelled by Close: handlers in flight see it
	cancel context.CancelFunc

	mu     sync.Mutex
	subs   map[*subscription]struct{}
	closed bool
}

// Open connects to the bus (starting the embedded server when cfg.URL is
// empty) and creates or updates the stream.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*Bus, error) {
	if log == nil {
		log = slog.Default()
	}
	log = slog.New(logmask.NewHandler(log.Handler())).With("component", "events")
	prefix := cfg.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if err := validToken(prefix); err != nil || strings.ContainsAny(prefix, `/\`) {
		return nil, fmt.Errorf("events: prefix %q must be one subject token usable as a stream name", prefix)
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	b := &Bus{prefix: prefix, log: log, m: m, subs: make(map[*subscription]struct{})}
	if cfg.URL == "" {
		b.srv, b.nc, err = startEmbedded(cfg, log)
	} else {
		b.nc, err = connectExternal(ctx, cfg.URL, log)
	}
	if err != nil {
		return nil, err
	}
	b.js, err = jetstream.New(b.nc)
	if err == nil {
		b.stream, err = b.js.CreateOrUpdateStream(ctx, streamConfig(prefix, cfg))
	}
	if err != nil {
		b.shutdown()
		return nil, fmt.Errorf("events: stream %s: %w", prefix, err)
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	return b, nil
}

func streamConfig(prefix string, cfg Config) jetstream.StreamConfig {
	replicas := cfg.Replicas
	if replicas <= 0 {
		replicas = 1
	}
	maxAge := cfg.MaxAge
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	maxBytes := cfg.MaxBytes
	if maxBytes <= 0 {
		maxBytes = DefaultMaxStreamBytes
	}
	return jetstream.StreamConfig{
		Name:        prefix,
		Description: "mipay events",
		Subjects:    []string{prefix + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      maxAge,
		MaxBytes:    maxBytes,
		MaxMsgSize:  DefaultMaxEventBytes,
		Duplicates:  DefaultDuplicates,
		Replicas:    replicas,
	}
}

func startEmbedded(cfg Config, log *slog.Logger) (*server.Server, *nats.Conn, error) {
	if cfg.Dir == "" {
		return nil, nil, errors.New("events: Config.Dir is required for the embedded NATS server (or set a NATS URL)")
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("events: data directory: %w", err)
	}
	opts := &server.Options{
		ServerName: "mipay-embedded",
		JetStream:  true,
		StoreDir:   cfg.Dir,
		NoSigs:     true,
		DontListen: cfg.Listen == "",
		SyncAlways: cfg.SyncAlways,
	}
	if cfg.Listen != "" {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, nil, fmt.Errorf("events: listen address %q: %w", cfg.Listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 0 || p > 65535 {
			return nil, nil, fmt.Errorf("events: listen address %q: bad port", cfg.Listen)
		}
		if p == 0 {
			p = server.RANDOM_PORT // nats-server reads 0 as its default 4222
		}
		opts.Host, opts.Port = host, p
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, nil, fmt.Errorf("events: embedded server: %w", err)
	}
	ns.SetLoggerV2(natsLogger{log.With("nats", "server")}, false, false, false)
	go ns.Start()
	if !ns.ReadyForConnections(DefaultStartTimeout) {
		ns.Shutdown()
		return nil, nil, fmt.Errorf("events: embedded server not ready after %s (is %s in use by another process?)", DefaultStartTimeout, cfg.Dir)
	}
	nc, err := nats.Connect(ns.ClientURL(), nats.InProcessServer(ns), nats.Name("mipay"),
		nats.ErrorHandler(asyncErrorLogger(log)))
	if err != nil {
		ns.Shutdown()
		return nil, nil, fmt.Errorf("events: connect to embedded server: %w", err)
	}
	return ns, nc, nil
}

func connectExternal(ctx context.Context, url string, log *slog.Logger) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name("mipay"),
		nats.MaxReconnects(-1), // a payment platform keeps trying; callers see errors meanwhile
		nats.ReconnectWait(time.Second),
		nats.ErrorHandler(asyncErrorLogger(log)),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("disconnected from NATS", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("reconnected to NATS", "url", nc.ConnectedUrlRedacted()) }),
	}
	if dl, ok := ctx.Deadline(); ok {
		d := time.Until(dl)
		if d <= 0 {
			return nil, fmt.Errorf("events: connect to NATS at %s: %w", redact(url), context.DeadlineExceeded)
		}
		opts = append(opts, nats.Timeout(d))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("events: connect to NATS at %s: %w", redact(url), err)
	}
	return nc, nil
}

// redact drops credentials from a URL for messages.
func redact(url string) string {
	if at := strings.LastIndex(url, "@"); at >= 0 {
		if scheme := strings.Index(url, "://"); scheme >= 0 && scheme < at {
			return url[:scheme+3] + "***" + url[at:]
		}
	}
	return url
}

func asyncErrorLogger(log *slog.Logger) nats.ErrHandler {
	return func(_ *nats.Conn, sub *nats.Subscription, err error) {
		subj := ""
		if sub != nil {
			subj = sub.Subject
		}
		log.Warn("NATS async error", "subject", subj, "err", err)
	}
}

// ClientURL is where TCP clients reach the embedded server when Listen was
// set, or "" (in-process only, or an external server).
func (b *Bus) ClientURL() string {
	if b.srv == nil || b.srv.Addr() == nil {
		return ""
	}
	return b.srv.ClientURL()
}

// Prefix is the stream name and subject prefix.
func (b *Bus) Prefix() string { return b.prefix }

// Publish wraps v in an Event on subject (given without the prefix, no
// wildcards) and returns once JetStream has stored it.
func (b *Bus) Publish(ctx context.Context, subject string, v any) error {
	id, err := newID()
	if err != nil {
		return err
	}
	return b.publish(ctx, id, subject, v)
}

// MaxIDBytes bounds an event id given to PublishID.
const MaxIDBytes = 128

// PublishID is Publish with the event id chosen by the caller: an outbox
// row id, so that publishing the same row again after a crash carries the
// same Event.ID (consumers de-duplicate on it; JetStream also drops a
// repeat within DefaultDuplicates). id is 1–128 printable ASCII bytes.
func (b *Bus) PublishID(ctx context.Context, id, subject string, v any) error {
	if err := checkID(id, subject); err != nil {
		return err
	}
	return b.publish(ctx, id, subject, v)
}

// checkID checks a caller's event id: 1–MaxIDBytes printable ASCII bytes.
func checkID(id, subject string) error {
	if id == "" || len(id) > MaxIDBytes || strings.IndexFunc(id, func(r rune) bool { return r <= ' ' || r >= 0x7f }) >= 0 {
		return fmt.Errorf("events: publish %s: id must be 1–%d printable ASCII bytes", subject, MaxIDBytes)
	}
	return nil
}

func (b *Bus) publish(ctx context.Context, id, subject string, v any) error {
	msg, err := b.encode(id, subject, v)
	if err != nil {
		return err
	}
	if _, err := b.js.Publish(ctx, b.prefix+"."+subject, msg, jetstream.WithMsgID(id)); err != nil {
		return fmt.Errorf("events: publish %s: %w", subject, err)
	}
	b.m.publish(subject)
	return nil
}

func newID() (string, error) {
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("events: event id: %w", err)
	}
	return hex.EncodeToString(raw[:]), nil
}

// Close stops every subscription (waiting, bounded, for handlers in flight),
// drains the connection and stops the embedded server.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	subs := make([]*subscription, 0, len(b.subs))
	for s := range b.subs {
		subs = append(subs, s)
	}
	b.mu.Unlock()
	// Drain every subscription at once, so Close takes at most about
	// DefaultCloseTimeout however many there are.
	errs := make([]error, len(subs))
	var wg sync.WaitGroup
	for i, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Close()
		}()
	}
	wg.Wait()
	b.cancel()
	b.shutdown()
	return errors.Join(errs...)
}

// shutdown drains the connection and stops the embedded server.
func (b *Bus) shutdown() {
	if b.nc != nil {
		done := make(chan struct{})
		b.nc.SetClosedHandler(func(*nats.Conn) { close(done) })
		if err := b.nc.Drain(); err != nil {
			b.nc.Close()
		} else {
			select {
			case <-done:
			case <-time.After(DefaultCloseTimeout):
				b.nc.Close()
			}
		}
	}
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
	}
}

// validSubject checks a subject given without prefix: dot-separated tokens
// of printable ASCII without spaces; "*" and a final ">" only when
// wildcards are allowed.
func validSubject(subject string, wildcards bool) error {
	if subject == "" || len(subject) > MaxSubjectBytes {
		return fmt.Errorf("subject must be 1–%d bytes", MaxSubjectBytes)
	}
	tokens := strings.Split(subject, ".")
	for i, tok := range tokens {
		switch {
		case tok == "*" || (tok == ">" && i == len(tokens)-1):
			if !wildcards {
				return fmt.Errorf("subject %q: wildcards are not allowed here", subject)
			}
		default:
			if err := validToken(tok); err != nil {
				return fmt.Errorf("subject %q: %w", subject, err)
			}
		}
	}
	return nil
}

func validToken(tok string) error {
	if tok == "" {
		return errors.New("empty token")
	}
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c <= ' ' || c >= 0x7f || c == '.' || c == '*' || c == '>' {
			return fmt.Errorf("bad character %q", c)
		}
	}
	return nil
}

// natsLogger sends the embedded server's log to slog.
type natsLogger struct{ log *slog.Logger }

func (l natsLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l natsLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l natsLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l natsLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l natsLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l natsLogger) Tracef(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }

// MaxPublishBatch bounds the events of one PublishBatch.
const MaxPublishBatch = 1024

// Outgoing is one event of a PublishBatch.
type Outgoing struct {
	ID      string // as PublishID's id
	Subject string
	Data    any
}

// PublishBatch publishes evs (at most MaxPublishBatch) with their ids, all
// in flight at once, and waits for JetStream to store each: one round of
// acknowledgements instead of one per event. It returns which were stored
// (ok[i]) and the first error; an event not stored may be published again
// later with the same id (JetStream and consumers drop the repeat).
func (b *Bus) PublishBatch(ctx context.Context, evs []Outgoing) (ok []bool, err error) {
	if len(evs) > MaxPublishBatch {
		return nil, fmt.Errorf("events: publish batch of %d exceeds %d", len(evs), MaxPublishBatch)
	}
	ok = make([]bool, len(evs))
	futures := make([]jetstream.PubAckFuture, len(evs))
	for i, e := range evs {
		if ierr := checkID(e.ID, e.Subject); ierr != nil {
			err = errors.Join(err, ierr)
			continue
		}
		msg, merr := b.encode(e.ID, e.Subject, e.Data)
		if merr != nil {
			err = errors.Join(err, merr)
			continue
		}
		f, perr := b.js.PublishAsync(b.prefix+"."+e.Subject, msg, jetstream.WithMsgID(e.ID))
		if perr != nil {
			err = errors.Join(err, fmt.Errorf("events: publish %s: %w", e.Subject, perr))
			continue
		}
		futures[i] = f
	}
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
			ok[i] = true
			b.m.publish(evs[i].Subject)
		case perr := <-f.Err():
			err = errors.Join(err, fmt.Errorf("events: publish %s: %w", evs[i].Subject, perr))
		case <-ctx.Done():
			return ok, errors.Join(err, fmt.Errorf("events: publish batch: %w", ctx.Err()))
		}
	}
	return ok, err
}

// Backlog is how many events the durable consumer durable has yet to
// handle: those not yet delivered to it and those delivered and not yet
// acknowledged. It is how far a party lags behind the events it consumes.
func (b *Bus) Backlog(ctx context.Context, durable string) (int, error) {
	if err := validDurable(durable); err != nil {
		return 0, fmt.Errorf("events: backlog: %w", err)
	}
	c, err := b.stream.Consumer(ctx, durable)
	if err != nil {
		return 0, fmt.Errorf("events: backlog of %q: %w", durable, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("events: backlog of %q: %w", durable, err)
	}
	return int(info.NumPending) + info.NumAckPending, nil
}

// encode wraps v in an Event of subject with id.
func (b *Bus) encode(id, subject string, v any) ([]byte, error) {
	if err := validSubject(subject, false); err != nil {
		return nil, fmt.Errorf("events: publish: %w", err)
	}
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("events: publish %s: encode: %w", subject, err)
	}
	msg, err := envelope(id, subject, time.Now().UTC(), data)
	if err != nil {
		return nil, fmt.Errorf("events: publish %s: encode: %w", subject, err)
	}
	if len(msg) > DefaultMaxEventBytes {
		return nil, fmt.Errorf("events: publish %s: event of %d bytes exceeds %d", subject, len(msg), DefaultMaxEventBytes)
	}
	return msg, nil
}

// envelope is json.Marshal(Event{id, subject, t, data}) for data that
// json.Marshal produced, written without passing data through the encoder
// a second time: json.Marshal of a RawMessage validates and compacts it
// again, which cost as much as encoding the value (a payload of a few
// hundred bytes, on every event).
func envelope(id, subject string, t time.Time, data []byte) ([]byte, error) {
	qid, err := json.Marshal(id)
	if err != nil {
		return nil, err
	}
	qsubject, err := json.Marshal(subject)
	if err != nil {
		return nil, err
	}
	qt, err := t.MarshalJSON()
	if err != nil {
		return nil, err
	}
	msg := make([]byte, 0, len(qid)+len(qsubject)+len(qt)+len(data)+40)
	msg = append(msg, `{"id":`...)
	msg = append(msg, qid...)
	msg = append(msg, `,"subject":`...)
	msg = append(msg, qsubject...)
	msg = append(msg, `,"time":`...)
	msg = append(msg, qt...)
	msg = append(msg, `,"data":`...)
	msg = append(msg, data...)
	return append(msg, '}'), nil
}
