package sms

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"time"

	"github.com/mipay-oss/mipay/store"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the gateway's schema migrations.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the embedded directory exists: a build error, not a runtime one
	}
	return sub
}

// SQLStore is the outbox in the party's own store (SQLite or PostgreSQL).
type SQLStore struct {
	db *store.DB
}

// NewSQLStore returns a Store over db (opened with Migrations()).
func NewSQLStore(db *store.DB) *SQLStore { return &SQLStore{db: db} }

// Insert implements Store. One transaction takes the next id from the counter
// row (which serializes inserters, so ids are in commit order), inserts, and
// trims the number's outbox to keep messages.
func (s *SQLStore) Insert(ctx context.Context, m Message, keep int) (Message, error) {
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		var id int64
		if err := tx.QueryRowContext(ctx,
			`UPDATE sms_counter SET value = value + 1 WHERE name = 'message' RETURNING value`).Scan(&id); err != nil {
			return fmt.Errorf("next message id: %w", err)
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO sms_messages (id, phone, sender, body, created_ms) VALUES ($1, $2, $3, $4, $5)`,
			id, m.To, m.Sender, m.Text, m.CreatedAt.UnixMilli()); err != nil {
			return fmt.Errorf("insert message: %w", err)
		}
		if _, err := tx.ExecContext(ctx,
			`DELETE FROM sms_messages WHERE phone = $1 AND id <=
			   (SELECT id FROM sms_messages WHERE phone = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)`,
			m.To, keep); err != nil {
			return fmt.Errorf("trim outbox: %w", err)
		}
		m.ID = id
		return nil
	})
	return m, err
}

// List implements Store.
func (s *SQLStore) List(ctx context.Context, phone string, after int64, limit int) ([]Message, error) {
	rows, err := s.db.DB.QueryContext(ctx,
		`SELECT id, phone, sender, body, created_ms FROM sms_messages
		 WHERE phone = $1 AND id > $2 ORDER BY id LIMIT $3`, phone, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	msgs := make([]Message, 0, min(limit, 16))
	for rows.Next() {
		var m Message
		var ms int64
		if err := rows.Scan(&m.ID, &m.To, &m.Sender, &m.Text, &ms); err != nil {
			return nil, err
		}
		m.CreatedAt = time.UnixMilli(ms).UTC()
		msgs = append(msgs, m)
	}
	return msgs, rows.Err()
}
