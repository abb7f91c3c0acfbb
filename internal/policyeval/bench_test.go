package policyeval

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/clipgate/clipgate/policy"
)

// rolePolicy is a role policy of the kind an operator writes: wide OSS access on one
// bucket from the office network or over HTTPS, a few explicit denies, and conditions
// of every kind so that the benchmark exercises all operator families.
const rolePolicy = `{"Version":"1","Statement":[
	{"Effect":"Deny","Action":["oss:DeleteBucket","oss:PutBucket*"],"Resource":"*"},
	{"Effect":"Deny","Action":"oss:*","Resource":"*","Condition":{"Bool":{"acs:SecureTransport":"false"},"NotIpAddress":{"acs:SourceIp":["10.0.0.0/8","192.168.0.0/16","2001:db8::/32"]}}},
	{"Effect":"Deny","Action":"oss:*","Resource":"*","Condition":{"DateGreaterThan":{"acs:CurrentTime":"2099-01-01T00:00:00Z"}}},
	{"Effect":"Deny","NotAction":["oss:Get*","oss:Put*","oss:List*","oss:AbortMultipartUpload"],"Resource":"acs:oss:*:*:clips/*"},
	{"Effect":"Allow","Action":["oss:ListObjects"],"Resource":"acs:oss:*:*:clips","Condition":{"StringLike":{"acs:SourceIp":"192.168.*"}}},
	{"Effect":"Allow","Action":["oss:Get*","oss:Put*","oss:AbortMultipartUpload","oss:ListParts"],"Resource":["acs:oss:*:*:clips/v1/*","acs:oss:*:*:clips/archive/????/*"]}
]}`

func benchDocs(b testing.TB) (role, session *Document) {
	role = mustParse(b, rolePolicy)
	text, err := policy.DevicePolicy("clips", "v1/", "cam-000123", "wa")
	if err != nil {
		b.Fatal(err)
	}
	session, err = ParseSession(text)
	if err != nil {
		b.Fatal(err)
	}
	return role, session
}

func benchRequests() map[string]*Request {
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	ip := netip.MustParseAddr("192.168.7.42")
	return map[string]*Request{
		"own-put":      {Action: "oss:PutObject", Resource: "acs:oss:cn-hangzhou:1000000000000000:clips/v1/cam-000123/2025/06/01/120000-0001.mp4", CurrentTime: at, SourceIP: ip, SecureTransport: true},
		"other-device": {Action: "oss:PutObject", Resource: "acs:oss:cn-hangzhou:1000000000000000:clips/v1/cam-000124/2025/06/01/120000-0001.mp4", CurrentTime: at, SourceIP: ip, SecureTransport: true},
		"list-bucket":  {Action: "oss:ListObjects", Resource: "acs:oss:cn-hangzhou:1000000000000000:clips", CurrentTime: at, SourceIP: ip, SecureTransport: false},
	}
}

// BenchmarkEvaluate measures one decision against a compiled document; it should not allocate.
func BenchmarkEvaluate(b *testing.B) {
	role, session := benchDocs(b)
	for name, r := range benchRequests() {
		b.Run("session/"+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				session.Evaluate(r)
			}
		})
		b.Run("role/"+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				role.Evaluate(r)
			}
		})
		b.Run("authorize/"+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Authorize(r, role, session)
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	text := []byte(rolePolicy)
	for b.Loop() {
		if _, err := Parse(text); err != nil {
			b.Fatal(err)
		}
	}
}

// hostilePolicy fills MaxDocumentSize with wildcard patterns built to make a naive
// matcher backtrack, none of which matches hostileRequest's resource.
func hostilePolicy(tb testing.TB) *Document {
	// Each middle segment almost matches at every offset of a run of "a", then fails.
	pat := `"acs:*` + strings.Repeat("a?", 30) + `b*"`
	head := `{"Version":"1","Statement":[`
	one := `{"Effect":"Deny","Action":"*","Resource":[` + strings.TrimSuffix(strings.Repeat(pat+",", 40), ",") + `]}`
	n := (MaxDocumentSize - len(head) - 2) / (len(one) + 1)
	text := head + strings.TrimSuffix(strings.Repeat(one+",", n), ",") + "]}"
	return mustParse(tb, text)
}

// BenchmarkEvaluateHostile bounds the work a document of MaxDocumentSize can cause.
func BenchmarkEvaluateHostile(b *testing.B) {
	doc := hostilePolicy(b)
	r := &Request{Action: "oss:GetObject", Resource: "acs:oss:*:*:bkt/" + strings.Repeat("a", 1024)}
	b.ReportAllocs()
	for b.Loop() {
		if doc.Evaluate(r) != NotApplicable {
			b.Fatal("hostile policy matched")
		}
	}
}
