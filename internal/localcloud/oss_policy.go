package localcloud

import (
	"github.com/clipgate/clipgate/policy"
)

// policyRequest describes rq, for action, as policies see it: the resource
// ("acs:oss:{region}:{account}:{bucket}[/{key}]", or "...:*" for the service) and the
// condition keys RAM and OSS document (acs:CurrentTime, acs:SourceIp,
// acs:SecureTransport, acs:UserAgent, acs:AccessId; oss:Prefix and oss:Delimiter on a
// listing).
func (s *ossService) policyRequest(rq *ossRequest, action string) (*policy.Request, string) {
	res := "acs:oss:" + s.cfg.Region + ":" + s.cfg.AccountID + ":"
	switch {
	case rq.bucket == nil:
		res += "*"
	case rq.key == "":
		res += rq.bucketName
	default:
		res += rq.bucketName + "/" + rq.key
	}
	req := &policy.Request{
		Action:          action,
		Resource:        res,
		CurrentTime:     rq.now,
		SourceIP:        remoteIP(rq.r),
		SecureTransport: rq.r.TLS != nil,
		UserAgent:       rq.r.Header.Get("User-Agent"),
	}
	if rq.sig != nil {
		req.AccessKeyID = rq.sig.accessKeyID
	}
	if action == "oss:ListObjects" {
		req.Listing = true
		req.Prefix, req.Delimiter = rq.query.Get("prefix"), rq.query.Get("delimiter")
	}
	return req, res
}
