package console

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"
)

// Cookie and form names.
const (
	sessionCookie = "clipgate_session"
	loginCookie   = "clipgate_login" // the login form's CSRF pairing, before a session exists
	csrfField     = "csrf"
	csrfHeader    = "X-CSRF-Token"
	// maxPasswordBytes is bcrypt's limit.
	maxPasswordBytes = 72
	// loginCookieTTL bounds how long a login form stays usable.
	loginCookieTTL = time.Hour
)

// newToken returns 32 random bytes, base64url without padding.
func newToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// hashID is how a session ID is stored: hex SHA-256.
func hashID(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

// validToken reports whether s has the form of newToken's output, so that garbage never
// reaches the database.
func validToken(s string) bool {
	if len(s) != 43 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil
}

// principal is who makes a request: an operator through a session, or an API token.
type principal struct {
	Name string
	Role Role
	// Session is the operator's session; nil for a token.
	Session *Session
	// TokenID is the token's ID; empty for a session.
	TokenID string
}

// via says how the principal authenticated, for the audit log.
func (p *principal) via() string {
	if p.TokenID != "" {
		return "token " + p.TokenID
	}
	return "session"
}

type principalKey struct{}

// principalFrom returns the request's principal (set by the authentication middleware).
func principalFrom(ctx context.Context) *principal {
	p, _ := ctx.Value(principalKey{}).(*principal)
	return p
}

// sessionFrom returns the request's session, if it has one.
func sessionFrom(ctx context.Context) *Session {
	if p := principalFrom(ctx); p != nil {
		return p.Session
	}
	return nil
}

// session looks up the request's session cookie.
func (c *Console) session(r *http.Request) (*Session, error) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || !validToken(ck.Value) {
		return nil, ErrNotFound
	}
	return c.store.Session(r.Context(), hashID(ck.Value), c.cfg.Now())
}

// maxNameLen bounds operator and token names.
const maxNameLen = 64

// validName checks an operator name: 1 to 64 of letters, digits and . _ - @.
func validName(name string) error {
	if name == "" || len(name) > maxNameLen {
		return invalidf("name: want 1 to %d characters", maxNameLen)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' || r == '@') {
			return invalidf("name %q: only letters, digits and . _ - @ are allowed", truncate(name, maxNameLen))
		}
	}
	return nil
}

// dummyHash is compared against when the operator does not exist, so that a login
// takes as long for an unknown name as for a wrong password.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("clipgate: no such operator"), bcrypt.DefaultCost)
	return h
})

// checkPassword returns the operator if name and password match.
func (c *Console) checkPassword(ctx context.Context, name, password string) (*Operator, error) {
	if len(password) == 0 || len(password) > maxPasswordBytes || validName(name) != nil {
		_ = bcrypt.CompareHashAndPassword(dummyHash(), []byte("x"))
		return nil, errBadPassword
	}
	op, err := c.store.Operator(ctx, name)
	switch {
	case errors.Is(err, ErrNotFound):
		_ = bcrypt.CompareHashAndPassword(dummyHash(), []byte(password))
		return nil, errBadPassword
	case err != nil:
		return nil, err
	case bcrypt.CompareHashAndPassword([]byte(op.PasswordHash), []byte(password)) != nil:
		return nil, errBadPassword
	}
	return op, nil
}

// login checks the operator's name and password and, if right, creates a session and
// sets its cookie. It returns the session. Both outcomes go to the audit log.
func (c *Console) login(w http.ResponseWriter, r *http.Request, name, password string) (*Session, error) {
	op, err := c.checkPassword(r.Context(), name, password)
	if err != nil {
		if errors.Is(err, errBadPassword) {
			c.log.Warn().Str("client", clientAddr(r)).Str("operator", truncate(name, maxNameLen)).Msg("login failed")
			c.record(r.Context(), AuditEntry{Actor: truncate(name, maxNameLen), Action: AuditLoginFailed, Client: clientAddr(r)})
		}
		return nil, err
	}
	// A logged-in browser logging in again gets a new session: the old one ends.
	if old, err := c.session(r); err == nil {
		_ = c.store.DeleteSession(r.Context(), old.IDHash)
	}
	id, now := newToken(), c.cfg.Now()
	s := Session{IDHash: hashID(id), CSRF: newToken(), Created: now, Expires: now.Add(c.cfg.SessionTTL), Operator: op.Name, Role: op.Role}
	if err := c.store.CreateSession(r.Context(), s); err != nil {
		return nil, err
	}
	c.setCookie(w, sessionCookie, id, s.Expires)
	c.clearCookie(w, loginCookie)
	c.log.Info().Str("client", clientAddr(r)).Str("operator", op.Name).Msg("operator logged in")
	c.record(r.Context(), AuditEntry{Actor: op.Name, Role: op.Role, Via: "session", Action: AuditLogin, Client: clientAddr(r)})
	return &s, nil
}

