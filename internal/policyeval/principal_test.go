package policyeval

import (
	"errors"
	"strings"
	"testing"

	"github.com/clipgate/clipgate/policy"
)

func TestBucketPolicyPrincipals(t *testing.T) {
	t.Parallel()
	const obj = "acs:oss:cn-hangzhou:1000000000000000:clips/cams/cam-1/a.mp4"
	user := &Caller{Names: []string{"203456789012345678"}}
	session := &Caller{Names: []string{"arn:sts::1000000000000000:assumed-role/uploader/cam-1"}}
	other := &Caller{Names: []string{"arn:sts::1000000000000000:assumed-role/uploader/cam-2"}}
	cases := []struct {
		principal string // the statement's Principal JSON, or "" for none
		caller    *Caller
		applies   bool
	}{
		{`["*"]`, nil, true},
		{`"*"`, session, true},
		{`[]`, nil, true}, // OSS: an empty list is "*"
		{``, user, true},  // no Principal: everyone, as an empty list
		{`["203456789012345678"]`, user, true},
		{`["203456789012345678"]`, session, false},
		{`["203456789012345678"]`, nil, false},
		{`["arn:sts::1000000000000000:assumed-role/uploader/cam-1"]`, session, true},
		{`["arn:sts::1000000000000000:assumed-role/uploader/cam-1"]`, other, false},
		{`["arn:sts::*:*/*/*"]`, other, true}, // all STS sessions, as OSS documents
		{`["arn:sts::*:*/*/*"]`, user, false},
		{`["1", "arn:sts::1000000000000000:assumed-role/uploader/*"]`, other, true},
	}
	for _, c := range cases {
		field := ""
		if c.principal != "" {
			field = `"Principal":` + c.principal + `,`
		}
		for _, effect := range []string{"Allow", "Deny"} {
			text := `{"Version":"1","Statement":[{"Effect":"` + effect + `",` + field + `"Action":"oss:PutObject","Resource":"acs:oss:*:*:clips/cams/cam-1/*"}]}`
			doc, err := ParseBucketPolicy([]byte(text))
			if err != nil {
				t.Fatalf("%s: %v", text, err)
			}
			r := &Request{Action: "oss:PutObject", Resource: obj, Caller: c.caller}
			want := NotApplicable
			if c.applies && effect == "Allow" {
				want = Allowed
			} else if c.applies {
				want = Denied
			}
			if got := doc.Evaluate(r); got != want {
				t.Errorf("%s for %+v: %v, want %v", text, c.caller, got, want)
			}
			// The document survives MarshalJSON and a second parse.
			b, err := doc.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			again, err := ParseBucketPolicy(b)
			if err != nil {
				t.Fatalf("reparse %s: %v", b, err)
			}
			if got := again.Evaluate(r); got != want {
				t.Errorf("reparsed %s: %v, want %v", b, got, want)
			}
		}
	}
}

