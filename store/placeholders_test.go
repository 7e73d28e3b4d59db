package store

import (
	"strconv"
	"strings"
	"testing"
)

func TestPositional(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"in order", `INSERT INTO t (a, b, c) VALUES ($1, $2, $3)`, `INSERT INTO t (a, b, c) VALUES (?, ?, ?)`},
		{"ten and more", `VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)`, `VALUES (?,?,?,?,?,?,?,?,?,?,?)`},
		{"repeated", `UPDATE t SET a = $1, b = $1 WHERE c = $2`, `UPDATE t SET a = $1, b = $1 WHERE c = $2`},
		{"out of order", `SELECT $2, $1`, `SELECT $2, $1`},
		{"none", `SELECT 1`, `SELECT 1`},
		{"dollar in a literal", `SELECT '$5' WHERE a = $1`, `SELECT '$5' WHERE a = ?`},
		{"unterminated literal", `SELECT 'x WHERE a = $1`, `SELECT 'x WHERE a = $1`},
		{"bare dollar", `SELECT $ WHERE a = $1`, `SELECT $ WHERE a = $1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := positional(tc.in); got != tc.want {
				t.Errorf("positional(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func FuzzPositional(f *testing.F) {
	for _, q := range []string{
		`INSERT INTO t VALUES ($1, '$2', $2)`,
		`VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)`,
		`SELECT $2, $1`, `SELECT $1, $1`, `SELECT ? WHERE a = $1`, `SELECT 'it''s' WHERE a = $1`,
		`SELECT "a$1" WHERE a = $2`, `SELECT $1 -- $2`, `SELECT $01`, `SELECT $$1$$`,
	} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		out := positional(q)
		if out == q {
			return
		}
		// A rewrite replaces exactly the placeholders $1, $2 … $n, each
		// once and in order (a whole run of digits: "$10" is not "$1"
		// then "0"), by "?", and leaves every other byte as it was.
		next, i, j := 1, 0, 0
		for i < len(q) && j < len(out) {
			if q[i] == '$' && out[j] == '?' {
				k := i + 1
				for k < len(q) && q[k] >= '0' && q[k] <= '9' {
					k++
				}
				if n, err := strconv.Atoi(q[i+1 : k]); err != nil || n != next { // "$01" is $1, as on PostgreSQL
					t.Fatalf("positional(%q) = %q: %q became the %d-th \"?\"", q, out, q[i:k], next)
				}
				next++
				i, j = k, j+1
				continue
			}
			if q[i] != out[j] {
				t.Fatalf("positional(%q) = %q: byte %d %q became %q", q, out, i, q[i], out[j])
			}
			i, j = i+1, j+1
		}
		if i != len(q) || j != len(out) {
			t.Fatalf("positional(%q) = %q: lengths do not match up", q, out)
		}
		if next == 1 {
			t.Fatalf("positional(%q) = %q: changed without a placeholder", q, out)
		}
		if n := strings.Count(out, "?") - strings.Count(q, "?"); n != next-1 {
			t.Fatalf("positional(%q) = %q: %d \"?\" added for %d placeholders", q, out, n, next-1)
		}
	})
}
