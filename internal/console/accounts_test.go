package console

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// loginAs logs a new client in as name with password.
func (e *env) loginAs(name, password string) *api {
	e.t.Helper()
	a := e.api()
	var s sessionInfo
	a.json(http.MethodGet, "/api/session", nil, http.StatusOK, &s)
	a.csrf = s.CSRF
	a.json(http.MethodPost, "/api/login", map[string]string{"name": name, "password": password}, http.StatusOK, &s)
	a.csrf = s.CSRF
	return a
}

// withToken returns a client that sends tok as a bearer token and no cookies.
func (e *env) withToken(tok string) *api {
	a := e.api()
	a.hc.Jar = nil
	a.bearer = tok
	return a
}

// auditActions returns the actions of the audit log, newest first, filtered by q.
func auditActions(t *testing.T, a *api, q string) []AuditEntry {
	t.Helper()
	var p auditPage
	a.json(http.MethodGet, "/api/audit?limit=500&"+q, nil, http.StatusOK, &p)
	return p.Entries
}

func hasAudit(es []AuditEntry, actor, action, target string) bool {
	for _, e := range es {
		if e.Actor == actor && e.Action == action && (target == "" || e.Target == target) {
			return true
		}
	}
	return false
}

// TestRoles: an admin adds a viewer; the viewer watches (devices, clips, playback) but
// cannot delete, revoke, set retention, manage operators or tokens, or read the audit
// log, in the API (403) and in the UI (403, and no admin controls on the pages); the
// audit log records the logins, the playback URLs and the admin's actions.
func TestRoles(t *testing.T) {
	for _, dialect := range []Dialect{SQLite, Postgres} {
		t.Run(string(dialect), func(t *testing.T) {
			t.Parallel()
			testRoles(t, dialect)
		})
	}
}

