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

// route is one endpoint: its method and pattern (net/http's), the role it needs (""
// for a public one) and its handler.
type route struct {
	method, pattern string
	need            Role
	h               http.HandlerFunc
}

// apiRoutes are the JSON API's endpoints; openapi.yaml documents each (TestOpenAPIRoutes).
func (c *Console) apiRoutes() []route {
	return []route{
		{"GET", "/api/openapi.json", "", c.apiOpenAPI},
		{"GET", "/api/session", "", c.apiSession},
		{"POST", "/api/login", "", c.apiLogin},
		{"POST", "/api/logout", RoleViewer, c.apiLogout},
		{"GET", "/api/me", RoleViewer, c.apiMe},
		{"GET", "/api/devices", RoleViewer, c.apiDevices},
		{"GET", "/api/devices/{id}", RoleViewer, c.apiDevice},
		{"POST", "/api/devices/{id}/revoke", RoleAdmin, c.apiRevoke(true)},
		{"POST", "/api/devices/{id}/restore", RoleAdmin, c.apiRevoke(false)},
		{"GET", "/api/timeline", RoleViewer, c.apiTimeline},
		{"GET", "/api/storage", RoleViewer, c.apiStorage},
		{"GET", "/api/clips", RoleViewer, c.apiClips},
		{"GET", "/api/clip", RoleViewer, c.apiClip},
		{"DELETE", "/api/clip", RoleAdmin, c.apiDeleteClip},
		{"GET", "/api/problems", RoleViewer, c.apiProblems},
		{"GET", "/api/stats", RoleViewer, c.apiStats},
		{"POST", "/api/retention", RoleAdmin, c.apiRetention},
		{"GET", "/api/retention/rules", RoleAdmin, c.apiRetentionRules},
		{"PUT", "/api/retention/rules", RoleAdmin, c.apiPutRetentionRule},
		{"DELETE", "/api/retention/rules", RoleAdmin, c.apiDeleteRetentionRule},
		{"POST", "/api/retention/rules/run", RoleAdmin, c.apiRunRetentionRules},
		{"GET", "/api/operators", RoleAdmin, c.apiOperators},
		{"PUT", "/api/operators/{name}", RoleAdmin, c.apiPutOperator},
		{"DELETE", "/api/operators/{name}", RoleAdmin, c.apiDeleteOperator},
		{"GET", "/api/tokens", RoleAdmin, c.apiTokens},
		{"POST", "/api/tokens", RoleAdmin, c.apiCreateToken},
		{"DELETE", "/api/tokens/{id}", RoleAdmin, c.apiRevokeToken},
		{"GET", "/api/audit", RoleAdmin, c.apiAudit},
	}
}

// uiRoutes are the web UI's pages and forms.
func (c *Console) uiRoutes() []route {
	return []route{
		{"GET", "/login", "", c.loginPage},
		{"POST", "/login", "", c.loginForm},
		{"POST", "/logout", RoleViewer, c.logoutForm},
		{"GET", "/{$}", RoleViewer, c.devicesPage},
		{"GET", "/devices/{$}", RoleViewer, c.findDevice},
		{"GET", "/devices/{id}", RoleViewer, c.devicePage},
		{"POST", "/devices/{id}/revoke", RoleAdmin, c.revokeForm(true)},
		{"POST", "/devices/{id}/restore", RoleAdmin, c.revokeForm(false)},
		{"GET", "/clips", RoleViewer, c.clipsPage},
		{"GET", "/problems", RoleViewer, c.problemsPage},
		{"GET", "/play", RoleViewer, c.playerPage},
		{"POST", "/clips/delete", RoleAdmin, c.deleteForm},
		{"GET", "/retention", RoleAdmin, c.retentionPage},
		{"POST", "/retention", RoleAdmin, c.retentionForm},
		{"POST", "/retention/rules", RoleAdmin, c.retentionRuleForm},
		{"POST", "/retention/rules/delete", RoleAdmin, c.retentionRuleDeleteForm},
		{"POST", "/retention/rules/run", RoleAdmin, c.retentionRunForm},
		{"GET", "/operators", RoleAdmin, c.operatorsPage},
		{"POST", "/operators", RoleAdmin, c.operatorForm},
		{"POST", "/operators/delete", RoleAdmin, c.operatorDeleteForm},
		{"GET", "/tokens", RoleAdmin, c.tokensPage},
		{"POST", "/tokens", RoleAdmin, c.tokenForm},
		{"POST", "/tokens/revoke", RoleAdmin, c.tokenRevokeForm},
		{"GET", "/audit", RoleAdmin, c.auditPage},
	}
}

