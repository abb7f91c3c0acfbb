package localcloud

import (
	"errors"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	osv2 "github.com/aliyun/alibabacloud-oss-go-sdk-v2/oss"
	"github.com/aliyun/aliyun-oss-go-sdk/oss"
)

// clockedV2 returns a V2 SDK client with its default retries: after the server's clock
// jumps, the SDK's first request gets RequestTimeTooSkewed, and the SDK corrects its clock
// offset from the response's Date and retries, as it does against Alibaba.
func (e *ossEnv) clockedV2() *osv2.Client {
	return e.clientV2(e.ak, e.sk, "", func(c *osv2.Config) { c.WithRetryMaxAttempts(3) })
}

// syncedV2 returns a V2 SDK client that has learned the server's clock (after a jump).
// The SDK retries only requests with a body, so a PutObject of a scratch object (outside
// every rule's prefix but "") does it; later requests of any kind carry the corrected
// time. A new client each time: v1.6.1 computes the new offset from its already offset
// time and replaces the old one with it, so a second jump leaves it wrong.
func (e *ossEnv) syncedV2(t *testing.T) *osv2.Client {
	t.Helper()
	c := e.clockedV2()
	if _, err := c.PutObject(bg, &osv2.PutObjectRequest{Bucket: osv2.Ptr(testBucket), Key: osv2.Ptr("sync/clock"), Body: strings.NewReader("t")}); err != nil {
		t.Fatalf("learning the server's clock: %v", err)
	}
	return c
}

// nextMidnight is the first midnight UTC at or after t: when a lifecycle run sees t.
func nextMidnight(t time.Time) time.Time {
	m := t.UTC().Truncate(24 * time.Hour)
	if m.Before(t) {
		m = m.Add(24 * time.Hour)
	}
	return m
}

// setClock moves the env's clock to t.
func (e *ossEnv) setClock(t time.Time) {
	e.clockMu.Lock()
	e.clock.Advance(t.Sub(e.clock.Now()))
	e.clockMu.Unlock()
}

func headV2(c *osv2.Client, key string) error {
	_, err := c.HeadObject(bg, &osv2.HeadObjectRequest{Bucket: osv2.Ptr(testBucket), Key: osv2.Ptr(key)})
	return err
}

// TestLifecycleExpiresOnTheClock (issue 10 point 13): rules put with the v3 SDK expire
// objects by prefix N days after they were last modified and abort multipart uploads N
// days after they began, at the daily run (00:00 UTC) of localcloud's clock, to the
// second; a disabled rule does nothing; after DeleteBucketLifecycle nothing expires.
// Before, PutBucketLifecycle answered 501 NotImplemented.
func TestLifecycleExpiresOnTheClock(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t, func(c *Config) { c.LifecycleCheck = -1 }) // runs are due to requests only here
	admin := e.admin(oss.AuthV4)
	t0 := e.clock.Now()
	for _, k := range []string{"cams/old.mp4", "keep/x"} {
		if err := admin.PutObject(k, strings.NewReader("x")); err != nil {
			t.Fatal(err)
		}
	}
	imur, err := admin.InitiateMultipartUpload("cams/mp.mp4")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.UploadPart(imur, strings.NewReader("part"), 4, 1); err != nil {
		t.Fatal(err)
	}
	rules := []oss.LifecycleRule{
		{ID: "cams-7d", Prefix: "cams/", Status: "Enabled", Expiration: &oss.LifecycleExpiration{Days: 7}},
		{ID: "abort-2d", Prefix: "", Status: "Enabled", AbortMultipartUpload: &oss.LifecycleAbortMultipartUpload{Days: 2}},
		{ID: "off", Prefix: "keep/", Status: "Disabled", Expiration: &oss.LifecycleExpiration{Days: 1}},
	}
	v3 := e.v3Client(e.ak, e.sk, oss.AuthV1)
	_, err = v3.GetBucketLifecycle(testBucket)
	wantOSSStatus(t, err, http.StatusNotFound, "NoSuchLifecycle")
	if err := v3.SetBucketLifecycle(testBucket, rules); err != nil {
		t.Fatalf("SetBucketLifecycle: %v", err)
	}
	got, err := v3.GetBucketLifecycle(testBucket)
	if err != nil || len(got.Rules) != 3 || got.Rules[0].ID != "cams-7d" || got.Rules[0].Prefix != "cams/" || got.Rules[0].Expiration.Days != 7 ||
		got.Rules[1].AbortMultipartUpload == nil || got.Rules[1].AbortMultipartUpload.Days != 2 || got.Rules[2].Status != "Disabled" {
		t.Fatalf("GetBucketLifecycle: %+v %v", got, err)
	}

	var c *osv2.Client
	listParts := func() error {
		_, err := c.ListParts(bg, &osv2.ListPartsRequest{Bucket: osv2.Ptr(testBucket), Key: osv2.Ptr("cams/mp.mp4"), UploadId: osv2.Ptr(imur.UploadID)})
		return err
	}
	abortAt := nextMidnight(t0.Add(2 * 24 * time.Hour))
	e.setClock(abortAt.Add(-time.Second))
	c = e.syncedV2(t)
	if err := listParts(); err != nil {
		t.Fatalf("upload a second before its abort: %v", err)
	}
	e.setClock(abortAt)
	wantOSSStatus(t, listParts(), http.StatusNotFound, "NoSuchUpload") // seconds later: no new sync
	if err := headV2(c, "cams/old.mp4"); err != nil {
		t.Fatalf("object before its expiry: %v", err)
	}

	expireAt := nextMidnight(t0.Add(7 * 24 * time.Hour))
	e.setClock(expireAt.Add(-time.Second))
	c = e.syncedV2(t)
	if err := headV2(c, "cams/old.mp4"); err != nil {
		t.Fatalf("object a second before its expiry: %v", err)
	}
	if _, err := c.PutObject(bg, &osv2.PutObjectRequest{Bucket: osv2.Ptr(testBucket), Key: osv2.Ptr("cams/new.mp4"), Body: strings.NewReader("y")}); err != nil {
		t.Fatal(err)
	}
	e.setClock(expireAt)
	wantOSSStatus(t, headV2(c, "cams/old.mp4"), http.StatusNotFound, "NoSuchKey")
	for _, k := range []string{"keep/x", "cams/new.mp4"} {
		if err := headV2(c, k); err != nil {
			t.Fatalf("%s after the run: %v", k, err)
		}
	}

	// Without the rules nothing more expires.
	if _, err := c.DeleteBucketLifecycle(bg, &osv2.DeleteBucketLifecycleRequest{Bucket: osv2.Ptr(testBucket)}); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetBucketLifecycle(bg, &osv2.GetBucketLifecycleRequest{Bucket: osv2.Ptr(testBucket)})
	wantOSSStatus(t, err, http.StatusNotFound, "NoSuchLifecycle")
	e.setClock(expireAt.Add(30 * 24 * time.Hour))
	c = e.syncedV2(t)
	if err := headV2(c, "cams/new.mp4"); err != nil {
		t.Fatalf("after DeleteBucketLifecycle: %v", err)
	}
}

