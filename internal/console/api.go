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

// sessionInfo is GET /api/session's answer: whether the caller is logged in, and the CSRF
// token to send with its next state-changing request (the login token when logged out).
type sessionInfo struct {
	Authenticated bool      `json:"authenticated"`
	CSRF          string    `json:"csrf"`
	Expires       time.Time `json:"expires,omitzero"`
}

func (c *Console) apiSession(w http.ResponseWriter, r *http.Request) {
	s, err := c.session(r)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, sessionInfo{Authenticated: true, CSRF: s.CSRF, Expires: s.Expires})
	case errors.Is(err, ErrNotFound):
		writeJSON(w, http.StatusOK, sessionInfo{CSRF: c.loginToken(w, r)})
	default:
		c.apiError(w, err)
	}
}

// apiLogin: POST {"password": ...} with the login CSRF token of GET /api/session in
// X-CSRF-Token (and its cookie). It sets the session cookie and returns the session's
// CSRF token.
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
		Password string `json:"password"`
	}
	if !decodeJSON(w, r, &body) {
		return
	}
	csrf, err := c.login(w, r, body.Password)
	switch {
	case errors.Is(err, errBadPassword):
		writeError(w, http.StatusUnauthorized, "unauthenticated", "wrong password")
	case err != nil:
		c.apiError(w, err)
	default:
		writeJSON(w, http.StatusOK, sessionInfo{Authenticated: true, CSRF: csrf})
	}
}

func (c *Console) apiLogout(w http.ResponseWriter, r *http.Request) {
	if err := c.logout(w, r); err != nil {
		c.apiError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
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
		id := r.PathValue("id")
		if err := validateDevice(id); err != nil {
			c.apiError(w, err)
			return
		}
		if err := c.SetRevoked(r.Context(), id, revoked); err != nil {
			c.apiError(w, err)
			return
		}
		c.apiDevice(w, r)
	}
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

// clipWithURL is GET /api/clip's answer: the clip and presigned GET URLs to play it and
// to download it (as an attachment), valid until URLExpires.
type clipWithURL struct {
	Clip        *Clip     `json:"clip"`
	URL         string    `json:"url"`
	DownloadURL string    `json:"downloadUrl"`
	URLExpires  time.Time `json:"urlExpires"`
}

func (c *Console) clipOf(r *http.Request) (*Clip, error) {
	key := r.URL.Query().Get("key")
	if err := c.checkKey(key); err != nil {
		return nil, err
	}
	return c.store.Clip(r.Context(), key)
}

func (c *Console) apiClip(w http.ResponseWriter, r *http.Request) {
	clip, err := c.clipOf(r)
	if err != nil {
		c.apiError(w, err)
		return
	}
	u, exp, err := c.SignedURL(clip.Key)
	if err != nil {
		c.apiError(w, err)
		return
	}
	dl, _, err := c.DownloadURL(clip.Key)
	if err != nil {
		c.apiError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, clipWithURL{Clip: clip, URL: u, DownloadURL: dl, URLExpires: exp})
}

func (c *Console) apiDeleteClip(w http.ResponseWriter, r *http.Request) {
	if err := c.DeleteClip(r.Context(), r.URL.Query().Get("key")); err != nil {
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
	res, err := c.Retention(r.Context(), body.Prefix, body.Days)
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
