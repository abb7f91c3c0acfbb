package console

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"golang.org/x/time/rate"

	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/testutil"
)

// TestAPI drives the JSON API against SQLite and PostgreSQL: login, devices and their
// status, clips by device and time with pages, a signed URL that OSS serves, delete,
// revoke and restore, retention, logout.
func TestAPI(t *testing.T) {
	for _, dialect := range []Dialect{SQLite, Postgres} {
		t.Run(string(dialect), func(t *testing.T) {
			t.Parallel()
			testAPI(t, dialect)
		})
	}
}

func testAPI(t *testing.T, dialect Dialect) {
	var e *env
	e = newEnv(t, envOptions{dialect: dialect, config: func(c *Config) {
		c.OnRevoke = func(id string, revoked bool) {
			if revoked {
				e.stack.Revoke(id)
			} else {
				e.stack.Restore(id)
			}
		}
	}})
	a := e.api()

	// Nothing without a session.
	status, body := a.do(http.MethodGet, "/api/devices", nil)
	if status != http.StatusUnauthorized || errorCode(t, body) != "unauthenticated" {
		t.Fatalf("devices without a session: %d %s", status, body)
	}
	a.login()

	// Three clips of cam-01 recorded a minute apart, one of cam-02.
	base := time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
	var keys []string
	data := map[string][]byte{}
	for i := range 3 {
		d := clipData(1000+i, byte(i))
		ev := e.upload("cam-01", fmt.Sprintf("clip-%d.mp4", i), d, base.Add(time.Duration(i)*time.Minute))
		keys = append(keys, ev.Key)
		data[ev.Key] = d
	}
	other := e.upload("cam-02", "other.mp4", clipData(500, 9), base)
	for _, k := range append(keys, other.Key) {
		e.waitIndexed(k)
	}
	testutil.WaitFor(t, "cam-01 online", func() bool {
		d, err := e.db.Device(context.Background(), "cam-01")
		return err == nil && d.Online
	})

	var devs devicesPage
	a.json(http.MethodGet, "/api/devices", nil, http.StatusOK, &devs)
	if len(devs.Devices) != 2 || devs.Next != "" {
		t.Fatalf("devices: %+v", devs)
	}
	cam1 := devs.Devices[0]
	if cam1.ID != "cam-01" || cam1.Clips != 3 || !cam1.Online || cam1.LastUpload.IsZero() || cam1.LastSeen.IsZero() || cam1.Revoked {
		t.Fatalf("cam-01: %+v", cam1)
	}
	a.json(http.MethodGet, "/api/devices?limit=1", nil, http.StatusOK, &devs)
	if len(devs.Devices) != 1 || devs.Next != "cam-01" {
		t.Fatalf("first page of one: %+v", devs)
	}
	a.json(http.MethodGet, "/api/devices?limit=1&after=cam-01", nil, http.StatusOK, &devs)
	if len(devs.Devices) != 1 || devs.Devices[0].ID != "cam-02" || devs.Next != "" {
		t.Fatalf("second page: %+v", devs)
	}
	var dev Device
	a.json(http.MethodGet, "/api/devices/cam-02", nil, http.StatusOK, &dev)
	if dev.ID != "cam-02" || dev.Clips != 1 {
		t.Fatalf("cam-02: %+v", dev)
	}

	// Pages of two, newest first.
	var page clipsPage
	a.json(http.MethodGet, "/api/clips?device=cam-01&limit=2", nil, http.StatusOK, &page)
	if len(page.Clips) != 2 || page.Clips[0].Key != keys[2] || page.Clips[1].Key != keys[1] || page.Next == "" {
		t.Fatalf("first page: %+v", page)
	}
	c0 := page.Clips[0]
	if !c0.Verified || c0.Size != 1002 || c0.Device != "cam-01" || !c0.RecordedAt.Equal(base.Add(2*time.Minute)) || c0.ContentType != "video/mp4" {
		t.Fatalf("clip: %+v", c0)
	}
	a.json(http.MethodGet, "/api/clips?device=cam-01&limit=2&after="+page.Next, nil, http.StatusOK, &page)
	if len(page.Clips) != 1 || page.Clips[0].Key != keys[0] || page.Next != "" {
		t.Fatalf("second page: %+v", page)
	}
	// By time: [base+1m, base+2m) is clip 1 only; the whole fleet in [base, base+1m) is
	// clip 0 and cam-02's.
	q := url.Values{"device": {"cam-01"}, "from": {base.Add(time.Minute).Format(time.RFC3339)}, "to": {base.Add(2 * time.Minute).Format(time.RFC3339)}}
	a.json(http.MethodGet, "/api/clips?"+q.Encode(), nil, http.StatusOK, &page)
	if len(page.Clips) != 1 || page.Clips[0].Key != keys[1] {
		t.Fatalf("time range: %+v", page)
	}
	q = url.Values{"from": {base.Format("2006-01-02T15:04")}, "to": {base.Add(time.Minute).Format("2006-01-02T15:04")}}
	a.json(http.MethodGet, "/api/clips?"+q.Encode(), nil, http.StatusOK, &page)
	if len(page.Clips) != 2 || page.Clips[0].Key != other.Key && page.Clips[1].Key != other.Key {
		t.Fatalf("fleet time range: %+v", page)
	}

	// The signed URL streams the object from OSS, whole and by range.
	var cw clipWithURL
	a.json(http.MethodGet, "/api/clip?key="+url.QueryEscape(keys[1]), nil, http.StatusOK, &cw)
	if cw.Clip.Key != keys[1] || !strings.HasPrefix(cw.URL, e.stack.OSSEndpoint()+"/") ||
		!strings.Contains(cw.URL, "x-oss-signature-version=OSS4-HMAC-SHA256") || time.Until(cw.URLExpires) > DefaultURLExpiry+time.Second {
		t.Fatalf("clip with URL: %+v", cw)
	}
	if got := fetch(t, cw.URL, ""); !bytes.Equal(got, data[keys[1]]) {
		t.Fatalf("signed URL served %d bytes, want the clip's %d", len(got), len(data[keys[1]]))
	}
	if got := fetch(t, cw.URL, "bytes=10-19"); !bytes.Equal(got, data[keys[1]][10:20]) {
		t.Fatalf("range: %q", got)
	}
	// The download URL serves it as an attachment named after the key.
	resp, err := http.Get(cw.DownloadURL)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if _, params, perr := mime.ParseMediaType(resp.Header.Get("Content-Disposition")); err != nil || perr != nil || resp.StatusCode != http.StatusOK ||
		!strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment;") || params["filename"] != path.Base(keys[1]) || !bytes.Equal(got, data[keys[1]]) {
		t.Fatalf("download URL: %d %q, %d bytes, %v", resp.StatusCode, resp.Header.Get("Content-Disposition"), len(got), err)
	}

	// Delete: the CSRF header is required, then the object and the row are gone.
	del := "/api/clip?key=" + url.QueryEscape(keys[1])
	status, body = a.do(http.MethodDelete, del, nil, csrfHeader, "")
	if status != http.StatusForbidden || errorCode(t, body) != "csrf" {
		t.Fatalf("delete without CSRF: %d %s", status, body)
	}
	status, body = a.do(http.MethodDelete, del, nil, csrfHeader, otherToken(a.csrf))
	if status != http.StatusForbidden {
		t.Fatalf("delete with a wrong CSRF token: %d %s", status, body)
	}
	if _, err := e.bucket.GetObjectDetailedMeta(keys[1]); err != nil {
		t.Fatalf("object gone after a refused delete: %v", err)
	}
	a.json(http.MethodDelete, del, nil, http.StatusNoContent, nil)
	if _, err := e.bucket.GetObjectDetailedMeta(keys[1]); !isOSSNotFound(err) {
		t.Fatalf("object after delete: %v", err)
	}
	status, body = a.do(http.MethodGet, "/api/clip?key="+url.QueryEscape(keys[1]), nil)
	if status != http.StatusNotFound || errorCode(t, body) != "not_found" {
		t.Fatalf("deleted clip: %d %s", status, body)
	}
	a.json(http.MethodDelete, del, nil, http.StatusNotFound, nil)
	a.json(http.MethodGet, "/api/devices/cam-01", nil, http.StatusOK, &dev)
	if dev.Clips != 2 {
		t.Fatalf("clip count after delete: %+v", dev)
	}

	// Revoke: recorded, and the stack's broker and workers refuse the device.
	a.json(http.MethodPost, "/api/devices/cam-02/revoke", nil, http.StatusOK, &dev)
	if !dev.Revoked || dev.RevokedAt.IsZero() {
		t.Fatalf("revoked: %+v", dev)
	}
	e.closeKit("cam-02")
	if err := e.tryConnect("cam-02", 3*time.Second); err == nil {
		t.Fatal("a revoked device connected")
	}
	a.json(http.MethodPost, "/api/devices/cam-02/restore", nil, http.StatusOK, &dev)
	if dev.Revoked {
		t.Fatalf("restored: %+v", dev)
	}
	if err := e.tryConnect("cam-02", 30*time.Second); err != nil {
		t.Fatalf("a restored device: %v", err)
	}
	// A device the console has never seen can be revoked ahead of time.
	a.json(http.MethodPost, "/api/devices/cam-99/revoke", nil, http.StatusOK, &dev)
	if !dev.Revoked || dev.Clips != 0 {
		t.Fatalf("unknown device revoked: %+v", dev)
	}

	// Retention: nothing is 2 days old now; two days later, cam-01's two clips and an
	// object under its prefix that the index never had go, cam-02's stay.
	stray := e.stack.Prefix() + "cam-01/stray/x.mp4"
	if err := e.bucket.PutObject(stray, strings.NewReader("stray")); err != nil {
		t.Fatal(err)
	}
	var rr RetentionResult
	a.json(http.MethodPost, "/api/retention", map[string]any{"prefix": e.stack.Prefix() + "cam-01/", "days": 2}, http.StatusOK, &rr)
	if rr.Objects != 0 || rr.Rows != 0 || rr.More {
		t.Fatalf("retention now: %+v", rr)
	}
	e.offset.Store(int64(3 * 24 * time.Hour))
	a.login() // three days later the session has expired
	a.json(http.MethodPost, "/api/retention", map[string]any{"prefix": e.stack.Prefix() + "cam-01/", "days": 2}, http.StatusOK, &rr)
	if rr.Objects != 3 || rr.Rows != 2 || rr.More {
		t.Fatalf("retention: %+v", rr)
	}
	for _, k := range []string{keys[0], keys[2], stray} {
		if _, err := e.bucket.GetObjectDetailedMeta(k); !isOSSNotFound(err) {
			t.Fatalf("%s after retention: %v", k, err)
		}
	}
	if _, err := e.bucket.GetObjectDetailedMeta(other.Key); err != nil {
		t.Fatalf("cam-02's clip after cam-01's retention: %v", err)
	}
	a.json(http.MethodGet, "/api/clips", nil, http.StatusOK, &page)
	if len(page.Clips) != 1 || page.Clips[0].Key != other.Key {
		t.Fatalf("clips after retention: %+v", page)
	}

	var st Stats
	a.json(http.MethodGet, "/api/stats", nil, http.StatusOK, &st)
	if st.Consumer.Verified < 4 || !st.Consumer.Connected {
		t.Fatalf("stats: %+v", st)
	}

	// Logout ends the session for good.
	old := a.csrf
	a.json(http.MethodPost, "/api/logout", nil, http.StatusNoContent, nil)
	status, _ = a.do(http.MethodGet, "/api/devices", nil)
	if status != http.StatusUnauthorized {
		t.Fatalf("after logout: %d", status)
	}
	a.csrf = old
	status, _ = a.do(http.MethodPost, "/api/devices/cam-01/revoke", nil)
	if status != http.StatusUnauthorized {
		t.Fatalf("revoke after logout: %d", status)
	}
}

