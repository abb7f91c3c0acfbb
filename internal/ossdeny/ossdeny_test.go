package ossdeny

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"

	"github.com/clipgate/clipgate/internal/localcloud"
	"github.com/clipgate/clipgate/policy"
)

const (
	testBucket = "clips"
	testPrefix = "cams/"
	testRole   = "clipgate-device"
)

// cloud is a localcloud with an admin key and the device role, on a settable clock.
type cloud struct {
	t      *testing.T
	srv    *localcloud.Server
	admin  *oss.Client
	mu     sync.Mutex
	offset time.Duration // added to the real time (signatures allow 15 minutes of skew)
	roleID string
}

func newCloud(t *testing.T) *cloud {
	t.Helper()
	c := &cloud{t: t}
	rolePolicy := `{"Version":"1","Statement":[{"Effect":"Allow","Action":["oss:*"],"Resource":["acs:oss:*:*:` + testBucket + `/*"]}]}`
	srv, err := localcloud.Start(localcloud.Config{
		DataDir: t.TempDir(),
		Keys: []localcloud.AccessKey{
			{ID: "LTAIadmin00000000", Secret: "admin-secret-000000000000000000"},
			{ID: "LTAIcaller0000000", Secret: "caller-secret-00000000000000000",
				Policy: `{"Version":"1","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"*"}]}`},
		},
		Roles:          []localcloud.Role{{Name: testRole, Policy: rolePolicy}},
		Buckets:        []string{testBucket},
		Now:            c.clock,
		LifecycleCheck: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	c.srv = srv
	c.roleID = srv.RoleARN(testRole)
	c.admin = c.client("LTAIadmin00000000", "admin-secret-000000000000000000", "")
	return c
}

func (c *cloud) clock() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *cloud) advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

func (c *cloud) client(ak, sk, token string) *oss.Client {
	c.t.Helper()
	opts := []oss.ClientOption{oss.ForcePathStyle(true), oss.AuthVersion(oss.AuthV4), oss.Region(c.srv.Region()),
		oss.HTTPClient(&http.Client{Timeout: 30 * time.Second})}
	if token != "" {
		opts = append(opts, oss.SecurityToken(token))
	}
	cl, err := oss.New(c.srv.OSSEndpoint(), ak, sk, opts...)
	if err != nil {
		c.t.Fatal(err)
	}
	return cl
}

// device issues credentials for device as the token workers do (session name = device
// ID, the device policy as session policy) and returns a bucket client with them.
func (c *cloud) device(device string) *oss.Bucket {
	c.t.Helper()
	p, err := policy.DevicePolicy(testBucket, testPrefix, device, "w")
	if err != nil {
		c.t.Fatal(err)
	}
	cred, err := c.srv.Authority().AssumeRole("LTAIcaller0000000", c.roleID, device, p, time.Hour, c.clock())
	if err != nil {
		c.t.Fatal(err)
	}
	b, err := c.client(cred.AccessKeyID, cred.AccessKeySecret, cred.SecurityToken).Bucket(testBucket)
	if err != nil {
		c.t.Fatal(err)
	}
	return b
}

func (c *cloud) writer(lifetime time.Duration) *Writer {
	c.t.Helper()
	w, err := New(Config{Client: c.admin, Bucket: testBucket, Prefix: testPrefix, RoleARN: c.roleID, Lifetime: lifetime, Now: c.clock})
	if err != nil {
		c.t.Fatal(err)
	}
	return w
}

func (c *cloud) policy() string {
	c.t.Helper()
	p, err := c.admin.GetBucketPolicy(testBucket)
	var se oss.ServiceError
	if errors.As(err, &se) && se.Code == "NoSuchBucketPolicy" {
		return ""
	}
	if err != nil {
		c.t.Fatal(err)
	}
	return p
}

func put(b *oss.Bucket, device, name string) error {
	return b.PutObject(testPrefix+device+"/"+name, strings.NewReader("clip"))
}

func wantDenied(t *testing.T, err error) {
	t.Helper()
	var se oss.ServiceError
	if !errors.As(err, &se) || se.StatusCode != http.StatusForbidden || se.Code != "AccessDenied" {
		t.Fatalf("got %v, want 403 AccessDenied", err)
	}
}

var bg = context.Background()

// TestRevokeReachesOSS (issue 12 point 3): credentials issued before a revocation get
// 403 AccessDenied once Sync has written the Deny; other devices are unaffected, as is
// the admin's reading of the revoked device's clips; after a restore (the device absent
// from the list) the policy is gone and new credentials work.
func TestRevokeReachesOSS(t *testing.T) {
	t.Parallel()
	c := newCloud(t)
	w := c.writer(time.Hour)
	cam1, cam2 := c.device("cam-1"), c.device("cam-2")
	if err := put(cam1, "cam-1", "before.mp4"); err != nil {
		t.Fatal(err)
	}

	res, err := w.Sync(bg, []Revoked{{Device: "cam-1", At: c.clock()}})
	if err != nil || !res.Written || res.Devices != 1 {
		t.Fatalf("Sync = %+v, %v", res, err)
	}
	wantDenied(t, put(cam1, "cam-1", "after.mp4"))
	_, err = cam1.InitiateMultipartUpload(testPrefix + "cam-1/mp.mp4")
	wantDenied(t, err)
	if err := put(cam2, "cam-2", "after.mp4"); err != nil {
		t.Fatalf("another device: %v", err)
	}
	admin, _ := c.admin.Bucket(testBucket)
	if _, err := admin.GetObjectDetailedMeta(testPrefix + "cam-1/before.mp4"); err != nil {
		t.Fatalf("the admin reading the revoked device's clip: %v", err)
	}
	// A second Sync with the same list writes nothing.
	if res, err := w.Sync(bg, []Revoked{{Device: "cam-1", At: c.clock()}}); err != nil || res.Written {
		t.Fatalf("idempotent Sync = %+v, %v", res, err)
	}

	// Restore: the device leaves the list; the policy had nothing else, so it is deleted.
	if res, err := w.Sync(bg, nil); err != nil || !res.Written {
		t.Fatalf("Sync after restore = %+v, %v", res, err)
	}
	if p := c.policy(); p != "" {
		t.Fatalf("policy after restore: %s", p)
	}
	if err := put(c.device("cam-1"), "cam-1", "restored.mp4"); err != nil {
		t.Fatalf("new credentials after restore: %v", err)
	}
}

// TestKeepsOtherStatements: the operator's statements survive every Sync, unchanged.
func TestKeepsOtherStatements(t *testing.T) {
	t.Parallel()
	c := newCloud(t)
	other := `{"Effect":"Allow","Principal":["*"],"Action":["oss:GetObject"],"Resource":["acs:oss:*:*:clips/public/*"]}`
	// Close to ours but for another prefix: still the operator's.
	lookalike := `{"Effect":"Deny","Principal":["arn:sts::1000000000000000:assumed-role/clipgate-device/cam-9"],"Action":["oss:*"],"Resource":["acs:oss:*:*:clips/other/cam-9/*"],"Condition":{"DateLessThan":{"acs:CurrentTime":["2030-01-01T00:00:00Z"]}}}`
	if err := c.admin.SetBucketPolicy(testBucket, `{"Version":"1","Statement":[`+other+`,`+lookalike+`]}`); err != nil {
		t.Fatal(err)
	}
	w := c.writer(time.Hour)
	if _, err := w.Sync(bg, []Revoked{{Device: "cam-1", At: c.clock()}, {Device: "cam-2", At: c.clock()}}); err != nil {
		t.Fatal(err)
	}
	stmts := statements(t, c.policy())
	if len(stmts) != 3 || !jsonEqual(t, stmts[0], other) || !jsonEqual(t, stmts[1], lookalike) {
		t.Fatalf("statements after revoking: %s", stmts)
	}
	if _, err := w.Sync(bg, nil); err != nil {
		t.Fatal(err)
	}
	stmts = statements(t, c.policy())
	if len(stmts) != 2 || !jsonEqual(t, stmts[0], other) || !jsonEqual(t, stmts[1], lookalike) {
		t.Fatalf("statements after restoring: %s", stmts)
	}
}

// TestEntriesExpire: an entry lasts Lifetime after its revocation. OSS itself stops
// applying it then (its DateLessThan condition), and the next Sync removes it.
func TestEntriesExpire(t *testing.T) {
	t.Parallel()
	c := newCloud(t)
	w := c.writer(5 * time.Minute)
	cam := c.device("cam-1")
	list := []Revoked{{Device: "cam-1", At: c.clock()}}
	if _, err := w.Sync(bg, list); err != nil {
		t.Fatal(err)
	}
	wantDenied(t, put(cam, "cam-1", "a.mp4"))
	c.advance(4 * time.Minute)
	wantDenied(t, put(cam, "cam-1", "b.mp4"))
	c.advance(2 * time.Minute) // past revocation + 5m (rounded up to the minute)
	if err := put(cam, "cam-1", "c.mp4"); err != nil {
		t.Fatalf("after the entry's end (not yet removed): %v", err)
	}
	if p := c.policy(); p == "" {
		t.Fatal("the entry was removed without a Sync")
	}
	if res, err := w.Sync(bg, list); err != nil || !res.Written || res.Devices != 0 {
		t.Fatalf("Sync after expiry = %+v, %v", res, err)
	}
	if p := c.policy(); p != "" {
		t.Fatalf("policy after expiry: %s", p)
	}
}

// TestCapacity: entries that would not fit are merged into one statement; when even that
// does not fit, Sync writes nothing and says so. The figures are those the README gives.
func TestCapacity(t *testing.T) {
	t.Parallel()
	c := newCloud(t)
	w := c.writer(time.Hour)
	var list []Revoked
	start := c.clock()
	// One revocation a minute, over the hour: 60 entries, in 6 statements.
	for i := range 60 {
		list = append(list, Revoked{Device: fmt.Sprintf("camera-%09d", i), At: start.Add(time.Duration(i-59) * time.Minute)})
	}
	res, err := w.Sync(bg, list)
	if err != nil || res.Merged || res.Devices != 60 || res.Statements > 7 || res.Size > MaxPolicySize {
		t.Fatalf("60 an hour: %+v, %v", res, err)
	}
	t.Logf("60 devices: %d statements, %d bytes", res.Statements, res.Size)
	// Many more: merged into one statement.
	for i := 60; i < 135; i++ {
		list = append(list, Revoked{Device: fmt.Sprintf("camera-%09d", i), At: start.Add(-time.Duration(i%50) * time.Minute)})
	}
	res, err = w.Sync(bg, list)
	if err != nil || !res.Merged || res.Statements != 1 || res.Devices != 135 {
		t.Fatalf("135: %+v, %v", res, err)
	}
	t.Logf("135 devices merged: %d bytes", res.Size)
	wantDenied(t, put(c.device("camera-000000000"), "camera-000000000", "x"))
	// Too many: nothing is written, the previous entries stay.
	before := c.policy()
	for i := 135; i < 400; i++ {
		list = append(list, Revoked{Device: fmt.Sprintf("camera-%09d", i), At: start})
	}
	if _, err := w.Sync(bg, list); !errors.Is(err, ErrPolicyFull) {
		t.Fatalf("400 devices: %v, want ErrPolicyFull", err)
	}
	if c.policy() != before {
		t.Fatal("a failed Sync changed the policy")
	}
}

// TestGarbage: a bucket policy that is not a JSON object is reported, not overwritten;
// bad configurations are refused.
func TestGarbage(t *testing.T) {
	t.Parallel()
	c := newCloud(t)
	w := c.writer(time.Hour)
	// localcloud, like OSS, refuses to store an invalid policy, so check the parser.
	for _, text := range []string{"[]", "nope", `{"Version":"1","Statement":{}}`} {
		if _, err := parseDocument(text); err == nil {
			t.Errorf("parseDocument(%q) accepted", text)
		}
	}
	if _, err := w.Sync(bg, []Revoked{{Device: "bad/id", At: c.clock()}}); err != nil {
		t.Fatal(err)
	}
	if p := c.policy(); p != "" {
		t.Fatalf("an invalid device ID was written: %s", p)
	}
	for name, cfg := range map[string]Config{
		"no client":     {Bucket: testBucket, RoleARN: c.roleID, Lifetime: time.Hour},
		"bad bucket":    {Client: c.admin, Bucket: "B", RoleARN: c.roleID, Lifetime: time.Hour},
		"bad prefix":    {Client: c.admin, Bucket: testBucket, Prefix: "x", RoleARN: c.roleID, Lifetime: time.Hour},
		"bad role":      {Client: c.admin, Bucket: testBucket, RoleARN: "acs:ram::1:user/x", Lifetime: time.Hour},
		"wildcard role": {Client: c.admin, Bucket: testBucket, RoleARN: "acs:ram::1:role/*", Lifetime: time.Hour},
		"no lifetime":   {Client: c.admin, Bucket: testBucket, RoleARN: c.roleID},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func statements(t *testing.T, text string) []json.RawMessage {
	t.Helper()
	var doc struct{ Statement []json.RawMessage }
	if err := json.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatalf("policy %q: %v", text, err)
	}
	return doc.Statement
}

func jsonEqual(t *testing.T, a json.RawMessage, b string) bool {
	t.Helper()
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		t.Fatal("bad JSON")
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}