// TestLifecycleRunsWithoutRequests: with no request at all (no console, no client), the
// background check does the daily run: the expired object's record leaves the disk.
func TestLifecycleRunsWithoutRequests(t *testing.T) {
	t.Parallel()
	runs := make(chan time.Time, 16)
	e := newOSSEnv(t, func(c *Config) {
		c.LifecycleCheck = 5 * time.Millisecond
		c.lifecycleRan = func(run time.Time) {
			select {
			case runs <- run:
			default:
			}
		}
	})
	admin := e.admin(oss.AuthV1)
	t0 := e.clock.Now()
	if err := admin.PutObject("tmp/a", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	if err := e.v3Client(e.ak, e.sk, oss.AuthV1).SetBucketLifecycle(testBucket,
		[]oss.LifecycleRule{{ID: "tmp", Prefix: "tmp/", Status: "Enabled", Expiration: &oss.LifecycleExpiration{Days: 1}}}); err != nil {
		t.Fatal(err)
	}
	b := e.srv.oss.store.buckets[testBucket]
	record := b.recordPath("tmp/a")
	if _, err := os.Stat(record); err != nil {
		t.Fatal(err)
	}
	due := nextMidnight(t0.Add(24 * time.Hour))
	e.setClock(due)
	timeout := time.After(30 * time.Second) // a guard against a hang, not a timing assertion
	var run time.Time
	for run.Before(due) {
		select {
		case run = <-runs:
		case <-timeout:
			t.Fatal("no lifecycle run after the clock passed midnight")
		}
	}
	if _, ok := b.get("tmp/a"); ok {
		t.Fatal("the expired object is still indexed")
	}
	if _, err := os.Stat(record); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the expired object's record is still on disk: %v", err)
	}
}

