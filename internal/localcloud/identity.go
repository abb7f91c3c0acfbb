package localcloud

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/clipgate/clipgate/internal/policyeval"
)

// userID derives a stable 18-digit RAM user ID from the user name, shaped like RAM's.
func (a *Authority) userID(name string) string {
	m := hmac.New(sha256.New, a.tokenKey)
	m.Write([]byte("user\n"))
	m.Write([]byte(name))
	n := binary.BigEndian.Uint64(m.Sum(nil)) % 9e17
	return strconv.FormatUint(n+1e17, 10)
}

// stsSessionARN is how OSS bucket policies name an STS session
// (https://www.alibabacloud.com/help/en/oss/user-guide/configure-bucket-policies-to-authorize-other-users-to-access-oss-resources):
// "arn:sts::{RoleOwnerUid}:assumed-role/{RoleName}/{RoleSessionName}".
func (a *Authority) stsSessionARN(role, session string) string {
	return "arn:sts::" + a.accountID + ":assumed-role/" + strings.ToLower(role) + "/" + session
}

// bucketPolicyCaller names p as bucket policies do: a RAM user by its user ID, an STS
// session by its session ARN. A nil p is an anonymous caller.
func (a *Authority) bucketPolicyCaller(p *Principal) *policyeval.Caller {
	if p == nil {
		return nil
	}
	if p.Temporary {
		return &policyeval.Caller{Names: []string{a.stsSessionARN(p.Role, p.SessionName)}}
	}
	if k, ok := a.keys[p.AccessKeyID]; ok {
		return &policyeval.Caller{Names: []string{k.userID}}
	}
	return nil
}

// Errors of Alibaba Cloud's RPC gateway for temporary credentials, as its common error
// tables list them (400, "Specified SecurityToken is expired." and so on).
func errRPCToken(code, msg string) *Error { return stsError(http.StatusBadRequest, code, msg) }

// resolveRPC authenticates the caller of an STS request: a long-term key, or STS
// credentials with their SecurityToken. It answers with the RPC gateway's codes, not
// OSS's.
func (a *Authority) resolveRPC(akid, token string, now time.Time) (*Principal, *Error) {
	notFound := stsError(http.StatusNotFound, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
	k, longTerm := a.keys[akid]
	if token == "" {
		if !longTerm {
			return nil, notFound
		}
		return &Principal{AccessKeyID: akid, Secret: k.key.Secret, Policies: k.policies}, nil
	}
	if !longTerm && !strings.HasPrefix(akid, stsKeyPrefix) {
		return nil, notFound
	}
	e, err := a.verifyToken(token)
	if err != nil {
		return nil, errRPCToken("InvalidSecurityToken.Malformed", "Specified SecurityToken is malformed.")
	}
	if e.claims.AccessKeyID != akid {
		return nil, errRPCToken("InvalidSecurityToken.MismatchWithAccessKey", "Specified SecurityToken mismatch with the AccessKey.")
	}
	exp := time.Unix(e.claims.Expiration, 0).UTC()
	if !now.Before(exp) {
		return nil, errRPCToken("InvalidSecurityToken.Expired", "Specified SecurityToken is expired.")
	}
	return &Principal{AccessKeyID: akid, Secret: e.secret, Temporary: true, Role: e.claims.Role,
		SessionName: e.claims.Session, Expiration: exp, Policies: e.policies}, nil
}

// stsCallerIdentityResponse is GetCallerIdentity's answer
// (https://www.alibabacloud.com/help/en/ram/developer-reference/api-sts-2015-04-01-getcalleridentity).
type stsCallerIdentityResponse struct {
	RequestID    string `json:"RequestId"`
	IdentityType string `json:"IdentityType"`
	AccountID    string `json:"AccountId"`
	PrincipalID  string `json:"PrincipalId"`
	UserID       string `json:"UserId,omitempty"` // RAM users only
	Arn          string `json:"Arn"`
	RoleID       string `json:"RoleId,omitempty"` // role sessions only
}

// callerIdentity describes an authenticated caller: a RAM user ("acs:ram::{uid}:user/{name}")
// or a role session ("acs:ram::{uid}:assumed-role/{role}/{session}", PrincipalId
// "{roleId}:{session}").
func (a *Authority) callerIdentity(p *Principal, reqID string) *stsCallerIdentityResponse {
	r := &stsCallerIdentityResponse{RequestID: reqID, AccountID: a.accountID}
	if p.Temporary {
		lc := strings.ToLower(p.Role)
		roleID := a.roleID(lc)
		if re, ok := a.roles[lc]; ok {
			roleID = re.id
		}
		r.IdentityType, r.RoleID = "AssumedRoleUser", roleID
		r.PrincipalID = roleID + ":" + p.SessionName
		r.Arn = "acs:ram::" + a.accountID + ":assumed-role/" + lc + "/" + p.SessionName
		return r
	}
	k := a.keys[p.AccessKeyID]
	r.IdentityType, r.UserID, r.PrincipalID = "RAMUser", k.userID, k.userID
	r.Arn = "acs:ram::" + a.accountID + ":user/" + k.user
	return r
}

// defaultTrust is the trust policy of a role configured without one: the account itself,
// so any of its RAM users and role sessions whose own policies allow it.
func defaultTrust(accountID string) string {
	return `{"Version":"1","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{"RAM":["acs:ram::` + accountID + `:root"]}}]}`
}

// trusts reports whether the role's trust policy lets the caller assume it
// (https://www.alibabacloud.com/help/en/ram/support/faq-about-ram-roles-and-sts-tokens:
// the caller needs sts:AssumeRole in its own policies AND the role's trust policy must
// name it). RAM users go by "acs:ram::{uid}:user/{name}", role sessions by
// "acs:ram::{uid}:role/{role}"; both by the account, "acs:ram::{uid}:root".
func (a *Authority) trusts(role *roleEntry, caller *Principal, now time.Time) bool {
	root := "acs:ram::" + a.accountID + ":root"
	var self string
	if caller.Temporary {
		self = "acs:ram::" + a.accountID + ":role/" + strings.ToLower(caller.Role)
	} else if k, ok := a.keys[caller.AccessKeyID]; ok {
		self = "acs:ram::" + a.accountID + ":user/" + k.user
	} else {
		return false
	}
	return role.trust.Evaluate(&policyeval.Request{
		Action:      "sts:AssumeRole",
		Resource:    a.RoleARN(role.lcName),
		CurrentTime: now,
		Caller:      &policyeval.Caller{Type: "RAM", Names: []string{root, self}},
	}) == policyeval.Allowed
}
