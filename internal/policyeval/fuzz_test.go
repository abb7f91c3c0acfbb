package policyeval

import (
	"encoding/json"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/clipgate/clipgate/policy"
)

// fuzzRequests are evaluated against every document FuzzParse accepts.
func fuzzRequests() []*Request {
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	return []*Request{
		{Action: "oss:PutObject", Resource: "acs:oss:cn-hangzhou:1:bkt/v1/cam-1/clip.mp4", CurrentTime: at, SourceIP: netip.MustParseAddr("10.1.2.3"), SecureTransport: true},
		{Action: "oss:ListObjects", Resource: "acs:oss:*:*:bkt", SourceIP: netip.MustParseAddr("2001:db8::1")},
		{Action: "", Resource: ""},
		{Action: "OSS:GETOBJECT", Resource: "acs:oss:*:*:bkt/é/視", CurrentTime: at.Add(-time.Hour)},
	}
}

func FuzzParse(f *testing.F) {
	seeds := []string{
		rolePolicy,
		stmt(`{"Effect":"Allow","Action":"oss:GetObject","Resource":"*"}`),
		stmt(`{"Effect":"Deny","NotAction":["oss:Get*"],"NotResource":"acs:oss:*:*:b/?*"}`),
		cond(`{"StringNotLike":{"acs:SourceIp":["1*2?3"]},"DateLessThanEquals":{"acs:CurrentTime":"2025-01-01T00:00:00+08:00"}}`),
		cond(`{"IpAddress":{"acs:SourceIp":["::/0","0.0.0.0/0"]},"Bool":{"acs:SecureTransport":["FALSE"]},"StringLike":{"oss:Prefix":["a/*",""]}}`),
		`{"Version":"1","Statement":{"Effect":"Allow"}}`,
		`{"Version":"1","Statement":[{"Effect":"Allow","Action":[1,2],"Resource":[[]]}]}`,
		`{"Version":"1","Statement":[` + strings.Repeat("[", 100),
		``, `null`, `{}`, `{"Version":"1"} {}`,
	}
	if text, err := policy.DevicePolicy("clips", "v1/", "cam-1", "war"); err == nil {
		seeds = append(seeds, text)
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	reqs := fuzzRequests()
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := Parse(data)
		if err != nil {
			if doc != nil || !errors.Is(err, ErrInvalidPolicy) {
				t.Fatalf("Parse error %v (document %v) does not wrap ErrInvalidPolicy", err, doc)
			}
			return
		}
		decisions := make([]Decision, len(reqs))
		for i, r := range reqs {
			decisions[i] = doc.Evaluate(r)
			if decisions[i] < NotApplicable || decisions[i] > Denied {
				t.Fatalf("decision %d out of range", decisions[i])
			}
			Authorize(r, doc, doc)
		}
		// The document round-trips through MarshalJSON to the same statements and decisions.
		text, err := doc.MarshalJSON()
		if err != nil {
			t.Fatalf("MarshalJSON of a parsed document: %v", err)
		}
		again, err := Parse(text)
		if err != nil {
			t.Fatalf("marshalled document does not parse: %v\n%s", err, text)
		}
		if !reflect.DeepEqual(again.Statements, doc.Statements) {
			t.Fatalf("round trip changed the statements:\n%+v\n%+v", doc.Statements, again.Statements)
		}
		for i, r := range reqs {
			if got := again.Evaluate(r); got != decisions[i] {
				t.Fatalf("request %d: %v after round trip, %v before", i, got, decisions[i])
			}
		}
		// A hand-built copy takes the uncompiled path and must agree.
		copied := &Document{Version: doc.Version, Statements: doc.Statements}
		for i, r := range reqs {
			if got := copied.Evaluate(r); got != decisions[i] {
				t.Fatalf("request %d: uncompiled copy says %v, compiled %v", i, got, decisions[i])
			}
		}
		// ParseSession agrees with Parse within the session length limit.
		if n := utf8.RuneCount(data); n <= policy.MaxSessionPolicyLen {
			if _, err := ParseSession(string(data)); err != nil {
				t.Fatalf("ParseSession refused a valid policy of %d characters: %v", n, err)
			}
		}
	})
}