// TestLifecycleRefused: the rules OSS refuses, with its status and code; what localcloud
// does not implement answers 501; the rules survive a restart; a key without the
// permission may not touch them.
func TestLifecycleRefused(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	v3 := e.v3Client(e.ak, e.sk, oss.AuthV4)
	doc := func(rules ...string) string {
		return `<?xml version="1.0" encoding="UTF-8"?><LifecycleConfiguration>` + strings.Join(rules, "") + `</LifecycleConfiguration>`
	}
	rule := func(id, prefix, body string) string {
		return `<Rule><ID>` + id + `</ID><Prefix>` + prefix + `</Prefix><Status>Enabled</Status>` + body + `</Rule>`
	}
	exp := `<Expiration><Days>3</Days></Expiration>`
	cases := []struct {
		name, xml string
		status    int
		code, msg string
	}{
		{"overlap", doc(rule("a", "logs/", exp), rule("b", "logs/2025/", exp)), 400, "InvalidArgument", "Overlap for same action type Expiration"},
		{"overlap abort", doc(rule("a", "", `<AbortMultipartUpload><Days>1</Days></AbortMultipartUpload>`), rule("b", "x", `<AbortMultipartUpload><Days>2</Days></AbortMultipartUpload>`)), 400, "InvalidArgument", "Overlap for same action type AbortMultipartUpload"},
		{"days zero", doc(rule("a", "x/", `<Expiration><Days>0</Days></Expiration>`)), 400, "InvalidArgument", "positive integer"},
		{"days garbage", doc(rule("a", "x/", `<Expiration><Days>ten</Days></Expiration>`)), 400, "InvalidArgument", "positive integer"},
		{"days and date", doc(rule("a", "x/", `<Expiration><Days>1</Days><CreatedBeforeDate>2020-01-01T00:00:00.000Z</CreatedBeforeDate></Expiration>`)), 400, "InvalidArgument", "exactly one"},
		{"no days", doc(rule("a", "x/", `<Expiration></Expiration>`)), 400, "InvalidArgument", "exactly one"},
		{"date not midnight", doc(rule("a", "x/", `<Expiration><CreatedBeforeDate>2020-01-01T08:00:00.000Z</CreatedBeforeDate></Expiration>`)), 400, "InvalidArgument", "midnight UTC"},
		{"status", doc(strings.Replace(rule("a", "x/", exp), "Enabled", "On", 1)), 400, "InvalidArgument", "Enabled or Disabled"},
		{"no action", doc(rule("a", "x/", "")), 400, "InvalidArgument", "no action"},
		{"duplicate ID", doc(rule("a", "x/", exp), rule("a", "y/", exp)), 400, "InvalidArgument", "used twice"},
		{"long ID", doc(rule(strings.Repeat("i", 256), "x/", exp)), 400, "InvalidArgument", "255 bytes"},
		{"no rules", doc(), 400, "InvalidArgument", "1 to 1000 rules"},
		{"too many rules", doc(strings.Repeat(rule("", "x/", exp), 1001)), 400, "InvalidArgument", "1 to 1000 rules"},
		{"not XML", `<LifecycleConfiguration><Rule>`, 400, "MalformedXML", ""},
		{"other root", `<Lifecycle><Rule/></Lifecycle>`, 400, "MalformedXML", ""},
		{"unknown element", doc(rule("a", "x/", exp+`<Colour>red</Colour>`)), 400, "MalformedXML", ""},
		{"transition", doc(rule("a", "x/", `<Transition><Days>30</Days><StorageClass>IA</StorageClass></Transition>`)), 501, "NotImplemented", "Transition"},
		{"tag", doc(rule("a", "x/", exp+`<Tag><Key>k</Key><Value>v</Value></Tag>`)), 501, "NotImplemented", "Tag"},
		{"delete marker", doc(rule("a", "x/", `<Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>`)), 501, "NotImplemented", "ExpiredObjectDeleteMarker"},
	}
	for _, c := range cases {
		err := v3.SetBucketLifecycleXml(testBucket, c.xml)
		wantOSSStatus(t, err, c.status, c.code)
		var se oss.ServiceError
		if errors.As(err, &se) && !strings.Contains(se.Message, c.msg) {
			t.Errorf("%s: message %q lacks %q", c.name, se.Message, c.msg)
		}
	}
	_, err := v3.GetBucketLifecycle(testBucket)
	wantOSSStatus(t, err, http.StatusNotFound, "NoSuchLifecycle")

	// Overlap is allowed with x-oss-allow-same-action-overlap: true; a missing ID is made up;
	// a CreatedBeforeDate rule round-trips through the V2 SDK; all survive a restart.
	if err := v3.SetBucketLifecycleXml(testBucket, doc(rule("a", "logs/", exp), rule("", "logs/2025/", exp)), oss.AllowSameActionOverLap(true)); err != nil {
		t.Fatalf("overlap allowed: %v", err)
	}
	c2 := e.adminV2(osv2.SignatureVersionV4)
	if _, err := c2.PutBucketLifecycle(bg, &osv2.PutBucketLifecycleRequest{Bucket: osv2.Ptr(testBucket), AllowSameActionOverlap: osv2.Ptr("true"),
		LifecycleConfiguration: &osv2.LifecycleConfiguration{Rules: []osv2.LifecycleRule{
			{ID: osv2.Ptr("a"), Prefix: osv2.Ptr("logs/"), Status: osv2.Ptr("Enabled"), Expiration: &osv2.LifecycleRuleExpiration{Days: osv2.Ptr(int32(3))}},
			{Prefix: osv2.Ptr("old/"), Status: osv2.Ptr("Enabled"), Expiration: &osv2.LifecycleRuleExpiration{CreatedBeforeDate: osv2.Ptr("2020-01-01T00:00:00.000Z")},
				AbortMultipartUpload: &osv2.LifecycleRuleAbortMultipartUpload{CreatedBeforeDate: osv2.Ptr("2020-01-01T00:00:00.000Z")}},
		}}}); err != nil {
		t.Fatalf("V2 PutBucketLifecycle: %v", err)
	}
	e.restart()
	res, err := e.adminV2(osv2.SignatureVersionV1).GetBucketLifecycle(bg, &osv2.GetBucketLifecycleRequest{Bucket: osv2.Ptr(testBucket)})
	if err != nil {
		t.Fatal(err)
	}
	rs := res.LifecycleConfiguration.Rules
	if len(rs) != 2 || *rs[0].ID != "a" || rs[1].ID == nil || len(*rs[1].ID) == 0 || *rs[1].Expiration.CreatedBeforeDate != "2020-01-01T00:00:00.000Z" ||
		*rs[1].AbortMultipartUpload.CreatedBeforeDate != "2020-01-01T00:00:00.000Z" || *rs[1].Prefix != "old/" {
		t.Fatalf("after a restart: %+v", rs)
	}

	ro := e.v3Client(e.roAK, e.roSK, oss.AuthV4)
	wantOSSStatus(t, ro.SetBucketLifecycleXml(testBucket, doc(rule("a", "x/", exp))), http.StatusForbidden, "AccessDenied")
	_, err = ro.GetBucketLifecycle(testBucket)
	wantOSSStatus(t, err, http.StatusForbidden, "AccessDenied")
	wantOSSStatus(t, ro.DeleteBucketLifecycle(testBucket), http.StatusForbidden, "AccessDenied")
	if err := v3.DeleteBucketLifecycle(testBucket); err != nil {
		t.Fatal(err)
	}
	if err := v3.DeleteBucketLifecycle(testBucket); err != nil {
		t.Fatalf("DeleteBucketLifecycle without rules: %v", err)
	}
}

