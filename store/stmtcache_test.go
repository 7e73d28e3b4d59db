package store_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"

	"github.com/mipay-oss/mipay/store"
)

// TestStatementCache exercises the SQLite per-connection statement cache
// through the cases that would break a naive one.
func TestStatementCache(t *testing.T) {
	t.Parallel()
	db := mustOpen(t, store.Config{Dir: t.TempDir()})
	ctx := context.Background()
	for i := range 5 {
		if err := db.Tx(ctx, insertItem(int64(i))); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("same query nested while its rows are open", func(t *testing.T) {
		err := db.Tx(ctx, func(tx *sql.Tx) error {
			const q = "SELECT id FROM items WHERE id >= $1 ORDER BY id"
			outer, err := tx.Query(q, 0)
			if err != nil {
				return err
			}
			defer outer.Close()
			pairs := 0
			for outer.Next() {
				var id int64
				if err := outer.Scan(&id); err != nil {
					return err
				}
				// The same SQL again on the same connection while the
				// outer statement is mid-way.
				inner, err := tx.Query(q, id)
				if err != nil {
					return err
				}
				for inner.Next() {
					pairs++
				}
				if err := inner.Close(); err != nil {
					return err
				}
			}
			if err := outer.Err(); err != nil {
				return err
			}
			if pairs != 5+4+3+2+1 {
				return fmt.Errorf("pairs = %d, want 15", pairs)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("more distinct statements than the cache holds", func(t *testing.T) {
		err := db.Tx(ctx, func(tx *sql.Tx) error {
			for i := range 600 {
				var n int
				q := fmt.Sprintf("SELECT COUNT(*) + %d FROM items", i)
				if err := tx.QueryRow(q).Scan(&n); err != nil {
					return err
				}
				if n != 5+i {
					return fmt.Errorf("%s = %d", q, n)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("cached statement sees schema changes", func(t *testing.T) {
		q := "SELECT * FROM items WHERE id = 1"
		cols := func() int {
			rows, err := db.DB.Query(q)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			c, _ := rows.Columns()
			return len(c)
		}
		before := cols()
		if err := db.Tx(ctx, func(tx *sql.Tx) error {
			_, err := tx.Exec("ALTER TABLE items ADD COLUMN extra TEXT")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if after := cols(); after != before+1 {
			t.Fatalf("columns after ALTER = %d, want %d", after, before+1)
		}
	})

	t.Run("errors are returned and do not poison the cache", func(t *testing.T) {
		for range 3 {
			if _, err := db.DB.Exec("INSERT INTO nosuchtable VALUES (1)"); err == nil {
				t.Fatal("insert into a missing table succeeded")
			}
			if err := db.Tx(ctx, insertItem(1)); !store.IsConflict(err) {
				t.Fatalf("duplicate insert: %v, want conflict", err)
			}
		}
		if err := db.Tx(ctx, insertItem(100)); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("multi-statement text", func(t *testing.T) {
		for i := range 3 {
			_, err := db.DB.Exec(fmt.Sprintf("INSERT INTO items (id, val) VALUES (%d, 'a'); INSERT INTO items (id, val) VALUES (%d, 'b');", 200+2*i, 201+2*i))
			if err != nil {
				t.Fatal(err)
			}
		}
		var n int
		if err := db.DB.QueryRow("SELECT COUNT(*) FROM items WHERE id >= 200").Scan(&n); err != nil || n != 6 {
			t.Fatalf("rows from scripts = %d, %v; want 6", n, err)
		}
	})
}
