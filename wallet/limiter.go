package wallet

import (
	"fmt"
	"sync"
	"time"

	"github.com/mipay-oss/mipay"
)

// Failed sign-ins per client address are rate-limited (on top of the
// per-login lockout) so one client cannot try many logins quickly.
const (
	DefaultMaxFailuresPerClient = 30
	DefaultClientFailureWindow  = time.Minute
	// maxTrackedClients bounds the limiter's memory; past it, new clients
	// share one overflow bucket.
	maxTrackedClients = 10_000
	overflowClient    = "*"
)

// failLimiter counts failures per client in fixed windows.
type failLimiter struct {
	max    int
	window time.Duration

	mu      sync.Mutex
	clients map[string]*failWindow
}

type failWindow struct {
	start time.Time
	n     int
}

func newFailLimiter(max int, window time.Duration) *failLimiter {
	return &failLimiter{max: max, window: window, clients: map[string]*failWindow{}}
}

// check refuses a client that used up its failures in the current window.
func (l *failLimiter) check(client string, now time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.clients[client]
	if !ok {
		w, ok = l.clients[overflowClient]
		if !ok || len(l.clients) < maxTrackedClients {
			return nil
		}
	}
	if now.Sub(w.start) >= l.window || w.n < l.max {
		return nil
	}
	retry := w.start.Add(l.window)
	return &mipay.Error{
		Code: mipay.ELIMIT,
		Message: fmt.Sprintf("too many failed sign-ins from this address: try again after %s",
			retry.UTC().Format(time.RFC3339)),
		Reason: retry.UTC().Format(time.RFC3339),
	}
}

// fail counts one failure of client.
func (l *failLimiter) fail(client string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.clients[client]
	if !ok {
		if len(l.clients) >= maxTrackedClients {
			l.evict(now)
		}
		if len(l.clients) >= maxTrackedClients {
			client = overflowClient
		}
		if w, ok = l.clients[client]; !ok {
			w = &failWindow{start: now}
			l.clients[client] = w
		}
	}
	if now.Sub(w.start) >= l.window {
		w.start, w.n = now, 0
	}
	w.n++
}

// evict forgets clients whose window has passed.
func (l *failLimiter) evict(now time.Time) {
	for k, w := range l.clients {
		if now.Sub(w.start) >= l.window {
			delete(l.clients, k)
		}
	}
}
