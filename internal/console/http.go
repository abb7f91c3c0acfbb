package console

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/clipgate/clipgate/internal/deviceid"
)

// Page sizes.
const (
	DefaultPageSize = 50
	// MaxPageSize bounds the clips (and devices) of one page.
	MaxPageSize = 500
	// maxBody bounds request bodies (forms and JSON).
	maxBody = 64 << 10
)

// routes builds the handler: the public login, health and static files; the web UI and
// the JSON API behind a session, with a CSRF token on every state-changing request.
func (c *Console) routes() http.Handler {
	mux := http.NewServeMux()
	ui := c.requireUI
	api := c.requireAPI

	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /static/", staticHandler())

	mux.HandleFunc("GET /login", c.loginPage)
	mux.HandleFunc("POST /login", c.loginForm)
	mux.Handle("POST /logout", ui(c.logoutForm))
	mux.Handle("GET /{$}", ui(c.devicesPage))
	mux.Handle("GET /devices/{$}", ui(c.findDevice))
	mux.Handle("GET /devices/{id}", ui(c.devicePage))
	mux.Handle("POST /devices/{id}/revoke", ui(c.revokeForm(true)))
	mux.Handle("POST /devices/{id}/restore", ui(c.revokeForm(false)))
	mux.Handle("GET /clips", ui(c.clipsPage))
	mux.Handle("GET /problems", ui(c.problemsPage))
	mux.Handle("GET /play", ui(c.playerPage))
	mux.Handle("POST /clips/delete", ui(c.deleteForm))
	mux.Handle("GET /retention", ui(c.retentionPage))
	mux.Handle("POST /retention", ui(c.retentionForm))

	mux.HandleFunc("GET /api/session", c.apiSession)
	mux.HandleFunc("POST /api/login", c.apiLogin)
	mux.Handle("POST /api/logout", api(c.apiLogout))
	mux.Handle("GET /api/devices", api(c.apiDevices))
	mux.Handle("GET /api/devices/{id}", api(c.apiDevice))
	mux.Handle("POST /api/devices/{id}/revoke", api(c.apiRevoke(true)))
	mux.Handle("POST /api/devices/{id}/restore", api(c.apiRevoke(false)))
	mux.Handle("GET /api/clips", api(c.apiClips))
	mux.Handle("GET /api/clip", api(c.apiClip))
	mux.Handle("GET /api/problems", api(c.apiProblems))
	mux.Handle("DELETE /api/clip", api(c.apiDeleteClip))
	mux.Handle("POST /api/retention", api(c.apiRetention))
	mux.Handle("GET /api/stats", api(c.apiStats))
	mux.HandleFunc("GET /api/", func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such API endpoint")
	})
	return c.headers(mux)
}

// headers sets the security headers of every response and bounds request bodies.
func (c *Console) headers(next http.Handler) http.Handler {
	media := "'self'"
	if c.mediaOrigin != "" {
		media += " " + c.mediaOrigin
	}
	csp := "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
		"media-src " + media + "; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		if !strings.HasPrefix(r.URL.Path, "/static/") {
			h.Set("Cache-Control", "no-store")
		}
		if c.cfg.HTTPTLS != nil {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		}
		next.ServeHTTP(w, r)
	})
}

// safeMethod reports whether a method changes nothing (no CSRF token needed).
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// requireUI serves h to a logged-in operator; others are sent to the login page (or get
// 403 for a state-changing request). State-changing requests need the CSRF token.
func (c *Console) requireUI(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := c.session(r)
		if err != nil && !errors.Is(err, ErrNotFound) {
			c.pageError(w, r, err)
			return
		}
		switch {
		case s == nil && safeMethod(r.Method):
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		case s == nil:
			c.renderError(w, r, http.StatusForbidden, "Your session has ended: log in again.")
			return
		case !safeMethod(r.Method) && !csrfOK(r, s):
			c.renderError(w, r, http.StatusForbidden, "The form's security token is missing or wrong: reload the page and try again.")
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, s)))
	})
}

// requireAPI serves h to a logged-in operator; others get 401. State-changing requests
// need the session's CSRF token in the X-CSRF-Token header (403 otherwise).
func (c *Console) requireAPI(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := c.session(r)
		switch {
		case err != nil && !errors.Is(err, ErrNotFound):
			c.apiError(w, err)
			return
		case s == nil:
			writeError(w, http.StatusUnauthorized, "unauthenticated", "log in first (POST /api/login)")
			return
		case !safeMethod(r.Method) && !csrfOK(r, s):
			writeError(w, http.StatusForbidden, "csrf", "missing or wrong "+csrfHeader+" header")
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, s)))
	})
}

// limitLogin applies the login rate limit; it reports whether the attempt may go on,
// having answered 429 otherwise.
func (c *Console) limitLogin(w http.ResponseWriter, r *http.Request) bool {
	ok, wait := c.logins.allow(clientAddr(r), time.Now())
	if !ok {
		w.Header().Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
		c.log.Warn().Str("client", clientAddr(r)).Msg("login rate limited")
	}
	return ok
}

// validateDevice checks a device ID from a URL.
func validateDevice(id string) error {
	if err := deviceid.Validate(id); err != nil {
		return invalidf("device %q: %v", truncate(id, 80), err)
	}
	return nil
}

// Query parameters.

