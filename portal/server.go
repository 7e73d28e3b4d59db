package portal

import (
	"context"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/httpx"
)

//go:embed templates/*.html static/*
var assets embed.FS

// Cookie names: the __Host- prefix (Secure, Path=/, no Domain) when the
// portal is served over TLS; browsers refuse it on plain HTTP.
const (
	cookieSecure = "__Host-mipay_portal"
	cookiePlain  = "mipay_portal"
)

// Device actions.
const (
	actionSwitchOff = "switch-off"
	actionFound     = "found"
	actionRemove    = "remove"
	actionLocate    = "locate"
	actionRing      = "ring"
)

// securityHeaders are set on every portal answer: no script at all, styles
// and images only from the portal, no framing, nothing cached.
var securityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; " +
		"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
	"Cache-Control":                "no-store",
	"Pragma":                       "no-cache",
	"X-Content-Type-Options":       "nosniff",
	"X-Frame-Options":              "DENY",
	"Referrer-Policy":              "no-referrer",
	"Cross-Origin-Opener-Policy":   "same-origin",
	"Cross-Origin-Resource-Policy": "same-origin",
}

// Server is the portal's HTTP handler.
type Server struct {
	cfg      Config
	sessions *sessions
	limit    *limiter
	wallet   wallet
	pages    map[string]*template.Template
	static   fs.FS
}

// New returns the portal over cfg.
func New(cfg Config) (*Server, error) {
	cfg.defaults()
	s := &Server{cfg: cfg, limit: newLimiter(cfg.MaxAttemptsPerClient, cfg.AttemptWindow)}
	s.sessions = newSessions(&s.cfg)
	s.wallet = wallet{cfg: &s.cfg}
	var err error
	if s.pages, err = parsePages(); err != nil {
		return nil, err
	}
	if s.static, err = fs.Sub(assets, "static"); err != nil {
		return nil, fmt.Errorf("portal: static files: %w", err)
	}
	return s, nil
}

var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format(time.DateTime) + " UTC"
	},
	"money": func(minor int64) string { return fmt.Sprintf("%d.%02d", minor/100, minor%100) },
	"lower": strings.ToLower,
}