// fetch GETs u (a signed OSS URL) with an optional Range header.
func fetch(t *testing.T, u, rng string) []byte {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	want := http.StatusOK
	if rng != "" {
		want = http.StatusPartialContent
	}
	if resp.StatusCode != want {
		t.Fatalf("GET signed URL: %d %s", resp.StatusCode, b)
	}
	return b
}

func isOSSNotFound(err error) bool {
	var se oss.ServiceError
	return errors.As(err, &se) && se.StatusCode == http.StatusNotFound
}

// TestAPIGarbage: every bad input gets a clear 4xx and changes nothing.
func TestAPIGarbage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	a := e.api()
	a.login()
	ev := e.upload("cam-01", "a.mp4", clipData(100, 1), time.Now())
	e.waitIndexed(ev.Key)

	for _, tc := range []struct {
		method, path string
		body         any
		status       int
		code         string
	}{
		{"GET", "/api/clips?limit=0", nil, 400, "invalid"},
		{"GET", "/api/clips?limit=501", nil, 400, "invalid"},
		{"GET", "/api/clips?limit=ten", nil, 400, "invalid"},
		{"GET", "/api/clips?after=!!!", nil, 400, "invalid"},
		{"GET", "/api/clips?after=" + encodeCursor(Cursor{Key: "x"})[:5], nil, 400, "invalid"},
		{"GET", "/api/clips?after=bm90LWEtY3Vyc29y", nil, 400, "invalid"}, // "not-a-cursor"
		{"GET", "/api/clips?from=yesterday", nil, 400, "invalid"},
		{"GET", "/api/clips?from=2026-13-01", nil, 400, "invalid"},
		{"GET", "/api/clips?from=2026-03-02&to=2026-03-01", nil, 400, "invalid"},
		{"GET", "/api/clips?device=" + url.QueryEscape("../etc"), nil, 400, "invalid"},
		{"GET", "/api/clips?device=x", nil, 400, "invalid"},
		{"GET", "/api/devices?after=" + url.QueryEscape("a b"), nil, 400, "invalid"},
		{"GET", "/api/devices?limit=-1", nil, 400, "invalid"},
		{"GET", "/api/devices/" + url.PathEscape("bad id!"), nil, 400, "invalid"},
		{"GET", "/api/devices/nobody-here", nil, 404, "not_found"},
		{"GET", "/api/clip", nil, 400, "invalid"},
		{"GET", "/api/clip?key=" + url.QueryEscape("other/cam-01/a.mp4"), nil, 400, "invalid"},
		{"GET", "/api/clip?key=" + url.QueryEscape(e.stack.Prefix()+"cam-01/none.mp4"), nil, 404, "not_found"},
		{"GET", "/api/clip?key=%ff%fe", nil, 400, "invalid"},
		{"DELETE", "/api/clip?key=" + url.QueryEscape("/etc/passwd"), nil, 400, "invalid"},
		{"POST", "/api/devices/" + url.PathEscape("x") + "/revoke", nil, 400, "invalid"},
		{"POST", "/api/retention", map[string]any{"days": 0}, 400, "invalid"},
		{"POST", "/api/retention", map[string]any{"days": 36501}, 400, "invalid"},
		{"POST", "/api/retention", map[string]any{"days": 1, "prefix": "elsewhere/"}, 400, "invalid"},
		{"POST", "/api/retention", map[string]any{"days": 1, "prefix": e.stack.Prefix() + "../x/"}, 400, "invalid"},
		{"POST", "/api/retention", map[string]any{"days": 1, "prefix": e.stack.Prefix() + "a*b"}, 400, "invalid"},
		{"POST", "/api/retention", map[string]any{"days": 1, "extra": true}, 400, "invalid"},
		{"POST", "/api/retention", []byte(`{"days": 1} {"days": 2}`), 400, "invalid"},
		{"POST", "/api/retention", []byte(`[1,2]`), 400, "invalid"},
		{"POST", "/api/retention", []byte(`{"days": "1"}`), 400, "invalid"},
		{"POST", "/api/retention", "days=1", 415, "invalid"},
		{"POST", "/api/retention", []byte(`{"prefix":"` + strings.Repeat("a", maxBody) + `","days":1}`), 413, "invalid"},
		{"GET", "/api/nothing-here", nil, 404, "not_found"},
		{"PUT", "/api/clip?key=x", nil, 405, ""},
	} {
		status, body := a.do(tc.method, tc.path, tc.body)
		if status != tc.status {
			t.Errorf("%s %.80s: status %d, want %d: %.200s", tc.method, tc.path, status, tc.status, body)
			continue
		}
		if tc.code != "" {
			if code := errorCode(t, body); code != tc.code {
				t.Errorf("%s %.80s: code %q, want %q", tc.method, tc.path, code, tc.code)
			}
		}
	}
	// Nothing changed.
	if _, err := e.bucket.GetObjectDetailedMeta(ev.Key); err != nil {
		t.Fatal(err)
	}
	if ids, _ := e.db.RevokedDevices(context.Background()); len(ids) != 0 {
		t.Fatalf("revoked: %v", ids)
	}
}

