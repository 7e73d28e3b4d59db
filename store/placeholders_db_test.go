package store_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/mipay-oss/mipay/store"
)

// Statements with $N placeholders bind the same on both engines whether the
// SQLite statement cache rewrites them to "?" (in order, each once) or not
// (repeated, out of order), through Tx and the Writer.
func TestPlaceholdersBind(t *testing.T) {
	engines(t, func(t *testing.T, newCfg func(t *testing.T) store.Config) {
		db := mustOpen(t, newCfg(t))
		w := mustWriter(t, db, store.WriterConfig{})
		ctx := context.Background()
		err := w.Write(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO items (id, val) VALUES ($1, $2)`, 1, "in order"); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO items (id, val) VALUES ($2, $1)`, "out of order", 2); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO items (id, val) SELECT CAST($1 AS BIGINT), $2 WHERE CAST($1 AS BIGINT) > 0`, 3, "repeated")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		for id, want := range map[int]string{1: "in order", 2: "out of order", 3: "repeated"} {
			var got string
			if err := db.DB.QueryRowContext(ctx, `SELECT val FROM items WHERE id = $1 AND val <> '$1'`, id).Scan(&got); err != nil || got != want {
				t.Errorf("item %d = %q, %v; want %q", id, got, err, want)
			}
		}
	})
}
