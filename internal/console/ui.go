package console

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

//go:embed web
var webFiles embed.FS

// staticHandler serves the embedded CSS and JavaScript (no build step).
func staticHandler() http.Handler {
	sub, err := fs.Sub(webFiles, "web")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	fileServer := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") { // no directory listings
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=3600")
		fileServer.ServeHTTP(w, r)
	})
}

// pages are the parsed templates, each the layout plus one page's "content".
type pages struct {
	t map[string]*template.Template
}

var pageNames = []string{"login", "devices", "clips", "problems", "player", "retention", "error"}

func loadPages() (*pages, error) {
	funcs := template.FuncMap{
		"when":      formatTime,
		"size":      formatSize,
		"inputTime": func(t time.Time) string { return inputTime(t) },
		"problemRows": func(ps []Problem, showDevice bool) problemRows {
			return problemRows{Problems: ps, ShowDevice: showDevice}
		},
	}
	base, err := template.New("layout").Funcs(funcs).ParseFS(webFiles, "web/templates/layout.html", "web/templates/partials.html")
	if err != nil {
		return nil, err
	}
	p := &pages{t: map[string]*template.Template{}}
	for _, name := range pageNames {
		t, err := template.Must(base.Clone()).ParseFS(webFiles, "web/templates/"+name+".html")
		if err != nil {
			return nil, err
		}
		p.t[name] = t
	}
	return p, nil
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05") + " UTC"
}

func inputTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04")
}

func formatSize(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// view is what every page template gets.
type view struct {
	Title string
	// CSRF is the session's token (for the forms); empty when logged out.
	CSRF  string
	Flash string
	Error string
	Data  any
}

// flashes are the messages a redirect can ask for (?done=...), fixed so that a link
// cannot put words in the console's mouth.
var flashes = map[string]string{
	"deleted":  "Clip deleted.",
	"revoked":  "Device revoked: the broker disconnects it and the token workers refuse it within seconds.",
	"restored": "Device restored: it may connect and get credentials again.",
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, page string, v view) {
	if s := sessionFrom(r.Context()); s != nil {
		v.CSRF = s.CSRF
	}
	if v.Flash == "" {
		v.Flash = flashes[r.URL.Query().Get("done")]
	}
	var b bytes.Buffer
	if err := c.pages.t[page].ExecuteTemplate(&b, "layout", v); err != nil {
		c.log.Error().Err(err).Str("page", page).Msg("rendering")
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

func (c *Console) renderError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	c.render(w, r, status, "error", view{Title: http.StatusText(status), Error: msg})
}

func (c *Console) pageError(w http.ResponseWriter, r *http.Request, err error) {
	status, _, msg := c.statusOf(err)
	if status == http.StatusNotFound {
		msg = "Not found."
	}
	c.renderError(w, r, status, msg)
}

// safeNext returns a local path to go to after login ("/" for anything else), so that
// the login form cannot be used to send the operator elsewhere.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return "/"
	}
	return next
}

type loginData struct {
	Token, Next string
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	if _, err := c.session(r); err == nil {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	c.render(w, r, http.StatusOK, "login", view{Title: "Log in",
		Data: loginData{Token: c.loginToken(w, r), Next: safeNext(r.URL.Query().Get("next"))}})
}

func (c *Console) loginForm(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		c.renderError(w, r, http.StatusBadRequest, "Bad form.")
		return
	}
	next := safeNext(r.PostForm.Get("next"))
	again := func(status int, msg string) {
		c.render(w, r, status, "login", view{Title: "Log in", Error: msg, Data: loginData{Token: c.loginToken(w, r), Next: next}})
	}
	if !c.checkLoginToken(r, r.PostForm.Get(csrfField)) {
		again(http.StatusForbidden, "The login form expired or did not come from this console: try again.")
		return
	}
	if !c.limitLogin(w, r) {
		again(http.StatusTooManyRequests, "Too many login attempts: wait a minute and try again.")
		return
	}
	_, err := c.login(w, r, r.PostForm.Get("password"))
	switch {
	case errors.Is(err, errBadPassword):
		again(http.StatusUnauthorized, "Wrong password.")
	case err != nil:
		c.pageError(w, r, err)
	default:
		http.Redirect(w, r, next, http.StatusSeeOther)
	}
}