// TestLogin: CSRF on the login itself, wrong passwords, rate limiting, cookie attributes.
func TestLogin(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{config: func(c *Config) {
		c.BrokerURL = "" // no ingestion needed
		c.LoginBurst = 4
		c.LoginRate = rate.Every(time.Hour) // no refill during the test
		c.SecureCookies = true
	}})
	a := e.api()
	// Without the login token (or with another client's), 403.
	status, body := a.do(http.MethodPost, "/api/login", map[string]string{"name": testAdmin, "password": testPassword})
	if status != http.StatusForbidden || errorCode(t, body) != "csrf" {
		t.Fatalf("login without token: %d %s", status, body)
	}
	b := e.api()
	var s sessionInfo
	b.json(http.MethodGet, "/api/session", nil, http.StatusOK, &s)
	a.csrf = s.CSRF // b's token, a's (missing) cookie
	status, _ = a.do(http.MethodPost, "/api/login", map[string]string{"name": testAdmin, "password": testPassword})
	if status != http.StatusForbidden {
		t.Fatalf("login with another client's token: %d", status)
	}

	// Secure cookies are not sent back over plain HTTP by a cookie jar, so the rest of
	// this test handles the cookies itself.
	resp, err := http.Get(e.console.URL() + "/api/session")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	var login *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == loginCookie {
			login = ck
		}
	}
	if login == nil || !login.HttpOnly || !login.Secure || login.SameSite != http.SameSiteStrictMode {
		t.Fatalf("login cookie: %+v", login)
	}
	post := func(password string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, e.console.URL()+"/api/login", strings.NewReader(mustJSON(map[string]string{"name": testAdmin, "password": password})))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(csrfHeader, e.console.loginMAC(login.Value))
		req.AddCookie(&http.Cookie{Name: loginCookie, Value: login.Value})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp
	}
	resp = post(testPassword)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	var sc *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == sessionCookie {
			sc = ck
		}
	}
	if sc == nil || !sc.HttpOnly || !sc.Secure || sc.SameSite != http.SameSiteStrictMode || sc.Path != "/" || len(sc.Value) != 43 {
		t.Fatalf("session cookie: %+v", sc)
	}
	// The database holds the ID's hash, not the ID.
	if _, err := e.db.Session(context.Background(), sc.Value, time.Now()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("session found by its raw ID: %v", err)
	}
	if _, err := e.db.Session(context.Background(), hashID(sc.Value), time.Now()); err != nil {
		t.Fatalf("session by hash: %v", err)
	}
	get := func(ck *http.Cookie) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, e.console.URL()+"/api/devices", nil)
		req.AddCookie(ck)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	if status := get(sc); status != http.StatusOK {
		t.Fatalf("with the session cookie: %d", status)
	}
	// Forged session cookies are refused.
	for _, v := range []string{"", "short", strings.Repeat("A", 43), sc.Value + "x", "../../" + sc.Value[6:]} {
		if status := get(&http.Cookie{Name: sessionCookie, Value: v}); status != http.StatusUnauthorized {
			t.Fatalf("cookie %q: %d", v, status)
		}
	}

	// Wrong passwords: 401, until the burst of 4 (one spent above) is gone; then even
	// the right password waits.
	for i, pw := range []string{"wrong", "", strings.Repeat("x", 100)} {
		if resp := post(pw); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %d", i, resp.StatusCode)
		}
	}
	resp = post(testPassword)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("rate limit: %d %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// The limit is per client address.
	if ok, _ := e.console.logins.allow("192.0.2.1", time.Now()); !ok {
		t.Fatal("another address was limited")
	}

	// Sessions expire.
	e.offset.Store(int64(DefaultSessionTTL + time.Minute))
	if status := get(sc); status != http.StatusUnauthorized {
		t.Fatalf("expired session: %d", status)
	}
}

