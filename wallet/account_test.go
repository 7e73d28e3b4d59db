package wallet

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestRegisterAndSignIn(t *testing.T) {
	e := mustWallet(t)
	reg := e.call("POST", "/v1/accounts", "", map[string]string{
		"phone": "+86 138-0013-8000", "email": "Zhang.Wei@Example.com", "password": "correct horse"}).want(t, 201)
	codes, _ := reg.body["recoveryCodes"].([]any)
	if len(codes) != DefaultRecoveryCodes {
		t.Fatalf("recovery codes: %v", reg.body["recoveryCodes"])
	}
	if got := reg.str("account", "email"); got != "zhang.wei@example.com" {
		t.Errorf("email stored as %q", got)
	}
	if strings.Contains(string(reg.raw), "password") {
		t.Errorf("answer mentions the password: %s", reg.raw)
	}

	t.Run("duplicate", func(t *testing.T) {
		a := e.call("POST", "/v1/accounts", "", map[string]string{
			"phone": "+8613800138000", "email": "other@example.com", "password": "correct horse"}).want(t, 409)
		if a.errCode() != "conflict" {
			t.Errorf("code %q", a.errCode())
		}
	})
	t.Run("by phone and by email", func(t *testing.T) {
		for _, login := range []string{"+86 13800138000", "ZHANG.WEI@example.com"} {
			s := e.call("POST", "/v1/sessions", "", map[string]string{"login": login, "password": "correct horse"}).want(t, 201)
			if len(s.str("token")) < 40 || s.str("accountId") != reg.str("account", "id") {
				t.Errorf("session %s", s.raw)
			}
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		a := e.call("POST", "/v1/sessions", "", map[string]string{"login": "+8613800138000", "password": "wrong horse"}).want(t, 401)
		if a.errMsg() != "wrong login or password" {
			t.Errorf("message %q", a.errMsg())
		}
	})
	t.Run("unknown login answers the same", func(t *testing.T) {
		a := e.call("POST", "/v1/sessions", "", map[string]string{"login": "nobody@example.com", "password": "wrong horse"}).want(t, 401)
		if a.errMsg() != "wrong login or password" {
			t.Errorf("message %q", a.errMsg())
		}
	})
	t.Run("sign out revokes", func(t *testing.T) {
		s := e.call("POST", "/v1/sessions", "", map[string]string{"login": "+8613800138000", "password": "correct horse"}).want(t, 201)
		tok := s.str("token")
		e.call("GET", "/v1/devices", tok, nil).want(t, 200)
		e.call("DELETE", "/v1/sessions/current", tok, nil).want(t, 204)
		a := e.call("GET", "/v1/devices", tok, nil).want(t, 401)
		if !strings.Contains(a.errMsg(), "signed out") {
			t.Errorf("message %q", a.errMsg())
		}
		e.call("DELETE", "/v1/sessions/current", tok, nil).want(t, 401)
	})
	t.Run("no or bad token", func(t *testing.T) {
		e.call("GET", "/v1/devices", "", nil).want(t, 401)
		e.call("GET", "/v1/devices", "not-a-token", nil).want(t, 401)
		e.call("GET", "/v1/devices", strings.Repeat("x", 4000), nil).want(t, 401)
	})
}

func TestSignInLockout(t *testing.T) {
	e := mustWallet(t)
	e.call("POST", "/v1/accounts", "", map[string]string{
		"phone": "13900139000", "email": "li.na@example.com", "password": "correct horse"}).want(t, 201)
	for i := 1; i < DefaultMaxSignInFailures; i++ {
		e.call("POST", "/v1/sessions", "", map[string]string{"login": "13900139000", "password": "wrong"}).want(t, 401)
	}
	a := e.call("POST", "/v1/sessions", "", map[string]string{"login": "13900139000", "password": "wrong"}).want(t, 423)
	if a.errCode() != "locked" || !strings.Contains(a.errMsg(), "try again after") {
		t.Fatalf("lock answer %s", a.raw)
	}
	until, err := time.Parse(time.RFC3339, a.str("error", "reason"))
	if err != nil || until.Sub(e.clock.Now()) != DefaultSignInLockout {
		t.Errorf("retry time %q (now %v)", a.str("error", "reason"), e.clock.Now())
	}
	t.Run("right password refused while locked, by either login", func(t *testing.T) {
		e.call("POST", "/v1/sessions", "", map[string]string{"login": "li.na@example.com", "password": "correct horse"}).want(t, 423)
		e.call("POST", "/v1/sessions", "", map[string]string{"login": "13900139000", "password": "correct horse"}).want(t, 423)
	})
	t.Run("unlocked after the lockout", func(t *testing.T) {
		e.clock.Advance(DefaultSignInLockout + time.Second)
		e.call("POST", "/v1/sessions", "", map[string]string{"login": "13900139000", "password": "correct horse"}).want(t, 201)
	})
	t.Run("success resets the count", func(t *testing.T) {
		for i := 1; i < DefaultMaxSignInFailures; i++ {
			e.call("POST", "/v1/sessions", "", map[string]string{"login": "13900139000", "password": "wrong"}).want(t, 401)
		}
		e.call("POST", "/v1/sessions", "", map[string]string{"login": "13900139000", "password": "correct horse"}).want(t, 201)
		e.call("POST", "/v1/sessions", "", map[string]string{"login": "13900139000", "password": "wrong"}).want(t, 401)
	})
	t.Run("unknown logins lock too", func(t *testing.T) {
		var a answer
		for i := 0; i < DefaultMaxSignInFailures; i++ {
			a = e.call("POST", "/v1/sessions", "", map[string]string{"login": "ghost@example.com", "password": "wrong"})
		}
		a.want(t, 423)
	})
}

func TestSignInRateLimitPerClient(t *testing.T) {
	e := mustWallet(t, func(c *Config) { c.MaxFailuresPerClient = 3; c.MaxSignInFailures = 100 })
	for i := 0; i < 3; i++ {
		e.call("POST", "/v1/sessions", "", map[string]string{"login": "a" + string(rune('a'+i)) + "@example.com", "password": "wrong"}).want(t, 401)
	}
	a := e.call("POST", "/v1/sessions", "", map[string]string{"login": "zz@example.com", "password": "wrong"}).want(t, 429)
	if a.errCode() != "limit" || !strings.Contains(a.errMsg(), "try again after") {
		t.Fatalf("answer %s", a.raw)
	}
	e.clock.Advance(DefaultClientFailureWindow)
	e.call("POST", "/v1/sessions", "", map[string]string{"login": "zz@example.com", "password": "wrong"}).want(t, 401)
}

func TestSessionExpires(t *testing.T) {
	e := mustWallet(t)
	u := e.mustUser()
	e.clock.Advance(DefaultSessionTTL - time.Second)
	e.call("GET", "/v1/devices", u.token, nil).want(t, 200)
	e.clock.Advance(2 * time.Second)
	a := e.call("GET", "/v1/devices", u.token, nil).want(t, 401)
	if !strings.Contains(a.errMsg(), "expired") {
		t.Errorf("message %q", a.errMsg())
	}
}

func TestRecoveryCodes(t *testing.T) {
	e := mustWallet(t)
	reg := e.call("POST", "/v1/accounts", "", map[string]string{
		"phone": "13700137000", "email": "wang.fang@example.com", "password": "correct horse"}).want(t, 201)
	codes := reg.body["recoveryCodes"].([]any)
	id := reg.str("account", "id")
	ctx := t.Context()
	if err := e.svc.UseRecoveryCode(ctx, id, strings.ToLower(codes[0].(string))); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if err := e.svc.UseRecoveryCode(ctx, id, codes[0].(string)); err == nil {
		t.Fatal("a recovery code worked twice")
	}
	if err := e.svc.UseRecoveryCode(ctx, id, "AAAA-BBBB-CCCC-DDDD"); err == nil {
		t.Fatal("a made-up recovery code worked")
	}
	other := e.mustUser()
	if err := e.svc.UseRecoveryCode(ctx, other.accountID, codes[1].(string)); err == nil {
		t.Fatal("another account's recovery code worked")
	}
}

func TestRegisterRejects(t *testing.T) {
	e := mustWallet(t)
	for _, tc := range []struct{ name, phone, email, password, want string }{
		{"short phone", "12345", "a@example.com", "correct horse", "phone"},
		{"letters in phone", "1380013800x", "a@example.com", "correct horse", "phone"},
		{"email without domain", "13800138001", "a@", "correct horse", "email"},
		{"email without at", "13800138001", "example.com", "correct horse", "email"},
		{"short password", "13800138001", "a@example.com", "short", "password"},
		{"long password", "13800138001", "a@example.com", strings.Repeat("p", 129), "password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := e.call("POST", "/v1/accounts", "", map[string]string{"phone": tc.phone, "email": tc.email, "password": tc.password}).want(t, 400)
			if !strings.Contains(a.errMsg(), tc.want) {
				t.Errorf("message %q does not name %s", a.errMsg(), tc.want)
			}
		})
	}
	if n := e.rows("accounts"); n != 0 {
		t.Errorf("%d accounts stored", n)
	}
}