// parsePages parses each page with the layout.
func parsePages() (map[string]*template.Template, error) {
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(assets, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("portal: layout: %w", err)
	}
	pages := map[string]*template.Template{}
	for _, name := range []string{"signin", "verify", "devices", "device", "result", "confirm", "error"} {
		t, err := base.Clone()
		if err == nil {
			t, err = t.ParseFS(assets, "templates/"+name+".html")
		}
		if err != nil {
			return nil, fmt.Errorf("portal: page %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// Handler serves the portal under /portal.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /portal/static/", http.StripPrefix("/portal/static/", http.FileServerFS(s.static)))
	mux.HandleFunc("GET /portal", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/portal/", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /portal/{$}", s.page(s.devicesPage, true))
	mux.HandleFunc("GET /portal/signin", s.page(s.signInPage, false))
	mux.HandleFunc("POST /portal/signin", s.form(s.signIn, false))
	mux.HandleFunc("GET /portal/verify", s.page(s.verifyPage, false))
	mux.HandleFunc("POST /portal/verify", s.form(s.verify, false))
	mux.HandleFunc("POST /portal/signout", s.form(s.signOut, false))
	mux.HandleFunc("GET /portal/devices/{id}", s.page(s.devicePage, true))
	mux.HandleFunc("GET /portal/devices/{id}/{action}", s.page(s.confirmPage, true))
	mux.HandleFunc("POST /portal/devices/{id}/{action}", s.form(s.deviceAction, true))
	mux.HandleFunc("/portal/", func(w http.ResponseWriter, r *http.Request) {
		s.renderError(w, r, mipay.Errorf(mipay.ENOTFOUND, "There is no such page."))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range securityHeaders {
			w.Header().Set(k, v)
		}
		mux.ServeHTTP(w, r)
	})
}

// request is one request's session and cookie.
type request struct {
	sess   session
	cookie string
}

// handler is a page or form handler; it renders or redirects itself, or
// returns an error rendered as an error page.
type handler func(w http.ResponseWriter, r *http.Request, rq *request) error

// load finds the request's session, or makes an anonymous one (with its
// cookie) when there is none.
func (s *Server) load(w http.ResponseWriter, r *http.Request) *request {
	// Only the cookie of the configured kind: under TLS a plain cookie
	// (which any plain-HTTP page of the site could set) is not read.
	if c, err := r.Cookie(s.cookieName()); err == nil {
		if sess, ok := s.sessions.get(c.Value); ok {
			return &request{sess: sess, cookie: c.Value}
		}
	}
	cookie, sess := s.sessions.create()
	s.setCookie(w, cookie)
	return &request{sess: *sess, cookie: cookie}
}

func (s *Server) cookieName() string {
	if s.cfg.Secure {
		return cookieSecure
	}
	return cookiePlain
}

func (s *Server) setCookie(w http.ResponseWriter, value string) {
	c := &http.Cookie{Name: s.cookieName(), Value: value, Path: "/", HttpOnly: true, Secure: s.cfg.Secure,
		SameSite: http.SameSiteStrictMode}
	if value == "" {
		c.MaxAge = -1
	}
	http.SetCookie(w, c)
}

// page wraps a GET handler; auth pages send the signed-out to sign in.
func (s *Server) page(h handler, auth bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rq := s.load(w, r)
		if auth && !rq.sess.signedIn() {
			http.Redirect(w, r, "/portal/signin", http.StatusSeeOther)
			return
		}
		if err := h(w, r, rq); err != nil {
			s.renderErrorFor(w, r, rq, err)
		}
	}
}

// form wraps a POST handler: bounded body, the session's CSRF token
// required (403 otherwise, before anything else happens).
func (s *Server) form(h handler, auth bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, MaxFormBytes)
		if err := r.ParseForm(); err != nil {
			s.renderError(w, r, mipay.Errorf(mipay.EINVALID, "The form could not be read."))
			return
		}
		rq := s.load(w, r)
		if !validCSRF(&rq.sess, r.PostForm.Get("csrf")) {
			s.renderError(w, r, mipay.Errorf(mipay.EFORBIDDEN,
				"This form has expired or did not come from this site. Go back, reload the page and try again."))
			return
		}
		if auth && !rq.sess.signedIn() {
			http.Redirect(w, r, "/portal/signin", http.StatusSeeOther)
			return
		}
		if err := h(w, r, rq); err != nil {
			s.renderErrorFor(w, r, rq, err)
		}
	}
}

// view is what every page gets.
type view struct {
	Title    string
	CSRF     string
	SignedIn bool
	Login    string
	Notice   string
	Error    string
	Data     any
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, rq *request, status int, name, title string, data any) {
	v := view{Title: title, Data: data}
	if rq != nil {
		v.CSRF, v.SignedIn, v.Login = rq.sess.csrf, rq.sess.signedIn(), rq.sess.login
		if rq.sess.notice != "" {
			v.Notice = rq.sess.notice
			s.sessions.update(rq.sess.key, func(ss *session) { ss.notice = "" })
		}
	}
	s.write(w, r, status, name, v)
}

