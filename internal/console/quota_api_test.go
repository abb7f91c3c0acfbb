package console

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestQuotaAPI (issue 16 point 3): an admin sets a known device's quota through the API
// and the device page's form; viewers read it; negative, non-numeric, fractional,
// absurd, incomplete and unknown-field bodies, bad and unknown devices, and forms with
// garbage sizes get a clear 4xx and change nothing.
func TestQuotaAPI(t *testing.T) {
	t.Parallel()
	now := time.Now().UTC() // the console's clock, frozen: the day cannot turn mid-test
	e := newEnv(t, envOptions{config: func(c *Config) { c.BrokerURL, c.Now = "", func() time.Time { return now } }})
	ctx := context.Background()
	if err := e.db.SetStatus(ctx, "cam-01", true, now, now); err != nil {
		t.Fatal(err)
	}
	a := e.api()
	a.login()
	var info QuotaInfo
	a.json(http.MethodGet, "/api/devices/cam-01/quota", nil, http.StatusOK, &info)
	midnight := time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC)
	if info.Device != "cam-01" || info.Quota != (Quota{}) || !info.OverUntil.IsZero() || info.Enforced ||
		!info.DayResets.Equal(midnight) || info.MonthResets.Day() != 1 || info.MonthResets.Before(info.DayResets) {
		t.Fatalf("quota before any is set: %+v", info)
	}
	a.json(http.MethodPut, "/api/devices/cam-01/quota", map[string]int64{"dayBytes": 1 << 30, "monthBytes": 0}, http.StatusOK, &info)
	if info.Quota != (Quota{DayBytes: 1 << 30}) {
		t.Fatalf("after PUT: %+v", info)
	}
	for _, tc := range []struct {
		method, path string
		body         any
		status       int
		code         string
	}{
		{"PUT", "/api/devices/cam-01/quota", map[string]any{"dayBytes": -1, "monthBytes": 0}, 400, "invalid"},
		{"PUT", "/api/devices/cam-01/quota", map[string]any{"dayBytes": 0, "monthBytes": -5}, 400, "invalid"},
		{"PUT", "/api/devices/cam-01/quota", map[string]any{"dayBytes": "ten", "monthBytes": 0}, 400, "invalid"},
		{"PUT", "/api/devices/cam-01/quota", map[string]any{"dayBytes": "1000", "monthBytes": 0}, 400, "invalid"},
		{"PUT", "/api/devices/cam-01/quota", map[string]any{"dayBytes": 1.5, "monthBytes": 0}, 400, "invalid"},
		{"PUT", "/api/devices/cam-01/quota", map[string]any{"dayBytes": nil, "monthBytes": 0}, 400, "invalid"},
		{"PUT", "/api/devices/cam-01/quota", map[string]any{"dayBytes": int64(MaxQuotaBytes) + 1, "monthBytes": 0}, 400, "invalid"},
		{"PUT", "/api/devices/cam-01/quota", []byte(`{"dayBytes": 1e30, "monthBytes": 0}`), 400, "invalid"},
		{"PUT", "/api/devices/cam-01/quota", []byte(`{"dayBytes": 99999999999999999999, "monthBytes": 0}`), 400, "invalid"},
		{"PUT", "/api/devices/cam-01/quota", map[string]any{"dayBytes": 5}, 400, "invalid"},
		{"PUT", "/api/devices/cam-01/quota", map[string]any{}, 400, "invalid"},
		{"PUT", "/api/devices/cam-01/quota", map[string]any{"dayBytes": 5, "monthBytes": 0, "hourBytes": 1}, 400, "invalid"},
		{"PUT", "/api/devices/cam-01/quota", []byte(`[5, 0]`), 400, "invalid"},
		{"PUT", "/api/devices/cam-01/quota", []byte(`not json`), 400, "invalid"},
		{"PUT", "/api/devices/cam-01/quota", "dayBytes=5&monthBytes=0", 415, "invalid"},
		{"PUT", "/api/devices/nobody-here/quota", map[string]any{"dayBytes": 5, "monthBytes": 0}, 404, "not_found"},
		{"PUT", "/api/devices/" + url.PathEscape("bad id!") + "/quota", map[string]any{"dayBytes": 5, "monthBytes": 0}, 400, "invalid"},
		{"GET", "/api/devices/nobody-here/quota", nil, 404, "not_found"},
		{"GET", "/api/devices/x/quota", nil, 400, "invalid"},
		{"POST", "/api/devices/cam-01/quota", map[string]any{"dayBytes": 5, "monthBytes": 0}, 405, ""},
	} {
		status, body := a.do(tc.method, tc.path, tc.body)
		if status != tc.status {
			t.Errorf("%s %s %v: status %d, want %d: %.200s", tc.method, tc.path, tc.body, status, tc.status, body)
			continue
		}
		if tc.code != "" {
			if code := errorCode(t, body); code != tc.code {
				t.Errorf("%s %s %v: code %q, want %q", tc.method, tc.path, tc.body, code, tc.code)
			}
		}
	}
	if d := mustDevice(t, e.db, "cam-01"); d.Quota != (Quota{DayBytes: 1 << 30}) {
		t.Fatalf("garbage changed the quota: %+v", d.Quota)
	}
	if _, err := e.db.Device(ctx, "nobody-here"); err == nil {
		t.Fatal("setting a quota made an unknown device known")
	}

	// A viewer reads, and may not set.
	var tok newTokenAnswer
	a.json(http.MethodPost, "/api/tokens", map[string]string{"name": "watcher", "role": "viewer"}, http.StatusCreated, &tok)
	v := e.api()
	v.bearer = tok.Token
	v.json(http.MethodGet, "/api/devices/cam-01/quota", nil, http.StatusOK, &info)
	if status, body := v.do(http.MethodPut, "/api/devices/cam-01/quota", map[string]int64{"dayBytes": 0, "monthBytes": 0}); status != http.StatusForbidden {
		t.Fatalf("viewer PUT: %d %s", status, body)
	}
	// Without the session's CSRF token: refused.
	if status, _ := a.do(http.MethodPut, "/api/devices/cam-01/quota", map[string]int64{"dayBytes": 0, "monthBytes": 0}, csrfHeader, ""); status != http.StatusForbidden {
		t.Fatalf("PUT without CSRF token: %d", status)
	}

	// The device page shows the quota, and its form sets it, with units.
	status, page := a.do(http.MethodGet, "/devices/cam-01", nil)
	if status != http.StatusOK || !bytes.Contains(page, []byte(`id="quota-form"`)) || !bytes.Contains(page, []byte(`id="quota-day">0 B of 1.0 GiB`)) {
		t.Fatalf("device page: %d\n%.3000s", status, page)
	}
	csrf := formValue(t, page, "csrf")
	form := func(day, month string) (int, []byte) {
		return a.do(http.MethodPost, "/devices/cam-01/quota", url.Values{"csrf": {csrf}, "day": {day}, "month": {month}}.Encode())
	}
	if status, body := form("500 MB", "2 GiB"); status != http.StatusSeeOther {
		t.Fatalf("quota form: %d %s", status, body)
	}
	if d := mustDevice(t, e.db, "cam-01"); d.Quota != (Quota{DayBytes: 500e6, MonthBytes: 2 << 30}) {
		t.Fatalf("after the form: %+v", d.Quota)
	}
	for _, f := range [][2]string{{"ten", ""}, {"-5", ""}, {"", "2 PiB"}, {"1.5", ""}, {"", "99999999999999999999"}, {"5 parsecs", ""}} {
		status, body := form(f[0], f[1])
		if status != http.StatusBadRequest || !bytes.Contains(body, []byte("per ")) {
			t.Errorf("form %q: %d %.300s", f, status, body)
		}
	}
	if status, _ := a.do(http.MethodPost, "/devices/nobody-here/quota", url.Values{"csrf": {csrf}, "day": {"1"}}.Encode()); status != http.StatusNotFound {
		t.Errorf("form for an unknown device: %d", status)
	}
	if d := mustDevice(t, e.db, "cam-01"); d.Quota != (Quota{DayBytes: 500e6, MonthBytes: 2 << 30}) {
		t.Fatalf("garbage forms changed the quota: %+v", d.Quota)
	}
	// Empty fields remove the limits.
	if status, _ := form("", ""); status != http.StatusSeeOther {
		t.Fatal("clearing the quota")
	}
	if d := mustDevice(t, e.db, "cam-01"); d.Quota != (Quota{}) {
		t.Fatalf("after clearing: %+v", d.Quota)
	}
	// Each change is in the audit log.
	var audit auditPage
	a.json(http.MethodGet, "/api/audit?action=quota", nil, http.StatusOK, &audit)
	if len(audit.Entries) != 3 || audit.Entries[2].Target != "cam-01" || !strings.Contains(audit.Entries[2].Detail, "per day 1.0 GiB") {
		t.Fatalf("audit: %+v", audit.Entries)
	}
}
