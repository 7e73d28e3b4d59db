package sms

import (
	"context"
	"log/slog"
	"net/http"
	"testing"

	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/store/storetest"
)

func TestStartServesAndCloses(t *testing.T) {
	ctx := context.Background()
	cfg := storetest.Config(t)
	env := &node.Env{Role: node.RoleSMS, DataDir: cfg.Dir, Store: cfg, Log: slog.New(slog.DiscardHandler),
		Listen: map[string]string{"http": "127.0.0.1:0"}}
	p, err := Start(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	url := p.Addrs()["http"]
	if st, _ := do(t, "POST", url+"/v1/messages", `{"to":"13800138000","text":"hello","sender":"BANK"}`); st != http.StatusCreated {
		t.Fatalf("send: %d", st)
	}
	if st, m := do(t, "GET", url+"/healthz", ""); st != 200 {
		t.Fatalf("healthz: %d %v", st, m)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	t.Run("restart keeps the outbox", func(t *testing.T) {
		p, err := Start(ctx, env)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close(ctx)
		st, m := do(t, "GET", p.Addrs()["http"]+"/v1/outbox/13800138000", "")
		if st != 200 || len(m["messages"].([]any)) != 1 {
			t.Fatalf("%d %v", st, m)
		}
	})
	t.Run("no listen address", func(t *testing.T) {
		if _, err := Start(ctx, &node.Env{Store: cfg, Log: env.Log}); err == nil {
			t.Fatal("started without an address")
		}
	})
}
