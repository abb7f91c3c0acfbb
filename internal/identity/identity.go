// Package identity holds clipgate's device and service identities: the fleet keys and the
// device keys derived from them, the MQTT passwords devices connect with, auth request
// signatures (HMAC, or a device certificate's key), the replay cache, the revocation
// list, sealed credentials and the service accounts of token workers, consumers and
// operators.
//
// Device keys follow the group-enrollment pattern of Azure DPS: the server keeps fleet
// keys and derives each device's keys from them with HMAC-SHA256 and a domain tag, so that
// it stores no per-device secret and a leaked device key reveals nothing about the others.
//
// Two roots separate what the broker may know from what only the token workers know. A
// fleet key F (held by the token workers and the provisioning operator) gives
//
//	connect root  C = HMAC(F, "clipgate-connect-root-v1")   held by the broker
//	request root  R = HMAC(F, "clipgate-request-root-v1")   derived by the workers
//
// and a device's keys are HMAC(C, "clipgate-connect-key-v1\x00"+ID), which makes its MQTT
// passwords, and HMAC(R, "clipgate-request-key-v1\x00"+ID), which signs its auth requests
// and seals its credentials. HMAC is one-way, so the broker's connect roots yield neither
// F nor R: a broker (or EMQX authn endpoint) that is compromised can let devices in, but
// cannot open a sealed reply, sign a request, or compute the request key of any device.
//
// Every fleet key has a key ID (a Keyring holds them); passwords, requests and device
// key files name the ID they were made with, so that keys can be rotated (Keyring.Rotate).
package identity

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
)

// KeySize is the size in bytes of fleet keys, roots and device keys.
const KeySize = 32

// Domain tags: each separates one derivation from every other use of its key.
const (
	connectRootTag = "clipgate-connect-root-v1"
	requestRootTag = "clipgate-request-root-v1"
	connectKeyTag  = "clipgate-connect-key-v1\x00"
	requestKeyTag  = "clipgate-request-key-v1\x00"
)

// ErrKeySize is wrapped by errors about a key that is not KeySize bytes long.
var ErrKeySize = errors.New("key must be 32 bytes")

// NewFleetKey returns a fresh random key of KeySize bytes.
func NewFleetKey() ([]byte, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, err
	}
	return k, nil
}

// ConnectRoot returns the connect root of a fleet key: HMAC-SHA256(fleetKey,
// "clipgate-connect-root-v1"). The broker holds it; it derives device connect keys only.
func ConnectRoot(fleetKey []byte) []byte {
	k := hmacSHA256(fleetKey, []byte(connectRootTag))
	return k[:]
}

// RequestRoot returns the request root of a fleet key: HMAC-SHA256(fleetKey,
// "clipgate-request-root-v1"). Only token workers (and provisioning) compute it.
func RequestRoot(fleetKey []byte) []byte {
	k := hmacSHA256(fleetKey, []byte(requestRootTag))
	return k[:]
}

// DeriveConnectKey returns the connect key of deviceID, which makes its MQTT passwords:
// HMAC-SHA256(connectRoot, "clipgate-connect-key-v1\x00" + deviceID).
// The caller validates deviceID (deviceid.Validate) and the root's size.
func DeriveConnectKey(connectRoot []byte, deviceID string) []byte {
	k := derive(connectRoot, connectKeyTag, deviceID)
	return k[:]
}

// DeriveRequestKey returns the request key of deviceID, which signs its auth requests and
// seals its credentials: HMAC-SHA256(requestRoot, "clipgate-request-key-v1\x00" + deviceID).
func DeriveRequestKey(requestRoot []byte, deviceID string) []byte {
	k := derive(requestRoot, requestKeyTag, deviceID)
	return k[:]
}

// derive is HMAC-SHA256(root, tag+id) into a stack array (no allocation).
func derive(root []byte, tag, id string) [sha256.Size]byte {
	m := getMAC()
	m.buf = append(append(m.buf[:0], tag...), id...)
	var k [sha256.Size]byte
	copy(k[:], m.mac(root, m.buf))
	putMAC(m)
	return k
}
