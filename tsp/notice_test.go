package tsp

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/mipay-oss/mipay"
)

// flakyIssuer fails the first notice of every token once.
type flakyIssuer struct {
	*fakeIssuer
	mu     sync.Mutex
	failed map[string]bool
	order  map[string][]string
}

func (f *flakyIssuer) Notice(ctx context.Context, issuerID string, n TokenNotice) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.failed[n.TokenRef] {
		f.failed[n.TokenRef] = true
		return mipay.Errorf(mipay.EUNAVAILABLE, "down")
	}
	f.order[n.TokenRef] = append(f.order[n.TokenRef], n.Event+"/"+string(n.State))
	return nil
}

func TestNotifierOrderAndRetry(t *testing.T) {
	fi := &flakyIssuer{fakeIssuer: newFakeIssuer(), failed: map[string]bool{}, order: map[string][]string{}}
	nt := newNotifier(fi, discardLog(), 3, 16)
	for i := 0; i < 20; i++ {
		ref := string(rune('a' + i))
		nt.send("x", TokenNotice{TokenRef: ref, Event: NoticeTokenCreated, State: StateActive})
		nt.send("x", TokenNotice{TokenRef: ref, Event: NoticeStateChanged, State: StateSuspended})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := nt.close(ctx); err != nil {
		t.Fatal(err)
	}
	for ref, got := range fi.order {
		if len(got) != 2 || got[0] != "TOKEN_CREATED/ACTIVE" || got[1] != "STATE_CHANGED/SUSPENDED" {
			t.Fatalf("token %s: notices %v", ref, got)
		}
	}
	if len(fi.order) != 20 {
		t.Fatalf("%d tokens noticed, want 20", len(fi.order))
	}
	if err := nt.close(context.Background()); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("second close: %v", err)
	}
}
