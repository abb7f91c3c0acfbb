package identity

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/clipgate/clipgate/internal/atomicfile"
)

// ErrInsecurePermissions is wrapped by the error of LoadKey and LoadServiceAccounts for a
// file that its group or other users can access.
var ErrInsecurePermissions = errors.New("file is accessible by group or others")

// maxKeyFile bounds a key file: a key is 64 hex characters plus whitespace.
const maxKeyFile = 4096

// LoadKey reads a KeySize-byte key from a text file holding it in hex or base64 (standard
// or URL alphabet, padded or not), surrounded by optional whitespace. It refuses a file
// that is not private to its owner (mode & 0o077 != 0), saying which chmod fixes it.
func LoadKey(path string) ([]byte, error) {
	data, err := readPrivateFile(path, maxKeyFile)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	key, err := ParseKey(string(bytes.TrimSpace(data)))
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return key, nil
}

// ParseKey decodes a KeySize-byte key written in hex or base64 (standard or URL alphabet,
// padded or not). Surrounding whitespace is not allowed here; LoadKey trims it.
func ParseKey(text string) ([]byte, error) {
	if len(text) == 2*KeySize {
		k, err := hex.DecodeString(text)
		if err != nil {
			return nil, fmt.Errorf("64 characters but not hex: %w", err)
		}
		return k, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding,
		base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.Strict().DecodeString(text); err == nil {
			if len(k) != KeySize {
				return nil, fmt.Errorf("%w, this base64 text holds %d", ErrKeySize, len(k))
			}
			return k, nil
		}
	}
	return nil, fmt.Errorf("not a key: want %d bytes as 64 hex characters or 43/44 base64 characters, got %d characters",
		KeySize, len(text))
}

// WriteKey writes key (KeySize bytes) to path in base64, readable by its owner only
// (0600). It writes a temporary file in the same directory, syncs it and renames it into
// place, so readers see the old file or the new one, never a partial one; an existing file
// is replaced.
func WriteKey(path string, key []byte) error {
	if len(key) != KeySize {
		return fmt.Errorf("write key %s: %w, got %d", path, ErrKeySize, len(key))
	}
	text := base64.StdEncoding.EncodeToString(key) + "\n"
	if err := atomicfile.Write(path, []byte(text), 0o600); err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	return nil
}

// readPrivateFile reads a regular file of at most limit bytes that only its owner may
// access.
func readPrivateFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat() // the opened file, not the path: no swap between check and read
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	// Windows has no Unix permission bits; Go reports 0666 or 0444 there.
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("%w: %s has mode %#o; run: chmod 600 %s",
			ErrInsecurePermissions, path, perm, shellQuote(path))
	}
	return readLimited(f, path, limit)
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	safe := s != ""
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._-/+=:,@", c)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
