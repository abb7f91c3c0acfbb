package policyeval

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/clipgate/clipgate/policy"
)

// stmt wraps statement JSON in a valid document.
func stmt(s string) string { return `{"Version":"1","Statement":[` + s + `]}` }

// cond wraps a Condition object in a valid statement.
func cond(c string) string {
	return stmt(`{"Effect":"Allow","Action":"oss:GetObject","Resource":"*","Condition":` + c + `}`)
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	many := func(n int, item string) string {
		return strings.TrimSuffix(strings.Repeat(item+",", n), ",")
	}
	ok := `{"Effect":"Allow","Action":"oss:GetObject","Resource":"*"}`
	cases := []struct {
		name, text, want string
	}{
		{"empty", ``, "unexpected end"},
		{"spaces", "  \n", "unexpected end"},
		{"not JSON", `Version: 1`, "malformed JSON"},
		{"truncated", `{"Version":"1","Statement":[`, "unexpected end"},
		{"null", `null`, "want an object, got null"},
		{"array", `[]`, "want an object, got an array"},
		{"string", `"policy"`, "want an object"},
		{"trailing object", stmt(ok) + `{}`, "unexpected data after"},
		{"trailing garbage", stmt(ok) + ` x`, "unexpected data after"},
		{"trailing comma", `{"Version":"1",}`, "malformed JSON"},
		{"invalid UTF-8", "{\"Version\":\"1\xff\"}", "not valid UTF-8"},
		{"too large", stmt(ok) + strings.Repeat(" ", MaxDocumentSize), "limit 65536"},
		{"missing Version", `{"Statement":[` + ok + `]}`, "missing Version"},
		{"Version 2", `{"Version":"2","Statement":[` + ok + `]}`, `"2" is not supported`},
		{"Version number", `{"Version":1,"Statement":[` + ok + `]}`, "Version: want a string, got the number 1"},
		{"Version lower-case", `{"version":"1","Statement":[` + ok + `]}`, `unknown field "version"`},
		{"Version twice", `{"Version":"1","Version":"1","Statement":[` + ok + `]}`, `"Version" appears twice`},
		{"unknown top field", `{"Version":"1","Id":"x","Statement":[` + ok + `]}`, `unknown field "Id"`},
		{"missing Statement", `{"Version":"1"}`, "missing Statement"},
		{"Statement object", `{"Version":"1","Statement":` + ok + `}`, "want an array of statements, got an object"},
		{"Statement empty", stmt(``), "no statements"},
		{"Statement string", `{"Version":"1","Statement":"x"}`, "want an array of statements"},
		{"Statement twice", `{"Version":"1","Statement":[` + ok + `],"Statement":[` + ok + `]}`, `"Statement" appears twice`},
		{"statement not object", stmt(`1`), "Statement[0]: want an object, got the number 1"},
		{"statement null", stmt(ok + `,null`), "Statement[1]: want an object, got null"},
		{"too many statements", stmt(many(MaxStatements+1, ok)), "more than 256 statements"},
		{"missing Effect", stmt(`{"Action":"*","Resource":"*"}`), "missing Effect"},
		{"Effect lower-case", stmt(`{"Effect":"allow","Action":"*","Resource":"*"}`), `"allow" is not "Allow" or "Deny"`},
		{"Effect empty", stmt(`{"Effect":"","Action":"*","Resource":"*"}`), `"" is not "Allow"`},
		{"Effect bool", stmt(`{"Effect":true,"Action":"*","Resource":"*"}`), "Effect: want a string, got true"},
		{"Effect twice", stmt(`{"Effect":"Allow","Effect":"Deny","Action":"*","Resource":"*"}`), `"Effect" appears twice`},
		{"effect key lower-case", stmt(`{"effect":"Allow","Action":"*","Resource":"*"}`), `unknown field "effect"`},
		{"Sid", stmt(`{"Sid":"a","Effect":"Allow","Action":"*","Resource":"*"}`), `unknown field "Sid"`},
		{"Principal", stmt(`{"Effect":"Allow","Principal":{"RAM":"*"},"Action":"*","Resource":"*"}`), "Principal belongs only in resource-based"},
		{"no Action", stmt(`{"Effect":"Allow","Resource":"*"}`), "needs Action or NotAction"},
		{"Action and NotAction", stmt(`{"Effect":"Allow","Action":"*","NotAction":"oss:GetObject","Resource":"*"}`), "both Action and NotAction"},
		{"Action empty array", stmt(`{"Effect":"Allow","Action":[],"Resource":"*"}`), "Action: empty array"},
		{"Action empty string", stmt(`{"Effect":"Allow","Action":["oss:GetObject",""],"Resource":"*"}`), `Action[1]: "" is not an action`},
		{"Action number", stmt(`{"Effect":"Allow","Action":[1],"Resource":"*"}`), "Action[0]: want a string, got the number 1"},
		{"Action object", stmt(`{"Effect":"Allow","Action":{},"Resource":"*"}`), "want a string or an array of strings, got an object"},
		{"Action nested array", stmt(`{"Effect":"Allow","Action":[["oss:GetObject"]],"Resource":"*"}`), "Action[0]: want a string, got an array"},
		{"Action without service", stmt(`{"Effect":"Allow","Action":"GetObject","Resource":"*"}`), `"GetObject" is not an action`},
		{"Action without name", stmt(`{"Effect":"Allow","Action":"oss:","Resource":"*"}`), `"oss:" is not an action`},
		{"Action with space", stmt(`{"Effect":"Allow","Action":"oss:Get Object","Resource":"*"}`), "is not an action"},
		{"Action bool", stmt(`{"Effect":"Allow","Action":true,"Resource":"*"}`), "got true"},
		{"Action too many", stmt(`{"Effect":"Allow","Action":[` + many(MaxValues+1, `"oss:GetObject"`) + `],"Resource":"*"}`), "more than 256 values"},
		{"NotAction empty string", stmt(`{"Effect":"Allow","NotAction":"","Resource":"*"}`), "NotAction[0]"},
		{"no Resource", stmt(`{"Effect":"Allow","Action":"*"}`), "needs Resource or NotResource"},
		{"Resource and NotResource", stmt(`{"Effect":"Allow","Action":"*","Resource":"*","NotResource":"*"}`), "both Resource and NotResource"},
		{"Resource not acs", stmt(`{"Effect":"Allow","Action":"*","Resource":"oss:bkt/*"}`), `"oss:bkt/*" is not "*" or a resource name`},
		{"Resource empty", stmt(`{"Effect":"Allow","Action":"*","Resource":""}`), `Resource[0]: "" is not`},
		{"Resource control", stmt(`{"Effect":"Allow","Action":"*","Resource":"acs:oss:*:*:b/\n"}`), "control character"},
		{"Resource null", stmt(`{"Effect":"Allow","Action":"*","Resource":null}`), "got null"},
		{"Resource too long", stmt(`{"Effect":"Allow","Action":"*","Resource":"acs:` + strings.Repeat("x", MaxStringLen) + `"}`), "limit 4096"},
		{"NotResource bad", stmt(`{"Effect":"Allow","Action":"*","NotResource":"bkt"}`), "NotResource[0]"},
		{"Condition not object", cond(`[]`), "Condition: want an object, got an array"},
		{"Condition operator not object", cond(`{"StringEquals":"x"}`), "Condition.StringEquals: want an object"},
		{"Condition operator empty", cond(`{"StringEquals":{}}`), "Condition.StringEquals: no condition keys"},
		{"Condition unknown operator", cond(`{"StringEqual":{"acs:SourceIp":"x"}}`), `unknown condition operator "StringEqual"`},
		{"Condition operator lower-case", cond(`{"stringequals":{"acs:SourceIp":"x"}}`), `unknown condition operator "stringequals"`},
		{"Condition numeric operator on a known key", cond(`{"NumericEquals":{"acs:SourceIp":"1"}}`), "compares numbers and no known key"},
		{"Condition numeric value", cond(`{"NumericLessThan":{"oss:MaxKeys":"ten"}}`), `"ten" is not a number`},
		{"Condition IfExists", cond(`{"StringEqualsIfExists":{"acs:SourceIp":"1"}}`), "unknown condition operator"},
		{"Condition key without service", cond(`{"StringEquals":{"UserAgent":"curl"}}`), `condition key "UserAgent" is not of the form "<service>:<key>"`},
		{"Condition key empty name", cond(`{"StringEquals":{"oss:":"x"}}`), `condition key "oss:" is not of the form`},
		{"Condition key bad service", cond(`{"StringEquals":{"o s:Prefix":"x"}}`), `the service "o s" may hold only`},
		{"Condition key control", cond(`{"StringEquals":{"oss:Pre\u0001fix":"x"}}`), "control character"},
		{"Bool two values", cond(`{"Bool":{"acs:SecureTransport":["true","false"]}}`), "takes exactly one value, got 2"},
		{"Date on a string key", cond(`{"DateLessThan":{"oss:Prefix":"2025-01-02T03:04:05Z"}}`), "applies only to acs:CurrentTime"},
		{"Date on another key, bad value", cond(`{"DateLessThan":{"oss:Expiry":"soon"}}`), "not an RFC 3339 time"},
		{"IpAddress on another key, bad value", cond(`{"IpAddress":{"acs:SourceVpcIp":"x"}}`), "not an IP address"},
		{"Condition operator twice", cond(`{"Bool":{"acs:SecureTransport":"true"},"Bool":{"acs:SecureTransport":"true"}}`), `"Bool" appears twice`},
		{"Condition key twice", cond(`{"IpAddress":{"acs:SourceIp":"1.2.3.4","acs:SourceIp":"1.2.3.5"}}`), `"acs:SourceIp" appears twice`},
		{"Condition key twice other case", cond(`{"IpAddress":{"acs:SourceIp":"1.2.3.4","ACS:SOURCEIP":"1.2.3.5"}}`), "key given twice"},
		{"Condition values empty", cond(`{"StringEquals":{"acs:SourceIp":[]}}`), "empty array"},
		{"Condition value number", cond(`{"StringEquals":{"acs:SourceIp":1}}`), "got the number 1"},
		{"Condition value null", cond(`{"StringEquals":{"acs:SourceIp":[null]}}`), "[0]: want a string or a boolean, got null"},
		{"Condition value object", cond(`{"StringEquals":{"acs:SourceIp":{}}}`), "got an object"},
		{"Condition value too long", cond(`{"StringEquals":{"acs:SourceIp":"` + strings.Repeat("1", MaxStringLen+1) + `"}}`), "limit 4096"},
		{"Condition values too many", cond(`{"StringEquals":{"acs:SourceIp":[` + many(MaxValues+1, `"x"`) + `]}}`), "more than 256 values"},
		{"Conditions too many", cond(`{"StringEquals":{` + func() string {
			var keys []string
			for i := range MaxConditions + 1 {
				keys = append(keys, fmt.Sprintf(`"k%d":"v"`, i))
			}
			return strings.Join(keys, ",")
		}() + `}}`), "more than 64 conditions"},
		{"IpAddress bad", cond(`{"IpAddress":{"acs:SourceIp":"1.2.3"}}`), `"1.2.3" is not an IP address or CIDR block`},
		{"IpAddress bad bits", cond(`{"IpAddress":{"acs:SourceIp":"1.2.3.4/33"}}`), "not an IP address or CIDR"},
		{"IpAddress zone", cond(`{"IpAddress":{"acs:SourceIp":"fe80::1%eth0"}}`), "not an IP address"},
		{"IpAddress mapped block", cond(`{"IpAddress":{"acs:SourceIp":"::ffff:10.0.0.0/104"}}`), "write IPv4-mapped blocks as IPv4"},
		{"IpAddress name", cond(`{"NotIpAddress":{"acs:SourceIp":"localhost"}}`), "not an IP address"},
		{"IpAddress on time", cond(`{"IpAddress":{"acs:CurrentTime":"1.2.3.4"}}`), "applies only to acs:SourceIp"},
		{"Date bad", cond(`{"DateLessThan":{"acs:CurrentTime":"yesterday"}}`), `"yesterday" is not an RFC 3339 time`},
		{"Date without time", cond(`{"DateLessThan":{"acs:CurrentTime":"2025-01-02"}}`), "not an RFC 3339 time"},
		{"Date without zone", cond(`{"DateEquals":{"acs:CurrentTime":"2025-01-02T03:04:05"}}`), "not an RFC 3339 time"},
		{"Date on IP", cond(`{"DateGreaterThan":{"acs:SourceIp":"2025-01-02T03:04:05Z"}}`), "applies only to acs:CurrentTime"},
		{"Bool bad", cond(`{"Bool":{"acs:SecureTransport":"yes"}}`), `"yes" is not true or false`},
		{"Bool on IP", cond(`{"Bool":{"acs:SourceIp":"true"}}`), "applies only to acs:SecureTransport"},
		{"long field name", `{"` + strings.Repeat("é", 100) + `":1}`, `..." (a policy has Version and Statement`},
		{"Action too long", stmt(`{"Effect":"Allow","Action":"oss:` + strings.Repeat("x", MaxStringLen) + `","Resource":"*"}`), "action is 4100 bytes, limit 4096"},
		{"deep nesting", `{"Version":` + strings.Repeat("[", 10000), "Version: want a string, got an array"},
	}
	for _, c := range cases {
		doc, err := Parse([]byte(c.text))
		if err == nil {
			t.Errorf("%s: Parse accepted %s", c.name, truncate(c.text))
			continue
		}
		if doc != nil {
			t.Errorf("%s: Parse returned a document with its error", c.name)
		}
		if !errors.Is(err, ErrInvalidPolicy) {
			t.Errorf("%s: error %v does not wrap ErrInvalidPolicy", c.name, err)
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q does not contain %q", c.name, err, c.want)
		}
	}
}

