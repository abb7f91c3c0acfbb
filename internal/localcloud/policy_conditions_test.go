package localcloud

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/requests"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/sts"
	osv2 "github.com/aliyun/alibabacloud-oss-go-sdk-v2/oss"
	"github.com/aliyun/aliyun-oss-go-sdk/oss"
)

// stsSDK returns an STS SDK client for the key, talking to the env's STS server.
func (e *ossEnv) stsSDK(t *testing.T, ak, sk string) *sts.Client {
	t.Helper()
	sdkClientMu.Lock() // see stsFixture.client
	c, err := sts.NewClientWithAccessKey(testRegion, ak, sk)
	sdkClientMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{Proxy: nil}
	c.SetTransport(tr)
	t.Cleanup(func() { tr.CloseIdleConnections(); c.Shutdown() })
	return c
}

// stsSDKWithToken is stsSDK for temporary credentials.
func (e *ossEnv) stsSDKWithToken(t *testing.T, ak, sk, token string) *sts.Client {
	t.Helper()
	sdkClientMu.Lock()
	c, err := sts.NewClientWithStsToken(testRegion, ak, sk, token)
	sdkClientMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{Proxy: nil}
	c.SetTransport(tr)
	t.Cleanup(func() { tr.CloseIdleConnections(); c.Shutdown() })
	return c
}

// assumeRoleSDK calls AssumeRole for role with the SDK.
func (e *ossEnv) assumeRoleSDK(c *sts.Client, role, session, sessionPolicy string) (*sts.AssumeRoleResponse, error) {
	req := sts.CreateAssumeRoleRequest()
	req.Scheme = "http"
	req.Domain = e.srv.STSEndpoint()
	req.RoleArn = e.srv.RoleARN(role)
	req.RoleSessionName = session
	req.Policy = sessionPolicy
	req.DurationSeconds = requests.NewInteger(3600)
	return c.AssumeRole(req)
}

// TestSessionPolicyListingConditions (issue 10 point 7): a session policy may restrict
// listing with oss:Prefix and oss:Delimiter, as OSS documents; STS accepts it and OSS
// enforces it for both SDKs. Before, AssumeRole refused the policy with
// InvalidParameter.PolicyGrammar.
func TestSessionPolicyListingConditions(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	admin := e.admin(oss.AuthV4)
	for _, k := range []string{"cam-1/a.mp4", "cam-1/2025/b.mp4", "cam-2/c.mp4"} {
		if err := admin.PutObject(k, strings.NewReader("x")); err != nil {
			t.Fatal(err)
		}
	}
	const pol = `{"Version":"1","Statement":[` +
		`{"Effect":"Allow","Action":"oss:ListObjects","Resource":"acs:oss:*:*:clips",` +
		`"Condition":{"StringLike":{"oss:Prefix":["cam-1/*"]},"StringEquals":{"oss:Delimiter":"/"}}},` +
		`{"Effect":"Allow","Action":"oss:GetObject","Resource":"acs:oss:*:*:clips/cam-1/*",` +
		`"Condition":{"StringNotLike":{"acs:UserAgent":"curl/*"},"StringLike":{"acs:AccessId":"STS.*"}}}]}`
	resp, err := e.assumeRoleSDK(e.stsSDK(t, e.ak, e.sk), testRoleName, "cam-1", pol)
	if err != nil {
		t.Fatalf("AssumeRole with listing conditions: %v", err)
	}
	cr := resp.Credentials

	b := e.client(cr.AccessKeyId, cr.AccessKeySecret, oss.AuthV1, oss.SecurityToken(cr.SecurityToken))
	res, err := b.ListObjectsV2(oss.Prefix("cam-1/"), oss.Delimiter("/"))
	if err != nil {
		t.Fatalf("listing inside the allowed prefix: %v", err)
	}
	if len(res.Objects) != 1 || res.Objects[0].Key != "cam-1/a.mp4" || len(res.CommonPrefixes) != 1 {
		t.Fatalf("listing: %+v", res)
	}
	_, err = b.ListObjectsV2(oss.Prefix("cam-2/"), oss.Delimiter("/"))
	wantOSSStatus(t, err, http.StatusForbidden, "AccessDenied")
	_, err = b.ListObjectsV2(oss.Prefix("cam-1/")) // no delimiter: oss:Delimiter is ""
	wantOSSStatus(t, err, http.StatusForbidden, "AccessDenied")
	_, err = b.ListObjects(oss.Prefix("cam-1/"), oss.Delimiter("/")) // V1 listing is oss:ListObjects too
	if err != nil {
		t.Fatalf("ListObjects (V1): %v", err)
	}
	if got := getAll(t, b, "cam-1/a.mp4"); string(got) != "x" {
		t.Fatalf("GetObject: %q", got)
	}
	curl := e.client(cr.AccessKeyId, cr.AccessKeySecret, oss.AuthV4, oss.SecurityToken(cr.SecurityToken), oss.UserAgent("curl/8.0"))
	_, err = curl.GetObject("cam-1/a.mp4")
	wantOSSStatus(t, err, http.StatusForbidden, "AccessDenied")

	// The same through the V2 SDK (V4 signatures).
	c2 := e.clientV2(cr.AccessKeyId, cr.AccessKeySecret, cr.SecurityToken)
	if _, err := c2.ListObjectsV2(bg, &osv2.ListObjectsV2Request{Bucket: osv2.Ptr(testBucket), Prefix: osv2.Ptr("cam-1/2025/"), Delimiter: osv2.Ptr("/")}); err != nil {
		t.Fatalf("V2 SDK listing inside the prefix: %v", err)
	}
	_, err = c2.ListObjectsV2(bg, &osv2.ListObjectsV2Request{Bucket: osv2.Ptr(testBucket), Prefix: osv2.Ptr("cam-2/"), Delimiter: osv2.Ptr("/")})
	wantOSSStatus(t, err, http.StatusForbidden, "AccessDenied")
}

