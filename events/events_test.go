package events

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// waitFor bounds every wait in these tests.
const waitFor = 10 * time.Second

type backend struct {
	name string
	open func(tb testing.TB, dir string) *Bus
}

// backends are the embedded server and, when MIPAY_TEST_NATS is set, the
// external one (each test on its own prefix so tests do not see each other).
func backends(t *testing.T) []backend {
	bs := []backend{{"embedded", func(tb testing.TB, dir string) *Bus {
		return MustOpen(tb, Config{Dir: dir})
	}}}
	if url := os.Getenv("MIPAY_TEST_NATS"); url != "" {
		prefix := uniquePrefix(t)
		bs = append(bs, backend{"external", func(tb testing.TB, _ string) *Bus {
			return MustOpen(tb, Config{URL: url, Prefix: prefix, MaxBytes: 64 << 20})
		}})
	}
	return bs
}

func uniquePrefix(tb testing.TB) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "MIPAYTEST_" + strings.ToUpper(hex.EncodeToString(b[:]))
}

func testLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// MustOpen opens a bus that is closed when the test ends; an external test
// stream is deleted then.
func MustOpen(tb testing.TB, cfg Config) *Bus {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	b, err := Open(ctx, cfg, testLogger())
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if cfg.URL != "" {
			_ = b.js.DeleteStream(context.Background(), b.prefix)
		}
		if err := b.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return b
}

type payload struct {
	N    int    `json:"n"`
	Text string `json:"text"`
}

// collector gathers events a handler received.
type collector struct {
	mu  sync.Mutex
	got []Event
	ch  chan Event
}

func newCollector() *collector { return &collector{ch: make(chan Event, 1000)} }

func (c *collector) handle(_ context.Context, e Event) error {
	c.mu.Lock()
	c.got = append(c.got, e)
	c.mu.Unlock()
	c.ch <- e
	return nil
}

func (c *collector) next(tb testing.TB) Event {
	tb.Helper()
	select {
	case e := <-c.ch:
		return e
	case <-time.After(waitFor):
		tb.Fatal("no event within", waitFor)
		return Event{}
	}
}

func (c *collector) none(tb testing.TB, d time.Duration) {
	tb.Helper()
	select {
	case e := <-c.ch:
		tb.Fatalf("unexpected event %s %s", e.Subject, e.Data)
	case <-time.After(d):
	}
}

func mustPublish(tb testing.TB, b *Bus, subject string, v any) {
	tb.Helper()
	if err := b.Publish(context.Background(), subject, v); err != nil {
		tb.Fatalf("Publish %s: %v", subject, err)
	}
}

func mustSubscribe(tb testing.TB, b *Bus, subject, durable string, h Handler, opts ...SubscribeOption) Subscription {
	tb.Helper()
	s, err := b.Subscribe(context.Background(), subject, durable, h, opts...)
	if err != nil {
		tb.Fatalf("Subscribe %s: %v", subject, err)
	}
	return s
}

func TestPublishSubscribe(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			b := be.open(t, t.TempDir())
			c := newCollector()
			mustSubscribe(t, b, "token.>", "", c.handle)
			before := time.Now().Add(-time.Second)
			mustPublish(t, b, "token.state_changed", payload{N: 1, Text: "active"})
			mustPublish(t, b, "wallet.other", payload{N: 2})
			mustPublish(t, b, "token.deleted", payload{N: 3})
			e := c.next(t)
			var p payload
			if err := e.Decode(&p); err != nil || p.N != 1 || p.Text != "active" {
				t.Errorf("payload = %+v, %v", p, err)
			}
			if e.Subject != "token.state_changed" || e.ID == "" || e.Time.Before(before) {
				t.Errorf("envelope = %+v", e)
			}
			if e2 := c.next(t); e2.Subject != "token.deleted" || e2.ID == e.ID {
				t.Errorf("second event = %+v", e2)
			}
			c.none(t, 200*time.Millisecond)
		})
	}
}

func TestFanOut(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			b := be.open(t, t.TempDir())
			mustPublish(t, b, "cache.invalidate", payload{N: 0}) // before subscribing: not delivered
			c1, c2 := newCollector(), newCollector()
			mustSubscribe(t, b, "cache.invalidate", "", c1.handle)
			mustSubscribe(t, b, "cache.*", "", c2.handle)
			for i := 1; i <= 5; i++ {
				mustPublish(t, b, "cache.invalidate", payload{N: i})
			}
			for _, c := range []*collector{c1, c2} {
				for i := 1; i <= 5; i++ {
					var p payload
					if err := c.next(t).Decode(&p); err != nil || p.N != i {
						t.Fatalf("event %d: got %+v, %v", i, p, err)
					}
				}
				c.none(t, 100*time.Millisecond)
			}
		})
	}
}