func TestPasswordHashFormat(t *testing.T) {
	e := mustWallet(t)
	e.mustUser()
	var h string
	if err := e.repo.db.DB.QueryRow(`SELECT password_hash FROM accounts`).Scan(&h); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") || strings.Contains(h, "correct horse") {
		t.Errorf("stored hash %q", h)
	}
	var tokenHash string
	if err := e.repo.db.DB.QueryRow(`SELECT token_hash FROM sessions`).Scan(&tokenHash); err != nil {
		t.Fatal(err)
	}
	if len(tokenHash) != 64 {
		t.Errorf("stored session %q is not a SHA-256", tokenHash)
	}
}

func TestRegisterConcurrentSamePhone(t *testing.T) {
	e := mustWallet(t)
	const n = 8
	status := make(chan int, n)
	for i := 0; i < n; i++ {
		go func() {
			status <- e.call("POST", "/v1/accounts", "", map[string]string{
				"phone": "13300133000", "email": fmt.Sprintf("race%d@example.com", i), "password": "correct horse"}).status
		}()
	}
	got := map[int]int{}
	for i := 0; i < n; i++ {
		got[<-status]++
	}
	if got[201] != 1 || got[409] != n-1 {
		t.Errorf("statuses %v", got)
	}
}

func TestSessionsBounded(t *testing.T) {
	e := mustWallet(t)
	u := e.mustUser()
	first := u.token
	var tokens []string
	for i := 0; i < MaxSessionsPerAccount+5; i++ {
		e.clock.Advance(time.Millisecond)
		e.signIn(u)
		tokens = append(tokens, u.token)
	}
	e.call("GET", "/v1/devices", first, nil).want(t, 401)
	for _, tok := range tokens[len(tokens)-MaxSessionsPerAccount:] {
		e.call("GET", "/v1/devices", tok, nil).want(t, 200)
	}
	if n := e.rows("sessions"); n != MaxSessionsPerAccount {
		t.Errorf("%d session rows", n)
	}
	e.call("DELETE", "/v1/sessions/current", u.token, nil).want(t, 204)
	e.signIn(u)
	if n := e.rows("sessions"); n != MaxSessionsPerAccount {
		t.Errorf("%d session rows after a sign-out and a sign-in", n)
	}
}

func TestSignInFailuresForgotten(t *testing.T) {
	e := mustWallet(t)
	for i := 0; i < 10; i++ {
		e.call("POST", "/v1/sessions", "", map[string]string{"login": fmt.Sprintf("ghost%d@example.com", i), "password": "wrong"}).want(t, 401)
	}
	if n := e.rows("signin_failures"); n != 10 {
		t.Fatalf("%d failure rows", n)
	}
	e.clock.Advance(DefaultSignInFailureWindow + time.Second)
	e.call("POST", "/v1/sessions", "", map[string]string{"login": "ghost99@example.com", "password": "wrong"}).want(t, 401)
	if n := e.rows("signin_failures"); n != 1 {
		t.Errorf("%d failure rows after the window", n)
	}
}
