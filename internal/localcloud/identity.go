package localcloud

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"strconv"
	"strings"

	"github.com/clipgate/clipgate/policy"
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
func (a *Authority) bucketPolicyCaller(p *Principal) *policy.Caller {
	if p == nil {
		return nil
	}
	if p.Temporary {
		return &policy.Caller{Names: []string{a.stsSessionARN(p.Role, p.SessionName)}}
	}
	if k, ok := a.keys[p.AccessKeyID]; ok {
		return &policy.Caller{Names: []string{k.userID}}
	}
	return nil
}
