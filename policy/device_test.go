package policy

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/deviceid"
)

func TestActions(t *testing.T) {
	t.Parallel()
	cases := map[clipgate.Mode][]string{
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
		if got := Actions(m); !slices.Equal(got, want) {
			t.Errorf("Actions(%q) = %q, want %q", m, got, want)
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

func TestDevicePolicyValidation(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("abcdefghij/", 180) // 1980 characters: too long once wrapped
	cases := []struct {
		bucket, prefix, device string
		mode                   clipgate.Mode
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
		{"clips", "", "cam-1", "", clipgate.ErrInvalidMode},
		{"clips", "", "cam-1", "x", clipgate.ErrInvalidMode},
		{"clips", "", "cam-1", "ww", clipgate.ErrInvalidMode},
		{"clips", "", "cam-1", "d", clipgate.ErrInvalidMode},
		{"clips", long, "cam-1", "w", ErrTooLong},
	}
	for _, c := range cases {
		got, err := DevicePolicy(c.bucket, c.prefix, c.device, c.mode)
		if !errors.Is(err, c.want) || got != "" {
			t.Errorf("DevicePolicy(%q, %q, %q, %q) = %q, %v; want error %v", c.bucket, c.prefix[:min(len(c.prefix), 64)], c.device, c.mode, got, err, c.want)
		}
		if c.want == ErrInvalidDeviceID && !errors.Is(err, deviceid.ErrInvalid) {
			t.Errorf("device error %v does not wrap deviceid.ErrInvalid", err)
		}
	}
}

// TestDevicePolicyLengthLimit finds the longest prefix that fits and checks the boundary
// (internal/policyeval checks that this longest policy parses as a session policy).
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
}

// TestValidateLocation: bucket and prefix are checked by their own rules, and a prefix is
// refused when the longest device ID's policy with every mode would not fit, though a
// short ID's would.
func TestValidateLocation(t *testing.T) {
	t.Parallel()
	if err := ValidateLocation("clips-bucket", "clips/"); err != nil {
		t.Fatalf("valid location: %v", err)
	}
	if err := ValidateLocation("Bad_Bucket", "clips/"); !errors.Is(err, ErrInvalidBucket) {
		t.Errorf("bad bucket: %v", err)
	}
	if err := ValidateLocation("clips-bucket", "/clips"); !errors.Is(err, ErrInvalidPrefix) {
		t.Errorf("bad prefix: %v", err)
	}
	// The longest prefix whose policy fits for a short device ID but not for a 64-character one.
	prefix := ""
	for {
		next := prefix + "p/"
		if _, err := DevicePolicy("clips-bucket", next, "ab", clipgate.ModeRead+clipgate.ModeWrite+clipgate.ModeAppend); err != nil {
			break
		}
		prefix = next
	}
	if err := ValidateLocation("clips-bucket", prefix); !errors.Is(err, ErrTooLong) {
		t.Errorf("prefix of %d characters: %v, want ErrTooLong", len(prefix), err)
	}
}