// TestUICSRF: the HTML forms are refused without their token, and pages need a login.
func TestUICSRF(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{config: func(c *Config) { c.BrokerURL = ""; c.LoginBurst = 20 }})
	a := e.api()
	// Pages redirect to the login, keeping where the operator was going.
	status, _ := a.do(http.MethodGet, "/devices/cam-01?from=2026-01-01", nil)
	if status != http.StatusSeeOther {
		t.Fatalf("page without a session: %d", status)
	}
	// The login form: its token is in the page, paired with a cookie.
	status, page := a.do(http.MethodGet, "/login?next=/devices/cam-01", nil)
	if status != http.StatusOK || !bytes.Contains(page, []byte(`name="next" value="/devices/cam-01"`)) {
		t.Fatalf("login page: %d %s", status, page)
	}
	token := formValue(t, page, "csrf")
	status, _ = a.do(http.MethodPost, "/login", url.Values{"name": {testAdmin}, "password": {testPassword}, "next": {"/"}}.Encode())
	if status != http.StatusForbidden {
		t.Fatalf("login form without token: %d", status)
	}
	status, _ = a.do(http.MethodPost, "/login", url.Values{"name": {testAdmin}, "password": {"nope"}, "csrf": {token}}.Encode())
	if status != http.StatusUnauthorized {
		t.Fatalf("login form, wrong password: %d", status)
	}
	// The redirect target is kept local.
	for next, want := range map[string]string{"/clips?x=1": "/clips?x=1", "//evil.example/": "/", "https://evil.example/": "/", "/\\evil": "/"} {
		b := e.api()
		_, page := b.do(http.MethodGet, "/login", nil)
		req, _ := http.NewRequest(http.MethodPost, b.base+"/login", strings.NewReader(url.Values{"name": {testAdmin}, "password": {testPassword}, "csrf": {formValue(t, page, "csrf")}, "next": {next}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := b.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != want {
			t.Fatalf("next %q: %d %q", next, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	status, _ = a.do(http.MethodPost, "/login", url.Values{"name": {testAdmin}, "password": {testPassword}, "csrf": {token}, "next": {"/"}}.Encode())
	if status != http.StatusSeeOther {
		t.Fatalf("login form: %d", status)
	}
	status, page = a.do(http.MethodGet, "/", nil)
	if status != http.StatusOK {
		t.Fatalf("devices page: %d", status)
	}
	sessionToken := formValue(t, page, "csrf")
	// Forms without the session's token: 403, nothing done.
	for _, form := range []string{"", "csrf=", "csrf=" + token, "csrf=" + sessionToken + "x"} {
		status, _ := a.do(http.MethodPost, "/devices/cam-07/revoke", form)
		if status != http.StatusForbidden {
			t.Fatalf("revoke with form %q: %d", form, status)
		}
	}
	if ids, _ := e.db.RevokedDevices(context.Background()); len(ids) != 0 {
		t.Fatalf("revoked without a token: %v", ids)
	}
	status, _ = a.do(http.MethodPost, "/devices/cam-07/revoke", "csrf="+sessionToken)
	if status != http.StatusSeeOther {
		t.Fatalf("revoke with the token: %d", status)
	}
	if ids, _ := e.db.RevokedDevices(context.Background()); len(ids) != 1 || ids[0] != "cam-07" {
		t.Fatalf("revoked: %v", ids)
	}
	// The token also works as a header (the API's way).
	status, _ = a.do(http.MethodPost, "/devices/cam-07/restore", "", csrfHeader, sessionToken)
	if status != http.StatusSeeOther {
		t.Fatalf("restore with the header: %d", status)
	}
	// Logout needs the token too.
	status, _ = a.do(http.MethodPost, "/logout", "")
	if status != http.StatusForbidden {
		t.Fatalf("logout without token: %d", status)
	}
	status, _ = a.do(http.MethodPost, "/logout", "csrf="+sessionToken)
	if status != http.StatusSeeOther {
		t.Fatalf("logout: %d", status)
	}
	if status, _ := a.do(http.MethodGet, "/", nil); status != http.StatusSeeOther {
		t.Fatalf("after logout: %d", status)
	}
}

// formValue returns the value of the first hidden input named name in an HTML page.
func formValue(t *testing.T, page []byte, name string) string {
	t.Helper()
	marker := []byte(`name="` + name + `" value="`)
	i := bytes.Index(page, marker)
	if i < 0 {
		t.Fatalf("no %s field in %s", name, page)
	}
	rest := page[i+len(marker):]
	return string(rest[:bytes.IndexByte(rest, '"')])
}

// TestUIPages renders every page, with data and with bad input.
func TestUIPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ev := e.upload("cam-01", "a.mp4", clipData(2048, 1), time.Now().Add(-time.Hour))
	e.waitIndexed(ev.Key)
	a := e.api()
	_, page := a.do(http.MethodGet, "/login", nil)
	status, _ := a.do(http.MethodPost, "/login", url.Values{"name": {testAdmin}, "password": {testPassword}, "csrf": {formValue(t, page, "csrf")}}.Encode())
	if status != http.StatusSeeOther {
		t.Fatalf("login: %d", status)
	}
	from := time.Now().Add(-2 * time.Hour).UTC().Format("2006-01-02T15:04")
	for _, tc := range []struct {
		path   string
		status int
		want   string
	}{
		{"/", 200, `data-device="cam-01"`},
		{"/devices/cam-01", 200, `data-key="` + ev.Key + `"`},
		{"/devices/cam-01?from=" + from, 200, `value="` + from + `"`},
		{"/devices/cam-01?limit=1&after=" + encodeCursor(Cursor{RecordedAt: time.Now(), Key: "zzz"}), 200, "← Newest"},
		{"/devices/?id=cam-01", 303, ""},
		{"/clips", 200, ev.Key},
		{"/clips?device=cam-01&to=" + from, 200, "No clips match this search"},
		{"/play?key=" + url.QueryEscape(ev.Key), 200, `<video id="player"`},
		{"/retention", 200, `name="days"`},
		{"/devices/" + url.PathEscape("bad id!"), 400, "invalid request"},
		{"/devices/?id=..", 400, "invalid request"},
		{"/devices/nobody", 404, "Not found."},
		{"/play?key=" + url.QueryEscape(e.stack.Prefix()+"cam-01/none"), 404, "Not found."},
		{"/clips?from=never", 400, "from"},
		{"/clips?after=garbage!", 400, "cursor"},
		{"/static/style.css", 200, "clipgate console"},
		{"/static/app.js", 200, "data-confirm"},
		{"/static/", 404, ""},
		{"/static/../console.go", 307, "/console.go"}, // cleaned, then not a file of ours
		{"/healthz", 200, "ok"},
	} {
		status, body := a.do(http.MethodGet, tc.path, nil)
		if status != tc.status || !strings.Contains(string(body), tc.want) {
			t.Errorf("GET %s: %d, want %d with %q:\n%.600s", tc.path, status, tc.status, tc.want, body)
		}
	}
	// The player's <video> points at a signed OSS URL, which the CSP allows.
	_, body := a.do(http.MethodGet, "/play?key="+url.QueryEscape(ev.Key), nil)
	video := body[bytes.Index(body, []byte(`<video id="player"`)):]
	src := string(video[bytes.Index(video, []byte(`src="`))+5:])
	src = strings.ReplaceAll(src[:strings.IndexByte(src, '"')], "&amp;", "&")
	if got := fetch(t, src, ""); len(got) != 2048 {
		t.Fatalf("the player's URL served %d bytes", len(got))
	}
	resp, err := a.hc.Get(e.console.URL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "media-src 'self' "+e.stack.OSSEndpoint()) ||
		resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("headers: %v", resp.Header)
	}
	// Retention through the form (nothing is old enough), and a bad one.
	token := formValue(t, body, "csrf")
	status, body = a.do(http.MethodPost, "/retention", url.Values{"csrf": {token}, "prefix": {e.stack.Prefix()}, "days": {"3"}}.Encode())
	if status != 200 || !strings.Contains(string(body), "Deleted 0 objects and 0 index rows") {
		t.Fatalf("retention form: %d %.400s", status, body)
	}
	status, body = a.do(http.MethodPost, "/retention", url.Values{"csrf": {token}, "prefix": {"x/"}, "days": {"three"}}.Encode())
	if status != 400 || !strings.Contains(string(body), "whole number") {
		t.Fatalf("bad retention form: %d %.400s", status, body)
	}
	// Delete through the form.
	status, _ = a.do(http.MethodPost, "/clips/delete", url.Values{"csrf": {token}, "key": {ev.Key}}.Encode())
	if status != http.StatusSeeOther {
		t.Fatalf("delete form: %d", status)
	}
	if _, err := e.db.Clip(context.Background(), ev.Key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after the delete form: %v", err)
	}
}

// TestOtherToken checks the tests' wrong CSRF token: it differs from the real one
// whatever the real one starts with (one in 64 starts with "x").
func TestOtherToken(t *testing.T) {
	t.Parallel()
	tok := newToken()
	for _, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" {
		good := string(c) + tok[1:]
		if wrong := otherToken(good); wrong == good || len(wrong) != len(good) || !validToken(wrong) {
			t.Errorf("otherToken(%q) = %q", good, wrong)
		}
	}
}

// TestProblems: failed and rejected events are listed with their reasons, per device and
// fleet-wide, in the JSON API and the UI, as many as the devices' counters say.
func TestProblems(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{dialect: Postgres})
	ctx := context.Background()
	real := e.upload("cam-02", "real.mp4", clipData(300, 3), time.Now())
	e.waitIndexed(real.Key)
	adm := e.admin()
	scheme := e.stack.Topics()
	now := time.Now().UTC().Truncate(time.Millisecond)
	completed := func(id, device, key string) protocol.UploadEvent {
		return protocol.UploadEvent{V: 1, ID: id, Device: device, Status: protocol.StatusCompleted, Bucket: e.stack.Bucket(),
			Key: key, Size: real.Size, CRC64: real.CRC64, RecordedAt: now, UploadedAt: now}
	}
	// cam-01: a failed upload, cam-02's object claimed as its own, a missing object.
	publish(t, adm, scheme.UploadEvent("cam-01"), protocol.UploadEvent{V: 1, ID: "p-failed", Device: "cam-01",
		Status: protocol.StatusFailed, UploadedAt: now, Error: "the <file> vanished"})
	publish(t, adm, scheme.UploadEvent("cam-01"), completed("p-foreign", "cam-01", real.Key))
	publish(t, adm, scheme.UploadEvent("cam-01"), completed("p-missing", "cam-01", e.stack.Prefix()+"cam-01/2026/01/01/ghost.mp4"))
	// cam-03: an event in cam-02's name.
	publish(t, adm, scheme.UploadEvent("cam-03"), completed("p-spoof", "cam-02", real.Key))
	testutil.WaitFor(t, "the counters", func() bool {
		d1, err1 := e.db.Device(ctx, "cam-01")
		d3, err3 := e.db.Device(ctx, "cam-03")
		return err1 == nil && err3 == nil && d1.Failed == 1 && d1.Rejected == 2 && d3.Rejected == 1
	})

	a := e.api()
	if status, body := a.do(http.MethodGet, "/api/problems", nil); status != http.StatusUnauthorized {
		t.Fatalf("problems without a session: %d %s", status, body)
	}
	a.login()
	var page problemsPage
	a.json(http.MethodGet, "/api/problems", nil, http.StatusOK, &page)
	byID := map[string]Problem{}
	for _, p := range page.Problems {
		byID[p.EventID] = p
	}
	if len(page.Problems) != 4 || len(byID) != 4 || page.Next != "" {
		t.Fatalf("fleet-wide: %+v", page)
	}
	for id, want := range map[string]struct{ device, status, reason, text string }{
		"p-failed":  {"cam-01", "failed", "", "the <file> vanished"},
		"p-foreign": {"cam-01", "completed", "wrong_prefix", ""},
		"p-missing": {"cam-01", "completed", "not_found", ""},
		"p-spoof":   {"cam-03", "completed", "wrong_device", ""},
	} {
		p := byID[id]
		if p.Device != want.device || p.Status != want.status || p.Reason != want.reason || !strings.Contains(p.Error, want.text) ||
			(p.Reason != "" && p.Detail == "") || !p.EventAt.Equal(now) {
			t.Errorf("%s: %+v, want %+v", id, p, want)
		}
	}
	if byID["p-spoof"].ClaimedDevice != "cam-02" {
		t.Errorf("spoof: %+v", byID["p-spoof"])
	}
	// Per device, by pages.
	a.json(http.MethodGet, "/api/problems?device=cam-01&limit=2", nil, http.StatusOK, &page)
	if len(page.Problems) != 2 || page.Next == "" || page.Problems[0].Device != "cam-01" {
		t.Fatalf("cam-01 page 1: %+v", page)
	}
	first := page.Problems
	a.json(http.MethodGet, "/api/problems?device=cam-01&limit=2&after="+page.Next, nil, http.StatusOK, &page)
	if len(page.Problems) != 1 || page.Next != "" || page.Problems[0].ID >= first[1].ID {
		t.Fatalf("cam-01 page 2: %+v", page)
	}
	a.json(http.MethodGet, "/api/problems?device=cam-02", nil, http.StatusOK, &page)
	if len(page.Problems) != 0 {
		t.Fatalf("cam-02 (named, did not publish): %+v", page)
	}
	for _, q := range []string{"device=..", "device=a%2Fb", "after=x", "after=0", "after=-3", "after=99999999999999999999", "limit=0", "limit=501"} {
		status, body := a.do(http.MethodGet, "/api/problems?"+q, nil)
		if status != http.StatusBadRequest || errorCode(t, body) != "invalid" {
			t.Errorf("GET /api/problems?%s: %d %s", q, status, body)
		}
	}

	// The UI: the fleet-wide page, the device's, the device page's section; the device's
	// error is escaped.
	for _, tc := range []struct {
		path, want, not string
	}{
		{"/problems", `data-event="p-spoof"`, ""},
		{"/problems", "the &lt;file&gt; vanished", "the <file>"},
		{"/problems", "rejected: wrong_device", ""},
		{"/problems?device=cam-01", `data-event="p-missing"`, `data-event="p-spoof"`},
		{"/problems?device=cam-01&limit=1", `rel="next"`, ""},
		{"/problems?device=cam-02", "No failed or rejected events of this device", "data-event"},
		{"/devices/cam-01", `id="device-problems"`, ""},
		{"/devices/cam-01", `data-event="p-failed"`, ""},
		{"/devices/cam-02", `data-key="` + real.Key + `"`, `id="device-problems"`},
		{"/", `href="/problems?device=cam-03"`, ""},
	} {
		status, body := a.do(http.MethodGet, tc.path, nil)
		if status != http.StatusOK || !strings.Contains(string(body), tc.want) || (tc.not != "" && strings.Contains(string(body), tc.not)) {
			t.Errorf("GET %s: %d, want %q without %q:\n%.2000s", tc.path, status, tc.want, tc.not, body)
		}
	}
	if status, body := a.do(http.MethodGet, "/problems?after=zz", nil); status != http.StatusBadRequest {
		t.Errorf("GET /problems?after=zz: %d %.300s", status, body)
	}
}

// TestDownloadURLName: the download URL asks OSS for an attachment named after the key's
// last segment, Unicode included.
func TestDownloadURLName(t *testing.T) {
	t.Parallel()
	c, err := New(Config{Bucket: testBucket(t), Store: openTestDB(t, SQLite), PasswordHash: testHash, Prefix: "clips/"})
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{
		"clips/cam-01/2026/03/01/a.mp4":             "a.mp4",
		"clips/cam-01/2026/03/01/门口 camera #1.mp4":  "门口 camera #1.mp4",
		`clips/cam-01/2026/03/01/say "hi"; x=1.mov`: `say "hi"; x=1.mov`,
	} {
		u, _, err := c.DownloadURL(key)
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		disp, params, err := mime.ParseMediaType(parsed.Query().Get("response-content-disposition"))
		if err != nil || disp != "attachment" || params["filename"] != want {
			t.Errorf("%s: disposition %q %v, %v; want attachment named %q", key, disp, params, err, want)
		}
	}
}
