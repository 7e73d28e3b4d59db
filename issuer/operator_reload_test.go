package issuer

import (
	"context"
	"sync"
	"testing"
)

// A reload that read the keys before a revoke committed, and installs its
// copy after the revoke's own reload, must not bring the revoked key back
// on the node that revoked it.
func TestOperatorKeyRevokeBeatsStaleReload(t *testing.T) {
	th, oldKey, _, keyCall := keysServer(t)
	var rot OperatorKeyRotateResult
	if st := keyCall(oldKey, "POST", "/rotate", map[string]string{"grace": "1h"}, &rot); st != 200 {
		t.Fatalf("rotate: %d %+v", st, rot)
	}
	ops := th.Host.ops
	read, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	ops.mu.Lock()
	ops.afterRead = func() {
		first := false
		once.Do(func() { first = true })
		if first { // only the stale reload waits; the revoke's own goes through
			close(read)
			<-release
		}
	}
	ops.mu.Unlock()
	stale := make(chan error, 1)
	go func() { stale <- ops.reload(context.Background()) }()
	<-read // the stale copy (old key still valid) is read, not yet installed
	var out OperatorKeyRevokeResult
	if st := keyCall(rot.Key, "POST", "/revoke", map[string]string{"keyId": rot.Expiring[0].ID}, &out); st != 200 {
		t.Fatalf("revoke: %d %+v", st, out)
	}
	close(release)
	if err := <-stale; err != nil {
		t.Fatal(err)
	}
	if _, ok := ops.bankOf(context.Background(), oldKey); ok {
		t.Fatal("the revoked key works again on the node that revoked it (a reload read before the revoke installed its copy)")
	}
	if id, ok := ops.bankOf(context.Background(), rot.Key); !ok || id != "icbc-debit" {
		t.Fatal("the new key stopped working")
	}
}

// A key superseded by a rotation keeps working until it expires, but it may
// no longer rotate or revoke: a leaked old key cannot mint a key or revoke
// the new one.
func TestOperatorKeySupersededCannotManage(t *testing.T) {
	_, oldKey, _, keyCall := keysServer(t)
	var rot OperatorKeyRotateResult
	if st := keyCall(oldKey, "POST", "/rotate", map[string]string{"grace": "1h"}, &rot); st != 200 {
		t.Fatalf("rotate: %d %+v", st, rot)
	}
	var out map[string]any
	if st := keyCall(oldKey, "POST", "/rotate", map[string]string{}, &out); st != 403 {
		t.Fatalf("rotate with the superseded key: %d %v, want 403", st, out)
	}
	if st := keyCall(oldKey, "POST", "/revoke", map[string]string{"keyId": rot.New.ID}, &out); st != 403 {
		t.Fatalf("revoke the new key with the superseded one: %d %v, want 403", st, out)
	}
	if keys := listKeys(t, keyCall, oldKey); len(keys) != 2 {
		t.Fatalf("the superseded key still lists, and nothing changed: %+v", keys)
	}
	if keys := listKeys(t, keyCall, rot.Key); len(keys) != 2 || keys[0].State == KeyRevoked || keys[1].State == KeyRevoked {
		t.Fatalf("keys after refused management %+v", keys)
	}
}