func TestParseAccepts(t *testing.T) {
	t.Parallel()
	text := `
	{
	  "Statement": [
	    {
	      "Resource": "acs:oss:*:*:bkt/*",
	      "Condition": {
	        "IpAddress": {"acs:SourceIp": ["10.0.0.0/8", "2001:db8::/32"]},
	        "Bool": {"acs:SecureTransport": true}
	      },
	      "Action": "oss:GetObject",
	      "Effect": "Allow"
	    },
	    {"Effect": "Deny", "NotAction": ["oss:Get*"], "NotResource": "*", "Condition": {}}
	  ],
	  "Version": "1"
	}`
	doc := mustParse(t, text)
	want := []Statement{
		{
			Effect: Allow, Actions: []string{"oss:GetObject"}, Resources: []string{"acs:oss:*:*:bkt/*"},
			Conditions: []Condition{
				{Operator: "IpAddress", Key: "acs:SourceIp", Values: []string{"10.0.0.0/8", "2001:db8::/32"}},
				{Operator: "Bool", Key: "acs:SecureTransport", Values: []string{"true"}},
			},
		},
		{Effect: Deny, NotActions: []string{"oss:Get*"}, NotResources: []string{"*"}},
	}
	if doc.Version != "1" || !reflect.DeepEqual(doc.Statements, want) {
		t.Errorf("Parse gave %+v, want %+v", doc.Statements, want)
	}
}

