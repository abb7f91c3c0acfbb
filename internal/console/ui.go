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
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/clipgate/clipgate/internal/media"
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

var pageNames = []string{"login", "devices", "clips", "problems", "player", "retention", "operators", "tokens", "audit", "error"}

func loadPages() (*pages, error) {
	funcs := template.FuncMap{
		"when":      formatTime,
		"size":      formatSize,
		"inputTime": func(t time.Time) string { return inputTime(t) },
		"problemRows": func(ps []Problem, showDevice bool) problemRows {
			return problemRows{Problems: ps, ShowDevice: showDevice}
		},
		"clipRows": func(cs []Clip, showDevice bool, posters map[string]string) clipRows {
			return clipRows{Clips: cs, ShowDevice: showDevice, Posters: posters}
		},
		"dur":     func(ms int64) string { return formatDuration(time.Duration(ms) * time.Millisecond) },
		"picture": formatPicture,
		"base":    path.Base,
		"gapText": formatGap,
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

// formatPicture writes a clip's picture: "1920×1080 H.264", or "—" when unknown.
func formatPicture(c Clip) string {
	out := ""
	if c.Width > 0 && c.Height > 0 {
		out = strconv.Itoa(c.Width) + "×" + strconv.Itoa(c.Height)
	}
	if name := codecNames[c.Codec]; name != "" {
		out = strings.TrimSpace(out + " " + name)
	} else if c.Codec != "" {
		out = strings.TrimSpace(out + " " + c.Codec)
	}
	if out == "" {
		return "—"
	}
	return out
}

var codecNames = map[string]string{
	media.H264: "H.264", media.H265: "H.265", media.AV1: "AV1", media.VP8: "VP8", media.VP9: "VP9",
	media.MPEG4: "MPEG-4", media.MPEG2: "MPEG-2",
}

// formatGap writes a gap: "from Mar 1 02:00 to 05:00 (3 hours)", or for a timeline per
// day "from Mar 1 through Mar 2 (2 days)".
func formatGap(g Gap) string {
	n := strconv.Itoa(g.Slots)
	if g.Slots > 0 && g.To.Sub(g.From)/time.Duration(g.Slots) >= 24*time.Hour {
		if g.Slots == 1 {
			return "on " + g.From.Format("Jan 2") + " (1 day)"
		}
		return "from " + g.From.Format("Jan 2") + " through " + g.To.Add(-24*time.Hour).Format("Jan 2") + " (" + n + " days)"
	}
	to := g.To.Format("15:04")
	if g.To.Truncate(24*time.Hour) != g.From.Truncate(24*time.Hour) {
		to = g.To.Format("Jan 2 15:04")
	}
	unit := " hours"
	if g.Slots == 1 {
		unit = " hour"
	}
	return "from " + g.From.Format("Jan 2 15:04") + " to " + to + " (" + n + unit + ")"
}

// view is what every page template gets.
type view struct {
	Title string
	// CSRF is the session's token (for the forms); empty when logged out.
	CSRF string
	// Operator and Role are who is logged in; Admin says whether the admin's controls
	// are shown.
	Operator string
	Role     Role
	Admin    bool
	Flash    string
	Error    string
	Data     any
}

// flashes are the messages a redirect can ask for (?done=...), fixed so that a link
// cannot put words in the console's mouth.
var flashes = map[string]string{
	"deleted":          "Clip deleted.",
	"rule":             "Retention rule saved.",
	"rule-removed":     "Retention rule removed.",
	"operator":         "Operator saved.",
	"operator-removed": "Operator removed; their sessions have ended.",
	"token-revoked":    "Token revoked.",
	"revoked":          "Device revoked: the broker disconnects it and the token workers refuse it within seconds.",
	"restored":         "Device restored: it may connect and get credentials again.",
	"quota":            "Upload quota saved and sent to the token workers.",
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, page string, v view) {
	if p := principalFrom(r.Context()); p != nil && p.Session != nil {
		v.CSRF, v.Operator, v.Role, v.Admin = p.Session.CSRF, p.Name, p.Role, p.Role == RoleAdmin
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
	Token, Next, Name string
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
	name := strings.TrimSpace(r.PostForm.Get("name"))
	again := func(status int, msg string) {
		c.render(w, r, status, "login", view{Title: "Log in", Error: msg, Data: loginData{Token: c.loginToken(w, r), Next: next, Name: name}})
	}
	if !c.checkLoginToken(r, r.PostForm.Get(csrfField)) {
		again(http.StatusForbidden, "The login form expired or did not come from this console: try again.")
		return
	}
	if !c.limitLogin(w, r) {
		again(http.StatusTooManyRequests, "Too many login attempts: wait a minute and try again.")
		return
	}
	_, err := c.login(w, r, name, r.PostForm.Get("password"))
	switch {
	case errors.Is(err, errBadPassword):
		again(http.StatusUnauthorized, "Wrong name or password.")
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
	Totals    Totals
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
	totals, err := c.store.Totals(r.Context())
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	d := devicesData{Totals: totals, Devices: devs, Prefix: c.cfg.Prefix, Ingest: c.consumer != nil, Stats: c.Stats(), Generated: c.cfg.Now()}
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
	// Posters are the signed URLs of the clips' posters, by key.
	Posters  map[string]string
	From, To time.Time
	Status   ClipStatus
	Statuses []option
	// Charts are the device's timelines (device page only).
	Charts []chart
	Next   string // URL of the next page
	First  string // URL of the first page, when not on it
	// Problems are the device's latest failed and rejected events (device page only);
	// MoreProblems says there are more than shown.
	Problems     []Problem
	MoreProblems bool
	// Quota is the device's upload quota and usage (device page only).
	Quota *QuotaInfo
}

// option is a <select>'s option.
type option struct {
	Value, Label string
	Selected     bool
}

var statusLabels = map[string]string{
	"": "any", string(ClipVerified): "verified", string(ClipUnverified): "unverified (rejected by the check)",
	string(ClipReconciled): "found by the reconciler", string(ClipWithPoster): "with a poster",
	string(ClipMediaUnknown): "length unknown",
}

func statusOptions(cur ClipStatus) []option {
	var out []option
	for _, s := range ClipStatuses() {
		out = append(out, option{Value: s, Label: statusLabels[s], Selected: s == string(cur)})
	}
	return out
}

// clipRows is the argument of the "clipTable" template.
type clipRows struct {
	Clips      []Clip
	ShowDevice bool
	Posters    map[string]string
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
	data := clipsData{Device: d, DeviceID: q.Device, Clips: clips, From: q.From, To: q.To, Status: q.Status,
		Statuses: statusOptions(q.Status), Posters: map[string]string{}}
	for i := range clips {
		if u := c.posterURL(&clips[i]); u != "" {
			data.Posters[clips[i].Key] = u
		}
	}
	if d != nil {
		for _, step := range []string{StepHour, StepDay} {
			t, err := c.Timeline(r.Context(), d.ID, step, time.Time{}, time.Time{})
			if err != nil {
				c.pageError(w, r, err)
				return
			}
			title := "Last " + strconv.Itoa(DefaultHours) + " hours, per hour"
			if step == StepDay {
				title = "Last " + strconv.Itoa(DefaultDays) + " days, per day"
			}
			data.Charts = append(data.Charts, newChart(t, title, path))
		}
	}
	if d != nil {
		if data.Quota, err = c.DeviceQuota(r.Context(), d.ID); err != nil {
			c.pageError(w, r, err)
			return
		}
	}
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
		if q.Status != "" {
			v.Set("status", string(q.Status))
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
	Clip *Clip
	*playback
	// Stream is the console's URL of an HLS playlist's rewritten copy ("" for a clip).
	Stream string
}

func (c *Console) playerPage(w http.ResponseWriter, r *http.Request) {
	clip, err := c.clipOf(r)
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	p, err := c.issuePlayback(r, clip)
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	data := playerData{Clip: clip, playback: p}
	if IsPlaylist(clip) {
		data.Stream = "/hls/playlist?key=" + url.QueryEscape(clip.Key)
	}
	c.render(w, r, http.StatusOK, "player", view{Title: "Clip", Data: data})
}

func (c *Console) deleteForm(w http.ResponseWriter, r *http.Request) {
	clip, err := c.deleteClipBy(r, r.PostFormValue("key"))
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
		if err := c.revokeBy(r, id, revoked); err != nil {
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
	Prefix    string
	Days      int
	Result    *RetentionResult
	Rules     []RetentionRule
	Runs      []RuleRun
	Every     string
	Lifecycle bool
}

// renderRetention renders the retention page with the rules, status and message.
func (c *Console) renderRetention(w http.ResponseWriter, r *http.Request, status int, msg string, data retentionData) {
	rules, err := c.store.RetentionRules(r.Context())
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	p := c.rulesPage(rules)
	data.Rules, data.Every, data.Lifecycle = p.Rules, p.Every, p.Lifecycle
	if data.Prefix == "" {
		data.Prefix = c.cfg.Prefix
	}
	if data.Days == 0 {
		data.Days = 30
	}
	c.render(w, r, status, "retention", view{Title: "Retention", Error: msg, Data: data})
}

// formStatus is the status and message of a form's error.
func (c *Console) formStatus(err error) (int, string) {
	status, _, msg := c.statusOf(err)
	if status == http.StatusNotFound {
		msg = "Not found (it may have been removed meanwhile)."
	}
	return status, msg
}

func (c *Console) retentionPage(w http.ResponseWriter, r *http.Request) {
	c.renderRetention(w, r, http.StatusOK, "", retentionData{})
}

// formDays reads a form's "days" field.
func formDays(r *http.Request) (int, error) {
	days, err := strconv.Atoi(strings.TrimSpace(r.PostFormValue("days")))
	if err != nil {
		return 0, invalidf("days: want a whole number")
	}
	return days, nil
}

func (c *Console) retentionForm(w http.ResponseWriter, r *http.Request) {
	prefix := r.PostFormValue("prefix")
	data := retentionData{Prefix: prefix}
	days, err := formDays(r)
	if err == nil {
		data.Days = days
		var res RetentionResult
		if res, err = c.retentionBy(r, prefix, days); err == nil {
			data.Result = &res
		}
	}
	if err != nil {
		status, msg := c.formStatus(err)
		c.renderRetention(w, r, status, msg, data)
		return
	}
	c.renderRetention(w, r, http.StatusOK, "", data)
}

func (c *Console) retentionRuleForm(w http.ResponseWriter, r *http.Request) {
	prefix := r.PostFormValue("prefix")
	days, err := formDays(r)
	if err == nil {
		_, err = c.putRuleBy(r, prefix, days)
	}
	if err != nil {
		status, msg := c.formStatus(err)
		c.renderRetention(w, r, status, msg, retentionData{Prefix: prefix, Days: days})
		return
	}
	http.Redirect(w, r, "/retention?done=rule", http.StatusSeeOther)
}

func (c *Console) retentionRuleDeleteForm(w http.ResponseWriter, r *http.Request) {
	if err := c.deleteRuleBy(r, r.PostFormValue("prefix")); err != nil {
		status, msg := c.formStatus(err)
		c.renderRetention(w, r, status, msg, retentionData{})
		return
	}
	http.Redirect(w, r, "/retention?done=rule-removed", http.StatusSeeOther)
}

func (c *Console) retentionRunForm(w http.ResponseWriter, r *http.Request) {
	runs, err := c.runRulesBy(r)
	msg, status := "", http.StatusOK
	if err != nil {
		status, msg = c.formStatus(err)
	}
	c.renderRetention(w, r, status, msg, retentionData{Runs: runs})
}

type operatorsData struct {
	Operators []Operator
}

func (c *Console) renderOperators(w http.ResponseWriter, r *http.Request, status int, msg string) {
	ops, err := c.operators(r.Context())
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	c.render(w, r, status, "operators", view{Title: "Operators", Error: msg, Data: operatorsData{Operators: ops}})
}

func (c *Console) operatorsPage(w http.ResponseWriter, r *http.Request) {
	c.renderOperators(w, r, http.StatusOK, "")
}

func (c *Console) operatorForm(w http.ResponseWriter, r *http.Request) {
	_, err := c.putOperatorBy(r, strings.TrimSpace(r.PostFormValue("name")), Role(r.PostFormValue("role")), r.PostFormValue("password"))
	if err != nil {
		status, msg := c.formStatus(err)
		c.renderOperators(w, r, status, msg)
		return
	}
	http.Redirect(w, r, "/operators?done=operator", http.StatusSeeOther)
}

func (c *Console) operatorDeleteForm(w http.ResponseWriter, r *http.Request) {
	if err := c.deleteOperatorBy(r, r.PostFormValue("name")); err != nil {
		status, msg := c.formStatus(err)
		c.renderOperators(w, r, status, msg)
		return
	}
	http.Redirect(w, r, "/operators?done=operator-removed", http.StatusSeeOther)
}

type tokensData struct {
	Tokens []APIToken
	// New is a token just made (shown once), NewInfo its record.
	New     string
	NewInfo *APIToken
}

func (c *Console) renderTokens(w http.ResponseWriter, r *http.Request, status int, msg string, data tokensData) {
	ts, err := c.store.Tokens(r.Context())
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	data.Tokens = ts
	c.render(w, r, status, "tokens", view{Title: "API tokens", Error: msg, Data: data})
}

func (c *Console) tokensPage(w http.ResponseWriter, r *http.Request) {
	c.renderTokens(w, r, http.StatusOK, "", tokensData{})
}

func (c *Console) tokenForm(w http.ResponseWriter, r *http.Request) {
	var ttl time.Duration
	var err error
	if d := strings.TrimSpace(r.PostFormValue("days")); d != "" {
		n, perr := strconv.Atoi(d)
		if perr != nil || n < 1 {
			err = invalidf("days: want a whole number of days, or nothing")
		}
		ttl = time.Duration(n) * 24 * time.Hour
	}
	var tok string
	var t *APIToken
	if err == nil {
		tok, t, err = c.createTokenBy(r, r.PostFormValue("name"), Role(r.PostFormValue("role")), ttl)
	}
	if err != nil {
		status, msg := c.formStatus(err)
		c.renderTokens(w, r, status, msg, tokensData{})
		return
	}
	// The token is shown in this answer (not a redirect) so that it is never in a URL.
	c.renderTokens(w, r, http.StatusOK, "", tokensData{New: tok, NewInfo: t})
}

func (c *Console) tokenRevokeForm(w http.ResponseWriter, r *http.Request) {
	if err := c.revokeTokenBy(r, r.PostFormValue("id")); err != nil {
		status, msg := c.formStatus(err)
		c.renderTokens(w, r, status, msg, tokensData{})
		return
	}
	http.Redirect(w, r, "/tokens?done=token-revoked", http.StatusSeeOther)
}

type auditData struct {
	Entries       []AuditEntry
	Actions       []string
	Action, Actor string
	Next, First   string
}

func (c *Console) auditPage(w http.ResponseWriter, r *http.Request) {
	q, err := auditQuery(r)
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	es, next, err := c.listAudit(r, q)
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	data := auditData{Entries: es, Actions: AuditActions(), Action: q.Action, Actor: q.Actor}
	link := func(after string) string {
		v := url.Values{}
		if q.Action != "" {
			v.Set("action", q.Action)
		}
		if q.Actor != "" {
			v.Set("actor", q.Actor)
		}
		if after != "" {
			v.Set("after", after)
		}
		if len(v) == 0 {
			return "/audit"
		}
		return "/audit?" + v.Encode()
	}
	if next != "" {
		data.Next = link(next)
	}
	if q.After != 0 {
		data.First = link("")
	}
	c.render(w, r, http.StatusOK, "audit", view{Title: "Audit log", Data: data})
}
