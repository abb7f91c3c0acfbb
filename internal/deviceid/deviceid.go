// Package deviceid holds the one rule for device IDs that the topic scheme, the wire
// protocol, the policy builder and the identity code all share.
//
// A device ID is 2 to 64 characters of [A-Za-z0-9._-], and not "." or "..", so that it is
// at once a valid MQTT topic level, an OSS object key segment and an STS RoleSessionName.
package deviceid

import (
	"errors"
	"fmt"
	"strings"
)

// MinLen and MaxLen bound the length of a device ID.
const (
	MinLen = 2
	MaxLen = 64
)

// ErrInvalid is wrapped by every error Validate returns.
var ErrInvalid = errors.New("invalid device ID")

// Validate reports whether id is a well-formed device ID. It allocates only on failure.
func Validate(id string) error {
	if len(id) < MinLen || len(id) > MaxLen {
		return fmt.Errorf("%w: length %d, want %d to %d characters", ErrInvalid, len(id), MinLen, MaxLen)
	}
	if id == ".." {
		return fmt.Errorf("%w: %q is a path traversal", ErrInvalid, id)
	}
	for i := 0; i < len(id); i++ {
		if !validByte(id[i]) {
			return fmt.Errorf("%w: character %q at offset %d is not one of [A-Za-z0-9._-]", ErrInvalid, id[i], i)
		}
	}
	return nil
}

// Valid is Validate as a boolean, for hot paths that do not need the reason.
func Valid(id string) bool {
	if len(id) < MinLen || len(id) > MaxLen || id == ".." {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !validByte(id[i]) {
			return false
		}
	}
	return true
}

func validByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

// ValidatePortable checks a new device ID for every engine clipgate runs on: Validate,
// and no '.', which a NATS cluster's MQTT gateway refuses in client IDs (CONNACK 0x02:
// identifier rejected), while a device's client ID is its ID. Provisioning uses it; IDs
// with '.' already in use keep working on the mochi broker.
func ValidatePortable(id string) error {
	if err := Validate(id); err != nil {
		return err
	}
	if i := strings.IndexByte(id, '.'); i >= 0 {
		return fmt.Errorf("%w: %q has a '.' at offset %d: a NATS cluster refuses it as an MQTT client ID; use '-' or '_'", ErrInvalid, id, i)
	}
	return nil
}