// refMatch is a plain dynamic-programming glob matcher over runes, the oracle for the
// compiled pattern matcher.
func refMatch(pat, s string) bool {
	p, r := []rune(pat), []rune(s)
	// m[j] reports whether p[:i] matches r[:j] for the current i.
	m := make([]bool, len(r)+1)
	m[0] = true
	for i := range p {
		next := make([]bool, len(r)+1)
		for j := 0; j <= len(r); j++ {
			switch {
			case p[i] == '*':
				next[j] = m[j] || (j > 0 && next[j-1])
			case j > 0 && (p[i] == '?' || p[i] == r[j-1]):
				next[j] = m[j-1]
			}
		}
		m = next
	}
	return m[len(r)]
}

func FuzzEvaluate(f *testing.F) {
	f.Add("oss:Get*", "bkt/v1/*", "oss:GetObject", "bkt/v1/cam/clip", []byte{192, 168, 1, 1}, uint8(16), []byte{192, 168, 9, 9}, int64(1700000000), int64(1800000000), true)
	f.Add("*", "*?*", "OSS:put", "", []byte{}, uint8(0), []byte{10, 0, 0, 1}, int64(0), int64(0), false)
	f.Add("oss:?*?", "b/**/x?y*", "oss:ab", "b/é/x視y", []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, uint8(32),
		[]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, int64(1e9), int64(2e9), true)
	f.Add("a*a*a*a*b", "a*a*a*a*b", "a:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", strings.Repeat("a", 100), []byte{}, uint8(0), []byte{}, int64(0), int64(0), false)
	const maxUnix = 253402300799 // 9999-12-31T23:59:59Z, the last second RFC 3339 can write
	f.Fuzz(func(t *testing.T, actionPat, resourcePat, action, resource string, denyIP []byte, bits uint8, reqIP []byte, denyBefore, reqUnix int64, secure bool) {
		if !utf8.ValidString(actionPat) || !utf8.ValidString(resourcePat) || !utf8.ValidString(action) || !utf8.ValidString(resource) {
			return // Parse refuses invalid UTF-8; the oracle works on runes
		}
		resourcePat = "acs:" + resourcePat
		resource = "acs:" + resource
		denyAt := time.Unix(clamp(denyBefore, maxUnix), 0).UTC()
		at := time.Unix(clamp(reqUnix, maxUnix), 0).UTC()

		stmts := []map[string]any{{"Effect": "Allow", "Action": actionPat, "Resource": resourcePat}}
		var deny netip.Prefix
		if a, ok := netip.AddrFromSlice(denyIP); ok {
			a = a.Unmap()
			var err error
			if deny, err = a.Prefix(int(bits) % (a.BitLen() + 1)); err != nil {
				t.Fatal(err)
			}
			stmts = append(stmts, map[string]any{
				"Effect": "Deny", "Action": "*", "Resource": "*",
				"Condition": map[string]any{
					"IpAddress":    map[string]any{"acs:SourceIp": deny.String()},
					"DateLessThan": map[string]any{"acs:CurrentTime": denyAt.Format(time.RFC3339)},
				},
			})
		}
		text, err := json.Marshal(map[string]any{"Version": "1", "Statement": stmts})
		if err != nil {
			t.Fatal(err)
		}
		doc, err := Parse(text)
		if err != nil {
			if checkAction(actionPat) == nil && checkResource(resourcePat) == nil {
				t.Fatalf("valid patterns refused: %v\n%s", err, text)
			}
			return
		}

		r := &Request{Action: action, Resource: resource, CurrentTime: at, SecureTransport: secure}
		if a, ok := netip.AddrFromSlice(reqIP); ok {
			r.SourceIP = a
		}
		want := NotApplicable
		if refMatch(asciiLower(actionPat), asciiLower(action)) && refMatch(resourcePat, resource) {
			want = Allowed
		}
		if deny.IsValid() && r.SourceIP.IsValid() && deny.Contains(r.SourceIP.Unmap()) && at.Before(denyAt) {
			want = Denied
		}
		if got := doc.Evaluate(r); got != want {
			t.Fatalf("Evaluate = %v, want %v\npolicy %s\nrequest %+v", got, want, text, r)
		}
		if got := Authorize(r, doc); got != (want == Allowed) {
			t.Fatalf("Authorize = %v for decision %v", got, want)
		}
	})
}

func clamp(v, max int64) int64 {
	if v < 0 {
		v = -(v + 1)
	}
	return v % (max + 1)
}
