package store

import (
	"strconv"
	"strings"
)

// positional rewrites q's placeholders $1…$n as SQLite's anonymous "?",
// when they appear each once and in order (so the i-th "?" is still the
// i-th argument); otherwise (a placeholder used twice, out of order) it
// returns q, which still works, only binds slower (see stmtcache.go).
// Quoted literals are copied as they are.
func positional(q string) string {
	if !strings.Contains(q, "$") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q))
	next := 1
	for i := 0; i < len(q); i++ {
		c := q[i]
		if c == '\'' { // a literal: copied as is
			j := strings.IndexByte(q[i+1:], '\'')
			if j < 0 {
				return q
			}
			b.WriteString(q[i : i+j+2])
			i += j + 1
			continue
		}
		if c != '$' {
			b.WriteByte(c)
			continue
		}
		j := i + 1
		for j < len(q) && q[j] >= '0' && q[j] <= '9' {
			j++
		}
		n, err := strconv.Atoi(q[i+1 : j])
		if err != nil || n != next {
			return q
		}
		next++
		b.WriteByte('?')
		i = j - 1
	}
	return b.String()
}