// parseLimit reads the "limit" parameter: def when absent, else 1 to MaxPageSize.
func parseLimit(q url.Values, def int) (int, error) {
	v := q.Get("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > MaxPageSize {
		return 0, invalidf("limit %q: want 1 to %d", v, MaxPageSize)
	}
	return n, nil
}

// parseTime reads a time parameter: RFC 3339, or a date and time without a zone
// (the datetime-local form field, taken as UTC), or a date.
func parseTime(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			if t.Year() < 1 || t.Year() > 9999 {
				break
			}
			return t.UTC(), nil
		}
	}
	return time.Time{}, invalidf("%s %q: want RFC 3339 (2026-03-01T12:00:00Z) or 2026-03-01T12:00 (UTC)", name, truncate(v, 40))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// encodeCursor makes the opaque "after" parameter of a clip list.
func encodeCursor(cur Cursor) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(us(cur.RecordedAt), 10) + ":" + cur.Key))
}

// decodeCursor parses an "after" parameter ("" = none).
func decodeCursor(s string) (*Cursor, error) {
	if s == "" {
		return nil, nil
	}
	bad := invalidf("after: not a cursor from this console")
	if len(s) > 2*maxKeyLen {
		return nil, bad
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, bad
	}
	at, key, ok := strings.Cut(string(b), ":")
	n, err := strconv.ParseInt(at, 10, 64)
	if !ok || err != nil || key == "" || len(key) > maxKeyLen || !utf8.ValidString(key) {
		return nil, bad
	}
	return &Cursor{RecordedAt: fromUS(n), Key: key}, nil
}

// clipQuery reads a clip list's parameters: device (optional), from, to, after, limit.
func clipQuery(q url.Values) (ClipQuery, error) {
	var cq ClipQuery
	var err error
	if cq.Device = q.Get("device"); cq.Device != "" {
		if err := deviceid.Validate(cq.Device); err != nil {
			return cq, invalidf("device: %v", err)
		}
	}
	if cq.From, err = parseTime("from", q.Get("from")); err != nil {
		return cq, err
	}
	if cq.To, err = parseTime("to", q.Get("to")); err != nil {
		return cq, err
	}
	if !cq.From.IsZero() && !cq.To.IsZero() && !cq.From.Before(cq.To) {
		return cq, invalidf("from must be before to")
	}
	if cq.After, err = decodeCursor(q.Get("after")); err != nil {
		return cq, err
	}
	cq.Limit, err = parseLimit(q, DefaultPageSize)
	return cq, err
}

// listClips runs q and returns the page and the cursor of the next ("" at the end).
func (c *Console) listClips(ctx context.Context, q ClipQuery) ([]Clip, string, error) {
	// One more than asked tells whether there is a next page.
	want := q.Limit
	q.Limit++
	clips, err := c.store.Clips(ctx, q)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(clips) > want {
		clips = clips[:want]
		last := clips[want-1]
		next = encodeCursor(Cursor{RecordedAt: last.RecordedAt, Key: last.Key})
	}
	return clips, next, nil
}

// problemQuery reads a problem list's parameters: device (optional), after, limit.
func problemQuery(q url.Values, defLimit int) (ProblemQuery, error) {
	var pq ProblemQuery
	if pq.Device = q.Get("device"); pq.Device != "" {
		if err := deviceid.Validate(pq.Device); err != nil {
			return pq, invalidf("device: %v", err)
		}
	}
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return pq, invalidf("after %q: not a cursor from this console", truncate(v, 40))
		}
		pq.After = n
	}
	var err error
	pq.Limit, err = parseLimit(q, defLimit)
	return pq, err
}

// listProblems runs q and returns the page and the "after" of the next ("" at the end).
func (c *Console) listProblems(ctx context.Context, q ProblemQuery) ([]Problem, string, error) {
	want := q.Limit
	q.Limit++
	ps, err := c.store.Problems(ctx, q)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(ps) > want {
		ps = ps[:want]
		next = strconv.FormatInt(ps[want-1].ID, 10)
	}
	return ps, next, nil
}

// listDevices returns a page of devices after the given ID and the next page's "after".
func (c *Console) listDevices(ctx context.Context, after string, limit int) ([]Device, string, error) {
	if after != "" && !deviceid.Valid(after) {
		return nil, "", invalidf("after: not a device ID")
	}
	devs, err := c.store.Devices(ctx, after, limit+1)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(devs) > limit {
		devs = devs[:limit]
		next = devs[limit-1].ID
	}
	return devs, next, nil
}

// statusOf maps an error to an HTTP status and a code for the API.
func (c *Console) statusOf(err error) (int, string, string) {
	switch {
	case errors.Is(err, ErrInvalid), errors.Is(err, deviceid.ErrInvalid):
		return http.StatusBadRequest, "invalid", err.Error()
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound, "not_found", "not found"
	case errors.Is(err, ErrOSS):
		c.log.Error().Err(err).Msg("OSS request failed")
		return http.StatusBadGateway, "unavailable", "the object store did not answer as expected; try again"
	case errors.Is(err, context.Canceled):
		return 499, "canceled", "request canceled"
	}
	c.log.Error().Err(err).Msg("request failed")
	return http.StatusInternalServerError, "internal", fmt.Sprintf("internal error (%s)", errorClass(err))
}

// errorClass names an internal error's kind without its details (which go to the log).
func errorClass(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	return "see the console's log"
}
