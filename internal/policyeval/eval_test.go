package policyeval

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/clipgate/clipgate/policy"
)

func mustParse(t testing.TB, text string) *Document {
	t.Helper()
	d, err := Parse([]byte(text))
	if err != nil {
		t.Fatalf("Parse(%s): %v", text, err)
	}
	return d
}

var baseTime = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func baseRequest() Request {
	return Request{
		Action:          "oss:GetObject",
		Resource:        "acs:oss:cn-hangzhou:1000000000000000:bkt/dev/clip.mp4",
		CurrentTime:     baseTime,
		SourceIP:        netip.MustParseAddr("192.168.1.10"),
		SecureTransport: true,
		UserAgent:       "aliyun-sdk-go/v3.0.2 (Linux)",
		AccessKeyID:     "STS.abc",
	}
}

func TestConditionOperators(t *testing.T) {
	t.Parallel()
	v6 := func(r *Request) { r.SourceIP = netip.MustParseAddr("2001:db8::1") }
	mapped := func(r *Request) { r.SourceIP = netip.MustParseAddr("::ffff:192.168.1.10") }
	noIP := func(r *Request) { r.SourceIP = netip.Addr{} }
	noTime := func(r *Request) { r.CurrentTime = time.Time{} }
	insecure := func(r *Request) { r.SecureTransport = false }
	list := func(prefix, delim string) func(*Request) {
		return func(r *Request) { r.Listing, r.Prefix, r.Delimiter = true, prefix, delim }
	}
	noAgent := func(r *Request) { r.UserAgent = "" }
	anonymous := func(r *Request) { r.AccessKeyID = "" }
	offsetTime := func(r *Request) {
		r.CurrentTime = time.Date(2025, 6, 1, 20, 0, 0, 999, time.FixedZone("CST", 8*3600))
	}
	cases := []struct {
		cond   string // the Condition object
		modify func(*Request)
		holds  bool
	}{
		// String operators on each key's text form.
		{`{"StringEquals":{"acs:SecureTransport":"true"}}`, nil, true},
		{`{"StringEquals":{"acs:SecureTransport":"false"}}`, nil, false},
		{`{"StringEquals":{"acs:SecureTransport":["false","true"]}}`, nil, true},
		{`{"StringEquals":{"acs:SourceIp":"192.168.1.10"}}`, nil, true},
		{`{"StringEquals":{"acs:SourceIp":"192.168.1.10"}}`, mapped, true},
		{`{"StringEquals":{"acs:SourceIp":"192.168.1.1"}}`, nil, false},
		{`{"StringEquals":{"acs:SourceIp":"192.168.1.10"}}`, noIP, false},
		{`{"StringEquals":{"acs:CurrentTime":"2025-06-01T12:00:00Z"}}`, nil, true},
		{`{"StringEquals":{"acs:CurrentTime":"2025-06-01T12:00:00Z"}}`, offsetTime, true},
		{`{"StringEquals":{"acs:SourceIp":"2001:DB8::1"}}`, v6, false},
		{`{"StringNotEquals":{"acs:SourceIp":"1.2.3.4"}}`, nil, true},
		{`{"StringNotEquals":{"acs:SourceIp":["1.2.3.4","192.168.1.10"]}}`, nil, false},
		{`{"StringNotEquals":{"acs:SourceIp":"1.2.3.4"}}`, noIP, true},
		{`{"StringEqualsIgnoreCase":{"acs:SecureTransport":"TRUE"}}`, nil, true},
		{`{"StringEqualsIgnoreCase":{"acs:SourceIp":"2001:DB8::1"}}`, v6, true},
		{`{"StringEqualsIgnoreCase":{"acs:SourceIp":"2001:DB8::2"}}`, v6, false},
		{`{"StringNotEqualsIgnoreCase":{"acs:SecureTransport":"TRUE"}}`, nil, false},
		{`{"StringNotEqualsIgnoreCase":{"acs:SecureTransport":"FALSE"}}`, nil, true},
		{`{"StringNotEqualsIgnoreCase":{"acs:CurrentTime":"x"}}`, noTime, true},
		{`{"StringLike":{"acs:SourceIp":"192.168.*"}}`, nil, true},
		{`{"StringLike":{"acs:SourceIp":"192.168.1.?"}}`, nil, false},
		{`{"StringLike":{"acs:SourceIp":"192.168.1.??"}}`, nil, true},
		{`{"StringLike":{"acs:SourceIp":"*.1.*"}}`, nil, true},
		{`{"StringLike":{"acs:SourceIp":["10.*","172.16.*"]}}`, nil, false},
		{`{"StringLike":{"acs:CurrentTime":"2025-06-*"}}`, nil, true},
		{`{"StringLike":{"acs:CurrentTime":"2025-06-*"}}`, noTime, false},
		{`{"StringLike":{"acs:SecureTransport":"t*"}}`, nil, true},
		{`{"StringNotLike":{"acs:SourceIp":"10.*"}}`, nil, true},
		{`{"StringNotLike":{"acs:SourceIp":["10.*","192.*"]}}`, nil, false},
		{`{"StringNotLike":{"acs:SourceIp":"10.*"}}`, noIP, true},

		// IP addresses.
		{`{"IpAddress":{"acs:SourceIp":"192.168.0.0/16"}}`, nil, true},
		{`{"IpAddress":{"acs:SourceIp":"192.168.1.10"}}`, nil, true},
		{`{"IpAddress":{"acs:SourceIp":"192.168.1.11"}}`, nil, false},
		{`{"IpAddress":{"acs:SourceIp":"192.168.1.99/24"}}`, nil, true},
		{`{"IpAddress":{"acs:SourceIp":"10.0.0.0/8"}}`, nil, false},
		{`{"IpAddress":{"acs:SourceIp":["10.0.0.0/8","192.168.1.0/24"]}}`, nil, true},
		{`{"IpAddress":{"acs:SourceIp":"0.0.0.0/0"}}`, nil, true},
		{`{"IpAddress":{"acs:SourceIp":"0.0.0.0/0"}}`, v6, false},
		{`{"IpAddress":{"acs:SourceIp":"2001:db8::/32"}}`, v6, true},
		{`{"IpAddress":{"acs:SourceIp":"2001:db9::/32"}}`, v6, false},
		{`{"IpAddress":{"acs:SourceIp":"2001:db8::1"}}`, v6, true},
		{`{"IpAddress":{"acs:SourceIp":"::/0"}}`, nil, false},
		{`{"IpAddress":{"acs:SourceIp":"192.168.0.0/16"}}`, mapped, true},
		{`{"IpAddress":{"acs:SourceIp":"192.168.0.0/16"}}`, noIP, false},
		{`{"NotIpAddress":{"acs:SourceIp":"10.0.0.0/8"}}`, nil, true},
		{`{"NotIpAddress":{"acs:SourceIp":["10.0.0.0/8","192.168.0.0/16"]}}`, nil, false},
		{`{"NotIpAddress":{"acs:SourceIp":"10.0.0.0/8"}}`, noIP, true},
		{`{"NotIpAddress":{"acs:SourceIp":"2001:db8::/32"}}`, v6, false},

		// Dates.
		{`{"DateEquals":{"acs:CurrentTime":"2025-06-01T12:00:00Z"}}`, nil, true},
		{`{"DateEquals":{"acs:CurrentTime":"2025-06-01T20:00:00+08:00"}}`, nil, true},
		{`{"DateEquals":{"acs:CurrentTime":"2025-06-01T12:00:01Z"}}`, nil, false},
		{`{"DateEquals":{"acs:CurrentTime":"2025-06-01T12:00:00Z"}}`, noTime, false},
		{`{"DateNotEquals":{"acs:CurrentTime":"2025-06-01T12:00:00Z"}}`, nil, false},
		{`{"DateNotEquals":{"acs:CurrentTime":"2025-06-01T12:00:01Z"}}`, nil, true},
		{`{"DateNotEquals":{"acs:CurrentTime":"2025-06-01T12:00:00Z"}}`, noTime, true},
		{`{"DateLessThan":{"acs:CurrentTime":"2025-06-01T12:00:00.001Z"}}`, nil, true},
		{`{"DateLessThan":{"acs:CurrentTime":"2025-06-01T12:00:00Z"}}`, nil, false},
		{`{"DateLessThan":{"acs:CurrentTime":"2099-01-01T00:00:00Z"}}`, noTime, false},
		{`{"DateLessThanEquals":{"acs:CurrentTime":"2025-06-01T12:00:00Z"}}`, nil, true},
		{`{"DateLessThanEquals":{"acs:CurrentTime":"2025-06-01T11:59:59Z"}}`, nil, false},
		{`{"DateGreaterThan":{"acs:CurrentTime":"2025-06-01T11:59:59Z"}}`, nil, true},
		{`{"DateGreaterThan":{"acs:CurrentTime":"2025-06-01T12:00:00Z"}}`, nil, false},
		{`{"DateGreaterThan":{"acs:CurrentTime":["2030-01-01T00:00:00Z","2020-01-01T00:00:00Z"]}}`, nil, true},
		{`{"DateGreaterThanEquals":{"acs:CurrentTime":"2025-06-01T12:00:00Z"}}`, nil, true},
		{`{"DateGreaterThanEquals":{"acs:CurrentTime":"2025-06-01T12:00:01Z"}}`, nil, false},
		{`{"DateGreaterThanEquals":{"acs:CurrentTime":"2000-01-01T00:00:00Z"}}`, noTime, false},

		// Bool.
		{`{"Bool":{"acs:SecureTransport":"true"}}`, nil, true},
		{`{"Bool":{"acs:SecureTransport":true}}`, nil, true},
		{`{"Bool":{"acs:SecureTransport":"True"}}`, nil, true},
		{`{"Bool":{"acs:SecureTransport":"false"}}`, nil, false},
		{`{"Bool":{"acs:SecureTransport":"false"}}`, insecure, true},
		{`{"Bool":{"acs:SecureTransport":[false]}}`, insecure, true},
		{`{"Bool":{"acs:SecureTransport":"true"}}`, insecure, false},

		// Key names are case-insensitive; conditions are ANDed.
		{`{"IpAddress":{"ACS:SOURCEIP":"192.168.0.0/16"}}`, nil, true},
		{`{"Bool":{"acs:securetransport":"true"}}`, nil, true},
		{`{"IpAddress":{"acs:SourceIp":"192.168.0.0/16"},"Bool":{"acs:SecureTransport":"true"}}`, nil, true},
		{`{"IpAddress":{"acs:SourceIp":"192.168.0.0/16"},"Bool":{"acs:SecureTransport":"false"}}`, nil, false},
		{`{"IpAddress":{"acs:SourceIp":"192.168.0.0/16"},"DateLessThan":{"acs:CurrentTime":"2025-01-01T00:00:00Z"}}`, nil, false},
		{`{"StringLike":{"acs:SourceIp":"192.*","acs:CurrentTime":"2025-*"}}`, nil, true},
		{`{"StringLike":{"acs:SourceIp":"192.*","acs:CurrentTime":"2024-*"}}`, nil, false},
		{`{}`, nil, true},

		// OSS listing keys: present only on a listing, "" when the listing names none.
		{`{"StringLike":{"oss:Prefix":"cam-1/*"}}`, list("cam-1/2025/", "/"), true},
		{`{"StringLike":{"oss:Prefix":"cam-1/*"}}`, list("cam-2/", "/"), false},
		{`{"StringLike":{"oss:Prefix":"cam-1/*"}}`, nil, false},
		{`{"StringEquals":{"oss:Prefix":["","cam-1/"]}}`, list("", ""), true},
		{`{"StringNotLike":{"oss:Prefix":"cam-1/*"}}`, list("cam-2/", ""), true},
		{`{"StringNotLike":{"oss:Prefix":"cam-1/*"}}`, nil, true},
		{`{"StringEquals":{"oss:Delimiter":"/"}}`, list("a/", "/"), true},
		{`{"StringEquals":{"oss:Delimiter":"/"}}`, list("a/", ""), false},
		{`{"StringEquals":{"OSS:DELIMITER":"/","oss:prefix":"a/"}}`, list("a/", "/"), true},
		// The caller's User-Agent and access key.
		{`{"StringLike":{"acs:UserAgent":"aliyun-sdk-go/*"}}`, nil, true},
		{`{"StringLike":{"acs:UserAgent":"aliyun-sdk-go/*"}}`, noAgent, false},
		{`{"StringNotLike":{"acs:UserAgent":"curl/*"}}`, noAgent, true},
		{`{"StringLike":{"acs:AccessId":"STS.*"}}`, nil, true},
		{`{"StringEquals":{"acs:AccessId":"STS.abc"}}`, anonymous, false},
		// Keys this evaluator does not supply are never present.
		{`{"StringEquals":{"oss:ExistingObjectTag/owner":"me"}}`, nil, false},
		{`{"StringNotEquals":{"acs:SourceVpc":"vpc-1"}}`, nil, true},
		{`{"NumericLessThan":{"oss:MaxKeys":"100"}}`, nil, false},
		{`{"NumericNotEquals":{"oss:MaxKeys":"100"}}`, nil, true},
		{`{"Bool":{"acs:MFAPresent":"true"}}`, nil, false},
		{`{"DateLessThan":{"oss:LastModified":"2030-01-01T00:00:00Z"}}`, nil, false},
		{`{"IpAddress":{"acs:ClientIp":"0.0.0.0/0"}}`, nil, false},
		{`{"NotIpAddress":{"acs:ClientIp":"0.0.0.0/0"}}`, nil, true},
	}
	for _, c := range cases {
		r := baseRequest()
		if c.modify != nil {
			c.modify(&r)
		}
		for _, effect := range []string{"Allow", "Deny"} {
			doc := mustParse(t, fmt.Sprintf(`{"Version":"1","Statement":[{"Effect":%q,"Action":"oss:GetObject","Resource":"*","Condition":%s}]}`, effect, c.cond))
			want := NotApplicable
			if c.holds && effect == "Allow" {
				want = Allowed
			} else if c.holds {
				want = Denied
			}
			if got := doc.Evaluate(&r); got != want {
				t.Errorf("%s with %s on ip=%v time=%v secure=%v: %v, want %v", effect, c.cond, r.SourceIP, r.CurrentTime, r.SecureTransport, got, want)
			}
		}
	}
}

