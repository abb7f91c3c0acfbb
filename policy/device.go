package policy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/deviceid"
)

// MaxSessionPolicyLen is the longest session policy STS AssumeRole accepts, in characters.
const MaxSessionPolicyLen = 2048

// Version is the only RAM policy language version.
const Version = "1"

// DefaultPrefix is the global key prefix the commands (tokenworker, console) default to,
// so that with their defaults the token workers hand out the prefix the console expects.
const DefaultPrefix = "clips/"

// Errors wrapped by DevicePolicy (besides clipgate.ErrInvalidMode), for errors.Is.
// ErrTooLong is also wrapped by the errors of policy documents over their length limits.
var (
	ErrInvalidBucket   = errors.New("invalid bucket name")
	ErrInvalidPrefix   = errors.New("invalid key prefix")
	ErrInvalidDeviceID = errors.New("invalid device ID")
	ErrTooLong         = errors.New("policy too long")
)

// OSS RAM actions granted by the mode letters.
const (
	ActionPutObject            = "oss:PutObject"            // put, post, append, multipart upload
	ActionGetObject            = "oss:GetObject"            // get, HEAD, object meta
	ActionAbortMultipartUpload = "oss:AbortMultipartUpload" // abandon a multipart upload
	ActionListParts            = "oss:ListParts"            // resume a multipart upload
)

// modeActions lists, in the order they appear in a policy, each action and the mode
// letters that grant it.
var modeActions = [...]struct {
	action  string
	letters string
}{
	{ActionPutObject, "wa"},
	{ActionGetObject, "ar"},
	{ActionAbortMultipartUpload, "w"},
	{ActionListParts, "w"},
}

// Actions returns the RAM actions mode grants, without duplicates and in a fixed order
// (so "wa" and "aw" give the same list). It returns nil for an invalid mode.
func Actions(m clipgate.Mode) []string {
	if _, err := clipgate.ParseMode(string(m)); err != nil {
		return nil
	}
	var out []string
	for _, a := range modeActions {
		if strings.ContainsAny(string(m), a.letters) {
			out = append(out, a.action)
		}
	}
	return out
}

// DeviceResource returns the RAM resource pattern covering every object of one device,
// "acs:oss:*:*:{bucket}/{prefix}{deviceID}/*". It does not validate its inputs: use
// DevicePolicy, or the checks it makes, before trusting the result.
func DeviceResource(bucket, prefix, deviceID string) string {
	return "acs:oss:*:*:" + bucket + "/" + prefix + deviceID + "/*"
}

// DevicePolicy returns the compact JSON session policy that lets one device do what mode
// allows on its own objects and nothing else: a single Allow statement with the mode's
// actions (see Actions) on DeviceResource(bucket, prefix, deviceID). It grants no
// bucket-level action (no listing) and nothing outside the device's own prefix.
//
// bucket must follow the OSS bucket naming rules (3 to 63 of [a-z0-9-], not starting or
// ending with '-'); prefix must be "" or characters of [A-Za-z0-9._/-] ending in "/",
// with no leading "/", no "//" and no ".."; deviceID must be a device ID (2 to 64
// characters of [A-Za-z0-9._-], not "." or ".."). The result is at most
// MaxSessionPolicyLen characters. Errors wrap ErrInvalidBucket, ErrInvalidPrefix,
// ErrInvalidDeviceID, clipgate.ErrInvalidMode or ErrTooLong.
func DevicePolicy(bucket, prefix, deviceID string, mode clipgate.Mode) (string, error) {
	if err := ValidateBucket(bucket); err != nil {
		return "", err
	}
	if err := ValidatePrefix(prefix); err != nil {
		return "", err
	}
	if err := deviceid.Validate(deviceID); err != nil {
		return "", fmt.Errorf("policy: %w: %w", ErrInvalidDeviceID, err)
	}
	if _, err := clipgate.ParseMode(string(mode)); err != nil {
		return "", fmt.Errorf("policy: %w", err)
	}
	// Every input was validated above: none holds a character JSON would escape.
	b := make([]byte, 0, 256)
	b = append(b, `{"Version":"`+Version+`","Statement":[{"Effect":"Allow","Action":[`...)
	for i, a := range Actions(mode) {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, a...)
		b = append(b, '"')
	}
	b = append(b, `],"Resource":["`...)
	b = append(b, DeviceResource(bucket, prefix, deviceID)...)
	b = append(b, `"]}]}`...)
	if len(b) > MaxSessionPolicyLen { // ASCII only, so bytes are characters
		return "", fmt.Errorf("policy: %w: device policy is %d characters, limit %d (shorten the prefix)", ErrTooLong, len(b), MaxSessionPolicyLen)
	}
	return string(b), nil
}

// ValidateLocation checks where devices' objects go: the bucket (ValidateBucket), the
// prefix (ValidatePrefix), and that the policy of the longest device ID with every mode
// fits MaxSessionPolicyLen, so that no device of the fleet can be refused for its
// policy's length. Configurations call it at load.
func ValidateLocation(bucket, prefix string) error {
	longest := strings.Repeat("d", deviceid.MaxLen)
	if _, err := DevicePolicy(bucket, prefix, longest, clipgate.ModeRead+clipgate.ModeWrite+clipgate.ModeAppend); err != nil {
		return err
	}
	return nil
}

// ValidateBucket checks an OSS bucket name: 3 to 63 characters of [a-z0-9-], not
// starting or ending with '-'. Errors wrap ErrInvalidBucket.
func ValidateBucket(bucket string) error {
	if len(bucket) < 3 || len(bucket) > 63 {
		return fmt.Errorf("policy: %w: %q has %d characters, want 3 to 63", ErrInvalidBucket, bucket, len(bucket))
	}
	for i := 0; i < len(bucket); i++ {
		c := bucket[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("policy: %w: character %q at offset %d of %q is not one of [a-z0-9-]", ErrInvalidBucket, c, i, bucket)
		}
	}
	if bucket[0] == '-' || bucket[len(bucket)-1] == '-' {
		return fmt.Errorf("policy: %w: %q starts or ends with '-'", ErrInvalidBucket, bucket)
	}
	return nil
}

// ValidatePrefix checks an object key prefix: "" or characters of [A-Za-z0-9._/-] ending
// in "/", with no leading "/", no "//" and no "..". Errors wrap ErrInvalidPrefix.
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	for i := 0; i < len(prefix); i++ {
		c := prefix[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '/' || c == '-') {
			return fmt.Errorf("policy: %w: character %q at offset %d of %q is not one of [A-Za-z0-9._/-]", ErrInvalidPrefix, c, i, prefix)
		}
	}
	switch {
	case prefix[0] == '/':
		return fmt.Errorf("policy: %w: %q starts with '/'", ErrInvalidPrefix, prefix)
	case prefix[len(prefix)-1] != '/':
		return fmt.Errorf("policy: %w: %q does not end with '/'", ErrInvalidPrefix, prefix)
	case strings.Contains(prefix, "//"):
		return fmt.Errorf("policy: %w: %q contains an empty segment \"//\"", ErrInvalidPrefix, prefix)
	case strings.Contains(prefix, ".."):
		return fmt.Errorf("policy: %w: %q contains \"..\"", ErrInvalidPrefix, prefix)
	}
	return nil
}
