// Package portal is the lost-phone web portal at /portal: a user who lost
// the phone signs in from any browser with the Mi account password and a
// second factor that does not need the phone (a code e-mailed by the
// wallet, or a recovery code), sees the account's devices with their cards,
// transit cards and last known location, and acts: switch Mi Pay off on the
// device (every token suspended, transit cards hotlisted, a wipe queued),
// found it (after signing in again), remove the cards, locate, ring.
//
// The portal is its own party: it talks to the wallet (and, for transit
// cards, to the transit agencies) only over their HTTP APIs, with the
// wallet session it opened for the user. Pages are server-rendered with
// html/template, need no script and no outside resource (the location is
// drawn as an inline SVG plot), so they work offline and under a strict
// Content-Security-Policy.
//
// Browser sessions live in the portal's memory (bounded); the cookie holds
// only a random id (HttpOnly, SameSite=Strict, Secure under TLS), every form
// carries the session's CSRF token, and sign-in attempts are rate-limited
// per client address on top of the wallet's own lockout.
package portal

import (
	"log/slog"
	"time"
)

// Role is the portal's party role (node.Env.Role, `mipay serve portal`).
const Role = "portal"

// Limits and defaults; Config can override them.
const (
	// DefaultSessionIdle ends a browser session unused for this long.
	DefaultSessionIdle = 15 * time.Minute
	// DefaultSessionMax ends any browser session after this.
	DefaultSessionMax = 8 * time.Hour
	// DefaultMaxSessions bounds the sessions kept in memory; past it the
	// least recently used one is dropped.
	DefaultMaxSessions = 10_000
	// DefaultMaxAttemptsPerClient failed sign-ins and code submissions per
	// DefaultAttemptWindow are allowed from one client address.
	DefaultMaxAttemptsPerClient = 10
	DefaultAttemptWindow        = time.Minute
	// maxTrackedClients bounds the rate limiter's memory.
	maxTrackedClients = 10_000
	// MaxFormBytes bounds a posted form.
	MaxFormBytes = 4 << 10
	// LocationsShown bounds the history drawn and listed per device.
	LocationsShown = 50
	// DefaultCallTimeout bounds one call to the wallet or transit.
	DefaultCallTimeout = 10 * time.Second
)

// Config configures the portal. Zero values take the defaults.
type Config struct {
	// WalletURL and TransitURL return the base URLs of the wallet and of
	// the transit agencies (read at each call: peers may start later);
	// TransitURL may be nil or return "" (no transit cards shown).
	WalletURL  func() string
	TransitURL func() string
	// Secure marks cookies Secure (set when the portal is served over TLS
	// or behind a TLS-terminating proxy).
	Secure bool

	SessionIdle          time.Duration
	SessionMax           time.Duration
	MaxSessions          int
	MaxAttemptsPerClient int
	AttemptWindow        time.Duration
	CallTimeout          time.Duration

	Now func() time.Time
	Log *slog.Logger
}

func (c *Config) defaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&c.SessionIdle, DefaultSessionIdle)
	set(&c.SessionMax, DefaultSessionMax)
	set(&c.AttemptWindow, DefaultAttemptWindow)
	set(&c.CallTimeout, DefaultCallTimeout)
	if c.MaxSessions <= 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.MaxAttemptsPerClient <= 0 {
		c.MaxAttemptsPerClient = DefaultMaxAttemptsPerClient
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.WalletURL == nil {
		c.WalletURL = func() string { return "" }
	}
	if c.TransitURL == nil {
		c.TransitURL = func() string { return "" }
	}
}
