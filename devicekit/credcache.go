package devicekit

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/atomicfile"
	"github.com/clipgate/clipgate/internal/protocol"
)

// The credentials cache on disk: a device that restarts (a fleet-wide power cut, a
// firmware update) reuses its still-valid credentials instead of asking a token worker,
// so a fleet coming back at once costs no STS calls.
//
// What is kept is the token worker's reply as it came, still sealed to the device key,
// with the request nonce it was sealed under (the nonce is not secret: the request carried
// it in clear). Loading opens it with the same function that opened the reply
// (withNonce), so the file holds nothing a copy of the disk could use without the device
// key. Plain (unsealed) credentials are never written.
//
// The file is replaced with atomicfile.WriteVolatile, mode 0600: no fsync, because a
// credentials refresh must not cost the device a sync (issue 15 point 1); a power cut
// within the kernel's writeback delay (about 30 s) of a refresh may leave the old file,
// an empty one or none, which costs that device one request. Whatever is found is checked
// like a reply: a file that does not decode, is for another device or mode, does not open
// with the device key or is within RefreshMargin of its expiry is logged and ignored, and
// the kit asks the token worker as it would without a cache.

// credFileVersion is the version of the credentials file's format.
const credFileVersion = 1

// maxCredFileSize bounds what is read of a credentials file: a reply is at most
// protocol.MaxMessageSize bytes, and the record adds a few short fields.
const maxCredFileSize = protocol.MaxMessageSize + 1024

// credFile is the JSON of a credentials file.
type credFile struct {
	V      int           `json:"v"`
	Device string        `json:"device"`
	Mode   clipgate.Mode `json:"mode"`
	// Nonce is the request's nonce, base64url without padding: the seal's key derivation
	// needs it to open Reply.
	Nonce string `json:"nonce"`
	// Reply is the token worker's reply, sealed credentials and all.
	Reply json.RawMessage `json:"reply"`
}

// credCache tracks the credentials files of one Kit.
type credCache struct {
	mu     sync.Mutex // orders writes and removals of the files
	loaded sync.Map   // mode -> struct{}: the file of that mode was read once already
}

// credPath returns the credentials file of mode ("" is Config.Mode).
func (k *Kit) credPath(mode clipgate.Mode) string {
	if mode == "" {
		mode = k.cfg.Mode
	}
	return filepath.Join(k.cfg.StateDir, "credentials-"+string(mode)+".json")
}

// loadCredentials returns the credentials of mode kept on disk, if they are still fresh
// enough, and caches them; nil otherwise. The file is read once per mode in the kit's
// life: after that the memory cache is the truth (credentials the OSS refused are not
// taken back from disk).
func (k *Kit) loadCredentials(mode clipgate.Mode) *Credentials {
	if _, done := k.credFiles.loaded.LoadOrStore(mode, struct{}{}); done {
		return nil
	}
	path := k.credPath(mode)
	c, err := k.readCredentials(path, mode)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		k.log.Warn().Err(err).Str("file", path).Msg("cached credentials ignored; asking the token worker")
		return nil
	}
	if !k.fresh(c) {
		k.log.Info().Time("expiration", c.Expiration).Str("file", path).Msg("cached credentials expire soon; asking the token worker")
		return nil
	}
	k.cacheFor(mode).CompareAndSwap(nil, c)
	k.log.Debug().Time("expiration", c.Expiration).Msg("credentials loaded from disk")
	return k.cacheFor(mode).Load()
}

// readCredentials reads, checks and opens the credentials file at path for mode. A missing
// file is an error wrapping fs.ErrNotExist; every other error says what is wrong.
func (k *Kit) readCredentials(path string, mode clipgate.Mode) (*Credentials, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCredFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxCredFileSize {
		return nil, fmt.Errorf("larger than %d bytes", maxCredFileSize)
	}
	var rec credFile
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("not a credentials file: %w", err)
	}
	want := mode
	if want == "" {
		want = k.cfg.Mode
	}
	switch {
	case rec.V != credFileVersion:
		return nil, fmt.Errorf("format version %d, want %d", rec.V, credFileVersion)
	case rec.Device != k.cfg.DeviceID:
		return nil, fmt.Errorf("credentials of device %q, not of this device (%q)", rec.Device, k.cfg.DeviceID)
	case rec.Mode != want:
		return nil, fmt.Errorf("credentials of mode %q, want %q", rec.Mode, want)
	}
	nonce, err := base64.RawURLEncoding.DecodeString(rec.Nonce)
	if err != nil || len(nonce) != protocol.NonceSize {
		return nil, errors.New("the request nonce is not 16 bytes of base64url")
	}
	reply, err := protocol.DecodeAuthReply(rec.Reply)
	if err != nil {
		return nil, fmt.Errorf("the kept reply: %w", err)
	}
	if !reply.OK || reply.Sealed == "" {
		return nil, errors.New("the kept reply holds no sealed credentials")
	}
	if reply.Credentials = k.withNonce(reply, k.deviceKey(), nonce); reply.Credentials == nil {
		return nil, errors.New("the sealed credentials do not open with this device's key")
	}
	return &Credentials{Credentials: *reply.Credentials, OSS: *reply.OSS, mode: mode}, nil
}

// keepCredentials writes the sealed reply that brought c to disk, if it was sealed. A
// failure is logged: the credentials are good, only a restart will ask again.
func (k *Kit) keepCredentials(c *Credentials, reply *protocol.AuthReply, nonce []byte) {
	if reply.Sealed == "" {
		k.log.Debug().Msg("the token worker sent plain credentials; they are not kept on disk")
		return
	}
	if reply.Rekey != "" {
		// Sealed with the key this reply replaces: it would not open after a restart.
		k.log.Debug().Msg("credentials that came with a new device key are not kept on disk")
		return
	}
	sealed := *reply
	sealed.Credentials = nil // the opened credentials: never on disk
	raw, err := protocol.Encode(&sealed)
	if err == nil {
		raw, err = json.Marshal(credFile{V: credFileVersion, Device: k.cfg.DeviceID, Mode: k.effectiveMode(c.mode),
			Nonce: base64.RawURLEncoding.EncodeToString(nonce), Reply: raw})
	}
	if err != nil {
		k.log.Error().Err(err).Msg("cannot encode the credentials for the disk cache")
		return
	}
	k.credFiles.mu.Lock()
	defer k.credFiles.mu.Unlock()
	if k.cacheFor(c.mode).Load() != c {
		return // already replaced or invalidated
	}
	if err := atomicfile.WriteVolatile(k.credPath(c.mode), raw, 0o600); err != nil {
		k.log.Warn().Err(err).Msg("cannot keep the credentials on disk; a restart will ask the token worker")
	}
}

// forgetCredentials removes the credentials file of mode unless the memory cache holds
// credentials again (fetched since they were invalidated, and written by keepCredentials).
func (k *Kit) forgetCredentials(mode clipgate.Mode) {
	k.credFiles.mu.Lock()
	defer k.credFiles.mu.Unlock()
	if k.cacheFor(mode).Load() != nil {
		return
	}
	if err := os.Remove(k.credPath(mode)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		k.log.Warn().Err(err).Msg("cannot remove the refused credentials from disk")
	}
}

// effectiveMode returns mode, with "" as Config.Mode.
func (k *Kit) effectiveMode(mode clipgate.Mode) clipgate.Mode {
	if mode == "" {
		return k.cfg.Mode
	}
	return mode
}
