package store

import "testing"

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
	f.Add(`INSERT INTO t VALUES ($1, '$2', $2)`)
	f.Fuzz(func(t *testing.T, q string) {
		out := positional(q)
		if out != q && len(out) > len(q) {
			t.Fatalf("rewrite grew the query: %q -> %q", q, out)
		}
	})
}
