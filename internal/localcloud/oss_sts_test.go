package localcloud

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	osv2 "github.com/aliyun/alibabacloud-oss-go-sdk-v2/oss"
	"github.com/aliyun/aliyun-oss-go-sdk/oss"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/policy"
)

func devicePolicy(t *testing.T, mode string) string {
	t.Helper()
	m, err := clipgate.ParseMode(mode)
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.DevicePolicy(testBucket, "cams/", "cam-1", m)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (e *ossEnv) stsClient(c *TempCredentials, v oss.AuthVersionType) *oss.Bucket {
	return e.client(c.AccessKeyID, c.AccessKeySecret, v, oss.SecurityToken(c.SecurityToken))
}

// TestSTSSessionPolicyOnOSS uses temporary credentials scoped to one device's prefix with
// mode "w" and checks what they may and may not do, with every signature version.
func TestSTSSessionPolicyOnOSS(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	admin := e.admin(oss.AuthV4)
	if err := admin.PutObject("cams/cam-1/existing.mp4", strings.NewReader("old")); err != nil {
		t.Fatal(err)
	}
	creds := e.assumeRole(devicePolicy(t, "w"), time.Hour)
	for _, av := range authVersions {
		t.Run(av.name, func(t *testing.T) {
			t.Parallel()
			b := e.stsClient(creds, av.v)
			key := "cams/cam-1/2024/clip-" + av.name + ".mp4"
			if err := b.PutObject(key, strings.NewReader("video")); err != nil {
				t.Fatalf("put inside the prefix: %v", err)
			}
			next, err := b.AppendObject(key+".log", strings.NewReader("a"), 0)
			if err != nil || next != 1 {
				t.Fatalf("append inside the prefix: %d %v", next, err)
			}
			imur, err := b.InitiateMultipartUpload(key + ".mp")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b.UploadPart(imur, strings.NewReader("part"), 4, 1); err != nil {
				t.Fatal(err)
			}
			if lp, err := b.ListUploadedParts(imur); err != nil || len(lp.UploadedParts) != 1 {
				t.Fatalf("ListParts: %v %v", lp, err)
			}
			if err := b.AbortMultipartUpload(imur); err != nil {
				t.Fatalf("abort: %v", err)
			}

			// Outside the device's prefix.
			for _, k := range []string{"cams/cam-2/x.mp4", "cams/cam-1", "other/cam-1/x", "cams/cam-10/x"} {
				wantOSSCode(t, b.PutObject(k, strings.NewReader("x")), "AccessDenied")
			}
			_, err = b.InitiateMultipartUpload("cams/cam-2/x.mp4")
			wantOSSCode(t, err, "AccessDenied")
			// Mode w grants no reads, deletes or listings.
			_, err = b.GetObject(key)
			wantOSSCode(t, err, "AccessDenied")
			_, err = b.GetObjectDetailedMeta(key)
			wantOSSCode(t, err, "AccessDenied")
			_, err = b.IsObjectExist(key)
			wantOSSCode(t, err, "AccessDenied")
			wantOSSCode(t, b.DeleteObject(key), "AccessDenied")
			_, err = b.ListObjectsV2(oss.Prefix("cams/cam-1/"))
			wantOSSCode(t, err, "AccessDenied")

			// Signed URLs carry the token and the same limits.
			put, err := b.SignURL(key+".url", oss.HTTPPut, 60)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.PutObjectWithURL(put, strings.NewReader("by url")); err != nil {
				t.Fatalf("PUT by signed URL with a token: %v", err)
			}
			get, err := b.SignURL(key+".url", oss.HTTPGet, 60)
			if err != nil {
				t.Fatal(err)
			}
			_, err = b.GetObjectWithURL(get)
			wantOSSCode(t, err, "AccessDenied")
			mustEqualBytes(t, getAll(t, admin, key+".url"), []byte("by url"))
		})
	}
}

func TestSTSModes(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	if err := e.admin(oss.AuthV1).PutObject("cams/cam-1/a", strings.NewReader("data")); err != nil {
		t.Fatal(err)
	}
	wa := e.stsClient(e.assumeRole(devicePolicy(t, "wa"), time.Hour), oss.AuthV4)
	mustEqualBytes(t, getAll(t, wa, "cams/cam-1/a"), []byte("data"))
	if _, err := wa.GetObjectDetailedMeta("cams/cam-1/a"); err != nil {
		t.Fatalf("HEAD with mode wa: %v", err)
	}
	if err := wa.PutObject("cams/cam-1/b", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	_, err := wa.GetObject("cams/cam-2/a")
	wantOSSCode(t, err, "AccessDenied")

	r := e.stsClient(e.assumeRole(devicePolicy(t, "r"), time.Hour), oss.AuthV1)
	mustEqualBytes(t, getAll(t, r, "cams/cam-1/a"), []byte("data"))
	wantOSSCode(t, r.PutObject("cams/cam-1/c", strings.NewReader("x")), "AccessDenied")
	_, err = r.AppendObject("cams/cam-1/c", strings.NewReader("x"), 0)
	wantOSSCode(t, err, "AccessDenied")

	// Without a session policy the role's policy alone applies: the test bucket only.
	role := e.assumeRole("", time.Hour)
	rb := e.stsClient(role, oss.AuthV4)
	if err := rb.PutObject("anywhere/x", strings.NewReader("x")); err != nil {
		t.Fatalf("role policy alone: %v", err)
	}
	c, err := oss.New(e.endpoint, role.AccessKeyID, role.AccessKeySecret, oss.AuthVersion(oss.AuthV4), oss.Region(testRegion), oss.SecurityToken(role.SecurityToken))
	if err != nil {
		t.Fatal(err)
	}
	ob, _ := c.Bucket("other-bucket")
	wantOSSCode(t, ob.PutObject("x", strings.NewReader("x")), "AccessDenied")
	// A session policy cannot widen the role's: it allows other-bucket, the role does not.
	wide := e.assumeRole(`{"Version":"1","Statement":[{"Effect":"Allow","Action":"oss:*","Resource":"acs:oss:*:*:*"}]}`, time.Hour)
	c, _ = oss.New(e.endpoint, wide.AccessKeyID, wide.AccessKeySecret, oss.AuthVersion(oss.AuthV1), oss.SecurityToken(wide.SecurityToken))
	ob, _ = c.Bucket("other-bucket")
	wantOSSCode(t, ob.PutObject("x", strings.NewReader("x")), "AccessDenied")
}

// TestSTSTokenFailures covers expired, tampered, mismatched and missing tokens.
func TestSTSTokenFailures(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	pol := devicePolicy(t, "w")
	key := "cams/cam-1/x"

	// Issued two hours ago for one hour: expired now, while the request time is current.
	old, err := e.auth.AssumeRole(e.ak, e.auth.RoleARN(testRoleName), "cam-1", pol, time.Hour, time.Now().Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, av := range authVersions {
		wantOSSCode(t, e.stsClient(old, av.v).PutObject(key, strings.NewReader("x")), "SecurityTokenExpired")
	}
	// Expiry by the server's clock: a 15-minute token issued 10 minutes ago (by the server's
	// clock) expires 5 minutes from now; the clock then moves 4 and 6 minutes on, within the
	// 15-minute skew window for the request times.
	e.clockMu.Lock()
	e.clock.Advance(-10 * time.Minute)
	short := e.assumeRole(pol, 15*time.Minute)
	b := e.stsClient(short, oss.AuthV4)
	e.clock.Advance(14 * time.Minute)
	err = b.PutObject(key, strings.NewReader("x"))
	e.clock.Advance(2 * time.Minute)
	err2 := b.PutObject(key, strings.NewReader("x"))
	e.clock.Advance(-6 * time.Minute)
	e.clockMu.Unlock()
	if err != nil {
		t.Fatalf("token still valid: %v", err)
	}
	wantOSSCode(t, err2, "SecurityTokenExpired")

	creds := e.assumeRole(pol, time.Hour)
	other := e.assumeRole(pol, time.Hour)
	tampered := *creds
	i := len(tampered.SecurityToken) / 3
	tampered.SecurityToken = tampered.SecurityToken[:i] + flipChar(tampered.SecurityToken[i]) + tampered.SecurityToken[i+1:]
	swapped := *creds
	swapped.SecurityToken = other.SecurityToken
	noToken := *creds
	noToken.SecurityToken = ""
	ltWithToken := TempCredentials{AccessKeyID: e.ak, AccessKeySecret: e.sk, SecurityToken: creds.SecurityToken}
	for _, av := range authVersions {
		wantOSSCode(t, e.stsClient(&tampered, av.v).PutObject(key, strings.NewReader("x")), "InvalidSecurityToken")
		wantSvcErr(t, e.stsClient(&swapped, av.v).PutObject(key, strings.NewReader("x")), http.StatusForbidden, "AccessKeyIdAndSecurityTokenNotMatch", "0002-00000004")
		wantOSSCode(t, e.stsClient(&noToken, av.v).PutObject(key, strings.NewReader("x")), "InvalidAccessKeyId")
		wantSvcErr(t, e.stsClient(&ltWithToken, av.v).PutObject(key, strings.NewReader("x")), http.StatusForbidden, "InvalidAccessKeyId", "0002-00000002")
		wrongSecret := *creds
		wrongSecret.AccessKeySecret += "x"
		wantOSSCode(t, e.stsClient(&wrongSecret, av.v).PutObject(key, strings.NewReader("x")), "SignatureDoesNotMatch")
	}

	// A signed URL made with a token that then expires.
	url, err := e.stsClient(short, oss.AuthV4).SignURL(key, oss.HTTPPut, 3600)
	if err != nil {
		t.Fatal(err)
	}
	e.clockMu.Lock()
	e.clock.Advance(6 * time.Minute)
	err = e.admin(oss.AuthV4).PutObjectWithURL(url, strings.NewReader("x"))
	e.clock.Advance(-6 * time.Minute)
	e.clockMu.Unlock()
	wantOSSCode(t, err, "SecurityTokenExpired")
}

func flipChar(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

// TestSTSUploadFileAndRestart uploads with temporary credentials through UploadFile, then
// restarts the server: tokens stay valid (the token key is durable) and objects remain.
func TestSTSUploadFileAndRestart(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	creds := e.assumeRole(devicePolicy(t, "w"), time.Hour)
	dir := t.TempDir()
	src := filepath.Join(dir, "clip")
	data := randomBytes(t, 3*minPartSize+10)
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	key := "cams/cam-1/2024/01/02/big.mp4"
	if err := e.stsClient(creds, oss.AuthV4).UploadFile(key, src, minPartSize, oss.Checkpoint(true, filepath.Join(dir, "cp")), oss.Routines(3)); err != nil {
		t.Fatal(err)
	}
	e.restart()
	if err := e.stsClient(creds, oss.AuthV1).PutObject("cams/cam-1/after-restart", bytes.NewReader(data[:10])); err != nil {
		t.Fatalf("token after restart: %v", err)
	}
	mustEqualBytes(t, getAll(t, e.admin(oss.AuthV1), key), data)

	// The v2 SDK with the same temporary credentials.
	c := e.clientV2(creds.AccessKeyID, creds.AccessKeySecret, creds.SecurityToken)
	if _, err := c.PutObject(bg, &osv2.PutObjectRequest{Bucket: osv2.Ptr(testBucket), Key: osv2.Ptr("cams/cam-1/v2"), Body: strings.NewReader("v2")}); err != nil {
		t.Fatal(err)
	}
	_, err := c.PutObject(bg, &osv2.PutObjectRequest{Bucket: osv2.Ptr(testBucket), Key: osv2.Ptr("cams/cam-2/v2"), Body: strings.NewReader("v2")})
	wantOSSCode(t, err, "AccessDenied")
	_, err = c.GetObject(bg, &osv2.GetObjectRequest{Bucket: osv2.Ptr(testBucket), Key: osv2.Ptr("cams/cam-1/v2")})
	wantOSSCode(t, err, "AccessDenied")
}
