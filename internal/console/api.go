package console

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"time"
)

// apiErrorBody is the JSON of every API error: {"error":{"code":..,"message":..}}.
type apiErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	var b apiErrorBody
	b.Error.Code, b.Error.Message = code, msg
	writeJSON(w, status, &b)
}

func (c *Console) apiError(w http.ResponseWriter, err error) {
	status, code, msg := c.statusOf(err)
	writeError(w, status, code, msg)
}

// decodeJSON reads a request body of one JSON object with known fields only.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "invalid", "the body must be application/json")
		return false
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, e := dec.Token(); !errors.Is(e, io.EOF) {
			err = errors.New("data after the JSON object")
		}
	}
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "invalid", "the body is too large")
		} else {
			writeError(w, http.StatusBadRequest, "invalid", "bad JSON body: "+err.Error())
		}
		return false
	}
	return true
}

// sessionInfo is GET /api/session's answer: whether the caller is logged in (as whom),
// and the CSRF token to send with its next state-changing request (the login token when
// logged out).
type sessionInfo struct {
	Authenticated bool      `json:"authenticated"`
	Operator      string    `json:"operator,omitempty"`
	Role          Role      `json:"role,omitempty"`
	CSRF          string    `json:"csrf"`
	Expires       time.Time `json:"expires,omitzero"`
}

func (c *Console) apiSession(w http.ResponseWriter, r *http.Request) {
	s, err := c.session(r)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, sessionInfo{Authenticated: true, Operator: s.Operator, Role: s.Role, CSRF: s.CSRF, Expires: s.Expires})
	case errors.Is(err, ErrNotFound):
		writeJSON(w, http.StatusOK, sessionInfo{CSRF: c.loginToken(w, r)})
	default:
		c.apiError(w, err)
	}
}

// apiLogin: POST {"name": ..., "password": ...} with the login CSRF token of GET
// /api/session in X-CSRF-Token (and its cookie). It sets the session cookie and returns
// the session's CSRF token.
func (c *Console) apiLogin(w http.ResponseWriter, r *http.Request) {
	if !c.checkLoginToken(r, r.Header.Get(csrfHeader)) {
		writeError(w, http.StatusForbidden, "csrf", "missing or wrong "+csrfHeader+" header: GET /api/session first")
		return
	}
	if !c.limitLogin(w, r) {
		writeError(w, http.StatusTooManyRequests, "rate_limited", "too many login attempts; wait and try again")
		return
	}
	var body struct {
		Name     string `json:"name"`
		Password string `json:"password"`
	}
	if !decodeJSON(w, r, &body) {
		return
	}
	s, err := c.login(w, r, body.Name, body.Password)
	switch {
	case errors.Is(err, errBadPassword):
		writeError(w, http.StatusUnauthorized, "unauthenticated", "wrong name or password")
	case err != nil:
		c.apiError(w, err)
	default:
		writeJSON(w, http.StatusOK, sessionInfo{Authenticated: true, Operator: s.Operator, Role: s.Role, CSRF: s.CSRF, Expires: s.Expires})
	}
}