// TestSessionPolicyGrammarStillChecked: what RAM's policy check refuses, STS still refuses
// (a key without its service, two Boolean values, an unknown operator).
func TestSessionPolicyGrammarStillChecked(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	c := e.stsSDK(t, e.ak, e.sk)
	for _, cond := range []string{
		`{"StringLike":{"Prefix":"a/*"}}`,
		`{"Bool":{"acs:SecureTransport":["true","false"]}}`,
		`{"StringEqualsIfExists":{"oss:Prefix":"a/"}}`,
		`{"NumericLessThan":{"oss:Prefix":"1"}}`,
	} {
		pol := `{"Version":"1","Statement":[{"Effect":"Allow","Action":"oss:ListObjects","Resource":"*","Condition":` + cond + `}]}`
		_, err := e.assumeRoleSDK(c, testRoleName, "cam-1", pol)
		wantSDKCode(t, err, http.StatusBadRequest, "InvalidParameter.PolicyGrammar")
	}
	// Keys OSS documents for other features, which localcloud never supplies, are accepted.
	pol := `{"Version":"1","Statement":[{"Effect":"Allow","Action":"oss:GetObject","Resource":"*",` +
		`"Condition":{"StringEquals":{"oss:ExistingObjectTag/owner":"me"},"StringNotEquals":{"acs:SourceVpc":"vpc-1"}}}]}`
	if _, err := e.assumeRoleSDK(c, testRoleName, "cam-1", pol); err != nil {
		t.Fatalf("policy with tag and VPC keys: %v", err)
	}
}

// wantOSSStatus checks the HTTP status and code of an error from either OSS SDK.
func wantOSSStatus(t *testing.T, err error, status int, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want %d %s, got success", status, code)
	}
	var se oss.ServiceError
	var se2 *osv2.ServiceError
	switch {
	case errors.As(err, &se):
		if se.StatusCode != status || se.Code != code {
			t.Fatalf("got %d %s (%s), want %d %s", se.StatusCode, se.Code, se.Message, status, code)
		}
	case errorsAs(err, &se2):
		if se2.StatusCode != status || se2.Code != code {
			t.Fatalf("got %d %s (%s), want %d %s", se2.StatusCode, se2.Code, se2.Message, status, code)
		}
	default:
		t.Fatalf("got %v (%T), want service error %d %s", err, err, status, code)
	}
}
