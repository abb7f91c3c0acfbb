package policyeval

// The device policies that package policy builds, evaluated as the local cloud
// evaluates them.

import (
	"errors"
	"strings"
	"testing"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/policy"
)

// TestDevicePolicyDecisions parses each mode's policy back and checks what it allows.
func TestDevicePolicyDecisions(t *testing.T) {
	t.Parallel()
	const (
		bucket = "clips"
		prefix = "v1/"
		dev    = "cam-1"
	)
	own := "acs:oss:cn-hangzhou:1000000000000000:clips/v1/cam-1/2025/06/01/clip.mp4"
	denied := []struct {
		name, action, resource string
	}{
		{"other device", "oss:PutObject", "acs:oss:*:*:clips/v1/cam-2/2025/06/01/clip.mp4"},
		{"device whose ID extends ours", "oss:PutObject", "acs:oss:*:*:clips/v1/cam-10/clip.mp4"},
		{"device ID without slash", "oss:PutObject", "acs:oss:*:*:clips/v1/cam-1"},
		{"outside prefix", "oss:PutObject", "acs:oss:*:*:clips/cam-1/clip.mp4"},
		{"other bucket", "oss:PutObject", "acs:oss:*:*:clips2/v1/cam-1/clip.mp4"},
		{"list the bucket", "oss:ListObjects", "acs:oss:*:*:clips"},
		{"list own prefix", "oss:ListObjects", "acs:oss:*:*:clips/v1/cam-1/"},
		{"delete own", "oss:DeleteObject", own},
		{"HeadObject is no action", "oss:HeadObject", own},
		{"bucket ACL", "oss:PutBucketAcl", "acs:oss:*:*:clips"},
		{"object ACL", "oss:PutObjectAcl", own},
	}
	for _, mode := range []clipgate.Mode{"w", "a", "r", "wa", "rw", "ar", "war"} {
		text, err := policy.DevicePolicy(bucket, prefix, dev, mode)
		if err != nil {
			t.Fatalf("policy.DevicePolicy(%q): %v", mode, err)
		}
		doc, err := ParseSession(text)
		if err != nil {
			t.Fatalf("mode %q: policy does not parse back: %v\n%s", mode, err, text)
		}
		m := string(mode)
		expect := map[string]bool{
			"oss:PutObject":            strings.ContainsAny(m, "wa"),
			"oss:GetObject":            strings.ContainsAny(m, "ar"),
			"oss:AbortMultipartUpload": strings.Contains(m, "w"),
			"oss:ListParts":            strings.Contains(m, "w"),
		}
		for action, allow := range expect {
			got := doc.Evaluate(&Request{Action: action, Resource: own})
			if (got == Allowed) != allow || got == Denied {
				t.Errorf("mode %q: %s on own key = %v, want allowed=%v", mode, action, got, allow)
			}
			// The role policy of a real deployment is wider; the session policy narrows it.
			role := mustParse(t, `{"Version":"1","Statement":[{"Effect":"Allow","Action":"oss:*","Resource":"*"}]}`)
			if Authorize(&Request{Action: action, Resource: own}, role, doc) != allow {
				t.Errorf("mode %q: Authorize(%s on own key) != %v", mode, action, allow)
			}
		}
		for _, c := range denied {
			if got := doc.Evaluate(&Request{Action: c.action, Resource: c.resource}); got == Allowed {
				t.Errorf("mode %q: %s (%s on %s) allowed", mode, c.name, c.action, c.resource)
			}
		}
	}
}

// TestLongestDevicePolicyParses builds the longest device policy within
// policy.MaxSessionPolicyLen and parses it as a session policy.
func TestLongestDevicePolicyParses(t *testing.T) {
	t.Parallel()
	dev := strings.Repeat("d", 64)
	bucket := strings.Repeat("b", 63)
	fits := ""
	for n := 2; ; n += 2 {
		text, err := policy.DevicePolicy(bucket, strings.Repeat("p/", n/2), dev, "war")
		if err != nil {
			if !errors.Is(err, policy.ErrTooLong) {
				t.Fatalf("prefix of %d: %v", n, err)
			}
			break
		}
		fits = text
	}
	if len(fits) < policy.MaxSessionPolicyLen-2 {
		t.Fatalf("longest accepted policy is %d characters, expected close to %d", len(fits), policy.MaxSessionPolicyLen)
	}
	if _, err := ParseSession(fits); err != nil {
		t.Errorf("longest device policy does not parse as a session policy: %v", err)
	}
}