func TestDurableShared(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			b := be.open(t, t.TempDir())
			var mu sync.Mutex
			seen := map[int]int{}
			perSub := [2]int{}
			all := make(chan struct{}, 100)
			for k := range 2 {
				mustSubscribe(t, b, "wallet.txn", "wallet-transactions", func(_ context.Context, e Event) error {
					var p payload
					if err := e.Decode(&p); err != nil {
						return err
					}
					mu.Lock()
					seen[p.N]++
					perSub[k]++
					mu.Unlock()
					all <- struct{}{}
					time.Sleep(time.Millisecond) // let the other subscriber take some
					return nil
				})
			}
			const n = 40
			for i := range n {
				mustPublish(t, b, "wallet.txn", payload{N: i})
			}
			for range n {
				select {
				case <-all:
				case <-time.After(waitFor):
					t.Fatal("not every event was handled")
				}
			}
			time.Sleep(200 * time.Millisecond) // a duplicate would show up now
			mu.Lock()
			defer mu.Unlock()
			for i := range n {
				if seen[i] != 1 {
					t.Errorf("event %d handled %d times", i, seen[i])
				}
			}
			if perSub[0]+perSub[1] != n {
				t.Errorf("handled %v, want %d in total", perSub, n)
			}
		})
	}
}

func TestDurableRedelivery(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			b := be.open(t, t.TempDir())
			var calls atomic.Int32
			done := make(chan Event, 1)
			mustSubscribe(t, b, "sms.send", "sms-sender", func(_ context.Context, e Event) error {
				if calls.Add(1) < 3 {
					return errors.New("gateway down")
				}
				done <- e
				return nil
			})
			mustPublish(t, b, "sms.send", payload{N: 7})
			select {
			case e := <-done:
				var p payload
				if err := e.Decode(&p); err != nil || p.N != 7 {
					t.Errorf("payload %+v, %v", p, err)
				}
			case <-time.After(waitFor):
				t.Fatalf("not redelivered to success; %d calls", calls.Load())
			}
			time.Sleep(300 * time.Millisecond)
			if n := calls.Load(); n != 3 {
				t.Errorf("handler called %d times, want 3", n)
			}
		})
	}
}

func TestDurableMaxDeliver(t *testing.T) {
	b := MustOpen(t, Config{Dir: t.TempDir()})
	var calls atomic.Int32
	mustSubscribe(t, b, "x.fail", "always-fails", func(context.Context, Event) error {
		calls.Add(1)
		return errors.New("no")
	}, WithMaxDeliver(2))
	mustPublish(t, b, "x.fail", payload{})
	deadline := time.Now().Add(waitFor)
	for calls.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond) // past the backoff: no third attempt
	if n := calls.Load(); n != 2 {
		t.Errorf("handler called %d times, want 2", n)
	}
}

func TestHandlerTimeoutAndPanic(t *testing.T) {
	b := MustOpen(t, Config{Dir: t.TempDir()})
	var calls atomic.Int32
	ok := make(chan struct{}, 1)
	mustSubscribe(t, b, "x.slow", "slow", func(ctx context.Context, _ Event) error {
		switch calls.Add(1) {
		case 1:
			<-ctx.Done() // bounded by the handler timeout
			return ctx.Err()
		case 2:
			panic("bad event")
		default:
			ok <- struct{}{}
			return nil
		}
	}, WithHandlerTimeout(100*time.Millisecond))
	mustPublish(t, b, "x.slow", payload{})
	select {
	case <-ok:
	case <-time.After(waitFor):
		t.Fatalf("third attempt never came; %d calls", calls.Load())
	}
}

