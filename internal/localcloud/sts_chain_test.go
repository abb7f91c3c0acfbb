package localcloud

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
)

// TestAssumeRoleWithSTSCredentials (issue 10 point 11): a role session assumes another
// role with the STS SDK, as Alibaba allows, when its own policies allow sts:AssumeRole on
// that role and the role's trust policy names it; otherwise NoPermission. The chained
// credentials work on OSS and identify as the new role. Before, STS refused any request
// with a SecurityToken as an unknown access key.
func TestAssumeRoleWithSTSCredentials(t *testing.T) {
	t.Parallel()
	const acct = DefaultAccountID
	e := newOSSEnv(t, func(c *Config) {
		c.Roles = append(c.Roles,
			// ops may assume any role; the account (default trust) may assume ops.
			Role{Name: "ops", Policy: `{"Version":"1","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"acs:ram:*:*:role/*"}]}`},
			// chained trusts only sessions of ops.
			Role{Name: "chained", Policy: `{"Version":"1","Statement":[{"Effect":"Allow","Action":"oss:*","Resource":"acs:oss:*:*:clips/chained/*"}]}`,
				Trust: `{"Version":"1","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{"RAM":"acs:ram::` + acct + `:role/ops"}}]}`},
			// usersonly trusts one RAM user.
			Role{Name: "usersonly", Policy: `{"Version":"1","Statement":[{"Effect":"Allow","Action":"oss:*","Resource":"*"}]}`,
				Trust: `{"Version":"1","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{"RAM":["acs:ram::` + acct + `:user/someone"]}}]}`},
		)
	})
	admin := e.stsSDK(t, e.ak, e.sk)
	opsResp, err := e.assumeRoleSDK(admin, "ops", "ops-1", "")
	if err != nil {
		t.Fatalf("the account's user assumes ops: %v", err)
	}
	ops := opsResp.Credentials
	opsClient := e.stsSDKWithToken(t, ops.AccessKeyId, ops.AccessKeySecret, ops.SecurityToken)

	chained, err := e.assumeRoleSDK(opsClient, "chained", "from-ops", "")
	if err != nil {
		t.Fatalf("ops session assumes chained: %v", err)
	}
	if chained.AssumedRoleUser.Arn != "acs:ram::"+acct+":role/chained/from-ops" || !strings.HasPrefix(chained.Credentials.AccessKeyId, "STS.") {
		t.Fatalf("chained credentials: %+v", chained.AssumedRoleUser)
	}
	cc := chained.Credentials
	who, err := e.callerIdentity(e.stsSDKWithToken(t, cc.AccessKeyId, cc.AccessKeySecret, cc.SecurityToken))
	if err != nil || who.Arn != "acs:ram::"+acct+":assumed-role/chained/from-ops" {
		t.Fatalf("chained identity: %+v %v", who, err)
	}
	b := e.client(cc.AccessKeyId, cc.AccessKeySecret, oss.AuthV4, oss.SecurityToken(cc.SecurityToken))
	if err := b.PutObject("chained/a", strings.NewReader("x")); err != nil {
		t.Fatalf("chained credentials on OSS: %v", err)
	}
	wantOSSStatus(t, b.PutObject("other/a", strings.NewReader("x")), http.StatusForbidden, "AccessDenied")

	// ops may assume the test role too (its trust is the account's default).
	if _, err := e.assumeRoleSDK(opsClient, testRoleName, "from-ops", ""); err != nil {
		t.Fatalf("ops session assumes %s: %v", testRoleName, err)
	}

	// Refusals, all NoPermission: the trust policy does not name the caller...
	_, err = e.assumeRoleSDK(admin, "chained", "direct", "")
	wantSDKCode(t, err, http.StatusForbidden, "NoPermission")
	_, err = e.assumeRoleSDK(opsClient, "usersonly", "from-ops", "")
	wantSDKCode(t, err, http.StatusForbidden, "NoPermission")
	// ...the caller's own policies do not allow sts:AssumeRole (the test role's policy is oss:* only)...
	up, err := e.assumeRoleSDK(admin, testRoleName, "cam-1", "")
	if err != nil {
		t.Fatal(err)
	}
	upClient := e.stsSDKWithToken(t, up.Credentials.AccessKeyId, up.Credentials.AccessKeySecret, up.Credentials.SecurityToken)
	_, err = e.assumeRoleSDK(upClient, "ops", "from-cam", "")
	wantSDKCode(t, err, http.StatusForbidden, "NoPermission")
	// ...or the session policy does not.
	narrowed, err := e.assumeRoleSDK(admin, "ops", "ops-2", `{"Version":"1","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"acs:ram:*:*:role/`+testRoleName+`"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	nc := narrowed.Credentials
	_, err = e.assumeRoleSDK(e.stsSDKWithToken(t, nc.AccessKeyId, nc.AccessKeySecret, nc.SecurityToken), "chained", "from-ops-2", "")
	wantSDKCode(t, err, http.StatusForbidden, "NoPermission")

	// Expired STS credentials cannot assume anything.
	old, err := e.auth.AssumeRole(e.ak, e.auth.RoleARN("ops"), "ops-old", "", 15*time.Minute, e.clock.Now().Add(-20*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.assumeRoleSDK(e.stsSDKWithToken(t, old.AccessKeyID, old.AccessKeySecret, old.SecurityToken), "chained", "late", "")
	wantSDKCode(t, err, http.StatusBadRequest, "InvalidSecurityToken.Expired")
}

// TestTrustPolicyConfig: a role's trust policy and a key's user name are checked with the
// configuration.
func TestTrustPolicyConfig(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Roles = append(cfg.Roles, Role{Name: "bad", Policy: testRolePolicy,
		Trust: `{"Version":"1","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"*"}]}`})
	if err := CheckConfig(cfg); err == nil || !strings.Contains(err.Error(), `role "bad": trust policy`) {
		t.Fatalf("CheckConfig: %v", err)
	}
	// A key's user name follows RAM's rule (cmd/localcloud's tests read trust policies from
	// its configuration file).
	cfg = testConfig(t)
	cfg.Keys = append(cfg.Keys, AccessKey{ID: "LTAIyamlkey", Secret: "yaml-secret-0123", User: "a b"})
	if err := CheckConfig(cfg); err == nil {
		t.Fatal("a user name with a space was accepted")
	}
}
