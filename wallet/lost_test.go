package wallet

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// lastEmailCode reads the newest sign-in code e-mailed to address.
func (e *env) lastEmailCode(address string) string {
	e.t.Helper()
	a := e.call("GET", "/v1/email-outbox/"+address, "", nil).want(e.t, 200)
	msgs, _ := a.body["messages"].([]any)
	if len(msgs) == 0 {
		e.t.Fatalf("no e-mail to %s", address)
	}
	text, _ := msgs[len(msgs)-1].(map[string]any)["text"].(string)
	code := regexp.MustCompile(`\b[0-9]{6}\b`).FindString(text)
	if code == "" {
		e.t.Fatalf("no code in %q", text)
	}
	return code
}

func TestPortalSignIn(t *testing.T) {
	e := mustWallet(t)
	reg := e.call("POST", "/v1/accounts", "", map[string]string{
		"phone": "13900139001", "email": "lost@example.com", "password": "correct horse"}).want(t, 201)
	codes, _ := reg.body["recoveryCodes"].([]any)
	recovery := codes[0].(string)
	login := map[string]string{"login": "lost@example.com", "password": "correct horse"}

	t.Run("wrong password gives no challenge", func(t *testing.T) {
		a := e.call("POST", "/v1/portal/challenges", "", map[string]string{"login": "lost@example.com", "password": "wrong horse"}).want(t, 401)
		if a.errCode() != "unauthorized" {
			t.Fatal(a.errMsg())
		}
	})
	t.Run("e-mail code opens a session once", func(t *testing.T) {
		ch := e.call("POST", "/v1/portal/challenges", "", login).want(t, 201)
		if ch.str("email") != "l***@example.com" {
			t.Fatalf("masked address %q", ch.str("email"))
		}
		if strings.Contains(string(ch.raw), e.lastEmailCode("lost@example.com")) {
			t.Fatal("the answer holds the code")
		}
		id := ch.str("challengeId")
		code := e.lastEmailCode("lost@example.com")
		s := e.call("POST", "/v1/portal/challenges/"+id+"/verify", "", map[string]string{"emailCode": code}).want(t, 201)
		e.call("GET", "/v1/devices", s.str("token"), nil).want(t, 200)
		e.call("POST", "/v1/portal/challenges/"+id+"/verify", "", map[string]string{"emailCode": code}).want(t, 401)
	})
	t.Run("recovery code works once", func(t *testing.T) {
		id := e.call("POST", "/v1/portal/challenges", "", login).want(t, 201).str("challengeId")
		e.call("POST", "/v1/portal/challenges/"+id+"/verify", "", map[string]string{"recoveryCode": strings.ToLower(recovery)}).want(t, 201)
		id = e.call("POST", "/v1/portal/challenges", "", login).want(t, 201).str("challengeId")
		e.call("POST", "/v1/portal/challenges/"+id+"/verify", "", map[string]string{"recoveryCode": recovery}).want(t, 401)
	})
	t.Run("both or neither factor refused", func(t *testing.T) {
		id := e.call("POST", "/v1/portal/challenges", "", login).want(t, 201).str("challengeId")
		e.call("POST", "/v1/portal/challenges/"+id+"/verify", "", map[string]string{}).want(t, 400)
		e.call("POST", "/v1/portal/challenges/"+id+"/verify", "", map[string]string{"emailCode": "1", "recoveryCode": "2"}).want(t, 400)
	})
	t.Run("wrong codes lock the challenge", func(t *testing.T) {
		id := e.call("POST", "/v1/portal/challenges", "", login).want(t, 201).str("challengeId")
		code := e.lastEmailCode("lost@example.com")
		wrong := "000000"
		if code == wrong {
			wrong = "111111"
		}
		for i := 1; i < MaxChallengeAttempts; i++ {
			e.call("POST", "/v1/portal/challenges/"+id+"/verify", "", map[string]string{"emailCode": wrong}).want(t, 401)
		}
		e.call("POST", "/v1/portal/challenges/"+id+"/verify", "", map[string]string{"emailCode": wrong}).want(t, 423)
		// The right code no longer helps.
		e.call("POST", "/v1/portal/challenges/"+id+"/verify", "", map[string]string{"emailCode": code}).want(t, 423)
	})
	t.Run("expired challenge refused", func(t *testing.T) {
		id := e.call("POST", "/v1/portal/challenges", "", login).want(t, 201).str("challengeId")
		code := e.lastEmailCode("lost@example.com")
		e.clock.Advance(DefaultChallengeTTL + time.Second)
		e.call("POST", "/v1/portal/challenges/"+id+"/verify", "", map[string]string{"emailCode": code}).want(t, 401)
	})
	t.Run("unknown challenge", func(t *testing.T) {
		e.call("POST", "/v1/portal/challenges/chl_nope/verify", "", map[string]string{"emailCode": "123456"}).want(t, 401)
	})
	t.Run("outbox refuses a malformed address", func(t *testing.T) {
		e.call("GET", "/v1/email-outbox/not-an-address", "", nil).want(t, 400)
		e.call("GET", "/v1/email-outbox/lost@example.com?after=x", "", nil).want(t, 400)
	})
}