func (c *Console) apiLogout(w http.ResponseWriter, r *http.Request) {
	if err := c.logout(w, r); err != nil {
		c.apiError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// me is GET /api/me's answer: who the caller is.
type me struct {
	Name string `json:"name"`
	Role Role   `json:"role"`
	// Via is "session" or "token {id}".
	Via string `json:"via"`
}

func (c *Console) apiMe(w http.ResponseWriter, r *http.Request) {
	p := principalFrom(r.Context())
	writeJSON(w, http.StatusOK, me{Name: p.Name, Role: p.Role, Via: p.via()})
}

type devicesPage struct {
	Devices []Device `json:"devices"`
	// Next is the "after" of the next page; empty at the end.
	Next string `json:"next,omitempty"`
}

func (c *Console) apiDevices(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := parseLimit(q, MaxPageSize)
	if err != nil {
		c.apiError(w, err)
		return
	}
	devs, next, err := c.listDevices(r.Context(), q.Get("after"), limit)
	if err != nil {
		c.apiError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, devicesPage{Devices: devs, Next: next})
}

func (c *Console) device(r *http.Request) (*Device, error) {
	id := r.PathValue("id")
	if err := validateDevice(id); err != nil {
		return nil, err
	}
	return c.store.Device(r.Context(), id)
}

func (c *Console) apiDevice(w http.ResponseWriter, r *http.Request) {
	d, err := c.device(r)
	if err != nil {
		c.apiError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (c *Console) apiRevoke(revoked bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := c.revokeBy(r, r.PathValue("id"), revoked); err != nil {
			c.apiError(w, err)
			return
		}
		c.apiDevice(w, r)
	}
}

// apiTimeline: GET /api/timeline with device (optional: the fleet), step (hour, day),
// from and to.
func (c *Console) apiTimeline(w http.ResponseWriter, r *http.Request) {
	device, step, from, to, err := timelineQuery(r.URL.Query())
	if err != nil {
		c.apiError(w, err)
		return
	}
	t, err := c.Timeline(r.Context(), device, step, from, to)
	if err != nil {
		c.apiError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

func (c *Console) apiStorage(w http.ResponseWriter, r *http.Request) {
	t, err := c.store.Totals(r.Context())
	if err != nil {
		c.apiError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

type clipsPage struct {
	Clips []Clip `json:"clips"`
	// Next is the "after" of the next page; empty at the end.
	Next string `json:"next,omitempty"`
}

func (c *Console) apiClips(w http.ResponseWriter, r *http.Request) {
	q, err := clipQuery(r.URL.Query())
	if err != nil {
		c.apiError(w, err)
		return
	}
	clips, next, err := c.listClips(r.Context(), q)
	if err != nil {
		c.apiError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, clipsPage{Clips: clips, Next: next})
}

// clipWithURL is GET /api/clip's answer: the clip and presigned GET URLs to play it, to
// download it (as an attachment) and for its poster, valid until URLExpires.
type clipWithURL struct {
	Clip        *Clip     `json:"clip"`
	URL         string    `json:"url"`
	DownloadURL string    `json:"downloadUrl"`
	PosterURL   string    `json:"posterUrl,omitempty"`
	URLExpires  time.Time `json:"urlExpires"`
}

func (c *Console) clipOf(r *http.Request) (*Clip, error) {
	return c.clipOfKey(r, r.URL.Query().Get("key"))
}

func (c *Console) apiClip(w http.ResponseWriter, r *http.Request) {
	clip, err := c.clipOf(r)
	if err != nil {
		c.apiError(w, err)
		return
	}
	p, err := c.issuePlayback(r, clip)
	if err != nil {
		c.apiError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, clipWithURL{Clip: clip, URL: p.URL, DownloadURL: p.Download, PosterURL: p.Poster, URLExpires: p.Expires})
}

func (c *Console) apiDeleteClip(w http.ResponseWriter, r *http.Request) {
	if _, err := c.deleteClipBy(r, r.URL.Query().Get("key")); err != nil {
		c.apiError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (c *Console) apiRetention(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Prefix string `json:"prefix"`
		Days   int    `json:"days"`
	}
	if !decodeJSON(w, r, &body) {
		return
	}
	res, err := c.retentionBy(r, body.Prefix, body.Days)
	if err != nil {
		c.apiError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

type problemsPage struct {
	Problems []Problem `json:"problems"`
	// Next is the "after" of the next page; empty at the end.
	Next string `json:"next,omitempty"`
}

// apiProblems lists failed and rejected events, newest first: GET /api/problems with
// device (optional), after and limit.
func (c *Console) apiProblems(w http.ResponseWriter, r *http.Request) {
	q, err := problemQuery(r.URL.Query(), DefaultPageSize)
	if err != nil {
		c.apiError(w, err)
		return
	}
	ps, next, err := c.listProblems(r.Context(), q)
	if err != nil {
		c.apiError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, problemsPage{Problems: ps, Next: next})
}

func (c *Console) apiStats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, c.Stats())
}
