package tsp

import (
	"context"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"
)

// Token notices go to the issuer off the request path: the token's state is
// durable and published before the notice is sent, and a binding must not
// wait for the issuer to record a notice. Notices of one token go through
// one worker, in order (TOKEN_CREATED before its STATE_CHANGED).

// Bounds of the notice sender.
const (
	DefaultNoticeWorkers  = 4
	DefaultNoticeQueue    = 1024 // per worker; a full queue sends in the caller
	DefaultNoticeAttempts = 3
	noticeBackoff         = 100 * time.Millisecond
)

type noticeJob struct {
	issuerID string
	n        TokenNotice
}

type notifier struct {
	issuers IssuerAPI
	log     *slog.Logger
	queues  []chan noticeJob
	wg      sync.WaitGroup // workers
	once    sync.Once

	// Background senders of a batch's notices (sendAll): close waits for
	// them before the queues close, so none sends on a closed queue.
	mu      sync.Mutex
	closed  bool
	senders sync.WaitGroup
	drained chan struct{} // closed when every notice was delivered after close
}

func newNotifier(issuers IssuerAPI, log *slog.Logger, workers, queue int) *notifier {
	nt := &notifier{issuers: issuers, log: log, queues: make([]chan noticeJob, workers), drained: make(chan struct{})}
	for i := range nt.queues {
		q := make(chan noticeJob, queue)
		nt.queues[i] = q
		nt.wg.Add(1)
		go func() {
			defer nt.wg.Done()
			for j := range q {
				nt.deliver(j)
			}
		}()
	}
	return nt
}

func (nt *notifier) queueOf(tokenRef string) chan noticeJob {
	h := fnv.New32a()
	h.Write([]byte(tokenRef))
	return nt.queues[h.Sum32()%uint32(len(nt.queues))]
}

// send queues a notice, or delivers it in the caller when its queue is full.
func (nt *notifier) send(issuerID string, n TokenNotice) {
	select {
	case nt.queueOf(n.TokenRef) <- noticeJob{issuerID, n}:
	default:
		nt.deliver(noticeJob{issuerID, n})
	}
}

// sendAll queues many notices (a batch's) from a background goroutine that
// waits for room in the queues: the caller does not wait for the issuer, as
// send's full-queue fallback would make it do for a thousand tokens.
// Notices of one token stay in order (one queue per token).
func (nt *notifier) sendAll(jobs []noticeJob) {
	nt.mu.Lock()
	if nt.closed {
		nt.mu.Unlock()
		for _, j := range jobs {
			nt.deliver(j)
		}
		return
	}
	nt.senders.Add(1)
	nt.mu.Unlock()
	go func() {
		defer nt.senders.Done()
		for _, j := range jobs {
			nt.queueOf(j.n.TokenRef) <- j
		}
	}()
}

// deliver sends one notice, retrying a few times (the issuer records
// notices idempotently).
func (nt *notifier) deliver(j noticeJob) {
	var err error
	for attempt := 0; attempt < DefaultNoticeAttempts; attempt++ {
		if attempt > 0 {
			time.Sleep(noticeBackoff << (attempt - 1))
		}
		ctx, cancel := context.WithTimeout(context.Background(), DefaultIssuerTimeout)
		err = nt.issuers.Notice(ctx, j.issuerID, j.n)
		cancel()
		if err == nil {
			return
		}
	}
	nt.log.Warn("token notice to issuer failed", "token", j.n.TokenRef, "issuer", j.issuerID, "event", j.n.Event, "state", j.n.State, "err", err)
}

// close stops taking notices and waits, bounded by ctx, for the queued ones
// (background senders first, then the queues drain).
func (nt *notifier) close(ctx context.Context) error {
	nt.once.Do(func() {
		nt.mu.Lock()
		nt.closed = true
		nt.mu.Unlock()
		go func() {
			nt.senders.Wait() // the workers keep draining meanwhile
			for _, q := range nt.queues {
				close(q)
			}
			nt.wg.Wait()
			close(nt.drained)
		}()
	})
	select {
	case <-nt.drained:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