func testRoles(t *testing.T, dialect Dialect) {
	e := newEnv(t, envOptions{dialect: dialect})
	ev := e.upload("cam-01", "a.mp4", clipData(1000, 1), time.Now().Add(-time.Hour))
	e.waitIndexed(ev.Key)
	admin := e.api()
	admin.login()
	var op Operator
	admin.json(http.MethodPut, "/api/operators/alice", map[string]string{"role": "viewer", "password": "alice's long password"}, http.StatusOK, &op)
	if op.Name != "alice" || op.Role != RoleViewer {
		t.Fatalf("operator %+v", op)
	}
	// Wrong passwords and unknown names fail alike.
	a := e.api()
	var s sessionInfo
	a.json(http.MethodGet, "/api/session", nil, http.StatusOK, &s)
	a.csrf = s.CSRF
	for _, body := range []map[string]string{{"name": "alice", "password": "wrong password"}, {"name": "nobody", "password": "alice's long password"}, {"name": "../x", "password": "x"}} {
		status, out := a.do(http.MethodPost, "/api/login", body)
		if status != http.StatusUnauthorized || errorCode(t, out) != "unauthenticated" {
			t.Fatalf("login %v: %d %s", body, status, out)
		}
	}
	viewer := e.loginAs("alice", "alice's long password")
	var m me
	viewer.json(http.MethodGet, "/api/me", nil, http.StatusOK, &m)
	if m.Name != "alice" || m.Role != RoleViewer || m.Via != "session" {
		t.Fatalf("me: %+v", m)
	}
	// What a viewer may do.
	for _, path := range []string{"/api/devices", "/api/devices/cam-01", "/api/clips", "/api/clip?key=" + url.QueryEscape(ev.Key),
		"/api/problems", "/api/stats", "/api/storage", "/api/timeline?device=cam-01"} {
		if status, out := viewer.do(http.MethodGet, path, nil); status != http.StatusOK {
			t.Errorf("viewer GET %s: %d %s", path, status, out)
		}
	}
	// What only an admin may do: 403 "forbidden", and nothing changes.
	for _, tc := range []struct {
		method, path string
		body         any
	}{
		{"DELETE", "/api/clip?key=" + url.QueryEscape(ev.Key), nil},
		{"POST", "/api/devices/cam-01/revoke", nil},
		{"POST", "/api/retention", map[string]any{"days": 1}},
		{"GET", "/api/retention/rules", nil},
		{"PUT", "/api/retention/rules", map[string]any{"days": 1}},
		{"GET", "/api/operators", nil},
		{"PUT", "/api/operators/alice", map[string]string{"role": "admin"}},
		{"DELETE", "/api/operators/admin", nil},
		{"GET", "/api/tokens", nil},
		{"POST", "/api/tokens", map[string]string{"name": "x", "role": "admin"}},
		{"GET", "/api/audit", nil},
	} {
		status, out := viewer.do(tc.method, tc.path, tc.body)
		if status != http.StatusForbidden || errorCode(t, out) != "forbidden" {
			t.Errorf("viewer %s %s: %d %s", tc.method, tc.path, status, out)
		}
	}
	if _, err := e.db.Clip(context.Background(), ev.Key); err != nil {
		t.Fatalf("the clip after the viewer's delete: %v", err)
	}
	if ids, _ := e.db.RevokedDevices(context.Background()); len(ids) != 0 {
		t.Fatalf("revoked by a viewer: %v", ids)
	}
	if op, _ := e.db.Operator(context.Background(), "alice"); op.Role != RoleViewer {
		t.Fatalf("alice promoted herself: %+v", op)
	}
	// The UI: the viewer's pages have no admin controls; the admin's pages and forms
	// answer 403.
	for path, absent := range map[string]string{
		"/":                                    "/revoke",
		"/devices/cam-01":                      `id="revocation"`,
		"/play?key=" + url.QueryEscape(ev.Key): `id="delete"`,
	} {
		status, page := viewer.do(http.MethodGet, path, nil)
		if status != http.StatusOK || strings.Contains(string(page), absent) || strings.Contains(string(page), `href="/audit"`) {
			t.Errorf("viewer's %s: %d, shows %q or the audit link", path, status, absent)
		}
	}
	for _, path := range []string{"/retention", "/operators", "/tokens", "/audit"} {
		if status, _ := viewer.do(http.MethodGet, path, nil); status != http.StatusForbidden {
			t.Errorf("viewer GET %s: %d", path, status)
		}
	}
	if status, _ := viewer.do(http.MethodPost, "/clips/delete", url.Values{"csrf": {viewer.csrf}, "key": {ev.Key}}.Encode()); status != http.StatusForbidden {
		t.Errorf("viewer's delete form: %d", status)
	}
	_, page := admin.do(http.MethodGet, "/devices/cam-01", nil)
	if !strings.Contains(string(page), `id="revocation"`) {
		t.Error("the admin's device page has no revoke button")
	}

	// Promotion applies to the live session at once; demotion too.
	admin.json(http.MethodPut, "/api/operators/alice", map[string]string{"role": "admin"}, http.StatusOK, &op)
	viewer.json(http.MethodGet, "/api/operators", nil, http.StatusOK, nil)
	admin.json(http.MethodPut, "/api/operators/alice", map[string]string{"role": "viewer"}, http.StatusOK, &op)
	if status, _ := viewer.do(http.MethodGet, "/api/operators", nil); status != http.StatusForbidden {
		t.Fatalf("demoted: %d", status)
	}
	// The configured admin cannot be changed in the console, nor the last admin demoted.
	for _, tc := range []struct {
		method, path string
		body         any
	}{
		{"PUT", "/api/operators/admin", map[string]string{"role": "viewer"}},
		{"DELETE", "/api/operators/admin", nil},
		{"PUT", "/api/operators/bob", map[string]string{"role": "viewer"}},                      // new, no password
		{"PUT", "/api/operators/bob", map[string]string{"role": "viewer", "password": "short"}}, // too short
		{"PUT", "/api/operators/bob", map[string]string{"role": "root", "password": "long enough password"}},
		{"PUT", "/api/operators/" + url.PathEscape("bob smith"), map[string]string{"role": "viewer", "password": "long enough password"}},
		{"PUT", "/api/operators/bob", map[string]any{"role": "viewer", "password": "long enough password", "extra": 1}},
	} {
		if status, out := admin.do(tc.method, tc.path, tc.body); status != http.StatusBadRequest {
			t.Errorf("admin %s %s %v: %d %s", tc.method, tc.path, tc.body, status, out)
		}
	}
	// Removing an operator ends its sessions.
	admin.json(http.MethodDelete, "/api/operators/alice", nil, http.StatusNoContent, nil)
	if status, _ := viewer.do(http.MethodGet, "/api/devices", nil); status != http.StatusUnauthorized {
		t.Fatalf("a removed operator's session: %d", status)
	}
	admin.json(http.MethodDelete, "/api/operators/alice", nil, http.StatusNotFound, nil)

	// The audit log: logins (and the failed ones), the playback URL the viewer got, the
	// operator changes; viewers' refused attempts changed nothing, so are not there.
	es := auditActions(t, admin, "")
	for _, want := range []struct{ actor, action, target string }{
		{testAdmin, AuditLogin, ""},
		{"alice", AuditLogin, ""},
		{"alice", AuditLoginFailed, ""},
		{"nobody", AuditLoginFailed, ""},
		{"alice", AuditPlaybackURL, ev.Key},
		{testAdmin, AuditOperatorPut, "alice"},
		{testAdmin, AuditOperatorDelete, "alice"},
	} {
		if !hasAudit(es, want.actor, want.action, want.target) {
			t.Errorf("no audit entry %+v in %+v", want, es)
		}
	}
	if hasAudit(es, "alice", AuditDeleteClip, "") || hasAudit(es, "alice", AuditRevoke, "") {
		t.Error("refused actions in the audit log")
	}
	// Filters, pages, garbage.
	if got := auditActions(t, admin, "action=login_failed"); len(got) != 3 {
		t.Errorf("login_failed entries: %+v", got)
	}
	// Two: the API's and the player page's.
	if got := auditActions(t, admin, "actor=alice&action=playback_url"); len(got) != 2 || got[0].Role != RoleViewer || got[0].Via != "session" || got[0].Client == "" {
		t.Errorf("alice's playback: %+v", got)
	}
	var p auditPage
	admin.json(http.MethodGet, "/api/audit?limit=2", nil, http.StatusOK, &p)
	first := p.Entries
	admin.json(http.MethodGet, "/api/audit?limit=2&after="+p.Next, nil, http.StatusOK, &p)
	if len(first) != 2 || len(p.Entries) != 2 || p.Entries[0].ID >= first[1].ID {
		t.Errorf("audit pages: %+v then %+v", first, p.Entries)
	}
	for _, q := range []string{"action=nope", "after=x", "after=0", "limit=0", "actor=" + strings.Repeat("a", 201)} {
		if status, out := admin.do(http.MethodGet, "/api/audit?"+q, nil); status != http.StatusBadRequest {
			t.Errorf("audit ?%s: %d %s", q, status, out)
		}
	}
	status, page := admin.do(http.MethodGet, "/audit?action=playback_url", nil)
	if status != http.StatusOK || !strings.Contains(string(page), ev.Key) || strings.Contains(string(page), `data-action="login"`) {
		t.Errorf("audit page: %d\n%.1500s", status, page)
	}
}

