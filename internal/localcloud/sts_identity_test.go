package localcloud

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aliyun/alibaba-cloud-sdk-go/services/sts"
)

func (e *ossEnv) callerIdentity(c *sts.Client) (*sts.GetCallerIdentityResponse, error) {
	req := sts.CreateGetCallerIdentityRequest()
	req.Scheme = "http"
	req.Domain = e.srv.STSEndpoint()
	return c.GetCallerIdentity(req)
}

var digitsRE = regexp.MustCompile(`^[1-9][0-9]{17}$`)

// TestGetCallerIdentity (issue 10 point 10): GetCallerIdentity through the STS SDK, with a
// long-term key (a RAM user) and with STS credentials (a role session), and the RPC
// gateway's errors for temporary credentials that are expired, for another key, or
// garbage. Before, the action answered 404 InvalidAction.NotFound.
func TestGetCallerIdentity(t *testing.T) {
	t.Parallel()
	named := AccessKey{ID: "LTAInamed" + randomHex(4, false), Secret: randomHex(15, false), User: "console"}
	e := newOSSEnv(t, func(c *Config) { c.Keys = append(c.Keys, named) })

	user, err := e.callerIdentity(e.stsSDK(t, e.ak, e.sk))
	if err != nil {
		t.Fatalf("GetCallerIdentity with a long-term key: %v", err)
	}
	if user.GetHttpStatus() != http.StatusOK || user.IdentityType != "RAMUser" || user.AccountId != DefaultAccountID ||
		!digitsRE.MatchString(user.UserId) || user.PrincipalId != user.UserId || user.RoleId != "" ||
		user.Arn != "acs:ram::"+DefaultAccountID+":user/"+e.ak || user.RequestId == "" {
		t.Fatalf("RAM user identity: %+v", user)
	}
	console, err := e.callerIdentity(e.stsSDK(t, named.ID, named.Secret))
	if err != nil || console.Arn != "acs:ram::"+DefaultAccountID+":user/console" || console.UserId == user.UserId {
		t.Fatalf("named user identity: %+v %v", console, err)
	}

	assumed, err := e.assumeRoleSDK(e.stsSDK(t, e.ak, e.sk), testRoleName, "cam-7", "")
	if err != nil {
		t.Fatal(err)
	}
	cr := assumed.Credentials
	sess, err := e.callerIdentity(e.stsSDKWithToken(t, cr.AccessKeyId, cr.AccessKeySecret, cr.SecurityToken))
	if err != nil {
		t.Fatalf("GetCallerIdentity with STS credentials: %v", err)
	}
	roleID, _, _ := strings.Cut(assumed.AssumedRoleUser.AssumedRoleId, ":")
	if sess.IdentityType != "AssumedRoleUser" || sess.AccountId != DefaultAccountID || sess.UserId != "" ||
		sess.RoleId != roleID || sess.PrincipalId != assumed.AssumedRoleUser.AssumedRoleId ||
		sess.Arn != "acs:ram::"+DefaultAccountID+":assumed-role/"+testRoleName+"/cam-7" {
		t.Fatalf("role session identity: %+v (AssumeRole said %+v)", sess, assumed.AssumedRoleUser)
	}

	// The IDs are stable across a restart.
	e.restart()
	again, err := e.callerIdentity(e.stsSDK(t, e.ak, e.sk))
	if err != nil || again.UserId != user.UserId {
		t.Fatalf("after a restart: %+v %v", again, err)
	}

	other := e.session(t, "cam-8", "")
	_, err = e.callerIdentity(e.stsSDKWithToken(t, cr.AccessKeyId, cr.AccessKeySecret, other.SecurityToken))
	wantSDKCode(t, err, http.StatusBadRequest, "InvalidSecurityToken.MismatchWithAccessKey")
	_, err = e.callerIdentity(e.stsSDKWithToken(t, cr.AccessKeyId, cr.AccessKeySecret, cr.SecurityToken+"x"))
	wantSDKCode(t, err, http.StatusBadRequest, "InvalidSecurityToken.Malformed")
	_, err = e.callerIdentity(e.stsSDKWithToken(t, e.ak, e.sk, cr.SecurityToken))
	wantSDKCode(t, err, http.StatusBadRequest, "InvalidSecurityToken.MismatchWithAccessKey")
	_, err = e.callerIdentity(e.stsSDK(t, cr.AccessKeyId, cr.AccessKeySecret)) // STS key without its token
	wantSDKCode(t, err, http.StatusNotFound, "InvalidAccessKeyId.NotFound")
	_, err = e.callerIdentity(e.stsSDKWithToken(t, cr.AccessKeyId, "wrong-secret-0123", cr.SecurityToken))
	wantSDKCode(t, err, http.StatusBadRequest, "SignatureDoesNotMatch")

	// Credentials that expired 5 minutes ago (the SDK signs with the real time, so the
	// credentials are issued in the past rather than the server clock moved).
	old, err := e.auth.AssumeRole(e.ak, e.auth.RoleARN(testRoleName), "cam-9", "", 15*time.Minute, e.clock.Now().Add(-20*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.callerIdentity(e.stsSDKWithToken(t, old.AccessKeyID, old.AccessKeySecret, old.SecurityToken))
	wantSDKCode(t, err, http.StatusBadRequest, "InvalidSecurityToken.Expired")
}
