package store_test

import (
	"strings"
	"testing"

	"github.com/mipay-oss/mipay/store"
)

func TestRedactURL(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"postgres://u:pw@h:5432/db?sslmode=disable":     "postgres://u:xxxxx@h:5432/db?sslmode=disable",
		"postgres://u@h/db":                             "postgres://u@h/db",
		"postgres://u:pw@h:notaport/db":                 "postgres://u:xxxxx@h:notaport/db",
		"postgres://u:p@w@h:bad/db":                     "postgres://u:xxxxx@h:bad/db",
		"mysql://u:pw@h/db":                             "mysql://u:xxxxx@h/db",
		"postgres://u@h/db?password=pw&sslmode=require": "postgres://u@h/db?password=xxxxx&sslmode=require",
		"postgres://u@h:bad/db?password=pw":             "(unparseable URL)",
	}
	for in, want := range cases {
		if got := store.RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzRedactURL: whatever the rest of the URL, a password never survives.
func FuzzRedactURL(f *testing.F) {
	f.Add("u", "h:5432", "/db?sslmode=disable")
	f.Add("", "h:x", "")
	f.Add("us%er", "[::1]:5432", "/d#f")
	f.Fuzz(func(t *testing.T, user, host, rest string) {
		const secret = "Zq7secretPW9"
		if strings.Contains(user+host+rest, "Zq7") || strings.ContainsAny(user, ":@/?#") || strings.ContainsAny(host, "@/?#") {
			t.Skip()
		}
		u := "postgres://" + user + ":" + secret + "@" + host + rest
		if got := store.RedactURL(u); strings.Contains(got, secret) {
			t.Fatalf("RedactURL(%q) = %q leaks the password", u, got)
		}
		u = "postgres://" + user + "@" + host + "/db?password=" + secret + rest
		if got := store.RedactURL(u); strings.Contains(got, secret) {
			t.Fatalf("RedactURL(%q) = %q leaks the password", u, got)
		}
	})
}
