package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// SubscribeOption tunes one subscription.
type SubscribeOption func(*subOptions)

type subOptions struct {
	timeout     time.Duration
	maxDeliver  int
	concurrency int
}

// MaxConcurrency bounds WithConcurrency.
const MaxConcurrency = 256

// WithConcurrency lets up to n handler calls of the subscription run at
// once (default 1: one at a time, in delivery order). Use it for handlers
// whose events are independent of each other's order, so that their
// durable writes share group commits instead of paying one each.
func WithConcurrency(n int) SubscribeOption {
	return func(o *subOptions) {
		if n > 0 {
			o.concurrency = min(n, MaxConcurrency)
		}
	}
}

// WithHandlerTimeout bounds each handler call (default DefaultHandlerTimeout).
func WithHandlerTimeout(d time.Duration) SubscribeOption {
	return func(o *subOptions) {
		if d > 0 {
			o.timeout = d
		}
	}
}

// WithMaxDeliver bounds the attempts per event of a durable subscription
// (default DefaultMaxDeliver).
func WithMaxDeliver(n int) SubscribeOption {
	return func(o *subOptions) {
		if n > 0 {
			o.maxDeliver = n
		}
	}
}

// Subscribe calls h for events on subject (without prefix; "*" and a final
// ">" allowed). durable "" makes a fan-out subscription that sees every event
// published after Subscribe returns; a name makes or joins the durable
// consumer of that name (letters, digits, '-' and '_'). ctx bounds the
// setup only; the subscription runs until Close of it or of the bus.
func (b *Bus) Subscribe(ctx context.Context, subject, durable string, h Handler, opts ...SubscribeOption) (Subscription, error) {
	if err := validSubject(subject, true); err != nil {
		return nil, fmt.Errorf("events: subscribe: %w", err)
	}
	if h == nil {
		return nil, errors.New("events: subscribe: nil handler")
	}
	o := subOptions{timeout: DefaultHandlerTimeout, maxDeliver: DefaultMaxDeliver, concurrency: 1}
	for _, opt := range opts {
		opt(&o)
	}
	s := &subscription{bus: b, subject: subject, durable: durable, h: h, opts: o}

	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return nil, errors.New("events: subscribe: bus is closed")
	}
	var (
		cons jetstream.Consumer
		err  error
	)
	filter := b.prefix + "." + subject
	if durable == "" {
		cons, err = b.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{filter},
			DeliverPolicy:  jetstream.DeliverNewPolicy,
		})
	} else {
		if err := validDurable(durable); err != nil {
			return nil, fmt.Errorf("events: subscribe: %w", err)
		}
		// Joining a durable is fine; silently refiltering one that another
		// party's nodes consume (the same name for another subject) is not.
		if existing, err := b.stream.Consumer(ctx, durable); err == nil {
			if f := existing.CachedInfo().Config.FilterSubject; f != filter {
				return nil, fmt.Errorf("events: subscribe %s: durable %q already consumes %q", subject, durable, strings.TrimPrefix(f, b.prefix+"."))
			}
		} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, fmt.Errorf("events: subscribe %s (durable %q): %w", subject, durable, err)
		}
		cons, err = b.stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
			Durable:       durable,
			FilterSubject: filter,
			DeliverPolicy: jetstream.DeliverAllPolicy,
			AckPolicy:     jetstream.AckExplicitPolicy,
			// A little beyond the handler bound: a handler that hangs is
			// cancelled before the server gives its event to another node.
			AckWait:       o.timeout + 5*time.Second,
			MaxDeliver:    o.maxDeliver,
			MaxAckPending: DefaultMaxAckPending,
		})
	}
	if err != nil {
		return nil, fmt.Errorf("events: subscribe %s (durable %q): %w", subject, durable, err)
	}
	s.startWorkers()
	s.cc, err = cons.Consume(s.deliver, jetstream.PullMaxMessages(DefaultPullBatch),
		jetstream.PullExpiry(DefaultPullExpiry), jetstream.PullHeartbeat(DefaultPullHeartbeat),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if !errors.Is(err, jetstream.ErrNoHeartbeat) || !b.isClosed() {
				b.log.Warn("consume error", "subject", subject, "durable", durable, "err", err)
			}
		}))
	if err != nil {
		s.closeWork()
		return nil, fmt.Errorf("events: subscribe %s (durable %q): %w", subject, durable, err)
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		s.cc.Stop()
		go func() { <-s.cc.Closed(); s.closeWork() }()
		return nil, errors.New("events: subscribe: bus is closed")
	}
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s, nil
}

func (b *Bus) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// MaxDurableBytes bounds durable consumer names.
const MaxDurableBytes = 64

func validDurable(name string) error {
	if len(name) > MaxDurableBytes {
		return fmt.Errorf("durable name longer than %d bytes", MaxDurableBytes)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("durable name %q: only letters, digits, '-' and '_'", name)
		}
	}
	return nil
}

