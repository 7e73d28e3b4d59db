package portal

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"sync"
	"time"
)

// session is one browser's state. The cookie holds a random id; the store
// is keyed by its SHA-256, so the map does not hold usable cookie values.
type session struct {
	key      string // SHA-256 hex of the cookie value
	csrf     string
	created  time.Time
	lastSeen time.Time

	// Signed in: the wallet session opened with the second factor.
	walletToken string
	accountID   string
	login       string
	authAt      time.Time

	// Between the password and the second factor.
	challengeID    string
	challengeEmail string // masked
	challengeLogin string

	// pending is an action that needs a fresh sign-in ("found it").
	pending *pendingAction
	// notice is shown once on the next page (what an action did).
	notice string
}

type pendingAction struct {
	kind     string
	deviceID string
	at       time.Time // a pending action older than pendingTTL is dropped
}

// pendingTTL bounds how long an action waits for its fresh sign-in.
const pendingTTL = 10 * time.Minute

func (s *session) signedIn() bool { return s.walletToken != "" }

// sessions is the bounded in-memory session store.
type sessions struct {
	cfg *Config

	mu sync.Mutex
	m  map[string]*session
}

func newSessions(cfg *Config) *sessions { return &sessions{cfg: cfg, m: map[string]*session{}} }

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("portal: crypto/rand failed: " + err.Error()) // the platform's RNG never fails in practice
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashKey(cookie string) string {
	h := sha256.Sum256([]byte(cookie))
	return hex.EncodeToString(h[:])
}

// create makes a new anonymous session and returns its cookie value.
func (s *sessions) create() (string, *session) {
	now := s.cfg.Now()
	cookie := randomToken()
	sess := &session{key: hashKey(cookie), csrf: randomToken(), created: now, lastSeen: now}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.makeRoom(now)
	s.m[sess.key] = sess
	return cookie, sess
}

// makeRoom drops expired sessions, then the least recently used one, while
// the store is full. Callers hold mu.
func (s *sessions) makeRoom(now time.Time) {
	if len(s.m) < s.cfg.MaxSessions {
		return
	}
	for k, v := range s.m {
		if s.expired(v, now) {
			delete(s.m, k)
		}
	}
	for len(s.m) >= s.cfg.MaxSessions {
		var oldest *session
		for _, v := range s.m {
			if oldest == nil || v.lastSeen.Before(oldest.lastSeen) {
				oldest = v
			}
		}
		delete(s.m, oldest.key)
	}
}

func (s *sessions) expired(v *session, now time.Time) bool {
	return now.Sub(v.lastSeen) > s.cfg.SessionIdle || now.Sub(v.created) > s.cfg.SessionMax
}

// get returns a copy of the cookie's live session.
func (s *sessions) get(cookie string) (session, bool) {
	if cookie == "" || len(cookie) > 128 {
		return session{}, false
	}
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[hashKey(cookie)]
	if !ok {
		return session{}, false
	}
	if s.expired(v, now) {
		delete(s.m, v.key)
		return session{}, false
	}
	v.lastSeen = now
	return *v, true
}

// update changes a live session under the store's lock.
func (s *sessions) update(key string, fn func(*session)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	if ok {
		fn(v)
	}
	return ok
}

// rotate gives a session a new cookie and CSRF token (after signing in, so
// an id planted before sign-in is worth nothing) and applies fn.
func (s *sessions) rotate(key string, fn func(*session)) (string, bool) {
	cookie := randomToken()
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	if !ok {
		return "", false
	}
	delete(s.m, key)
	v.key, v.csrf = hashKey(cookie), randomToken()
	fn(v)
	s.m[v.key] = v
	return cookie, true
}

func (s *sessions) remove(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
}

// validCSRF compares a form's token with the session's in constant time.
func validCSRF(sess *session, got string) bool {
	return got != "" && sess.csrf != "" && subtle.ConstantTimeCompare([]byte(got), []byte(sess.csrf)) == 1
}

// limiter counts attempts per client address in fixed windows.
type limiter struct {
	max    int
	window time.Duration

	mu      sync.Mutex
	clients map[string]*window
}

type window struct {
	start time.Time
	n     int
}

func newLimiter(max int, per time.Duration) *limiter {
	return &limiter{max: max, window: per, clients: map[string]*window{}}
}

// check reports whether the client may try again (and if not, when).
func (l *limiter) check(client string, now time.Time) (bool, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.clients[client]
	if !ok {
		if w, ok = l.clients["*"]; !ok || len(l.clients) < maxTrackedClients {
			return true, time.Time{}
		}
	}
	if now.Sub(w.start) >= l.window || w.n < l.max {
		return true, time.Time{}
	}
	return false, w.start.Add(l.window)
}

// fail counts one failed attempt of the client.
func (l *limiter) fail(client string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.clients[client]
	if !ok {
		if len(l.clients) >= maxTrackedClients {
			for k, v := range l.clients {
				if now.Sub(v.start) >= l.window {
					delete(l.clients, k)
				}
			}
		}
		if len(l.clients) >= maxTrackedClients {
			client = "*" // every new client shares one bucket until room is made
		}
		if w, ok = l.clients[client]; !ok {
			w = &window{start: now}
			l.clients[client] = w
		}
	}
	if now.Sub(w.start) >= l.window {
		w.start, w.n = now, 0
	}
	w.n++
}

func (l *limiter) String() string { return fmt.Sprintf("%d per %s", l.max, l.window) }
