package policy

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/clipgate/clipgate/internal/deviceid"
)

func TestParseMode(t *testing.T) {
	t.Parallel()
	valid := []string{"w", "a", "r", "wa", "aw", "rw", "wr", "ar", "war", "rwa", "raw"}
	for _, s := range valid {
		m, err := ParseMode(s)
		if err != nil || string(m) != s {
			t.Errorf("ParseMode(%q) = %q, %v; want %q, nil", s, m, err, s)
		}
	}
	invalid := map[string]string{
		"":      "empty",
		"x":     "not one of",
		"W":     "not one of",
		"ww":    "repeated",
		"wrw":   "repeated",
		"wx":    "not one of",
		"w ":    "not one of",
		"warr":  "at most 3",
		"rwa*":  "at most 3",
		"*":     "not one of",
		"r\x00": "not one of",
	}
	for s, want := range invalid {
		m, err := ParseMode(s)
		if !errors.Is(err, ErrInvalidMode) || m != "" {
			t.Errorf("ParseMode(%q) = %q, %v; want ErrInvalidMode", s, m, err)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("ParseMode(%q) error %q does not mention %q", s, err, want)
		}
	}
}

func TestModeActions(t *testing.T) {
	t.Parallel()
	cases := map[Mode][]string{
		"w":   {ActionPutObject, ActionAbortMultipartUpload, ActionListParts},
		"a":   {ActionPutObject, ActionGetObject},
		"r":   {ActionGetObject},
		"wa":  {ActionPutObject, ActionGetObject, ActionAbortMultipartUpload, ActionListParts},
		"aw":  {ActionPutObject, ActionGetObject, ActionAbortMultipartUpload, ActionListParts},
		"ar":  {ActionPutObject, ActionGetObject},
		"rw":  {ActionPutObject, ActionGetObject, ActionAbortMultipartUpload, ActionListParts},
		"":    nil,
		"ww":  nil,
		"xyz": nil,
	}
	for m, want := range cases {
		if got := m.Actions(); !slices.Equal(got, want) {
			t.Errorf("Mode(%q).Actions() = %q, want %q", m, got, want)
		}
	}
}

func TestDeviceResource(t *testing.T) {
	t.Parallel()
	if got, want := DeviceResource("bkt", "clips/", "cam-01"), "acs:oss:*:*:bkt/clips/cam-01/*"; got != want {
		t.Errorf("DeviceResource = %q, want %q", got, want)
	}
	if got, want := DeviceResource("bkt", "", "cam-01"), "acs:oss:*:*:bkt/cam-01/*"; got != want {
		t.Errorf("DeviceResource without prefix = %q, want %q", got, want)
	}
}