// TestLifecycleRuleTimes pins the expiry arithmetic to OSS's documented example: with
// Days 1, an object uploaded on 2020-07-20 before 08:00 UTC+8 expires at 08:00 UTC+8 on
// the 21st, one uploaded after it at 08:00 UTC+8 on the 22nd.
func TestLifecycleRuleTimes(t *testing.T) {
	t.Parallel()
	cst := time.FixedZone("UTC+8", 8*3600)
	r := &lifecycleRule{ExpireDays: 1, AbortDays: 1}
	runOf := func(modified time.Time) time.Time {
		for run := nextMidnight(modified); ; run = run.Add(24 * time.Hour) {
			if r.objectExpired(modified, run) {
				return run
			}
		}
	}
	for _, c := range []struct{ modified, want time.Time }{
		{time.Date(2020, 7, 20, 7, 59, 0, 0, cst), time.Date(2020, 7, 21, 8, 0, 0, 0, cst)},
		{time.Date(2020, 7, 20, 8, 0, 1, 0, cst), time.Date(2020, 7, 22, 8, 0, 0, 0, cst)},
		{time.Date(2020, 7, 20, 8, 0, 0, 0, cst), time.Date(2020, 7, 21, 8, 0, 0, 0, cst)},
	} {
		if got := runOf(c.modified); !got.Equal(c.want) {
			t.Errorf("modified %v: expires at %v, want %v", c.modified, got.In(cst), c.want)
		}
	}
	before := &lifecycleRule{ExpireBefore: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)}
	if !before.objectExpired(time.Date(2019, 12, 31, 23, 59, 59, 0, time.UTC), time.Now()) ||
		before.objectExpired(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), time.Now()) {
		t.Error("CreatedBeforeDate boundary")
	}
	if !r.uploadExpired(time.Date(2020, 7, 20, 0, 0, 0, 0, time.UTC), time.Date(2020, 7, 21, 0, 0, 0, 0, time.UTC)) ||
		r.uploadExpired(time.Date(2020, 7, 20, 0, 0, 1, 0, time.UTC), time.Date(2020, 7, 21, 0, 0, 0, 0, time.UTC)) {
		t.Error("AbortMultipartUpload Days boundary")
	}
}