var errBadPassword = errors.New("wrong name or password")

func (c *Console) logout(w http.ResponseWriter, r *http.Request) error {
	if s := sessionFrom(r.Context()); s != nil {
		if err := c.store.DeleteSession(r.Context(), s.IDHash); err != nil {
			return err
		}
		c.audit(r, AuditLogout, "", "")
	}
	c.clearCookie(w, sessionCookie)
	return nil
}

func (c *Console) setCookie(w http.ResponseWriter, name, value string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: "/", Expires: expires, MaxAge: int(time.Until(expires).Seconds()),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: c.secure,
	})
}

func (c *Console) clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: c.secure})
}

// loginToken returns the CSRF token of the login form: HMAC(loginKey, cookie), where the
// cookie is a random value set with the form. A forged cross-site login needs both, and
// the cookie is SameSite=Strict and HttpOnly. It sets the cookie if the request lacks one.
func (c *Console) loginToken(w http.ResponseWriter, r *http.Request) string {
	v := ""
	if ck, err := r.Cookie(loginCookie); err == nil && validToken(ck.Value) {
		v = ck.Value
	} else {
		v = newToken()
		c.setCookie(w, loginCookie, v, time.Now().Add(loginCookieTTL))
	}
	return c.loginMAC(v)
}

func (c *Console) loginMAC(cookie string) string {
	m := hmac.New(sha256.New, c.loginKey)
	m.Write([]byte("clipgate-console-login\x00"))
	m.Write([]byte(cookie))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkLoginToken checks a login request's CSRF token against its login cookie.
func (c *Console) checkLoginToken(r *http.Request, token string) bool {
	ck, err := r.Cookie(loginCookie)
	if err != nil || !validToken(ck.Value) || token == "" {
		return false
	}
	return hmac.Equal([]byte(token), []byte(c.loginMAC(ck.Value)))
}

// csrfOK reports whether a state-changing request carries its session's CSRF token, in
// the X-CSRF-Token header or the "csrf" form field (synchronizer token pattern).
func csrfOK(r *http.Request, s *Session) bool {
	tok := r.Header.Get(csrfHeader)
	if tok == "" {
		tok = r.PostFormValue(csrfField) // the body is size-limited by the caller
	}
	return tok != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.CSRF)) == 1
}

// clientAddr is the request's remote IP (X-Forwarded-For is not trusted: the console
// cannot know which proxies to believe).
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// loginLimiter limits login attempts per client address, and overall (each attempt
// costs a bcrypt comparison).
type loginLimiter struct {
	rate   rate.Limit
	burst  int
	global *rate.Limiter

	mu sync.Mutex
	m  map[string]*rate.Limiter
}

// maxLoginClients bounds the per-address limiters kept; beyond, idle ones are dropped.
const maxLoginClients = 10_000

func newLoginLimiter(r rate.Limit, burst int) *loginLimiter {
	return &loginLimiter{rate: r, burst: burst, global: rate.NewLimiter(20, 40), m: map[string]*rate.Limiter{}}
}

// allow takes a token for addr; if none is left it returns how long to wait.
func (l *loginLimiter) allow(addr string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	lim, ok := l.m[addr]
	if !ok {
		if len(l.m) >= maxLoginClients {
			l.sweep(now)
		}
		lim = rate.NewLimiter(l.rate, l.burst)
		l.m[addr] = lim
	}
	l.mu.Unlock()
	if !lim.AllowN(now, 1) {
		return false, retryAfter(lim, now)
	}
	if !l.global.AllowN(now, 1) {
		return false, time.Second
	}
	return true, 0
}

func retryAfter(lim *rate.Limiter, now time.Time) time.Duration {
	r := lim.ReserveN(now, 1)
	d := r.DelayFrom(now)
	r.CancelAt(now)
	return max(d, time.Second)
}

// sweep drops limiters that have refilled (they hold no history worth keeping); if the
// map is still full (a flood of addresses), it starts over.
func (l *loginLimiter) sweep(now time.Time) {
	for k, lim := range l.m {
		if lim.TokensAt(now) >= float64(l.burst) {
			delete(l.m, k)
		}
	}
	if len(l.m) >= maxLoginClients {
		clear(l.m)
	}
}