func TestActionAndResourceMatching(t *testing.T) {
	t.Parallel()
	const res = "acs:oss:cn-hangzhou:1000000000000000:bkt/dev/2025/clip.mp4"
	cases := []struct {
		action, resource string // the statement's patterns
		reqAction        string
		reqResource      string
		match            bool
	}{
		{"oss:GetObject", "*", "oss:GetObject", res, true},
		{"oss:GetObject", "*", "OSS:GETOBJECT", res, true},
		{"OSS:getobject", "*", "oss:GetObject", res, true},
		{"oss:GetObject", "*", "oss:GetObjectAcl", res, false},
		{"oss:Get*", "*", "oss:GetObjectAcl", res, true},
		{"oss:get*", "*", "oss:GetObject", res, true},
		{"oss:Get*", "*", "oss:PutObject", res, false},
		{"oss:?etObject", "*", "oss:GetObject", res, true},
		{"oss:?etObject", "*", "oss:GGetObject", res, false},
		{"oss:*Object", "*", "oss:PutObject", res, true},
		{"oss:*", "*", "oss:ListObjects", res, true},
		{"*", "*", "ecs:RunInstances", res, true},
		{"ecs:*", "*", "oss:GetObject", res, false},
		{"oss:*", "acs:oss:*:*:bkt/dev/*", "oss:GetObject", res, true},
		{"oss:*", "acs:oss:*:*:bkt/dev/*", "oss:GetObject", "acs:oss:*:*:bkt/dev/", true},
		{"oss:*", "acs:oss:*:*:bkt/dev/*", "oss:GetObject", "acs:oss:*:*:bkt/dev", false},
		{"oss:*", "acs:oss:*:*:bkt/dev/*", "oss:GetObject", "acs:oss:*:*:bkt/DEV/clip", false},
		{"oss:*", "acs:oss:*:*:BKT/dev/*", "oss:GetObject", res, false},
		{"oss:*", "acs:oss:*:*:bkt", "oss:ListObjects", "acs:oss:*:*:bkt", true},
		{"oss:*", "acs:oss:*:*:bkt", "oss:ListObjects", "acs:oss:*:*:bkt2", false},
		{"oss:*", "acs:oss:*:*:bkt/*/clip.mp4", "oss:GetObject", res, true},
		{"oss:*", "acs:oss:*:*:bkt/*/2024/*", "oss:GetObject", res, false},
		{"oss:*", "acs:oss:*:*:bkt/dev/????/*", "oss:GetObject", res, true},
		{"oss:*", "acs:oss:*:*:bkt/dev/???/*", "oss:GetObject", res, false},
		{"oss:*", "acs:oss:*:*:bkt/dev/?", "oss:GetObject", "acs:oss:*:*:bkt/dev/é", true},
		{"oss:*", "acs:oss:*:*:bkt/dev/?.mp4", "oss:GetObject", "acs:oss:*:*:bkt/dev/視.mp4", true},
		{"oss:*", "acs:oss:*:*:bkt/*?", "oss:GetObject", "acs:oss:*:*:bkt/", false},
	}
	for _, c := range cases {
		doc := mustParse(t, fmt.Sprintf(`{"Version":"1","Statement":[{"Effect":"Allow","Action":%q,"Resource":%q}]}`, c.action, c.resource))
		r := baseRequest()
		r.Action, r.Resource = c.reqAction, c.reqResource
		want := NotApplicable
		if c.match {
			want = Allowed
		}
		if got := doc.Evaluate(&r); got != want {
			t.Errorf("Action %q Resource %q vs %q on %q: %v, want %v", c.action, c.resource, c.reqAction, c.reqResource, got, want)
		}
	}
}