// lastCharChanged returns tok with its last character replaced by another of the
// alphabet, so that it always differs.
func lastCharChanged(tok string) string {
	c := byte('A')
	if tok[len(tok)-1] == c {
		c = 'Q'
	}
	return tok[:len(tok)-1] + string(c)
}

// TestTokens: an admin makes API tokens; a script uses one without a cookie or CSRF
// token, within its role; revoked, expired, malformed and forged tokens get 401; the
// database holds only the token's hash.
func TestTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ev := e.upload("cam-01", "a.mp4", clipData(1000, 1), time.Now().Add(-time.Hour))
	e.waitIndexed(ev.Key)
	admin := e.api()
	admin.login()
	var viewerTok, adminTok, shortTok newTokenAnswer
	admin.json(http.MethodPost, "/api/tokens", map[string]string{"name": "nightly export", "role": "viewer"}, http.StatusCreated, &viewerTok)
	admin.json(http.MethodPost, "/api/tokens", map[string]string{"name": "cleanup", "role": "admin"}, http.StatusCreated, &adminTok)
	admin.json(http.MethodPost, "/api/tokens", map[string]string{"name": "short", "role": "viewer", "ttl": "1h"}, http.StatusCreated, &shortTok)
	if _, ok := parseAPIToken(viewerTok.Token); !ok || viewerTok.Info.Role != RoleViewer || viewerTok.Info.CreatedBy != testAdmin ||
		shortTok.Info.Expires.IsZero() || !adminTok.Info.Expires.IsZero() {
		t.Fatalf("tokens: %+v %+v %+v", viewerTok, adminTok, shortTok)
	}
	// At rest: the hash only.
	stored, err := e.db.Token(context.Background(), viewerTok.Info.ID)
	if err != nil || stored.Hash != hashID(viewerTok.Token) || strings.Contains(stored.Hash, viewerTok.Token[len(tokenPrefix)+tokenIDLen+1:]) {
		t.Fatalf("stored token: %+v, %v", stored, err)
	}
	var list tokensPage
	admin.json(http.MethodGet, "/api/tokens", nil, http.StatusOK, &list)
	if len(list.Tokens) != 3 {
		t.Fatalf("token list: %+v", list)
	}

	v := e.withToken(viewerTok.Token)
	var m me
	v.json(http.MethodGet, "/api/me", nil, http.StatusOK, &m)
	if m.Role != RoleViewer || m.Via != "token "+viewerTok.Info.ID {
		t.Fatalf("me: %+v", m)
	}
	var clips clipsPage
	v.json(http.MethodGet, "/api/clips", nil, http.StatusOK, &clips)
	if len(clips.Clips) != 1 {
		t.Fatalf("clips with a token: %+v", clips)
	}
	if status, out := v.do(http.MethodDelete, "/api/clip?key="+url.QueryEscape(ev.Key), nil); status != http.StatusForbidden || errorCode(t, out) != "forbidden" {
		t.Fatalf("a viewer token deletes: %d %s", status, out)
	}
	// An admin token changes things without a CSRF header (no cookie: no CSRF risk).
	adm := e.withToken(adminTok.Token)
	adm.json(http.MethodPost, "/api/devices/cam-09/revoke", nil, http.StatusOK, nil)
	// Tokens do not open the web UI.
	if status, _ := adm.do(http.MethodGet, "/", nil); status != http.StatusSeeOther {
		t.Fatalf("UI with a token: %d", status)
	}
	// Garbage and forgeries.
	for _, h := range []string{
		"Bearer", "Bearer ", "Basic " + adminTok.Token, "Bearer x", "Bearer " + adminTok.Token + "x",
		"Bearer " + otherToken(adminTok.Token),      // another ID
		"Bearer " + lastCharChanged(adminTok.Token), // another secret, same ID
		"Bearer cgt_" + strings.Repeat("0", tokenIDLen) + "_" + newToken(),
		"Bearer " + strings.ToUpper(adminTok.Token[:16]) + adminTok.Token[16:],
	} {
		a := e.withToken("")
		status, out := a.do(http.MethodGet, "/api/me", nil, "Authorization", h)
		if status != http.StatusUnauthorized || errorCode(t, out) != "unauthenticated" {
			t.Errorf("Authorization %q: %d %s", h, status, out)
		}
	}
	// Revoked: refused at once. Expired: refused after its time.
	admin.json(http.MethodDelete, "/api/tokens/"+viewerTok.Info.ID, nil, http.StatusNoContent, nil)
	admin.json(http.MethodDelete, "/api/tokens/"+viewerTok.Info.ID, nil, http.StatusNotFound, nil)
	if status, _ := v.do(http.MethodGet, "/api/me", nil); status != http.StatusUnauthorized {
		t.Fatalf("revoked token: %d", status)
	}
	short := e.withToken(shortTok.Token)
	short.json(http.MethodGet, "/api/me", nil, http.StatusOK, nil)
	e.offset.Store(int64(2 * time.Hour))
	if status, _ := short.do(http.MethodGet, "/api/me", nil); status != http.StatusUnauthorized {
		t.Fatalf("expired token: %d", status)
	}
	e.offset.Store(0)
	// Bad requests to make one.
	for _, body := range []map[string]string{{"name": "", "role": "viewer"}, {"name": "x", "role": "god"}, {"name": "x", "role": "viewer", "ttl": "forever"},
		{"name": "x", "role": "viewer", "ttl": "-1h"}, {"name": "x\x01y", "role": "viewer"}, {"name": strings.Repeat("n", 65), "role": "viewer"}} {
		if status, out := admin.do(http.MethodPost, "/api/tokens", body); status != http.StatusBadRequest {
			t.Errorf("token %v: %d %s", body, status, out)
		}
	}
	// The audit log names the tokens.
	es := auditActions(t, admin, "")
	if !hasAudit(es, testAdmin, AuditTokenCreate, adminTok.Info.ID) || !hasAudit(es, testAdmin, AuditTokenRevoke, viewerTok.Info.ID) ||
		!hasAudit(es, "token:cleanup", AuditRevoke, "cam-09") {
		t.Errorf("audit: %+v", es)
	}
	// The UI makes a token and shows it once.
	_, page := admin.do(http.MethodGet, "/tokens", nil)
	status, page := admin.do(http.MethodPost, "/tokens", url.Values{"csrf": {formValue(t, page, "csrf")}, "name": {"from the page"}, "role": {"viewer"}, "days": {"30"}}.Encode())
	if status != http.StatusOK || !strings.Contains(string(page), `id="token-value">cgt_`) {
		t.Fatalf("token form: %d\n%.2000s", status, page)
	}
}