// routes builds the handler: the public login, health and static files; the web UI and
// the JSON API behind a session (or, for the API, a token) with the route's role, and a
// CSRF token on every state-changing request made with a session.
func (c *Console) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /static/", staticHandler())
	for _, rt := range c.uiRoutes() {
		var h http.Handler = rt.h
		if rt.need != "" {
			h = c.requireUI(rt.need, rt.h)
		}
		mux.Handle(rt.method+" "+rt.pattern, h)
	}
	for _, rt := range c.apiRoutes() {
		var h http.Handler = rt.h
		if rt.need != "" {
			h = c.requireAPI(rt.need, rt.h)
		}
		mux.Handle(rt.method+" "+rt.pattern, h)
	}
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
	// Posters, like the clips, come straight from OSS.
	csp := "default-src 'none'; script-src 'self'; style-src 'self'; img-src " + media + "; connect-src 'self'; " +
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

// requireUI serves h to a logged-in operator whose role includes need; others are sent
// to the login page (or get 403 for a state-changing request, or a viewer on an admin's
// page). State-changing requests need the CSRF token.
func (c *Console) requireUI(need Role, h http.HandlerFunc) http.Handler {
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
		p := &principal{Name: s.Operator, Role: s.Role, Session: s}
		r = r.WithContext(context.WithValue(r.Context(), principalKey{}, p))
		if !s.Role.can(need) {
			c.renderError(w, r, http.StatusForbidden, "Only an admin may do this; you are logged in as a viewer.")
			return
		}
		h(w, r)
	})
}

// requireAPI serves h to a caller whose role includes need: an API token in an
// "Authorization: Bearer" header, or an operator's session (whose state-changing
// requests need the session's CSRF token in the X-CSRF-Token header: 403 otherwise).
// Others get 401 (no or a bad credential) or 403 (a viewer on an admin's endpoint).
func (c *Console) requireAPI(need Role, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p *principal
		if tok, ok := bearer(r); ok {
			var err error
			if p, err = c.tokenPrincipal(r.Context(), tok); err != nil {
				if errors.Is(err, errBadToken) {
					w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
					writeError(w, http.StatusUnauthorized, "unauthenticated", err.Error())
				} else {
					c.apiError(w, err)
				}
				return
			}
		} else {
			s, err := c.session(r)
			switch {
			case err != nil && !errors.Is(err, ErrNotFound):
				c.apiError(w, err)
				return
			case s == nil:
				w.Header().Set("WWW-Authenticate", "Bearer")
				writeError(w, http.StatusUnauthorized, "unauthenticated", "log in first (POST /api/login) or send an API token (Authorization: Bearer)")
				return
			case !safeMethod(r.Method) && !csrfOK(r, s):
				writeError(w, http.StatusForbidden, "csrf", "missing or wrong "+csrfHeader+" header")
				return
			}
			p = &principal{Name: s.Operator, Role: s.Role, Session: s}
		}
		if !p.Role.can(need) {
			writeError(w, http.StatusForbidden, "forbidden", "this needs the "+string(need)+" role; the caller is a "+string(p.Role))
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
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

// clipQuery reads a clip list's parameters: device and status (optional), from, to,
// after, limit.
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
	cq.Status = ClipStatus(q.Get("status"))
	if _, ok := statusCondition[cq.Status]; !ok {
		return cq, invalidf("status %q: want one of %s", truncate(q.Get("status"), 40), strings.Join(ClipStatuses()[1:], ", "))
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