func TestDenyWins(t *testing.T) {
	t.Parallel()
	for _, text := range []string{
		`{"Version":"1","Statement":[
			{"Effect":"Allow","Action":"oss:*","Resource":"*"},
			{"Effect":"Deny","Action":"oss:PutObject","Resource":"acs:oss:*:*:bkt/dev/*"}]}`,
		`{"Version":"1","Statement":[
			{"Effect":"Deny","Action":"oss:PutObject","Resource":"acs:oss:*:*:bkt/dev/*"},
			{"Effect":"Allow","Action":"oss:*","Resource":"*"}]}`,
	} {
		doc := mustParse(t, text)
		r := baseRequest()
		r.Action = "oss:PutObject"
		if got := doc.Evaluate(&r); got != Denied {
			t.Errorf("PutObject under an explicit Deny: %v", got)
		}
		r.Action = "oss:GetObject"
		if got := doc.Evaluate(&r); got != Allowed {
			t.Errorf("GetObject with only the Allow applying: %v", got)
		}
		r.Action, r.Resource = "oss:PutObject", "acs:oss:*:*:bkt/other/x"
		if got := doc.Evaluate(&r); got != Allowed {
			t.Errorf("PutObject outside the denied prefix: %v", got)
		}
	}

	// A Deny whose condition fails does not apply.
	doc := mustParse(t, `{"Version":"1","Statement":[
		{"Effect":"Allow","Action":"oss:*","Resource":"*"},
		{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"Bool":{"acs:SecureTransport":"false"}}}]}`)
	r := baseRequest()
	if got := doc.Evaluate(&r); got != Allowed {
		t.Errorf("over HTTPS: %v, want Allowed", got)
	}
	r.SecureTransport = false
	if got := doc.Evaluate(&r); got != Denied {
		t.Errorf("over HTTP: %v, want Denied", got)
	}
}