func (c *Console) logoutForm(w http.ResponseWriter, r *http.Request) {
	if err := c.logout(w, r); err != nil {
		c.pageError(w, r, err)
		return
	}
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

type devicesData struct {
	Devices   []Device
	Next      string // URL of the next page, "" at the end
	Prefix    string
	Online    int
	Revoked   int
	Ingest    bool
	Stats     Stats
	Generated time.Time
}

func (c *Console) devicesPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := parseLimit(q, 100)
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	devs, next, err := c.listDevices(r.Context(), q.Get("after"), limit)
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	d := devicesData{Devices: devs, Prefix: c.cfg.Prefix, Ingest: c.consumer != nil, Stats: c.Stats(), Generated: c.cfg.Now()}
	if next != "" {
		d.Next = "/?" + url.Values{"after": {next}, "limit": {strconv.Itoa(limit)}}.Encode()
	}
	for _, dv := range devs {
		if dv.Online {
			d.Online++
		}
		if dv.Revoked {
			d.Revoked++
		}
	}
	c.render(w, r, http.StatusOK, "devices", view{Title: "Devices", Data: d})
}

type clipsData struct {
	Device   *Device // nil on the fleet-wide list
	DeviceID string
	Clips    []Clip
	From, To time.Time
	Next     string // URL of the next page
	First    string // URL of the first page, when not on it
	// Problems are the device's latest failed and rejected events (device page only);
	// MoreProblems says there are more than shown.
	Problems     []Problem
	MoreProblems bool
}

// problemRows is the argument of the "problemTable" template.
type problemRows struct {
	Problems   []Problem
	ShowDevice bool
}

// deviceProblems is how many of a device's failed and rejected events its page shows.
const deviceProblems = 10

func (c *Console) devicePage(w http.ResponseWriter, r *http.Request) {
	d, err := c.device(r)
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	c.clipList(w, r, d, "/devices/"+url.PathEscape(d.ID))
}

// findDevice answers the "Go to device" form: /devices/?id=ID -> /devices/ID.
func (c *Console) findDevice(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimSpace(r.URL.Query().Get("id"))
	if err := validateDevice(id); err != nil {
		c.pageError(w, r, err)
		return
	}
	http.Redirect(w, r, "/devices/"+url.PathEscape(id), http.StatusSeeOther)
}

func (c *Console) clipsPage(w http.ResponseWriter, r *http.Request) {
	c.clipList(w, r, nil, "/clips")
}

func (c *Console) clipList(w http.ResponseWriter, r *http.Request, d *Device, path string) {
	params := r.URL.Query()
	if d != nil {
		params.Set("device", d.ID)
	}
	q, err := clipQuery(params)
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	clips, next, err := c.listClips(r.Context(), q)
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	data := clipsData{Device: d, DeviceID: q.Device, Clips: clips, From: q.From, To: q.To}
	if d != nil && d.Failed+d.Rejected > 0 {
		ps, more, err := c.listProblems(r.Context(), ProblemQuery{Device: d.ID, Limit: deviceProblems})
		if err != nil {
			c.pageError(w, r, err)
			return
		}
		data.Problems, data.MoreProblems = ps, more != ""
	}
	link := func(after string) string {
		v := url.Values{}
		if d == nil && q.Device != "" {
			v.Set("device", q.Device)
		}
		if !q.From.IsZero() {
			v.Set("from", inputTime(q.From))
		}
		if !q.To.IsZero() {
			v.Set("to", inputTime(q.To))
		}
		if after != "" {
			v.Set("after", after)
		}
		if q.Limit != DefaultPageSize {
			v.Set("limit", strconv.Itoa(q.Limit))
		}
		if len(v) == 0 {
			return path
		}
		return path + "?" + v.Encode()
	}
	if next != "" {
		data.Next = link(next)
	}
	if q.After != nil {
		data.First = link("")
	}
	title := "Clips"
	if d != nil {
		title = "Device " + d.ID
	}
	c.render(w, r, http.StatusOK, "clips", view{Title: title, Data: data})
}

