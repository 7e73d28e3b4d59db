package sms

import (
	"context"

	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/store/storetest"
)

// MustOpenService returns a Service over a fresh store of the test.
func MustOpenService(tb testing.TB) *Service {
	tb.Helper()
	return NewService(NewSQLStore(storetest.Open(tb, "sms", Migrations())))
}

func TestNormalizePhone(t *testing.T) {
	ok := map[string]string{
		"13800138000":       "13800138000",
		"+8613800138000":    "13800138000",
		"008613800138000":   "13800138000",
		"+86 138-0013-8000": "13800138000",
		"19912345678":       "19912345678",
		"+4915112345678":    "+4915112345678",
	}
	for in, want := range ok {
		t.Run("ok/"+in, func(t *testing.T) {
			got, err := NormalizePhone(in)
			if err != nil || got != want {
				t.Fatalf("NormalizePhone(%q) = %q, %v; want %q", in, got, err, want)
			}
		})
	}
	bad := []string{"", "12800138000", "1380013800", "138001380001", "+0123456789", "+12", "138a0138000",
		"13800+138000", strings.Repeat("1", 40), "１３８００１３８０００"}
	for _, in := range bad {
		t.Run("bad/"+in, func(t *testing.T) {
			if _, err := NormalizePhone(in); mipay.ErrorCode(err) != mipay.EINVALID {
				t.Fatalf("NormalizePhone(%q) err = %v; want invalid", in, err)
			}
		})
	}
}

func TestSendAndOutbox(t *testing.T) {
	ctx := context.Background()
	s := MustOpenService(t)
	m1, err := s.Send(ctx, SendRequest{To: "+86 13800138000", Text: "Your code is 123456", Sender: "ICBC"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Send(ctx, SendRequest{To: "13900139000", Text: "other", Sender: "BOC"}); err != nil {
		t.Fatal(err)
	}
	m2, err := s.Send(ctx, SendRequest{To: "13800138000", Text: "Your code is 654321", Sender: "ICBC"})
	if err != nil {
		t.Fatal(err)
	}
	if m2.ID <= m1.ID {
		t.Fatalf("ids not increasing: %d then %d", m1.ID, m2.ID)
	}
	t.Run("all", func(t *testing.T) {
		got, err := s.Outbox(ctx, "13800138000", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0].Text != "Your code is 123456" || got[1].ID != m2.ID || got[0].Sender != "ICBC" {
			t.Fatalf("outbox = %+v", got)
		}
	})
	t.Run("after", func(t *testing.T) {
		got, err := s.Outbox(ctx, "+8613800138000", m1.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].ID != m2.ID {
			t.Fatalf("outbox after %d = %+v", m1.ID, got)
		}
	})
	t.Run("other number sees only its own", func(t *testing.T) {
		got, err := s.Outbox(ctx, "13900139000", 0, 0)
		if err != nil || len(got) != 1 || got[0].Text != "other" {
			t.Fatalf("outbox = %+v, %v", got, err)
		}
	})
	t.Run("empty", func(t *testing.T) {
		got, err := s.Outbox(ctx, "13700137000", 0, 0)
		if err != nil || len(got) != 0 {
			t.Fatalf("outbox = %+v, %v", got, err)
		}
	})
	t.Run("limit", func(t *testing.T) {
		got, err := s.Outbox(ctx, "13800138000", 0, 1)
		if err != nil || len(got) != 1 || got[0].ID != m1.ID {
			t.Fatalf("outbox = %+v, %v", got, err)
		}
		if _, err := s.Outbox(ctx, "13800138000", 0, MaxListLimit+1); mipay.ErrorCode(err) != mipay.EINVALID {
			t.Fatalf("limit over max: err = %v", err)
		}
	})
}

func TestSendRejects(t *testing.T) {
	s := MustOpenService(t)
	cases := []struct {
		name string
		req  SendRequest
		code string
	}{
		{"bad phone", SendRequest{To: "123", Text: "x", Sender: "B"}, mipay.EINVALID},
		{"empty text", SendRequest{To: "13800138000", Text: "", Sender: "B"}, mipay.EINVALID},
		{"text too long", SendRequest{To: "13800138000", Text: strings.Repeat("码", MaxTextRunes+1), Sender: "B"}, mipay.ETOOLARGE},
		{"invalid utf8", SendRequest{To: "13800138000", Text: "\xff\xfe", Sender: "B"}, mipay.EINVALID},
		{"no sender", SendRequest{To: "13800138000", Text: "x"}, mipay.EINVALID},
		{"sender too long", SendRequest{To: "13800138000", Text: "x", Sender: strings.Repeat("B", MaxSenderRunes+1)}, mipay.EINVALID},
		{"sender control char", SendRequest{To: "13800138000", Text: "x", Sender: "B\n"}, mipay.EINVALID},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := s.Send(context.Background(), c.req); mipay.ErrorCode(err) != c.code {
				t.Fatalf("err = %v; want %s", err, c.code)
			}
		})
	}
	got, err := s.Outbox(context.Background(), "13800138000", 0, 0)
	if err != nil || len(got) != 0 {
		t.Fatalf("rejected messages stored: %+v, %v", got, err)
	}
	t.Run("max text fits", func(t *testing.T) {
		if _, err := s.Send(context.Background(), SendRequest{To: "13800138000", Text: strings.Repeat("码", MaxTextRunes), Sender: "B"}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestOutboxKeepsBounded(t *testing.T) {
	ctx := context.Background()
	s := MustOpenService(t)
	s.keep = 3
	var last Message
	for i := range 5 {
		m, err := s.Send(ctx, SendRequest{To: "13800138000", Text: fmt.Sprint("m", i), Sender: "B"})
		if err != nil {
			t.Fatal(err)
		}
		last = m
	}
	got, err := s.Outbox(ctx, "13800138000", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Text != "m2" || got[2].ID != last.ID {
		t.Fatalf("outbox = %+v; want the newest 3", got)
	}
}

func TestConcurrentSendsKeepOrder(t *testing.T) {
	ctx := context.Background()
	s := MustOpenService(t)
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Send(ctx, SendRequest{To: "13800138000", Text: fmt.Sprint("m", i), Sender: "B"}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, err := s.Outbox(ctx, "13800138000", 0, MaxListLimit)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("got %d messages; want %d", len(got), n)
	}
	for i := 1; i < len(got); i++ {
		if got[i].ID <= got[i-1].ID {
			t.Fatalf("ids not increasing at %d: %d, %d", i, got[i-1].ID, got[i].ID)
		}
	}
}