func (s *Server) write(w http.ResponseWriter, r *http.Request, status int, name string, v view) {
	var b strings.Builder
	if err := s.pages[name].ExecuteTemplate(&b, "layout.html", v); err != nil {
		httpx.Logger(r.Context()).ErrorContext(r.Context(), "portal page", "page", name, "err", err)
		http.Error(w, "Internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

// renderError shows err's user-safe message with its status. Another
// account's device is "not found", the same as one that does not exist.
func (s *Server) renderError(w http.ResponseWriter, r *http.Request, err error) {
	s.renderErrorFor(w, r, nil, err)
}

// renderErrorFor is renderError on a page of rq's session (its header and
// sign-out form).
func (s *Server) renderErrorFor(w http.ResponseWriter, r *http.Request, rq *request, err error) {
	code := mipay.ErrorCode(err)
	status := httpx.StatusOf(code)
	msg := mipay.ErrorMessage(err)
	if code == mipay.EINTERNAL {
		httpx.Logger(r.Context()).ErrorContext(r.Context(), "portal", "err", err)
		msg = "Something went wrong on our side. Please try again."
	}
	title := map[int]string{400: "Please check the form", 401: "Please sign in", 403: "Refused", 404: "Not found",
		423: "Locked", 429: "Too many attempts", 503: "Unavailable"}[status]
	if title == "" {
		title = "Something went wrong"
	}
	v := view{Title: title, Error: msg}
	if rq != nil {
		// The session may be gone (signed out by a wallet refusal): reread it.
		if sess, ok := s.sessions.get(rq.cookie); ok {
			v.CSRF, v.SignedIn, v.Login = sess.csrf, sess.signedIn(), sess.login
		}
	}
	s.write(w, r, status, "error", v)
}

// clientAddr is the browser's address (the rate limit's key).
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// --- sign-in ---

type signInData struct {
	Again bool // signing in again for an action ("found it")
	Login string
}

func (s *Server) signInPage(w http.ResponseWriter, r *http.Request, rq *request) error {
	s.render(w, r, rq, http.StatusOK, "signin", "Sign in", signInData{Again: rq.sess.pending != nil, Login: rq.sess.login})
	return nil
}

// attempt refuses a client that failed too often lately (on top of the
// wallet's per-account lockout); failed counts a failure.
func (s *Server) attempt(r *http.Request) error {
	if ok, retry := s.limit.check(clientAddr(r), s.cfg.Now()); !ok {
		return mipay.Errorf(mipay.ELIMIT, "Too many failed sign-in attempts from your address. Try again after %s.",
			retry.UTC().Format(time.TimeOnly)+" UTC")
	}
	return nil
}

func (s *Server) failed(r *http.Request, err error) error {
	switch mipay.ErrorCode(err) {
	case mipay.EUNAUTHORIZED, mipay.ELOCKED, mipay.EINVALID, mipay.ELIMIT:
		s.limit.fail(clientAddr(r), s.cfg.Now())
	}
	return err
}

func (s *Server) signIn(w http.ResponseWriter, r *http.Request, rq *request) error {
	if err := s.attempt(r); err != nil {
		return err
	}
	login, password := strings.TrimSpace(r.PostForm.Get("login")), r.PostForm.Get("password")
	if login == "" || password == "" {
		return mipay.Errorf(mipay.EINVALID, "Enter your phone number or e-mail and your password.")
	}
	ch, err := s.wallet.startChallenge(r.Context(), login, password)
	if err != nil {
		return s.failed(r, err)
	}
	s.sessions.update(rq.sess.key, func(ss *session) {
		ss.challengeID, ss.challengeEmail, ss.challengeLogin = ch.ID, ch.Email, login
	})
	http.Redirect(w, r, "/portal/verify", http.StatusSeeOther)
	return nil
}

type verifyData struct {
	Email string
}

func (s *Server) verifyPage(w http.ResponseWriter, r *http.Request, rq *request) error {
	if rq.sess.challengeID == "" {
		http.Redirect(w, r, "/portal/signin", http.StatusSeeOther)
		return nil
	}
	s.render(w, r, rq, http.StatusOK, "verify", "Second step", verifyData{Email: rq.sess.challengeEmail})
	return nil
}

func (s *Server) verify(w http.ResponseWriter, r *http.Request, rq *request) error {
	if err := s.attempt(r); err != nil {
		return err
	}
	if rq.sess.challengeID == "" {
		http.Redirect(w, r, "/portal/signin", http.StatusSeeOther)
		return nil
	}
	emailCode := strings.TrimSpace(r.PostForm.Get("emailCode"))
	recovery := strings.TrimSpace(r.PostForm.Get("recoveryCode"))
	if (emailCode == "") == (recovery == "") {
		return mipay.Errorf(mipay.EINVALID, "Enter either the code from the e-mail or one recovery code.")
	}
	ws, err := s.wallet.verify(r.Context(), rq.sess.challengeID, emailCode, recovery)
	if err != nil {
		if c := mipay.ErrorCode(err); c == mipay.ELOCKED {
			s.sessions.update(rq.sess.key, func(ss *session) { ss.challengeID = "" })
		}
		return s.failed(r, err)
	}
	old := rq.sess
	var pending *pendingAction
	if old.pending != nil && old.signedIn() && old.accountID == ws.AccountID && s.cfg.Now().Sub(old.pending.at) <= pendingTTL {
		pending = old.pending
	}
	cookie, ok := s.sessions.rotate(old.key, func(ss *session) {
		ss.walletToken, ss.accountID, ss.login, ss.authAt = ws.Token, ws.AccountID, old.challengeLogin, s.cfg.Now()
		ss.challengeID, ss.challengeEmail, ss.challengeLogin, ss.pending = "", "", "", nil
	})
	if !ok {
		return mipay.Errorf(mipay.EUNAUTHORIZED, "Your session expired. Please sign in again.")
	}
	s.setCookie(w, cookie)
	if old.walletToken != "" && old.walletToken != ws.Token {
		s.revoke(r.Context(), old.walletToken)
	}
	if pending != nil {
		// The action that asked for a fresh sign-in runs now, with it.
		sess, _ := s.sessions.get(cookie)
		return s.runAction(w, r, &request{sess: sess, cookie: cookie}, pending.deviceID, pending.kind)
	}
	http.Redirect(w, r, "/portal/", http.StatusSeeOther)
	return nil
}

// revoke signs a wallet session out (best effort: it expires anyway).
func (s *Server) revoke(ctx context.Context, token string) {
	if err := s.wallet.signOut(context.WithoutCancel(ctx), token); err != nil {
		s.cfg.Log.WarnContext(ctx, "portal: wallet sign-out failed", "err", err)
	}
}

func (s *Server) signOut(w http.ResponseWriter, r *http.Request, rq *request) error {
	if rq.sess.walletToken != "" {
		s.revoke(r.Context(), rq.sess.walletToken)
	}
	s.sessions.remove(rq.sess.key)
	s.setCookie(w, "")
	http.Redirect(w, r, "/portal/signin", http.StatusSeeOther)
	return nil
}

// walletErr turns a wallet refusal of the session into a sign-in redirect.
func (s *Server) walletErr(w http.ResponseWriter, r *http.Request, rq *request, err error) error {
	if mipay.ErrorCode(err) == mipay.EUNAUTHORIZED {
		s.sessions.remove(rq.sess.key)
		s.setCookie(w, "")
		http.Redirect(w, r, "/portal/signin", http.StatusSeeOther)
		return nil
	}
	return err
}

// --- devices ---

type deviceSummary struct {
	Device  device
	Cards   []card
	Last    *location
	Transit []transitCard
}

type devicesData struct {
	Devices      []deviceSummary
	TransitError string
}

func (s *Server) devicesPage(w http.ResponseWriter, r *http.Request, rq *request) error {
	ctx, token := r.Context(), rq.sess.walletToken
	ds, err := s.wallet.devices(ctx, token)
	if err != nil {
		return s.walletErr(w, r, rq, err)
	}
	data := devicesData{}
	tcs, terr := s.wallet.transitCards(ctx, token)
	if terr != nil {
		data.TransitError = "Transit cards could not be read just now."
	}
	for _, d := range ds {
		sum := deviceSummary{Device: d}
		if sum.Cards, err = s.wallet.cards(ctx, token, d.ID); err != nil {
			return s.walletErr(w, r, rq, err)
		}
		locs, err := s.wallet.locations(ctx, token, d.ID, 1)
		if err != nil {
			return s.walletErr(w, r, rq, err)
		}
		if len(locs) > 0 {
			sum.Last = &locs[0]
		}
		sum.Transit = transitOf(tcs, d.ID)
		data.Devices = append(data.Devices, sum)
	}
	s.render(w, r, rq, http.StatusOK, "devices", "Your devices", data)
	return nil
}

func transitOf(all []transitCard, deviceID string) []transitCard {
	var out []transitCard
	for _, c := range all {
		if c.DeviceID == deviceID {
			out = append(out, c)
		}
	}
	return out
}

type deviceData struct {
	deviceSummary
	Plot         *plot
	History      []location
	Commands     []command
	TransitError string
	Active       bool // some card can pay: switching off makes sense
	Suspended    bool // some card is suspended: "found it" makes sense
	Removable    bool
}

func (s *Server) devicePage(w http.ResponseWriter, r *http.Request, rq *request) error {
	ctx, token, id := r.Context(), rq.sess.walletToken, r.PathValue("id")
	d, err := s.wallet.device(ctx, token, id)
	if err != nil {
		return s.walletErr(w, r, rq, err)
	}
	data := deviceData{deviceSummary: deviceSummary{Device: *d}}
	if data.Cards, err = s.wallet.cards(ctx, token, id); err != nil {
		return s.walletErr(w, r, rq, err)
	}
	if data.History, err = s.wallet.locations(ctx, token, id, LocationsShown); err != nil {
		return s.walletErr(w, r, rq, err)
	}
	if len(data.History) > 0 {
		data.Last = &data.History[0]
	}
	data.Plot = newPlot(data.History)
	if data.Commands, err = s.wallet.commands(ctx, token, id); err != nil {
		return s.walletErr(w, r, rq, err)
	}
	if len(data.Commands) > 10 {
		data.Commands = data.Commands[:10]
	}
	tcs, terr := s.wallet.transitCards(ctx, token)
	if terr != nil {
		data.TransitError = "Transit cards could not be read just now."
	}
	data.Transit = transitOf(tcs, id)
	for _, c := range data.Cards {
		switch c.State {
		case "ACTIVE":
			data.Active, data.Removable = true, true
		case "SUSPENDED":
			data.Suspended, data.Removable = true, true
		case "INACTIVE":
			data.Removable = true
		}
	}
	s.render(w, r, rq, http.StatusOK, "device", d.Model, data)
	return nil
}

// actionInfo describes an action for its confirmation page.
var actionInfo = map[string]struct{ Title, Button, Explain string }{
	actionSwitchOff: {"Switch off Mi Pay on this device", "Switch off Mi Pay",
		"Every card on this device is suspended at once: no payment with this phone goes through, anywhere. Its transit cards are blocked and the phone is told to wipe its wallet the next time it is online. You can turn the cards back on with \"Found it\"."},
	actionFound: {"Found it", "Sign in again and turn Mi Pay back on",
		"The suspended cards of this device are turned back on. For your safety you sign in again first (password and second step)."},
	actionRemove: {"Remove cards from this device", "Remove the cards for good",
		"Every card on this device is removed for good: it can never pay again with this phone. To use a card on a new phone, add it there."},
	actionLocate: {"Locate now", "Ask the phone where it is",
		"The phone is asked to report its location the next time it is online."},
	actionRing: {"Ring", "Ring the phone",
		"The phone rings at full volume the next time it is online, even when silenced."},
}

type confirmData struct {
	Device                 device
	Action                 string
	Title, Button, Explain string
}

// confirmPage shows what an action will do, with its form.
func (s *Server) confirmPage(w http.ResponseWriter, r *http.Request, rq *request) error {
	action := r.PathValue("action")
	info, ok := actionInfo[action]
	if !ok {
		return mipay.Errorf(mipay.ENOTFOUND, "There is no such page.")
	}
	d, err := s.wallet.device(r.Context(), rq.sess.walletToken, r.PathValue("id"))
	if err != nil {
		return s.walletErr(w, r, rq, err)
	}
	s.render(w, r, rq, http.StatusOK, "confirm", info.Title, confirmData{Device: *d, Action: action,
		Title: info.Title, Button: info.Button, Explain: info.Explain})
	return nil
}

// deviceAction runs an action; "found it" first asks for a fresh sign-in
// and runs when it completes.
func (s *Server) deviceAction(w http.ResponseWriter, r *http.Request, rq *request) error {
	id, action := r.PathValue("id"), r.PathValue("action")
	if _, ok := actionInfo[action]; !ok {
		return mipay.Errorf(mipay.ENOTFOUND, "There is no such page.")
	}
	// The device must be this account's (404 otherwise) before anything.
	if _, err := s.wallet.device(r.Context(), rq.sess.walletToken, id); err != nil {
		return s.walletErr(w, r, rq, err)
	}
	if action == actionFound {
		s.sessions.update(rq.sess.key, func(ss *session) {
			ss.pending = &pendingAction{kind: actionFound, deviceID: id, at: s.cfg.Now()}
			ss.notice = "To turn Mi Pay back on, sign in again."
		})
		http.Redirect(w, r, "/portal/signin", http.StatusSeeOther)
		return nil
	}
	return s.runAction(w, r, rq, id, action)
}

type resultData struct {
	Device  device
	Title   string
	Lines   []string
	Failed  []string
	Command *command
}

func (s *Server) runAction(w http.ResponseWriter, r *http.Request, rq *request, id, action string) error {
	ctx, token := r.Context(), rq.sess.walletToken
	d, err := s.wallet.device(ctx, token, id)
	if err != nil {
		return s.walletErr(w, r, rq, err)
	}
	res := resultData{Device: *d, Title: actionInfo[action].Title}
	switch action {
	case actionLocate, actionRing:
		kind := map[string]string{actionLocate: "LOCATE", actionRing: "RING"}[action]
		cmd, err := s.wallet.queue(ctx, token, id, kind)
		if err != nil {
			return s.walletErr(w, r, rq, err)
		}
		res.Command = cmd
		res.Lines = append(res.Lines, "The request is waiting for the phone: it is delivered the next time the phone is online.")
	default:
		ch, err := s.wallet.deviceAction(ctx, token, id, action)
		if err != nil {
			return s.walletErr(w, r, rq, err)
		}
		res.Lines, res.Failed = describeChange(action, ch)
		res.Command = ch.Command
	}
	s.render(w, r, rq, http.StatusOK, "result", res.Title, res)
	return nil
}

// describeChange says in words what a device action did.
func describeChange(action string, ch *deviceChange) (lines, failed []string) {
	verb := map[string]string{actionSwitchOff: "suspended", actionFound: "turned back on", actionRemove: "removed"}[action]
	n := 0
	for _, c := range ch.Cards {
		switch {
		case c.Error != "":
			failed = append(failed, fmt.Sprintf("A card could not be %s: %s", verb, c.Error))
		case c.Changed:
			n++
		}
	}
	switch {
	case n == 0 && len(failed) == 0:
		lines = append(lines, "No card needed to change.")
	case n == 1:
		lines = append(lines, "1 card was "+verb+".")
	case n > 1:
		lines = append(lines, fmt.Sprintf("%d cards were %s.", n, verb))
	}
	if action == actionSwitchOff {
		if len(ch.TransitHotlisted) > 0 {
			lines = append(lines, fmt.Sprintf("%d transit card(s) blocked at the gates.", len(ch.TransitHotlisted)))
		}
		if ch.TransitError != "" {
			failed = append(failed, "Transit cards could not be blocked: "+ch.TransitError)
		}
		if ch.Command != nil {
			lines = append(lines, "The phone will wipe its wallet the next time it is online.")
		}
	}
	return lines, failed
}