func TestRestartResumesDurable(t *testing.T) {
	type restartCase struct {
		name string
		cfg  Config
	}
	cases := []restartCase{{"embedded", Config{Dir: t.TempDir()}}}
	if url := os.Getenv("MIPAY_TEST_NATS"); url != "" {
		// A restart of the party's node: the server keeps the stream.
		cases = append(cases, restartCase{"external", Config{URL: url, Prefix: uniquePrefix(t), MaxBytes: 64 << 20}})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			b1, err := Open(ctx, tc.cfg, testLogger())
			if err != nil {
				t.Fatal(err)
			}
			c := newCollector()
			s, err := b1.Subscribe(ctx, "issuer.notice", "wallet-notices", c.handle)
			if err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= 3; i++ {
				mustPublish(t, b1, "issuer.notice", payload{N: i})
			}
			for range 3 {
				c.next(t)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			for i := 4; i <= 6; i++ { // published while nobody listens
				mustPublish(t, b1, "issuer.notice", payload{N: i})
			}
			if err := b1.Close(); err != nil {
				t.Fatal(err)
			}

			b2 := MustOpen(t, tc.cfg) // deletes an external test stream at the end
			c2 := newCollector()
			mustSubscribe(t, b2, "issuer.notice", "wallet-notices", c2.handle)
			for i := 4; i <= 6; i++ {
				var p payload
				if err := c2.next(t).Decode(&p); err != nil || p.N != i {
					t.Fatalf("after restart got %+v (%v), want %d", p, err, i)
				}
			}
			c2.none(t, 200*time.Millisecond)
		})
	}
}

func TestListen(t *testing.T) {
	b := MustOpen(t, Config{Dir: t.TempDir(), Listen: "127.0.0.1:0"})
	url := b.ClientURL()
	if !strings.HasPrefix(url, "nats://127.0.0.1:") || strings.HasSuffix(url, ":0") {
		t.Fatalf("ClientURL = %q", url)
	}
	// A second bus reaches the first over TCP, on the same stream.
	other := MustOpen(t, Config{URL: url})
	c := newCollector()
	mustSubscribe(t, b, "tcp.test", "", c.handle)
	mustPublish(t, other, "tcp.test", payload{N: 9})
	var p payload
	if err := c.next(t).Decode(&p); err != nil || p.N != 9 {
		t.Errorf("got %+v, %v", p, err)
	}
	if hidden := MustOpen(t, Config{Dir: t.TempDir()}); hidden.ClientURL() != "" {
		t.Errorf("in-process bus has a client URL %q", hidden.ClientURL())
	}
}

