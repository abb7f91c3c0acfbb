// Package identity holds clipgate's device and service identities: the fleet key and the
// device keys derived from it, the MQTT passwords devices connect with, auth request
// signatures, the replay cache, the revocation list, sealed credentials and the service
// accounts of token workers, consumers and operators.
//
// Device keys follow the group-enrollment pattern of Azure DPS: the server keeps one fleet
// key and derives each device's key from it with HMAC-SHA256 and a domain tag, so that it
// stores no per-device secret and a leaked device key reveals nothing about the others.
package identity

import (
	"crypto/rand"
	"errors"
)

// KeySize is the size in bytes of fleet keys and device keys.
const KeySize = 32

// deviceKeyTag separates device-key derivation from every other use of the fleet key.
const deviceKeyTag = "clipgate-device-key-v1\x00"

// ErrKeySize is wrapped by errors about a key that is not KeySize bytes long.
var ErrKeySize = errors.New("key must be 32 bytes")

// NewFleetKey returns a fresh random fleet key of KeySize bytes.
func NewFleetKey() ([]byte, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, err
	}
	return k, nil
}

// DeriveDeviceKey returns the device key of deviceID:
// HMAC-SHA256(fleetKey, "clipgate-device-key-v1\x00" + deviceID).
// The caller validates deviceID (deviceid.Validate) and fleetKey (LoadKey checks its size).
func DeriveDeviceKey(fleetKey []byte, deviceID string) []byte {
	m := getMAC()
	m.buf = append(append(m.buf[:0], deviceKeyTag...), deviceID...)
	k := append([]byte(nil), m.mac(fleetKey, m.buf)...)
	putMAC(m)
	return k
}