func TestBucketPolicyLimits(t *testing.T) {
	t.Parallel()
	stmt := func(s string) []byte { return []byte(`{"Version":"1","Statement":[` + s + `]}`) }
	ok := `{"Effect":"Deny","Principal":["*"],"Action":"oss:*","Resource":"acs:oss:*:*:clips/x/*"}`
	// A policy of exactly the limit is accepted; one byte more is refused. Statements with
	// 3000-byte resources fill it (no value may exceed MaxBucketPolicyField).
	withPad := func(total int) []byte {
		var stmts []string
		for n := 0; ; n++ {
			cur := len(stmt(strings.Join(append(stmts, ok), ",")))
			if cur+3100 < total {
				stmts = append(stmts, strings.Replace(ok, "x/*", strings.Repeat("y", 3000)+"/*", 1))
				continue
			}
			stmts = append(stmts, strings.Replace(ok, "x/*", "x"+strings.Repeat("y", total-cur)+"/*", 1))
			return stmt(strings.Join(stmts, ","))
		}
	}
	exact := withPad(MaxBucketPolicySize)
	if len(exact) != MaxBucketPolicySize {
		t.Fatalf("test policy is %d bytes", len(exact))
	}
	if _, err := ParseBucketPolicy(exact); err != nil {
		t.Fatalf("policy of %d bytes: %v", len(exact), err)
	}
	exact = withPad(MaxBucketPolicySize + 1)
	_, err := ParseBucketPolicy(exact)
	if !errors.Is(err, policy.ErrTooLong) || !errors.Is(err, ErrInvalidPolicy) {
		t.Fatalf("policy of %d bytes: %v", len(exact), err)
	}

	long := "acs:oss:*:*:clips/" + strings.Repeat("a", MaxBucketPolicyField-len("acs:oss:*:*:clips/"))
	if _, err := ParseBucketPolicy(stmt(strings.Replace(ok, "acs:oss:*:*:clips/x/*", long, 1))); err != nil {
		t.Fatalf("field of %d bytes: %v", len(long), err)
	}
	_, err = ParseBucketPolicy(stmt(strings.Replace(ok, "acs:oss:*:*:clips/x/*", long+"a", 1)))
	if !errors.Is(err, policy.ErrTooLong) {
		t.Fatalf("field of %d bytes: %v", len(long)+1, err)
	}

	bad := []struct{ name, text, want string }{
		{"double star", string(stmt(strings.Replace(ok, "x/*", "x/**", 1))), `consecutive wildcards "**"`},
		{"double star in principal", string(stmt(strings.Replace(ok, `["*"]`, `["**"]`, 1))), "consecutive wildcards"},
		{"typed principal", string(stmt(strings.Replace(ok, `["*"]`, `{"RAM":["*"]}`, 1))), "want a string or an array of strings, got an object"},
		{"principal number", string(stmt(strings.Replace(ok, `["*"]`, `[1]`, 1))), "want a string, got the number 1"},
		{"empty principal", string(stmt(strings.Replace(ok, `["*"]`, `[""]`, 1))), "is not a principal"},
		{"version 2", `{"Version":"2","Statement":[` + ok + `]}`, `"2" is not supported`},
		{"version number", `{"Version":1,"Statement":[` + ok + `]}`, "want a string"},
		{"no resource", string(stmt(`{"Effect":"Deny","Principal":["*"],"Action":"oss:*"}`)), "needs Resource"},
	}
	for _, c := range bad {
		_, err := ParseBucketPolicy([]byte(c.text))
		if err == nil || !errors.Is(err, ErrInvalidPolicy) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
		}
	}
	// Principal stays refused in identity policies, and in a hand-built identity document.
	if _, err := Parse(stmt(ok)); err == nil || !strings.Contains(err.Error(), "Principal belongs only in resource-based") {
		t.Errorf("Parse with Principal: %v", err)
	}
	doc := &Document{Version: "1", Statements: []Statement{{Effect: Deny, Principals: []Principal{{IDs: []string{"*"}}},
		Actions: []string{"oss:*"}, Resources: []string{"*"}}}}
	if _, err := doc.MarshalJSON(); err == nil {
		t.Error("MarshalJSON accepted an identity document with a Principal")
	}
	doc.Kind = BucketPolicy
	if b, err := doc.MarshalJSON(); err != nil || string(b) != `{"Version":"1","Statement":[{"Effect":"Deny","Principal":["*"],"Action":["oss:*"],"Resource":["*"]}]}` {
		t.Errorf("MarshalJSON of a bucket policy: %s %v", b, err)
	}
}

