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

type sessionKey struct{}

// sessionFrom returns the request's session (set by the authentication middleware).
func sessionFrom(ctx context.Context) *Session {
	s, _ := ctx.Value(sessionKey{}).(*Session)
	return s
}

// session looks up the request's session cookie.
func (c *Console) session(r *http.Request) (*Session, error) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || !validToken(ck.Value) {
		return nil, ErrNotFound
	}
	return c.store.Session(r.Context(), hashID(ck.Value), c.cfg.Now())
}

// login checks password and, if right, creates a session and sets its cookie. It returns
// the session's CSRF token.
func (c *Console) login(w http.ResponseWriter, r *http.Request, password string) (string, error) {
	if len(password) == 0 || len(password) > maxPasswordBytes ||
		bcrypt.CompareHashAndPassword([]byte(c.cfg.PasswordHash), []byte(password)) != nil {
		c.log.Warn().Str("client", clientAddr(r)).Msg("login failed")
		return "", errBadPassword
	}
	// A logged-in browser logging in again gets a new session: the old one ends.
	if old, err := c.session(r); err == nil {
		_ = c.store.DeleteSession(r.Context(), old.IDHash)
	}
	id, now := newToken(), c.cfg.Now()
	s := Session{IDHash: hashID(id), CSRF: newToken(), Created: now, Expires: now.Add(c.cfg.SessionTTL)}
	if err := c.store.CreateSession(r.Context(), s); err != nil {
		return "", err
	}
	c.setCookie(w, sessionCookie, id, s.Expires)
	c.clearCookie(w, loginCookie)
	c.log.Info().Str("client", clientAddr(r)).Msg("operator logged in")
	return s.CSRF, nil
}

var errBadPassword = errors.New("wrong password")

func (c *Console) logout(w http.ResponseWriter, r *http.Request) error {
	if s := sessionFrom(r.Context()); s != nil {
		if err := c.store.DeleteSession(r.Context(), s.IDHash); err != nil {
			return err
		}
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
