package identity

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/clipgate/clipgate/internal/atomicfile"
	"github.com/clipgate/clipgate/internal/deviceid"
)

// DeviceKey is what a device is provisioned with: its ID, the ID of the fleet key its keys
// were derived from, its connect key (MQTT passwords, checked by the broker) and its
// request key (auth request signatures and sealed credentials, checked and used by the
// token workers).
type DeviceKey struct {
	Device  string
	KeyID   string
	Connect []byte // KeySize bytes
	Request []byte // KeySize bytes
}

// NewDeviceKey derives the keys of deviceID from the fleet keyring's current key.
func NewDeviceKey(fleet *Keyring, deviceID string) (*DeviceKey, error) {
	if err := deviceid.Validate(deviceID); err != nil {
		return nil, err
	}
	cur := fleet.Current()
	return deviceKeyFrom(cur.ID, cur.Key, deviceID), nil
}

// deviceKeyFrom derives a device's keys from one fleet key.
func deviceKeyFrom(keyID string, fleetKey []byte, deviceID string) *DeviceKey {
	return &DeviceKey{
		Device:  deviceID,
		KeyID:   keyID,
		Connect: DeriveConnectKey(ConnectRoot(fleetKey), deviceID),
		Request: DeriveRequestKey(RequestRoot(fleetKey), deviceID),
	}
}

// Validate checks the device ID, the key ID and the key sizes.
func (k *DeviceKey) Validate() error {
	switch {
	case k == nil:
		return errors.New("device key: none")
	case !ValidKeyID(k.KeyID):
		return fmt.Errorf("device key: key ID %q is not 1 to %d characters of [A-Za-z0-9_-]", truncateID(k.KeyID), MaxKeyIDLen)
	case len(k.Connect) != KeySize:
		return fmt.Errorf("device key: connect key: %w, got %d", ErrKeySize, len(k.Connect))
	case len(k.Request) != KeySize:
		return fmt.Errorf("device key: request key: %w, got %d", ErrKeySize, len(k.Request))
	}
	if err := deviceid.Validate(k.Device); err != nil {
		return fmt.Errorf("device key: %w", err)
	}
	return nil
}

// Clone returns a deep copy.
func (k *DeviceKey) Clone() *DeviceKey {
	return &DeviceKey{Device: k.Device, KeyID: k.KeyID, Connect: bytes.Clone(k.Connect), Request: bytes.Clone(k.Request)}
}

// Password returns a fresh MQTT password of the device at now (MQTTPassword with its
// connect key), for a device that does not know the server time.
func (k *DeviceKey) Password(now time.Time) string {
	return MQTTPassword(k.Connect, k.KeyID, k.Device, now)
}

// SyncedPassword returns a fresh synced MQTT password (SyncedMQTTPassword) of the device,
// serverNow being its best guess of the broker's clock.
func (k *DeviceKey) SyncedPassword(serverNow time.Time) string {
	return SyncedMQTTPassword(k.Connect, k.KeyID, k.Device, serverNow)
}

// MarshalText returns the file form of the device key (ParseDeviceKey reads it back):
//
//	device cam-01
//	key-id k1
//	connect BASE64
//	request BASE64
func (k *DeviceKey) MarshalText() ([]byte, error) {
	if err := k.Validate(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString("# clipgate device key. Secret: mode 0600.\n")
	b.WriteString("device " + k.Device + "\n")
	b.WriteString("key-id " + k.KeyID + "\n")
	b.WriteString("connect " + base64.StdEncoding.EncodeToString(k.Connect) + "\n")
	b.WriteString("request " + base64.StdEncoding.EncodeToString(k.Request) + "\n")
	return b.Bytes(), nil
}

// ParseDeviceKey reads the file form of a device key: the four lines of MarshalText, in any
// order, each once; '#' starts a comment; blank lines are ignored.
func ParseDeviceKey(data []byte) (*DeviceKey, error) {
	var k DeviceKey
	seen := map[string]bool{}
	for _, fl := range fieldLines(data) {
		line, f := fl.n, fl.fields
		if len(f) != 2 {
			return nil, fmt.Errorf("line %d: want \"NAME VALUE\"", line)
		}
		if seen[f[0]] {
			return nil, fmt.Errorf("line %d: %q appears twice", line, f[0])
		}
		seen[f[0]] = true
		var err error
		switch f[0] {
		case "device":
			k.Device = f[1]
		case "key-id":
			k.KeyID = f[1]
		case "connect":
			k.Connect, err = ParseKey(f[1])
		case "request":
			k.Request, err = ParseKey(f[1])
		default:
			return nil, fmt.Errorf("line %d: unknown name %q (want device, key-id, connect, request)", line, truncateID(f[0]))
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %s: %w", line, f[0], err)
		}
	}
	for _, name := range []string{"device", "key-id", "connect", "request"} {
		if !seen[name] {
			return nil, fmt.Errorf("%q is missing", name)
		}
	}
	if err := k.Validate(); err != nil {
		return nil, err
	}
	return &k, nil
}

// LoadDeviceKey reads a device key file, refusing one that is not private to its owner.
func LoadDeviceKey(path string) (*DeviceKey, error) {
	data, err := readPrivateFile(path, maxKeyFile)
	if err != nil {
		return nil, fmt.Errorf("device key file: %w", err)
	}
	k, err := ParseDeviceKey(data)
	if err != nil {
		return nil, fmt.Errorf("device key file %s: %w", path, err)
	}
	return k, nil
}

// WriteDeviceKey writes k to path (mode 0600) atomically (atomicfile.Write).
func WriteDeviceKey(path string, k *DeviceKey) error {
	data, err := k.MarshalText()
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return fmt.Errorf("write device key: %w", err)
	}
	return nil
}

// RequestKey returns the request key of deviceID under the fleet key keyID of r (a fleet
// keyring), if that key is accepted at now (Lookup).
func (r *Keyring) RequestKey(keyID, deviceID string, now time.Time) ([]byte, error) {
	fk, err := r.Lookup(keyID, now)
	if err != nil {
		return nil, err
	}
	root := hmacSHA256(fk, []byte(requestRootTag))
	k := derive(root[:], requestKeyTag, deviceID)
	clear(root[:])
	return k[:], nil
}