func TestParseSession(t *testing.T) {
	t.Parallel()
	if _, err := ParseSession(""); !errors.Is(err, ErrInvalidPolicy) || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty session policy: %v", err)
	}
	// Pad a valid policy with a condition value to exactly n characters, using a
	// two-byte character so that bytes and characters differ.
	padded := func(n int) string {
		head := `{"Version":"1","Statement":[{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringNotEquals":{"acs:SourceIp":"`
		tail := `"}}}]}`
		return head + strings.Repeat("é", n-len(head)-len(tail)) + tail
	}
	at := padded(policy.MaxSessionPolicyLen)
	if len(at) <= policy.MaxSessionPolicyLen {
		t.Fatalf("test policy is only %d bytes", len(at))
	}
	if _, err := ParseSession(at); err != nil {
		t.Errorf("policy of exactly %d characters (%d bytes): %v", policy.MaxSessionPolicyLen, len(at), err)
	}
	_, err := ParseSession(padded(policy.MaxSessionPolicyLen + 1))
	if !errors.Is(err, policy.ErrTooLong) || !errors.Is(err, ErrInvalidPolicy) {
		t.Errorf("policy of %d characters: %v, want policy.ErrTooLong and ErrInvalidPolicy", policy.MaxSessionPolicyLen+1, err)
	}
	if _, err := ParseSession(`{"Version":"1"}`); !errors.Is(err, ErrInvalidPolicy) {
		t.Errorf("invalid session policy: %v", err)
	}
}