type problemsData struct {
	DeviceID string
	Problems []Problem
	Next     string // URL of the next page
	First    string // URL of the first page, when not on it
	Keep     string // how long they are kept
}

func (c *Console) problemsPage(w http.ResponseWriter, r *http.Request) {
	q, err := problemQuery(r.URL.Query(), DefaultPageSize)
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	ps, next, err := c.listProblems(r.Context(), q)
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	data := problemsData{DeviceID: q.Device, Problems: ps, Keep: formatDays(c.cfg.SeenTTL)}
	link := func(after string) string {
		v := url.Values{}
		if q.Device != "" {
			v.Set("device", q.Device)
		}
		if after != "" {
			v.Set("after", after)
		}
		if q.Limit != DefaultPageSize {
			v.Set("limit", strconv.Itoa(q.Limit))
		}
		if len(v) == 0 {
			return "/problems"
		}
		return "/problems?" + v.Encode()
	}
	if next != "" {
		data.Next = link(next)
	}
	if q.After != 0 {
		data.First = link("")
	}
	c.render(w, r, http.StatusOK, "problems", view{Title: "Failed and rejected events", Data: data})
}

// formatDays writes a duration in days when it is whole days ("7 days").
func formatDays(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d == day:
		return "1 day"
	case d%day == 0:
		return strconv.FormatInt(int64(d/day), 10) + " days"
	}
	return d.String()
}

type playerData struct {
	Clip     *Clip
	URL      string // to play
	Download string // to download (as an attachment)
	Expires  time.Time
}

func (c *Console) playerPage(w http.ResponseWriter, r *http.Request) {
	clip, err := c.clipOf(r)
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	u, exp, err := c.SignedURL(clip.Key)
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	dl, _, err := c.DownloadURL(clip.Key)
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "player", view{Title: "Clip", Data: playerData{Clip: clip, URL: u, Download: dl, Expires: exp}})
}

func (c *Console) deleteForm(w http.ResponseWriter, r *http.Request) {
	key := r.PostFormValue("key")
	clip, err := c.clipOfKey(r, key)
	if err == nil {
		err = c.DeleteClip(r.Context(), key)
	}
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	http.Redirect(w, r, "/devices/"+url.PathEscape(clip.Device)+"?done=deleted", http.StatusSeeOther)
}

func (c *Console) clipOfKey(r *http.Request, key string) (*Clip, error) {
	if err := c.checkKey(key); err != nil {
		return nil, err
	}
	return c.store.Clip(r.Context(), key)
}

func (c *Console) revokeForm(revoked bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		err := validateDevice(id)
		if err == nil {
			err = c.SetRevoked(r.Context(), id, revoked)
		}
		if err != nil {
			c.pageError(w, r, err)
			return
		}
		done := "restored"
		if revoked {
			done = "revoked"
		}
		http.Redirect(w, r, "/devices/"+url.PathEscape(id)+"?done="+done, http.StatusSeeOther)
	}
}

type retentionData struct {
	Prefix string
	Days   int
	Result *RetentionResult
}

func (c *Console) retentionPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "retention", view{Title: "Retention", Data: retentionData{Prefix: c.cfg.Prefix, Days: 30}})
}

func (c *Console) retentionForm(w http.ResponseWriter, r *http.Request) {
	prefix := r.PostFormValue("prefix")
	data := retentionData{Prefix: prefix}
	days, err := strconv.Atoi(strings.TrimSpace(r.PostFormValue("days")))
	if err != nil {
		err = invalidf("days: want a whole number")
	} else {
		data.Days = days
		var res RetentionResult
		if res, err = c.Retention(r.Context(), prefix, days); err == nil {
			data.Result = &res
		}
	}
	if err != nil {
		status, _, msg := c.statusOf(err)
		c.render(w, r, status, "retention", view{Title: "Retention", Error: msg, Data: data})
		return
	}
	c.render(w, r, http.StatusOK, "retention", view{Title: "Retention", Data: data})
}
