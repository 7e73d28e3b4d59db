// Package sms is the SMS gateway party: issuers send text messages to phone
// numbers through it, and it keeps every message in an outbox per number. The
// outbox stands in for the handset's SIM: the phone emulator reads the SMS it
// "received" from there.
//
// Message texts carry one-time codes, so they are never logged.
package sms

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mipay-oss/mipay"
)

// Bounds.
const (
	// MaxTextRunes bounds a message: ten concatenated UCS-2 segments of 67
	// characters, which is more than any bank notice needs.
	MaxTextRunes = 670
	// MaxSenderRunes bounds the sender name (alphanumeric sender ids are at
	// most 11 characters on GSM; bank short codes are longer digit strings).
	MaxSenderRunes = 20
	// MaxPhoneBytes bounds a phone number before it is parsed.
	MaxPhoneBytes = 32
	// DefaultOutboxKeep is how many messages the outbox keeps per number;
	// older ones are dropped on insert, so one number cannot grow the store
	// without bound.
	DefaultOutboxKeep = 200
	// DefaultListLimit and MaxListLimit bound one outbox read. The default
	// returns a whole outbox, so a reader with after=0 sees the newest too.
	DefaultListLimit = DefaultOutboxKeep
	MaxListLimit     = DefaultOutboxKeep
)

// Message is one SMS in a number's outbox.
type Message struct {
	ID        int64     `json:"id"` // increasing across the gateway: read with after=<last id>
	To        string    `json:"to"` // normalized number
	Sender    string    `json:"sender"`
	Text      string    `json:"text"`
	CreatedAt time.Time `json:"createdAt"`
}

// Store keeps the outbox.
type Store interface {
	// Insert stores m (its ID is set by the store, increasing), dropping the
	// oldest messages of m.To beyond keep, and returns the stored message.
	Insert(ctx context.Context, m Message, keep int) (Message, error)
	// List returns up to limit messages to phone with ID > after, oldest first.
	List(ctx context.Context, phone string, after int64, limit int) ([]Message, error)
}

// Service is the gateway's logic over a Store.
type Service struct {
	store Store
	keep  int
	now   func() time.Time
}

// NewService returns a Service over st.
func NewService(st Store) *Service {
	return &Service{store: st, keep: DefaultOutboxKeep, now: time.Now}
}

// SendRequest is a message to send.
type SendRequest struct {
	To     string `json:"to"`
	Text   string `json:"text"`
	Sender string `json:"sender"`
}

// Send validates req and puts the message in the recipient's outbox.
func (s *Service) Send(ctx context.Context, req SendRequest) (Message, error) {
	to, err := NormalizePhone(req.To)
	if err != nil {
		return Message{}, err
	}
	if err := checkText(req.Text); err != nil {
		return Message{}, err
	}
	if err := checkSender(req.Sender); err != nil {
		return Message{}, err
	}
	m := Message{To: to, Sender: req.Sender, Text: req.Text, CreatedAt: s.now().UTC().Truncate(time.Millisecond)}
	stored, err := s.store.Insert(ctx, m, s.keep)
	if err != nil {
		return Message{}, fmt.Errorf("sms: store message: %w", err)
	}
	return stored, nil
}

// Outbox returns up to limit messages received by phone after the message id
// after (0: from the oldest kept), oldest first. limit 0 means
// DefaultListLimit.
func (s *Service) Outbox(ctx context.Context, phone string, after int64, limit int) ([]Message, error) {
	to, err := NormalizePhone(phone)
	if err != nil {
		return nil, err
	}
	if after < 0 {
		return nil, mipay.Errorf(mipay.EINVALID, "after must be a message id (0 or more)")
	}
	switch {
	case limit == 0:
		limit = DefaultListLimit
	case limit < 0 || limit > MaxListLimit:
		return nil, mipay.Errorf(mipay.EINVALID, "limit must be between 1 and %d", MaxListLimit)
	}
	msgs, err := s.store.List(ctx, to, after, limit)
	if err != nil {
		return nil, fmt.Errorf("sms: list outbox: %w", err)
	}
	return msgs, nil
}

// NormalizePhone checks a phone number and returns its canonical form:
// a mainland China mobile number as its 11 national digits ("+86 138-0013-8000"
// → "13800138000"), any other number in E.164 form ("+4915112345678").
// Spaces and dashes are ignored.
func NormalizePhone(s string) (string, error) {
	if len(s) > MaxPhoneBytes {
		return "", mipay.Errorf(mipay.EINVALID, "phone number is too long (at most %d characters)", MaxPhoneBytes)
	}
	var b strings.Builder
	b.Grow(len(s))
	for i, r := range s {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == '+' && i == 0:
			b.WriteRune(r)
		case r == ' ' || r == '-':
		default:
			return "", mipay.Errorf(mipay.EINVALID, "phone number may hold only digits, a leading +, spaces and dashes")
		}
	}
	n := b.String()
	switch {
	case strings.HasPrefix(n, "+86"):
		n = n[3:]
	case strings.HasPrefix(n, "0086"):
		n = n[4:]
	case strings.HasPrefix(n, "+"):
		if len(n) < 8 || len(n) > 16 || n[1] == '0' {
			return "", mipay.Errorf(mipay.EINVALID, "phone number is not a valid international number (+ and 7–15 digits)")
		}
		return n, nil
	}
	if !isCNMobile(n) {
		return "", mipay.Errorf(mipay.EINVALID, "phone number is not a valid mobile number (11 digits starting 13–19, or +country code)")
	}
	return n, nil
}

// isCNMobile reports whether n is a mainland China mobile number: 11 digits,
// 1 then 3–9.
func isCNMobile(n string) bool {
	if len(n) != 11 || n[0] != '1' || n[1] < '3' || n[1] > '9' {
		return false
	}
	for i := 2; i < len(n); i++ {
		if n[i] < '0' || n[i] > '9' {
			return false
		}
	}
	return true
}

func checkText(t string) error {
	if t == "" {
		return mipay.Errorf(mipay.EINVALID, "text is required")
	}
	if !utf8.ValidString(t) {
		return mipay.Errorf(mipay.EINVALID, "text must be UTF-8")
	}
	if utf8.RuneCountInString(t) > MaxTextRunes {
		return mipay.Errorf(mipay.ETOOLARGE, "text is too long (at most %d characters)", MaxTextRunes)
	}
	return nil
}

func checkSender(s string) error {
	if s == "" {
		return mipay.Errorf(mipay.EINVALID, "sender is required")
	}
	if !utf8.ValidString(s) || utf8.RuneCountInString(s) > MaxSenderRunes {
		return mipay.Errorf(mipay.EINVALID, "sender must be 1–%d characters", MaxSenderRunes)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return mipay.Errorf(mipay.EINVALID, "sender must be printable characters")
		}
	}
	return nil
}

// MaskPhone shows only the last 4 digits of a number ("***8000"), for logs and
// for answers to parties that need not know the whole number.
func MaskPhone(n string) string {
	if len(n) <= 4 {
		return "***"
	}
	return "***" + n[len(n)-4:]
}