func TestBadInput(t *testing.T) {
	b := MustOpen(t, Config{Dir: t.TempDir()})
	ctx := context.Background()
	for _, subj := range []string{"", "a..b", "a.*", "a.>", "a b", ".a", strings.Repeat("a", MaxSubjectBytes+1)} {
		if err := b.Publish(ctx, subj, 1); err == nil {
			t.Errorf("Publish(%q) accepted", subj)
		}
	}
	for _, subj := range []string{"", "a.>.b", "a b"} {
		if _, err := b.Subscribe(ctx, subj, "", func(context.Context, Event) error { return nil }); err == nil {
			t.Errorf("Subscribe(%q) accepted", subj)
		}
	}
	if _, err := b.Subscribe(ctx, "a.b", "taken", func(context.Context, Event) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Subscribe(ctx, "a.c", "taken", func(context.Context, Event) error { return nil }); err == nil || !strings.Contains(err.Error(), "already consumes") {
		t.Errorf("durable reused for another subject: %v", err)
	}
	if _, err := b.Subscribe(ctx, "a", "bad.name", func(context.Context, Event) error { return nil }); err == nil {
		t.Error("durable name with a dot accepted")
	}
	if err := b.Publish(ctx, "a", strings.Repeat("x", DefaultMaxEventBytes)); err == nil {
		t.Error("oversized event accepted")
	}
	if err := b.Publish(ctx, "a", func() {}); err == nil {
		t.Error("unencodable value accepted")
	}
	if _, err := Open(ctx, Config{}, nil); err == nil || !strings.Contains(err.Error(), "Dir is required") {
		t.Errorf("Open without Dir: %v", err)
	}
	if _, err := Open(ctx, Config{Dir: t.TempDir(), Prefix: "A.B"}, nil); err == nil {
		t.Error("prefix with a dot accepted")
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := Open(cctx, Config{URL: "nats://127.0.0.1:1"}, nil); err == nil {
		t.Error("unreachable URL accepted")
	}
}

func TestCloseIdempotent(t *testing.T) {
	b, err := Open(context.Background(), Config{Dir: t.TempDir()}, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	s := mustSubscribe(t, b, "a", "", func(context.Context, Event) error { return nil })
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Subscribe(context.Background(), "a", "", func(context.Context, Event) error { return nil }); err == nil {
		t.Error("Subscribe after Close accepted")
	}
}

func TestPublishID(t *testing.T) {
	b := MustOpen(t, Config{Dir: t.TempDir()})
	c := newCollector()
	mustSubscribe(t, b, "outbox.x", "", c.handle)
	ctx := context.Background()
	for range 2 { // the same outbox row published twice: one event
		if err := b.PublishID(ctx, "row-42", "outbox.x", payload{N: 42}); err != nil {
			t.Fatal(err)
		}
	}
	if e := c.next(t); e.ID != "row-42" {
		t.Errorf("id = %q", e.ID)
	}
	c.none(t, 300*time.Millisecond)
	for _, bad := range []string{"", "a b", strings.Repeat("x", MaxIDBytes+1)} {
		if err := b.PublishID(ctx, bad, "outbox.x", 1); err == nil {
			t.Errorf("id %q accepted", bad)
		}
	}
}

// WithConcurrency runs up to n handler calls at once, never more; each
// event is handled once and Close waits for the calls in flight.
func TestConcurrentHandlers(t *testing.T) {
	b := MustOpen(t, Config{Dir: t.TempDir()})
	const limit, n = 4, 40
	var (
		mu            sync.Mutex
		running, peak int
		seen          = map[int]int{}
		release       = make(chan struct{})
		finished      atomic.Int32
	)
	sub, err := b.Subscribe(context.Background(), "wallet.txn", "concurrent", func(_ context.Context, e Event) error {
		var p payload
		if err := e.Decode(&p); err != nil {
			return err
		}
		mu.Lock()
		running++
		peak = max(peak, running)
		seen[p.N]++
		mu.Unlock()
		<-release
		mu.Lock()
		running--
		mu.Unlock()
		finished.Add(1)
		return nil
	}, WithConcurrency(limit))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		mustPublish(t, b, "wallet.txn", payload{N: i})
	}
	deadline := time.Now().Add(waitFor)
	for {
		mu.Lock()
		r := running
		mu.Unlock()
		if r == limit {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d handlers running, want %d at once", r, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // a fifth would start now if it could
	go func() {
		for range n {
			release <- struct{}{}
		}
	}()
	for finished.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events handled", finished.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if peak != limit {
		t.Errorf("peak %d handlers at once, want %d", peak, limit)
	}
	for i := range n {
		if seen[i] != 1 {
			t.Errorf("event %d handled %d times", i, seen[i])
		}
	}
}

// Close of a concurrent subscription returns after its handlers in flight.
func TestConcurrentCloseWaits(t *testing.T) {
	b := MustOpen(t, Config{Dir: t.TempDir()})
	started, done := make(chan struct{}, 2), atomic.Int32{}
	sub, err := b.Subscribe(context.Background(), "wallet.slow", "slow", func(context.Context, Event) error {
		started <- struct{}{}
		time.Sleep(300 * time.Millisecond)
		done.Add(1)
		return nil
	}, WithConcurrency(2))
	if err != nil {
		t.Fatal(err)
	}
	mustPublish(t, b, "wallet.slow", payload{N: 1})
	mustPublish(t, b, "wallet.slow", payload{N: 2})
	for range 2 {
		select {
		case <-started:
		case <-time.After(waitFor):
			t.Fatal("handlers did not start")
		}
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	if n := done.Load(); n != 2 {
		t.Errorf("Close returned with %d of 2 handlers finished", n)
	}
}

func TestPublishBatch(t *testing.T) {
	b := MustOpen(t, Config{Dir: t.TempDir()})
	c := newCollector()
	mustSubscribe(t, b, "outbox.>", "", c.handle)
	ctx := context.Background()
	t.Run("stored in order, repeats dropped", func(t *testing.T) {
		evs := []Outgoing{{ID: "b-1", Subject: "outbox.x", Data: payload{N: 1}}, {ID: "b-2", Subject: "outbox.y", Data: payload{N: 2}},
			{ID: "b-1", Subject: "outbox.x", Data: payload{N: 1}}}
		ok, err := b.PublishBatch(ctx, evs)
		if err != nil || len(ok) != 3 || !ok[0] || !ok[1] || !ok[2] {
			t.Fatalf("PublishBatch = %v, %v", ok, err)
		}
		for _, want := range []string{"b-1", "b-2"} {
			if e := c.next(t); e.ID != want {
				t.Errorf("event %q, want %q", e.ID, want)
			}
		}
		c.none(t, 300*time.Millisecond)
	})
	t.Run("a bad event fails alone", func(t *testing.T) {
		evs := []Outgoing{{ID: "", Subject: "outbox.x", Data: 1}, {ID: "b-3", Subject: "outbox.x", Data: payload{N: 3}},
			{ID: "b-4", Subject: "outbox.*", Data: 1}}
		ok, err := b.PublishBatch(ctx, evs)
		if err == nil || ok[0] || !ok[1] || ok[2] {
			t.Fatalf("PublishBatch = %v, %v; want only the second stored and an error", ok, err)
		}
		if e := c.next(t); e.ID != "b-3" {
			t.Errorf("event %q, want b-3", e.ID)
		}
	})
	t.Run("too many", func(t *testing.T) {
		if _, err := b.PublishBatch(ctx, make([]Outgoing, MaxPublishBatch+1)); err == nil {
			t.Error("a batch over MaxPublishBatch was accepted")
		}
	})
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := MustOpen(t, Config{Dir: t.TempDir(), Metrics: reg})
	var calls atomic.Int32
	done := make(chan struct{})
	mustSubscribe(t, b, "m.>", "metrics-test", func(context.Context, Event) error {
		if calls.Add(1) == 1 {
			return errors.New("first try fails")
		}
		close(done)
		return nil
	})
	mustPublish(t, b, "m.x", payload{N: 1})
	select {
	case <-done:
	case <-time.After(waitFor):
		t.Fatal("not handled")
	}
	time.Sleep(50 * time.Millisecond) // the ok is counted after the handler returns
	if got := testutil.ToFloat64(b.m.published.WithLabelValues("m.x")); got != 1 {
		t.Errorf("published = %v", got)
	}
	if got := testutil.ToFloat64(b.m.handled.WithLabelValues("m.>", "metrics-test", resultRetry)); got != 1 {
		t.Errorf("retry = %v", got)
	}
	if got := testutil.ToFloat64(b.m.handled.WithLabelValues("m.>", "metrics-test", resultOK)); got != 1 {
		t.Errorf("ok = %v", got)
	}
	// A second bus on the same registry shares the metrics instead of panicking.
	b2 := MustOpen(t, Config{Dir: t.TempDir(), Metrics: reg})
	mustPublish(t, b2, "m.x", payload{})
	if got := testutil.ToFloat64(b.m.published.WithLabelValues("m.x")); got != 2 {
		t.Errorf("shared published = %v", got)
	}
}

// Close lets the handler in flight finish and acknowledges its event: after
// a restart it is not delivered again.
func TestCloseDrainsInFlight(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	b1, err := Open(ctx, Config{Dir: dir}, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	var finished atomic.Bool
	if _, err := b1.Subscribe(ctx, "drain.x", "drainer", func(ctx context.Context, e Event) error {
		close(started)
		<-release
		finished.Store(true)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	mustPublish(t, b1, "drain.x", payload{N: 1})
	<-started
	closed := make(chan error, 1)
	go func() { closed <- b1.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned while a handler ran: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if !finished.Load() {
		t.Fatal("handler cut short")
	}
	b2 := MustOpen(t, Config{Dir: dir})
	c := newCollector()
	mustSubscribe(t, b2, "drain.x", "drainer", c.handle)
	c.none(t, 500*time.Millisecond)
}

// TestBacklog: a durable consumer's backlog counts the events published and
// not yet handled, delivered or not, and is 0 once each was acknowledged.
func TestBacklog(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			b := be.open(t, t.TempDir())
			ctx := context.Background()
			release := make(chan struct{})
			handled := make(chan struct{}, 10)
			mustSubscribe(t, b, "backlog.x", "backlog-test", func(context.Context, Event) error {
				<-release
				handled <- struct{}{}
				return nil
			})
			const n = 5
			for i := range n {
				mustPublish(t, b, "backlog.x", payload{N: i})
			}
			if got, err := b.Backlog(ctx, "backlog-test"); err != nil || got != n {
				t.Fatalf("backlog %d, %v; want %d", got, err, n)
			}
			close(release)
			for range n {
				select {
				case <-handled:
				case <-time.After(waitFor):
					t.Fatal("not every event was handled")
				}
			}
			deadline := time.Now().Add(waitFor)
			for {
				got, err := b.Backlog(ctx, "backlog-test")
				if err != nil {
					t.Fatal(err)
				}
				if got == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("backlog %d after every event was handled", got)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if _, err := b.Backlog(ctx, "no-such-consumer"); err == nil {
				t.Error("backlog of a consumer that does not exist")
			}
			if _, err := b.Backlog(ctx, "bad name!"); err == nil {
				t.Error("backlog of an invalid durable name")
			}
		})
	}
}
