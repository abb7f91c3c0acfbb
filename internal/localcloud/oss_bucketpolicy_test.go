package localcloud

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	osv2 "github.com/aliyun/alibabacloud-oss-go-sdk-v2/oss"
	"github.com/aliyun/aliyun-oss-go-sdk/oss"

	"github.com/clipgate/clipgate/internal/policyeval"
	"github.com/clipgate/clipgate/policy"
)

// v3Client returns an aliyun-oss-go-sdk v3 client (for bucket-level calls).
func (e *ossEnv) v3Client(ak, sk string, v oss.AuthVersionType, opts ...oss.ClientOption) *oss.Client {
	e.t.Helper()
	opts = append([]oss.ClientOption{oss.AuthVersion(v), oss.Region(testRegion), oss.HTTPClient(e.httpClient())}, opts...)
	c, err := oss.New(e.endpoint, ak, sk, opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// session issues temporary credentials of the test role for a named session.
func (e *ossEnv) session(t *testing.T, name, sessionPolicy string) *TempCredentials {
	t.Helper()
	c, err := e.auth.AssumeRole(e.ak, e.auth.RoleARN(testRoleName), name, sessionPolicy, time.Hour, e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// wantOSSEC checks status, code and EC (in the body and, where the SDK shows headers, in
// x-oss-ec) of an error from either OSS SDK.
func wantOSSEC(t *testing.T, err error, status int, code, ec string) {
	t.Helper()
	wantOSSStatus(t, err, status, code)
	var se oss.ServiceError
	var se2 *osv2.ServiceError
	switch {
	case errors.As(err, &se):
		if se.Ec != ec {
			t.Fatalf("EC %q, want %q", se.Ec, ec)
		}
	case errors.As(err, &se2):
		if se2.EC != ec || se2.Headers.Get("x-oss-ec") != ec {
			t.Fatalf("EC %q, header x-oss-ec %q, want %q", se2.EC, se2.Headers.Get("x-oss-ec"), ec)
		}
	}
}

// revokePolicy is the bucket policy issue 12's revocation writes: a Deny for everyone on
// one device's objects.
func revokePolicy(devices ...string) string {
	var res []string
	for _, d := range devices {
		res = append(res, fmt.Sprintf("%q", policy.DeviceResource(testBucket, "cams/", d)))
	}
	return `{"Version":"1","Statement":[{"Effect":"Deny","Principal":["*"],"Action":["oss:*"],"Resource":[` + strings.Join(res, ",") + `]}]}`
}

// TestBucketPolicyRevokesDevice (issue 10 point 12, issue 12 point 3): a bucket policy
// Deny written with the official SDK stops credentials issued before it, whatever their
// role and session policies allow, with every signature version and both SDKs; other
// devices are unaffected; deleting the policy restores the same credentials. Before,
// PutBucketPolicy answered 501 NotImplemented.
func TestBucketPolicyRevokesDevice(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	admin := e.v3Client(e.ak, e.sk, oss.AuthV4)
	cam1 := e.session(t, "cam-1", devicePolicy(t, "wa"))
	cam2p, err := policy.DevicePolicy(testBucket, "cams/", "cam-2", "wa")
	if err != nil {
		t.Fatal(err)
	}
	cam2 := e.session(t, "cam-2", cam2p)
	for _, av := range authVersions {
		if err := e.stsClient(cam1, av.v).PutObject("cams/cam-1/before-"+av.name, strings.NewReader("x")); err != nil {
			t.Fatalf("%s: put before the revocation: %v", av.name, err)
		}
	}

	_, err = admin.GetBucketPolicy(testBucket)
	wantOSSEC(t, err, http.StatusNotFound, "NoSuchBucketPolicy", "0030-00000006")
	if err := admin.SetBucketPolicy(testBucket, revokePolicy("cam-1")); err != nil {
		t.Fatalf("SetBucketPolicy: %v", err)
	}
	got, err := admin.GetBucketPolicy(testBucket)
	if err != nil || got != revokePolicy("cam-1") {
		t.Fatalf("GetBucketPolicy = %q, %v", got, err)
	}

	for _, av := range authVersions {
		b := e.stsClient(cam1, av.v)
		err := b.PutObject("cams/cam-1/after-"+av.name, strings.NewReader("x"))
		wantOSSEC(t, err, http.StatusForbidden, "AccessDenied", "0003-00000101")
		_, err = b.AppendObject("cams/cam-1/log-"+av.name, strings.NewReader("x"), 0)
		wantOSSEC(t, err, http.StatusForbidden, "AccessDenied", "0003-00000101")
		_, err = b.InitiateMultipartUpload("cams/cam-1/mp-" + av.name)
		wantOSSEC(t, err, http.StatusForbidden, "AccessDenied", "0003-00000101")
		_, err = b.GetObject("cams/cam-1/before-" + av.name)
		wantOSSEC(t, err, http.StatusForbidden, "AccessDenied", "0003-00000101")
		if err := e.stsClient(cam2, av.v).PutObject("cams/cam-2/after-"+av.name, strings.NewReader("x")); err != nil {
			t.Fatalf("%s: another device after the revocation: %v", av.name, err)
		}
	}
	v2 := e.clientV2(cam1.AccessKeyID, cam1.AccessKeySecret, cam1.SecurityToken)
	_, err = v2.PutObject(bg, &osv2.PutObjectRequest{Bucket: osv2.Ptr(testBucket), Key: osv2.Ptr("cams/cam-1/v2"), Body: strings.NewReader("x")})
	wantOSSEC(t, err, http.StatusForbidden, "AccessDenied", "0003-00000101")
	// "*" covers long-term keys too, the unrestricted one included.
	err = e.admin(oss.AuthV1).PutObject("cams/cam-1/admin", strings.NewReader("x"))
	wantOSSEC(t, err, http.StatusForbidden, "AccessDenied", "0003-00000101")
	if err := e.admin(oss.AuthV1).PutObject("cams/cam-3/admin", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}

	// The Deny survives a restart.
	e.restart()
	err = e.stsClient(cam1, oss.AuthV4).PutObject("cams/cam-1/after-restart", strings.NewReader("x"))
	wantOSSEC(t, err, http.StatusForbidden, "AccessDenied", "0003-00000101")

	// Restore: DeleteBucketPolicy (204), and the same credentials work again.
	if err := admin.DeleteBucketPolicy(testBucket); err != nil {
		t.Fatalf("DeleteBucketPolicy: %v", err)
	}
	if err := admin.DeleteBucketPolicy(testBucket); err != nil {
		t.Fatalf("DeleteBucketPolicy without a policy: %v", err)
	}
	_, err = admin.GetBucketPolicy(testBucket)
	wantOSSEC(t, err, http.StatusNotFound, "NoSuchBucketPolicy", "0030-00000006")
	if err := e.stsClient(cam1, oss.AuthV1).PutObject("cams/cam-1/restored", strings.NewReader("x")); err != nil {
		t.Fatalf("put after the restore: %v", err)
	}
}

// TestBucketPolicyV2SDKAndPrincipals: the V2 SDK's PutBucketPolicy/GetBucketPolicy/
// DeleteBucketPolicy, and principals: a Deny naming one STS session stops that session
// only; an Allow naming a session grants what its own policies do not (OSS ORs the
// bucket policy's Allow with the identity's); an explicit Deny in the session policy
// still wins over it.
func TestBucketPolicyV2SDKAndPrincipals(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	admin := e.adminV2(osv2.SignatureVersionV4)
	put := func(text string) {
		t.Helper()
		res, err := admin.PutBucketPolicy(bg, &osv2.PutBucketPolicyRequest{Bucket: osv2.Ptr(testBucket), Body: strings.NewReader(text)})
		if err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("PutBucketPolicy: %v", err)
		}
		got, err := admin.GetBucketPolicy(bg, &osv2.GetBucketPolicyRequest{Bucket: osv2.Ptr(testBucket)})
		if err != nil || got.Body != text {
			t.Fatalf("GetBucketPolicy = %+v, %v", got, err)
		}
	}
	readOnly := `{"Version":"1","Statement":[{"Effect":"Allow","Action":"oss:GetObject","Resource":"acs:oss:*:*:clips/*"},` +
		`{"Effect":"Deny","Action":"oss:PutObject","Resource":"acs:oss:*:*:clips/denied/*"}]}`
	cam1 := e.session(t, "cam-1", readOnly)
	cam2 := e.session(t, "cam-2", readOnly)
	arn := func(s string) string {
		return "arn:sts::" + DefaultAccountID + ":assumed-role/" + testRoleName + "/" + s
	}

	put(`{"Version":"1","Statement":[{"Effect":"Allow","Principal":["` + arn("cam-1") + `"],"Action":"oss:PutObject","Resource":["acs:oss:*:*:clips/shared/*","acs:oss:*:*:clips/denied/*"]}]}`)
	if err := e.stsClient(cam1, oss.AuthV4).PutObject("shared/a", strings.NewReader("x")); err != nil {
		t.Fatalf("put allowed by the bucket policy: %v", err)
	}
	err := e.stsClient(cam2, oss.AuthV4).PutObject("shared/b", strings.NewReader("x"))
	wantOSSEC(t, err, http.StatusForbidden, "AccessDenied", "0003-00000001") // no Allow
	err = e.stsClient(cam1, oss.AuthV1).PutObject("denied/a", strings.NewReader("x"))
	wantOSSEC(t, err, http.StatusForbidden, "AccessDenied", "0003-00000201") // the session policy's Deny

	put(`{"Version":"1","Statement":[{"Effect":"Deny","Principal":["arn:sts::*:*/*/cam-2"],"Action":"oss:GetObject","Resource":"acs:oss:*:*:clips/*"}]}`)
	if _, err := e.stsClient(cam1, oss.AuthV4).GetObject("shared/a"); err != nil {
		t.Fatalf("get by a session the Deny does not name: %v", err)
	}
	_, err = e.stsClient(cam2, oss.AuthV4).GetObject("shared/a")
	wantOSSEC(t, err, http.StatusForbidden, "AccessDenied", "0003-00000101")

	if _, err := admin.DeleteBucketPolicy(bg, &osv2.DeleteBucketPolicyRequest{Bucket: osv2.Ptr(testBucket)}); err != nil {
		t.Fatal(err)
	}
	_, err = admin.GetBucketPolicy(bg, &osv2.GetBucketPolicyRequest{Bucket: osv2.Ptr(testBucket)})
	wantOSSEC(t, err, http.StatusNotFound, "NoSuchBucketPolicy", "0030-00000006")
}

// TestBucketPolicyRefused: what OSS refuses in a bucket policy, with its status, code
// and detail; who may manage the policy; and that a policy denying everything cannot
// lock the unrestricted key out of the policy itself.
func TestBucketPolicyRefused(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	admin := e.v3Client(e.ak, e.sk, oss.AuthV1)
	stmt := `{"Effect":"Deny","Principal":["*"],"Action":"oss:GetObject","Resource":"acs:oss:*:*:clips/RES"}`
	doc := func(s string) string { return `{"Version":"1","Statement":[` + s + `]}` }
	var big []string
	for len(strings.Join(big, ",")) < policyeval.MaxBucketPolicySize {
		big = append(big, strings.Replace(stmt, "RES", strings.Repeat("a", 3000), 1))
	}
	cases := []struct {
		name, text, ec string
	}{
		{"larger than 16 KB", doc(strings.Join(big, ",")), "0030-00000001"},
		{"version 2", `{"Version":"2","Statement":[` + stmt + `]}`, "0030-00000002"},
		{"value over 4095 bytes", doc(strings.Replace(stmt, "RES", strings.Repeat("a", 4096), 1)), "0030-00000003"},
		{"not JSON", `{"Version":"1",`, "0030-00000005"},
		{"version as a number", `{"Version":1,"Statement":[` + stmt + `]}`, "0030-00000005"},
		{"no statements", `{"Version":"1","Statement":[]}`, "0030-00000005"},
		{"typed principal", doc(strings.Replace(stmt, `["*"]`, `{"RAM":["*"]}`, 1)), "0030-00000005"},
		{"consecutive wildcards", doc(strings.Replace(stmt, "RES", "a/**", 1)), "0030-00000007"},
	}
	for _, c := range cases {
		err := admin.SetBucketPolicy(testBucket, c.text)
		wantOSSEC(t, err, http.StatusBadRequest, "InvalidPolicyDocument", c.ec)
	}
	_, err := admin.GetBucketPolicy(testBucket)
	wantOSSEC(t, err, http.StatusNotFound, "NoSuchBucketPolicy", "0030-00000006")

	// A key whose RAM policy does not grant the policy actions may not use them.
	ro := e.v3Client(e.roAK, e.roSK, oss.AuthV4)
	wantOSSStatus(t, ro.SetBucketPolicy(testBucket, doc(stmt)), http.StatusForbidden, "AccessDenied")
	if err := admin.SetBucketPolicy(testBucket, doc(stmt)); err != nil {
		t.Fatal(err)
	}
	_, err = ro.GetBucketPolicy(testBucket)
	wantOSSStatus(t, err, http.StatusForbidden, "AccessDenied")
	wantOSSStatus(t, ro.DeleteBucketPolicy(testBucket), http.StatusForbidden, "AccessDenied")

	// Deny everything to everyone: the unrestricted key can still read and replace it.
	all := `{"Version":"1","Statement":[{"Effect":"Deny","Principal":["*"],"Action":"oss:*","Resource":["acs:oss:*:*:clips","acs:oss:*:*:clips/*"]}]}`
	if err := admin.SetBucketPolicy(testBucket, all); err != nil {
		t.Fatal(err)
	}
	_, err = e.admin(oss.AuthV1).ListObjects()
	wantOSSEC(t, err, http.StatusForbidden, "AccessDenied", "0003-00000101")
	if got, err := admin.GetBucketPolicy(testBucket); err != nil || got != all {
		t.Fatalf("GetBucketPolicy under a deny-all policy: %q %v", got, err)
	}
	if err := admin.DeleteBucketPolicy(testBucket); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin(oss.AuthV1).ListObjects(); err != nil {
		t.Fatalf("list after the deny-all policy is gone: %v", err)
	}
}