func TestTrustPolicy(t *testing.T) {
	t.Parallel()
	const text = `{"Statement":[{"Action":"sts:AssumeRole","Effect":"Allow","Principal":{"RAM":["acs:ram::1000000000000000:root","acs:ram::2000000000000000:role/ops"]}}],"Version":"1"}`
	doc, err := ParseTrustPolicy([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	req := func(c *Caller) *Request {
		return &Request{Action: "sts:AssumeRole", Resource: "acs:ram::1000000000000000:role/uploader", Caller: c}
	}
	user := &Caller{Type: "RAM", Names: []string{"acs:ram::1000000000000000:root", "acs:ram::1000000000000000:user/worker"}}
	foreign := &Caller{Type: "RAM", Names: []string{"acs:ram::2000000000000000:root", "acs:ram::2000000000000000:role/dev"}}
	ops := &Caller{Type: "RAM", Names: []string{"acs:ram::2000000000000000:root", "acs:ram::2000000000000000:role/ops"}}
	service := &Caller{Type: "Service", Names: []string{"acs:ram::1000000000000000:root"}}
	for _, c := range []struct {
		caller *Caller
		want   Decision
	}{{user, Allowed}, {ops, Allowed}, {foreign, NotApplicable}, {service, NotApplicable}, {nil, NotApplicable}} {
		if got := doc.Evaluate(req(c.caller)); got != c.want {
			t.Errorf("caller %+v: %v, want %v", c.caller, got, c.want)
		}
	}
	if got := doc.Evaluate(&Request{Action: "sts:GetCallerIdentity", Caller: user}); got != NotApplicable {
		t.Errorf("other action: %v", got)
	}
	b, err := doc.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if again, err := ParseTrustPolicy(b); err != nil || again.Evaluate(req(ops)) != Allowed {
		t.Fatalf("round trip %s: %v", b, err)
	}

	stmt := func(s string) []byte { return []byte(`{"Version":"1","Statement":[` + s + `]}`) }
	bad := []struct{ name, text, want string }{
		{"no principal", `{"Effect":"Allow","Action":"sts:AssumeRole"}`, "missing Principal"},
		{"resource", `{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{"RAM":"*"},"Resource":"*"}`, "has no Resource"},
		{"list principal", `{"Effect":"Allow","Action":"sts:AssumeRole","Principal":["*"]}`, "want an object"},
		{"unknown type", `{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{"AWS":"*"}}`, `unknown principal type "AWS"`},
		{"empty principal", `{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{}}`, "no principals"},
		{"empty list", `{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{"RAM":[]}}`, "empty array"},
	}
	for _, c := range bad {
		_, err := ParseTrustPolicy(stmt(c.text))
		if err == nil || !errors.Is(err, ErrInvalidPolicy) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
		}
	}
	// "*" of a type admits that type only.
	star, err := ParseTrustPolicy(stmt(`{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{"Service":"*"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if star.Evaluate(req(user)) != NotApplicable || star.Evaluate(req(service)) != Allowed || star.Evaluate(req(nil)) != NotApplicable {
		t.Error(`{"Service":"*"} matched the wrong callers`)
	}
}

// FuzzParseResourcePolicies: bucket and trust policies parse or fail with
// ErrInvalidPolicy, and a parsed one round-trips through MarshalJSON to the same
// statements and decisions.
func FuzzParseResourcePolicies(f *testing.F) {
	for _, s := range []string{
		`{"Version":"1","Statement":[{"Effect":"Deny","Principal":["*"],"Action":"oss:*","Resource":"acs:oss:*:*:b/p/cam-1/*"}]}`,
		`{"Version":"1","Statement":[{"Effect":"Allow","Principal":[],"Action":"oss:GetObject","NotResource":"acs:oss:*:*:b/x*"}]}`,
		`{"Version":"1","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{"RAM":["acs:ram::1:root"],"Service":"ecs.aliyuncs.com"}}]}`,
		`{"Version":"1","Statement":[{"Effect":"Allow","Principal":"arn:sts::*:*/*/*","Action":"oss:*","Resource":"*","Condition":{"StringLike":{"oss:Prefix":"a/*"}}}]}`,
	} {
		f.Add([]byte(s))
	}
	callers := []*Caller{nil, {Names: []string{"123"}}, {Type: "RAM", Names: []string{"acs:ram::1:root", "acs:ram::1:role/x"}},
		{Names: []string{"arn:sts::1:assumed-role/uploader/cam-1"}}}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, parse := range []func([]byte) (*Document, error){ParseBucketPolicy, ParseTrustPolicy} {
			doc, err := parse(data)
			if err != nil {
				if doc != nil || !errors.Is(err, ErrInvalidPolicy) {
					t.Fatalf("error %v (document %v) does not wrap ErrInvalidPolicy", err, doc)
				}
				continue
			}
			text, err := doc.MarshalJSON()
			if err != nil {
				t.Fatalf("MarshalJSON of a parsed %v: %v", doc.Kind, err)
			}
			again, err := parse(text)
			if err != nil {
				t.Fatalf("marshalled %v does not parse: %v\n%s", doc.Kind, err, text)
			}
			for _, c := range callers {
				r := &Request{Action: "oss:GetObject", Resource: "acs:oss:*:*:b/p/cam-1/x", Caller: c, Listing: true, Prefix: "a/"}
				if a, b := doc.Evaluate(r), again.Evaluate(r); a != b {
					t.Fatalf("caller %+v: %v after round trip, %v before", c, b, a)
				}
			}
		}
	})
}