type subscription struct {
	bus     *Bus
	subject string
	durable string
	h       Handler
	opts    subOptions
	cc      jetstream.ConsumeContext
	once    sync.Once
	// work feeds the WithConcurrency workers (long-lived: a goroutine per
	// event would grow a new stack for every handler's SQLite calls); nil:
	// one at a time on the delivery goroutine. It is never closed: a
	// delivery may still be waiting for a worker when consumption stopped
	// by itself (the client stops on a terminal error, and Closed is then
	// closed before that delivery returns); quit ends the workers instead.
	work     chan jetstream.Msg
	quit     chan struct{}
	workers  sync.WaitGroup
	stopWork sync.Once
}

// deliver runs the handler for msg: on the delivery goroutine, or with
// WithConcurrency on the next free worker (delivery waits for one: the
// subscription never holds more events than it has workers).
func (s *subscription) deliver(msg jetstream.Msg) {
	if s.work == nil {
		s.handle(msg)
		return
	}
	select {
	case s.work <- msg:
	case <-s.quit:
		// Closing: not handled, so not acknowledged; a durable consumer
		// delivers it again.
		if s.durable != "" {
			_ = msg.Nak()
		}
	}
}

// startWorkers starts the WithConcurrency workers.
func (s *subscription) startWorkers() {
	if s.opts.concurrency <= 1 {
		return
	}
	s.work, s.quit = make(chan jetstream.Msg), make(chan struct{})
	for range s.opts.concurrency {
		s.workers.Add(1)
		go func() {
			defer s.workers.Done()
			for {
				select {
				case msg := <-s.work:
					s.handle(msg)
				case <-s.quit:
					return
				}
			}
		}()
	}
}

// closeWork ends the workers (each after the handler it runs) once delivery
// has stopped.
func (s *subscription) closeWork() {
	if s.work != nil {
		s.stopWork.Do(func() { close(s.quit) })
	}
}

// handle runs the handler for one message.
func (s *subscription) handle(msg jetstream.Msg) {
	log := s.bus.log.With("subject", msg.Subject(), "durable", s.durable)
	var e Event
	if err := json.Unmarshal(msg.Data(), &e); err != nil || e.ID == "" {
		log.Error("dropping malformed event", "err", err, "bytes", len(msg.Data()))
		s.bus.m.handle(s.subject, s.durable, resultDropped, 0)
		if s.durable != "" {
			_ = msg.Term()
		}
		return
	}
	if e.Subject == "" {
		e.Subject = strings.TrimPrefix(msg.Subject(), s.bus.prefix+".")
	}
	ctx, cancel := context.WithTimeout(s.bus.ctx, s.opts.timeout)
	start := time.Now()
	err := s.call(ctx, e)
	took := time.Since(start)
	cancel()
	if s.durable == "" {
		if err != nil {
			log.Warn("event handler failed", "id", e.ID, "err", err)
			s.bus.m.handle(s.subject, "", resultFailed, took)
			return
		}
		s.bus.m.handle(s.subject, "", resultOK, took)
		return
	}
	if err == nil {
		s.bus.m.handle(s.subject, s.durable, resultOK, took)
		if aerr := msg.Ack(); aerr != nil {
			log.Warn("ack failed; the event will be redelivered", "id", e.ID, "err", aerr)
		}
		return
	}
	attempt := uint64(1)
	if md, merr := msg.Metadata(); merr == nil {
		attempt = md.NumDelivered
	}
	if attempt >= uint64(s.opts.maxDeliver) {
		log.Error("event handler failed for the last time; event dropped", "id", e.ID, "attempts", attempt, "err", err)
		s.bus.m.handle(s.subject, s.durable, resultDropped, took)
		_ = msg.Term()
		return
	}
	log.Warn("event handler failed; will retry", "id", e.ID, "attempt", attempt, "err", err)
	s.bus.m.handle(s.subject, s.durable, resultRetry, took)
	_ = msg.NakWithDelay(retryDelay(attempt))
}

// call runs the handler, turning a panic into an error so one bad event
// cannot take the process down.
func (s *subscription) call(ctx context.Context, e Event) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("events: handler panic: %v", p)
		}
	}()
	return s.h(ctx, e)
}

// Close stops the subscription, letting the handler in flight finish
// (bounded by DefaultCloseTimeout).
func (s *subscription) Close() error {
	var err error
	s.once.Do(func() {
		s.bus.mu.Lock()
		delete(s.bus.subs, s)
		s.bus.mu.Unlock()
		s.cc.Drain()
		drained := make(chan struct{})
		go func() {
			<-s.cc.Closed()
			s.closeWork()
			s.workers.Wait() // the handlers in flight on the workers
			close(drained)
		}()
		select {
		case <-drained:
		case <-time.After(DefaultCloseTimeout):
			s.cc.Stop()
			err = fmt.Errorf("events: subscription %s (durable %q) did not drain within %s", s.subject, s.durable, DefaultCloseTimeout)
		}
	})
	return err
}