func TestNotActionNotResource(t *testing.T) {
	t.Parallel()
	doc := mustParse(t, `{"Version":"1","Statement":[
		{"Effect":"Allow","NotAction":["oss:DeleteObject","oss:Put*"],"Resource":"acs:oss:*:*:bkt/*"},
		{"Effect":"Deny","Action":"oss:*","NotResource":["acs:oss:*:*:bkt/dev/*","acs:oss:*:*:bkt/shared/*"]}]}`)
	cases := []struct {
		action, resource string
		want             Decision
	}{
		{"oss:GetObject", "acs:oss:*:*:bkt/dev/a", Allowed},
		{"oss:ListParts", "acs:oss:*:*:bkt/shared/a", Allowed},
		{"oss:DeleteObject", "acs:oss:*:*:bkt/dev/a", NotApplicable},
		{"oss:PutObjectAcl", "acs:oss:*:*:bkt/dev/a", NotApplicable},
		{"oss:GetObject", "acs:oss:*:*:bkt/other/a", Denied},
		{"oss:DeleteObject", "acs:oss:*:*:bkt/other/a", Denied},
		{"ecs:GetObject", "acs:oss:*:*:bkt/other/a", Allowed}, // the Deny names oss:* only
		{"oss:GetObject", "acs:oss:*:*:elsewhere/dev/a", Denied},
	}
	for _, c := range cases {
		r := baseRequest()
		r.Action, r.Resource = c.action, c.resource
		if got := doc.Evaluate(&r); got != c.want {
			t.Errorf("%s on %s: %v, want %v", c.action, c.resource, got, c.want)
		}
	}
}

