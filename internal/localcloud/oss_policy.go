package localcloud

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/clipgate/clipgate/internal/policyeval"
	"github.com/clipgate/clipgate/policy"
)

// policyRequest describes rq, for action, as policies see it: the resource
// ("acs:oss:{region}:{account}:{bucket}[/{key}]", or "...:*" for the service) and the
// condition keys RAM and OSS document (acs:CurrentTime, acs:SourceIp,
// acs:SecureTransport, acs:UserAgent, acs:AccessId; oss:Prefix and oss:Delimiter on a
// listing).
func (s *ossService) policyRequest(rq *ossRequest, action string) (*policyeval.Request, string) {
	res := "acs:oss:" + s.cfg.Region + ":" + s.cfg.AccountID + ":"
	switch {
	case rq.bucket == nil:
		res += "*"
	case rq.key == "":
		res += rq.bucketName
	default:
		res += rq.bucketName + "/" + rq.key
	}
	req := &policyeval.Request{
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

// Error details of bucket policies, as OSS documents them
// (https://help.aliyun.com/en/oss/user-guide/0030-00000001 and the pages after it).
const (
	ecPolicyTooLarge       = "0030-00000001"
	ecPolicyVersion        = "0030-00000002"
	ecPolicyFieldTooLong   = "0030-00000003"
	ecPolicyInvalid        = "0030-00000005"
	ecNoSuchBucketPolicy   = "0030-00000006"
	ecPolicyWildcards      = "0030-00000007"
	ecDeniedByBucketPolicy = "0003-00000101" // https://help.aliyun.com/zh/oss/support/0003-00000101
	ecDeniedByRAMPolicy    = "0003-00000201" // https://www.alibabacloud.com/help/en/oss/support/0003-00000201
)

// authorize decides whether the principal may do action on the request's resource, as
// OSS combines RAM and bucket policies
// (https://www.alibabacloud.com/help/en/oss/user-guide/how-oss-works-with-ram): an
// explicit Deny in any of them refuses; otherwise the request is allowed by an Allow of
// the principal's own policies (a RAM user's policy; for STS credentials the role's
// policy AND the session policy) or by an Allow of the bucket policy that names the
// principal. An unrestricted long-term key needs no Allow but is still subject to a
// bucket policy's Deny, except for the bucket policy operations themselves, so that the
// bucket's administrator can always repair a policy (a deliberate difference).
func (s *ossService) authorize(rq *ossRequest, action string) error {
	p := rq.principal // nil: an anonymous form upload, which only a bucket policy can allow
	req, res := s.policyRequest(rq, action)
	bucketAllows := false
	if bp := s.bucketPolicy(rq); bp != nil && !(p.unrestricted() && isBucketPolicyAction(action)) {
		req.Caller = s.auth.bucketPolicyCaller(p)
		switch bp.doc.Evaluate(req) {
		case policyeval.Denied:
			return &Error{Status: http.StatusForbidden, Code: "AccessDenied", EC: ecDeniedByBucketPolicy,
				Message: "Access denied by bucket policy: " + action + " on " + res + " is denied."}
		case policyeval.Allowed:
			bucketAllows = true
		}
	}
	if p == nil {
		if bucketAllows {
			return nil
		}
		return errAnonymous
	}
	if p.unrestricted() {
		return nil
	}
	ownAllows := len(p.Policies) > 0
	for _, d := range p.Policies {
		switch d.Evaluate(req) {
		case policyeval.Denied:
			return &Error{Status: http.StatusForbidden, Code: "AccessDenied", EC: ecDeniedByRAMPolicy,
				Message: "Access denied by RAM policy: " + action + " on " + res + " is explicitly denied."}
		case policyeval.NotApplicable:
			ownAllows = false
		}
	}
	if !ownAllows && !bucketAllows {
		return errNotAllowed(action, res)
	}
	return nil
}

func errNotAllowed(action, res string) *Error {
	return &Error{Status: http.StatusForbidden, Code: "AccessDenied",
		Message: "You are not authorized to do this action: " + action + " on " + res + " is not allowed by the access policy."}
}

// unrestricted reports whether p is a long-term key without a policy (full access).
func (p *Principal) unrestricted() bool { return p != nil && len(p.Policies) == 0 && !p.Temporary }

func isBucketPolicyAction(action string) bool {
	switch action {
	case "oss:PutBucketPolicy", "oss:GetBucketPolicy", "oss:DeleteBucketPolicy":
		return true
	}
	return false
}

// bucketPolicy returns the request's bucket's policy, or nil.
func (s *ossService) bucketPolicy(rq *ossRequest) *bucketPolicy {
	if rq.bucket == nil {
		return nil
	}
	return s.configs[rq.bucketName].policy.Load()
}

// putBucketPolicy stores a bucket policy after checking it as OSS does: at most 16 KB,
// Version "1", no value over 4095 bytes, no "**", RAM's grammar with a Principal list.
func (s *ossService) putBucketPolicy(rq *ossRequest) error {
	body, err := s.readPolicyBody(rq)
	if err != nil {
		return err
	}
	doc, err := policyeval.ParseBucketPolicy(body)
	if err != nil {
		return policyDocumentError(err, body)
	}
	c := s.configs[rq.bucketName]
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.save(policyFile, body); err != nil {
		return err
	}
	c.policy.Store(&bucketPolicy{text: string(body), doc: doc})
	rq.w.Header().Set("Content-Length", "0")
	rq.w.WriteHeader(http.StatusOK)
	return nil
}

// readPolicyBody reads a policy body of at most MaxBucketPolicySize bytes (one more is
// read to tell a larger one), checking Content-MD5 when given.
func (s *ossService) readPolicyBody(rq *ossRequest) ([]byte, error) {
	tooLarge := &Error{Status: http.StatusBadRequest, Code: "InvalidPolicyDocument", EC: ecPolicyTooLarge,
		Message: fmt.Sprintf("The bucket policy is larger than %d bytes.", policyeval.MaxBucketPolicySize)}
	if rq.r.ContentLength > policyeval.MaxBucketPolicySize {
		return nil, tooLarge
	}
	body, err := io.ReadAll(io.LimitReader(rq.r.Body, policyeval.MaxBucketPolicySize+1))
	rq.bytesIn += int64(len(body))
	if err != nil {
		return nil, &Error{Status: http.StatusBadRequest, Code: "IncompleteBody", Message: "The request body could not be read."}
	}
	if len(body) > policyeval.MaxBucketPolicySize {
		return nil, tooLarge
	}
	d := &digest{}
	check, err := rq.prepareChecks(d, nil, false)
	if err != nil {
		return nil, err
	}
	for _, h := range d.hashes {
		h.Write(body)
	}
	if err := check.verify(rq.r, d); err != nil {
		return nil, err
	}
	return body, nil
}

// policyDocumentError maps a policy parse error to OSS's error and detail. The code,
// InvalidPolicyDocument, is this server's reading; the details are the ones OSS documents
// for each cause.
func policyDocumentError(err error, body []byte) *Error {
	e := &Error{Status: http.StatusBadRequest, Code: "InvalidPolicyDocument", EC: ecPolicyInvalid,
		Message: "The bucket policy is invalid: " + err.Error()}
	msg := err.Error()
	switch {
	case len(body) > policyeval.MaxBucketPolicySize:
		e.EC = ecPolicyTooLarge
	case errors.Is(err, policy.ErrTooLong):
		e.EC = ecPolicyFieldTooLong
	case strings.Contains(msg, `Version: "`) && strings.Contains(msg, "is not supported"): // a string other than "1"
		e.EC = ecPolicyVersion
	case strings.Contains(msg, "consecutive wildcards"):
		e.EC = ecPolicyWildcards
	}
	return e
}

func (s *ossService) getBucketPolicy(rq *ossRequest) error {
	bp := s.configs[rq.bucketName].policy.Load()
	if bp == nil {
		return &Error{Status: http.StatusNotFound, Code: "NoSuchBucketPolicy", EC: ecNoSuchBucketPolicy,
			Message: "The bucket policy does not exist."}
	}
	h := rq.w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(bp.text)))
	rq.w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(rq.w, bp.text)
	return nil
}

// deleteBucketPolicy removes the bucket policy; 204 whether or not there was one.
func (s *ossService) deleteBucketPolicy(rq *ossRequest) error {
	c := s.configs[rq.bucketName]
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.save(policyFile, nil); err != nil {
		return err
	}
	c.policy.Store(nil)
	rq.w.WriteHeader(http.StatusNoContent)
	return nil
}