func TestMarshalJSONRoundTrip(t *testing.T) {
	t.Parallel()
	texts := []string{
		stmt(`{"Effect":"Allow","Action":"oss:GetObject","Resource":"*"}`),
		stmt(`{"Effect":"Deny","NotAction":["oss:Get*","oss:List*"],"NotResource":["acs:oss:*:*:b/\"q\\\\/\u2028é"]}`),
		cond(`{"StringNotEquals":{"acs:SourceIp":["\u0001\u001f\u007f\t"]}}`),
		cond(`{"IpAddress":{"acs:SourceIp":["10.0.0.0/8"],"ACS:sourceip ":null}}`),
		cond(`{"IpAddress":{"acs:SourceIp":"10.0.0.0/8"},"Bool":{"acs:SecureTransport":false},"StringLike":{"acs:CurrentTime":"2025-*","acs:SourceIp":["1.*","2.*"]}}`),
	}
	for _, text := range texts {
		doc, err := Parse([]byte(text))
		if err != nil {
			if strings.Contains(text, "null") { // the third text is deliberately invalid
				continue
			}
			t.Fatalf("Parse(%s): %v", text, err)
		}
		b, err := doc.MarshalJSON()
		if err != nil {
			t.Fatalf("MarshalJSON: %v", err)
		}
		again, err := Parse(b)
		if err != nil {
			t.Fatalf("marshalled policy does not parse: %v\n%s", err, b)
		}
		if !reflect.DeepEqual(again.Statements, doc.Statements) {
			t.Errorf("round trip changed the statements:\n%+v\n%+v", doc.Statements, again.Statements)
		}
	}

	// Hand-built conditions interleaved by operator are grouped; invalid documents refused.
	doc := &Document{Version: "1", Statements: []Statement{{
		Effect: Allow, Actions: []string{"*"}, Resources: []string{"*"},
		Conditions: []Condition{
			{Operator: "StringLike", Key: "acs:SourceIp", Values: []string{"1.*"}},
			{Operator: "Bool", Key: "acs:SecureTransport", Values: []string{"true"}},
			{Operator: "StringLike", Key: "acs:CurrentTime", Values: []string{"2025-*"}},
		},
	}}}
	b, err := doc.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"Version":"1","Statement":[{"Effect":"Allow","Action":["*"],"Resource":["*"],"Condition":{` +
		`"StringLike":{"acs:SourceIp":["1.*"],"acs:CurrentTime":["2025-*"]},"Bool":{"acs:SecureTransport":["true"]}}}]}`
	if string(b) != want {
		t.Errorf("MarshalJSON =\n%s\nwant\n%s", b, want)
	}
	if _, err := Parse(b); err != nil {
		t.Errorf("grouped conditions do not parse: %v", err)
	}
	doc.Version = "2"
	if _, err := doc.MarshalJSON(); !errors.Is(err, ErrInvalidPolicy) {
		t.Errorf("MarshalJSON of an invalid document: %v", err)
	}
}