func TestDevicePolicyText(t *testing.T) {
	t.Parallel()
	got, err := DevicePolicy("clips-bucket", "fleet/a/", "cam-01", "w")
	if err != nil {
		t.Fatal(err)
	}
	want := `{"Version":"1","Statement":[{"Effect":"Allow",` +
		`"Action":["oss:PutObject","oss:AbortMultipartUpload","oss:ListParts"],` +
		`"Resource":["acs:oss:*:*:clips-bucket/fleet/a/cam-01/*"]}]}`
	if got != want {
		t.Errorf("DevicePolicy =\n%s\nwant\n%s", got, want)
	}
	wa, err := DevicePolicy("clips-bucket", "", "cam-01", "wa")
	if err != nil {
		t.Fatal(err)
	}
	aw, err := DevicePolicy("clips-bucket", "", "cam-01", "aw")
	if err != nil {
		t.Fatal(err)
	}
	if wa != aw {
		t.Errorf("letter order changed the policy:\n%s\n%s", wa, aw)
	}
	if strings.Contains(got, "HeadObject") || strings.Contains(wa, "HeadObject") {
		t.Error("policy names oss:HeadObject, which is not a RAM action")
	}
}

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
	for _, mode := range []Mode{"w", "a", "r", "wa", "rw", "ar", "war"} {
		text, err := DevicePolicy(bucket, prefix, dev, mode)
		if err != nil {
			t.Fatalf("DevicePolicy(%q): %v", mode, err)
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

func TestDevicePolicyValidation(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("abcdefghij/", 180) // 1980 characters: too long once wrapped
	cases := []struct {
		bucket, prefix, device string
		mode                   Mode
		want                   error
	}{
		{"ab", "", "cam-1", "w", ErrInvalidBucket},
		{strings.Repeat("b", 64), "", "cam-1", "w", ErrInvalidBucket},
		{"", "", "cam-1", "w", ErrInvalidBucket},
		{"Clips", "", "cam-1", "w", ErrInvalidBucket},
		{"clips_1", "", "cam-1", "w", ErrInvalidBucket},
		{"-clips", "", "cam-1", "w", ErrInvalidBucket},
		{"clips-", "", "cam-1", "w", ErrInvalidBucket},
		{"cl*ps", "", "cam-1", "w", ErrInvalidBucket},
		{"cl?ps", "", "cam-1", "w", ErrInvalidBucket},
		{"clips/x", "", "cam-1", "w", ErrInvalidBucket},
		{"clips", "/v1/", "cam-1", "w", ErrInvalidPrefix},
		{"clips", "v1", "cam-1", "w", ErrInvalidPrefix},
		{"clips", "v1//x/", "cam-1", "w", ErrInvalidPrefix},
		{"clips", "../", "cam-1", "w", ErrInvalidPrefix},
		{"clips", "v1/../", "cam-1", "w", ErrInvalidPrefix},
		{"clips", "v1..x/", "cam-1", "w", ErrInvalidPrefix},
		{"clips", "*/", "cam-1", "w", ErrInvalidPrefix},
		{"clips", "v?/", "cam-1", "w", ErrInvalidPrefix},
		{"clips", "a b/", "cam-1", "w", ErrInvalidPrefix},
		{"clips", "é/", "cam-1", "w", ErrInvalidPrefix},
		{"clips", "v1/\"x/", "cam-1", "w", ErrInvalidPrefix},
		{"clips", "/", "cam-1", "w", ErrInvalidPrefix},
		{"clips", "", "", "w", ErrInvalidDeviceID},
		{"clips", "", "c", "w", ErrInvalidDeviceID},
		{"clips", "", "cam/1", "w", ErrInvalidDeviceID},
		{"clips", "", "cam*", "w", ErrInvalidDeviceID},
		{"clips", "", "cam?", "w", ErrInvalidDeviceID},
		{"clips", "", "..", "w", ErrInvalidDeviceID},
		{"clips", "", "cam\"1", "w", ErrInvalidDeviceID},
		{"clips", "", strings.Repeat("d", 65), "w", ErrInvalidDeviceID},
		{"clips", "", "cam-1", "", ErrInvalidMode},
		{"clips", "", "cam-1", "x", ErrInvalidMode},
		{"clips", "", "cam-1", "ww", ErrInvalidMode},
		{"clips", "", "cam-1", "d", ErrInvalidMode},
		{"clips", long, "cam-1", "w", ErrTooLong},
	}
	for _, c := range cases {
		got, err := DevicePolicy(c.bucket, c.prefix, c.device, c.mode)
		if !errors.Is(err, c.want) || got != "" {
			t.Errorf("DevicePolicy(%q, %q, %q, %q) = %q, %v; want error %v", c.bucket, truncate(c.prefix), c.device, c.mode, got, err, c.want)
		}
		if c.want == ErrInvalidDeviceID && !errors.Is(err, deviceid.ErrInvalid) {
			t.Errorf("device error %v does not wrap deviceid.ErrInvalid", err)
		}
	}
}

// TestDevicePolicyLengthLimit finds the longest prefix that fits and checks the boundary.
func TestDevicePolicyLengthLimit(t *testing.T) {
	t.Parallel()
	dev := strings.Repeat("d", 64)
	bucket := strings.Repeat("b", 63)
	fits := ""
	for n := 2; ; n += 2 {
		prefix := strings.Repeat("p/", n/2)
		text, err := DevicePolicy(bucket, prefix, dev, "war")
		if err != nil {
			if !errors.Is(err, ErrTooLong) {
				t.Fatalf("prefix of %d: %v", n, err)
			}
			break
		}
		if len(text) > MaxSessionPolicyLen {
			t.Fatalf("policy of %d characters returned", len(text))
		}
		fits = text
	}
	if len(fits) < MaxSessionPolicyLen-2 {
		t.Errorf("longest accepted policy is %d characters, expected close to %d", len(fits), MaxSessionPolicyLen)
	}
	if _, err := ParseSession(fits); err != nil {
		t.Errorf("longest device policy does not parse as a session policy: %v", err)
	}
}
