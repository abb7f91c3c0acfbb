package console

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"github.com/clipgate/clipgate/internal/testutil"
)

// TestRetentionSchedule: an admin sets retention rules; the console applies them on its
// schedule (clips, their posters and their rows go; other prefixes stay), records each
// run in the rule and the audit log, and mirrors the rules as the bucket's lifecycle
// rules beside the bucket's own, which it keeps.
func TestRetentionSchedule(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{config: func(c *Config) {
		c.RetentionEvery = 20 * time.Millisecond
		c.Lifecycle = true
	}})
	ctx := context.Background()
	// The bucket has a lifecycle rule of its own.
	client := e.bucket.Client
	foreign := oss.LifecycleRule{ID: "logs-90d", Prefix: "logs/", Status: "Enabled", Expiration: &oss.LifecycleExpiration{Days: 90}}
	if err := client.SetBucketLifecycle(e.bucket.BucketName, []oss.LifecycleRule{foreign}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	poster := filepath.Join(dir, "p.jpg")
	if err := os.WriteFile(poster, []byte("\xff\xd8\xff\xe0 a poster"), 0o600); err != nil {
		t.Fatal(err)
	}
	clip := filepath.Join(dir, "c.mp4")
	if err := os.WriteFile(clip, clipData(2000, 4), 0o600); err != nil {
		t.Fatal(err)
	}
	old := e.uploadFile("cam-01", clip, poster, time.Now().Add(-time.Hour))
	other := e.upload("cam-02", "keep.mp4", clipData(100, 2), time.Now())
	e.waitIndexed(old.Key)
	e.waitIndexed(other.Key)

	admin := e.api()
	admin.login()
	prefix := e.stack.Prefix() + "cam-01/"
	var rule RetentionRule
	admin.json(http.MethodPut, "/api/retention/rules", map[string]any{"prefix": prefix, "days": 2}, http.StatusOK, &rule)
	if rule.Prefix != prefix || rule.Days != 2 || rule.UpdatedBy != testAdmin {
		t.Fatalf("rule %+v", rule)
	}
	admin.json(http.MethodPut, "/api/retention/rules", map[string]any{"prefix": "", "days": 400}, http.StatusOK, &rule)
	if rule.Prefix != e.stack.Prefix() {
		t.Fatalf("the whole prefix's rule: %+v", rule)
	}
	lc, err := client.GetBucketLifecycle(e.bucket.BucketName)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]oss.LifecycleRule{}
	for _, r := range lc.Rules {
		got[r.Prefix] = r
	}
	if len(lc.Rules) != 3 || got["logs/"].ID != "logs-90d" || got[prefix].Expiration == nil || got[prefix].Expiration.Days != 2 ||
		!strings.HasPrefix(got[prefix].ID, lifecycleIDPrefix) || got[e.stack.Prefix()].Expiration.Days != 400 {
		t.Fatalf("bucket lifecycle: %+v", lc.Rules)
	}
	for _, body := range []map[string]any{{"prefix": "elsewhere/", "days": 1}, {"prefix": prefix, "days": 0}, {"prefix": prefix + "../", "days": 1}, {"days": "2"}} {
		if status, out := admin.do(http.MethodPut, "/api/retention/rules", body); status != http.StatusBadRequest {
			t.Errorf("rule %v: %d %s", body, status, out)
		}
	}

	// Nothing is old enough yet; three days later the schedule deletes cam-01's clip and
	// its poster.
	runs := e.console.Stats().RetentionRuns
	testutil.WaitFor(t, "a scheduled run", func() bool { return e.console.Stats().RetentionRuns > runs+1 })
	if _, err := e.db.Clip(ctx, old.Key); err != nil {
		t.Fatalf("a young clip went: %v", err)
	}
	e.offset.Store(int64(3 * 24 * time.Hour))
	testutil.WaitFor(t, "the scheduled retention", func() bool {
		_, err := e.db.Clip(ctx, old.Key)
		return err != nil
	})
	for _, k := range []string{old.Key, old.Key + PosterSuffix} {
		if _, err := e.bucket.GetObjectDetailedMeta(k); !isOSSNotFound(err) {
			t.Errorf("%s after retention: %v", k, err)
		}
	}
	if _, err := e.db.Clip(ctx, other.Key); err != nil {
		t.Fatalf("another device's clip went: %v", err)
	}
	// The run that deleted them is recorded in the audit log (after the deletes) and in
	// the rule.
	testutil.WaitFor(t, "the scheduled run in the audit log", func() bool {
		es, err := e.db.Audit(ctx, AuditQuery{Action: AuditRetentionRun, Actor: SchedulerActor, Limit: MaxPageSize})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range es {
			if a.Target == prefix && strings.Contains(a.Detail, ": 2 objects, 1 index rows deleted") {
				return true
			}
		}
		return false
	})
	admin.login() // the session expired with the clock
	var rules rulesPage
	admin.json(http.MethodGet, "/api/retention/rules", nil, http.StatusOK, &rules)
	if rules.Every != "20ms" || !rules.Lifecycle || len(rules.Rules) != 2 || rules.Rules[1].Prefix != prefix || rules.Rules[1].LastRun.IsZero() {
		t.Fatalf("rules page: %+v", rules)
	}
	// Run now, by hand: recorded as the admin's.
	var rr rulesRun
	admin.json(http.MethodPost, "/api/retention/rules/run", nil, http.StatusOK, &rr)
	if len(rr.Runs) != 2 {
		t.Fatalf("runs %+v", rr)
	}
	if !hasAudit(auditActions(t, admin, "action=retention_run"), testAdmin, AuditRetentionRun, prefix) {
		t.Fatal("the admin's run is not in the audit log")
	}
	// The page lists the rules.
	_, page := admin.do(http.MethodGet, "/retention", nil)
	if !strings.Contains(string(page), `data-prefix="`+prefix+`"`) || !strings.Contains(string(page), "every 20ms") {
		t.Fatalf("retention page:\n%.3000s", page)
	}
	// Removing the rules removes the console's lifecycle rules, not the bucket's own.
	admin.json(http.MethodDelete, "/api/retention/rules?prefix="+url.QueryEscape(prefix), nil, http.StatusNoContent, nil)
	admin.json(http.MethodDelete, "/api/retention/rules?prefix="+url.QueryEscape(prefix), nil, http.StatusNotFound, nil)
	admin.json(http.MethodDelete, "/api/retention/rules?prefix="+url.QueryEscape(e.stack.Prefix()), nil, http.StatusNoContent, nil)
	lc, err = client.GetBucketLifecycle(e.bucket.BucketName)
	if err != nil || len(lc.Rules) != 1 || lc.Rules[0].ID != "logs-90d" {
		t.Fatalf("bucket lifecycle after removing the rules: %+v, %v", lc.Rules, err)
	}
	if !hasAudit(auditActions(t, admin, "action=lifecycle"), testAdmin, AuditLifecycle, e.bucket.BucketName) {
		t.Fatal("lifecycle changes are not in the audit log")
	}
}