func TestAuthorize(t *testing.T) {
	t.Parallel()
	role := mustParse(t, `{"Version":"1","Statement":[
		{"Effect":"Allow","Action":"oss:*","Resource":["acs:oss:*:*:bkt","acs:oss:*:*:bkt/*"]},
		{"Effect":"Deny","Action":"oss:DeleteObject","Resource":"*"}]}`)
	text, err := policy.DevicePolicy("bkt", "", "dev", "wa")
	if err != nil {
		t.Fatal(err)
	}
	session, err := ParseSession(text)
	if err != nil {
		t.Fatal(err)
	}
	denyAll := mustParse(t, `{"Version":"1","Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}`)
	allowAll := mustParse(t, `{"Version":"1","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`)
	req := func(action, resource string) *Request {
		r := baseRequest()
		r.Action, r.Resource = action, resource
		return &r
	}
	cases := []struct {
		name string
		r    *Request
		docs []*Document
		want bool
	}{
		{"both allow", req("oss:PutObject", "acs:oss:*:*:bkt/dev/x"), []*Document{role, session}, true},
		{"order does not matter", req("oss:PutObject", "acs:oss:*:*:bkt/dev/x"), []*Document{session, role}, true},
		{"session does not allow listing", req("oss:ListObjects", "acs:oss:*:*:bkt"), []*Document{role, session}, false},
		{"role alone allows listing", req("oss:ListObjects", "acs:oss:*:*:bkt"), []*Document{role}, true},
		{"session outside role", req("oss:PutObject", "acs:oss:*:*:other/dev/x"), []*Document{role, session}, false},
		{"other device", req("oss:PutObject", "acs:oss:*:*:bkt/dev2/x"), []*Document{role, session}, false},
		{"role denies delete", req("oss:DeleteObject", "acs:oss:*:*:bkt/dev/x"), []*Document{role, allowAll}, false},
		{"explicit deny", req("oss:GetObject", "acs:oss:*:*:bkt/dev/x"), []*Document{role, session, denyAll}, false},
		{"no documents", req("oss:GetObject", "acs:oss:*:*:bkt/dev/x"), nil, false},
		{"nil document", req("oss:GetObject", "acs:oss:*:*:bkt/dev/x"), []*Document{role, nil}, false},
		{"nil request", nil, []*Document{allowAll}, false},
		{"allow all", req("oss:GetObject", "acs:oss:*:*:bkt/dev/x"), []*Document{allowAll}, true},
	}
	for _, c := range cases {
		if got := Authorize(c.r, c.docs...); got != c.want {
			t.Errorf("%s: Authorize = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestEvaluateHandBuiltAndNil(t *testing.T) {
	t.Parallel()
	r := baseRequest()
	var nilDoc *Document
	if got := nilDoc.Evaluate(&r); got != NotApplicable {
		t.Errorf("nil document: %v", got)
	}
	doc := &Document{Version: "1", Statements: []Statement{{
		Effect: Allow, Actions: []string{"oss:Get*"}, Resources: []string{"acs:oss:*:*:bkt/*"},
		Conditions: []Condition{{Operator: "IpAddress", Key: "acs:SourceIp", Values: []string{"192.168.0.0/16"}}},
	}}}
	if got := doc.Evaluate(&r); got != Allowed {
		t.Errorf("hand-built document: %v, want Allowed", got)
	}
	if got := doc.Evaluate(nil); got != NotApplicable {
		t.Errorf("nil request: %v", got)
	}
	bad := []*Document{
		{Version: "2", Statements: doc.Statements},
		{Version: "1"},
		{Version: "1", Statements: []Statement{{Effect: "allow", Actions: []string{"*"}, Resources: []string{"*"}}}},
		{Version: "1", Statements: []Statement{{Effect: Allow, Actions: []string{"*"}, NotActions: []string{"x:y"}, Resources: []string{"*"}}}},
		{Version: "1", Statements: []Statement{{Effect: Allow, Actions: []string{"*"}, Resources: []string{"*"},
			Conditions: []Condition{{Operator: "IpAddress", Key: "acs:SourceIp", Values: []string{"nope"}}}}}},
	}
	tooMany := make([]Statement, MaxStatements+1)
	for i := range tooMany {
		tooMany[i] = Statement{Effect: Allow, Actions: []string{"*"}, Resources: []string{"*"}}
	}
	bad = append(bad,
		&Document{Version: "1", Statements: tooMany},
		&Document{Version: "1", Statements: []Statement{{Effect: Allow, Actions: make([]string, MaxValues+1), Resources: []string{"*"}}}},
		&Document{Version: "1", Statements: []Statement{{Effect: Allow, Actions: []string{"*"}, Resources: []string{"*"},
			Conditions: make([]Condition, MaxConditions+1)}}},
	)
	for i, d := range bad {
		if got := d.Evaluate(&r); got != Denied {
			t.Errorf("invalid hand-built document %d: %v, want Denied", i, got)
		}
	}
}

func TestDecisionString(t *testing.T) {
	t.Parallel()
	for d, want := range map[Decision]string{NotApplicable: "NotApplicable", Allowed: "Allowed", Denied: "Denied", 7: "Decision(invalid)"} {
		if got := d.String(); got != want {
			t.Errorf("Decision(%d).String() = %q, want %q", int(d), got, want)
		}
	}
}

// TestEvaluateConcurrent shares one parsed document between goroutines (run with -race).
func TestEvaluateConcurrent(t *testing.T) {
	t.Parallel()
	role, session := benchDocs(t)
	reqs := benchRequests()
	want := map[string]bool{}
	for name, r := range reqs {
		want[name] = Authorize(r, role, session)
	}
	if !want["own-put"] || want["other-device"] || want["list-bucket"] {
		t.Fatalf("unexpected decisions %v", want)
	}
	done := make(chan error)
	for range 8 {
		go func() {
			var err error
			for range 500 {
				for name, r := range reqs {
					if got := Authorize(r, role, session); got != want[name] && err == nil {
						err = fmt.Errorf("%s: %v, want %v", name, got, want[name])
					}
				}
			}
			done <- err
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
