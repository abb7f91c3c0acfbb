package identity

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestLoadKeyFormats(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := randBytes(t, KeySize)
	// Make sure the URL alphabet matters for this key, so each form is really tested.
	key[0], key[1] = 0xfb, 0xff
	good := map[string]string{
		"hex":           hex.EncodeToString(key),
		"HEX":           strings.ToUpper(hex.EncodeToString(key)),
		"std padded":    base64.StdEncoding.EncodeToString(key),
		"std raw":       base64.RawStdEncoding.EncodeToString(key),
		"url padded":    base64.URLEncoding.EncodeToString(key),
		"url raw":       base64.RawURLEncoding.EncodeToString(key),
		"whitespace":    "\n\t  " + hex.EncodeToString(key) + " \r\n\n",
		"trailing line": base64.StdEncoding.EncodeToString(key) + "\n",
	}
	for name, text := range good {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		writeFile(t, path, text)
		got, err := LoadKey(path)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !bytes.Equal(got, key) {
			t.Errorf("%s: got %x, want %x", name, got, key)
		}
	}
	bad := map[string]string{
		"empty":             "",
		"spaces":            "   \n",
		"short hex":         hex.EncodeToString(key[:31]),
		"long hex":          hex.EncodeToString(append(key, 0)),
		"64 non-hex":        strings.Repeat("g", 64),
		"short base64":      base64.StdEncoding.EncodeToString(key[:31]),
		"long base64":       base64.StdEncoding.EncodeToString(append(key, 0)),
		"mixed alphabets":   "+" + base64.RawURLEncoding.EncodeToString(key)[1:] + "_",
		"space inside":      hex.EncodeToString(key[:16]) + " " + hex.EncodeToString(key[16:]),
		"two lines":         hex.EncodeToString(key) + "\n" + hex.EncodeToString(key),
		"binary key":        string(key),
		"non-canonical b64": base64.RawStdEncoding.EncodeToString(key)[:42] + "B",
		"too large":         strings.Repeat("a", 5000),
		"passphrase":        "correct horse battery staple",
	}
	for name, text := range bad {
		path := filepath.Join(dir, "bad-"+strings.ReplaceAll(name, " ", "_"))
		writeFile(t, path, text)
		if k, err := LoadKey(path); err == nil {
			t.Errorf("%s: accepted as %x", name, k)
		} else if strings.Contains(err.Error(), hex.EncodeToString(key)) {
			t.Errorf("%s: error reveals the key: %v", name, err)
		}
	}
}

func TestLoadKeyPermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix permission bits on Windows")
	}
	t.Parallel()
	dir := t.TempDir()
	text := base64.StdEncoding.EncodeToString(randBytes(t, KeySize))
	for _, mode := range []os.FileMode{0o640, 0o604, 0o644, 0o660, 0o610, 0o601, 0o666} {
		path := filepath.Join(dir, "key with space "+mode.String())
		writeFile(t, path, text)
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := LoadKey(path)
		if !errors.Is(err, ErrInsecurePermissions) {
			t.Fatalf("mode %#o: got %v, want ErrInsecurePermissions", mode, err)
		}
		if want := "run: chmod 600 '" + path + "'"; !strings.Contains(err.Error(), want) {
			t.Fatalf("mode %#o: error %q does not say %q", mode, err, want)
		}
	}
	for _, mode := range []os.FileMode{0o600, 0o400} {
		path := filepath.Join(dir, "ok-"+mode.String())
		writeFile(t, path, text)
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadKey(path); err != nil {
			t.Fatalf("mode %#o: %v", mode, err)
		}
	}
	if _, err := LoadKey(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing: %v", err)
	}
	if _, err := LoadKey(dir); err == nil {
		t.Fatal("a directory loaded as a key")
	}
}

func TestWriteKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "fleet.key")
	key := randBytes(t, KeySize)
	if err := WriteKey(path, key); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %#o, want 0600", fi.Mode().Perm())
	}
	got, err := LoadKey(path)
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("round trip: %x, %v", got, err)
	}
	// Replacing keeps 0600 even over a file that was more open.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	key2 := randBytes(t, KeySize)
	if err := WriteKey(path, key2); err != nil {
		t.Fatal(err)
	}
	if got, err := LoadKey(path); err != nil || !bytes.Equal(got, key2) {
		t.Fatalf("after replace: %x, %v", got, err)
	}
	for _, k := range [][]byte{nil, key[:31], append(key, 1)} {
		if err := WriteKey(filepath.Join(dir, "bad.key"), k); !errors.Is(err, ErrKeySize) {
			t.Fatalf("%d-byte key: %v", len(k), err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "bad.key")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a refused key left a file")
	}
	if err := WriteKey(filepath.Join(dir, "no", "such", "dir.key"), key); err == nil {
		t.Fatal("writing into a missing directory succeeded")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
}

func TestParseKey(t *testing.T) {
	t.Parallel()
	key := randBytes(t, KeySize)
	if k, err := ParseKey(hex.EncodeToString(key)); err != nil || !bytes.Equal(k, key) {
		t.Fatal(err)
	}
	if _, err := ParseKey(" " + hex.EncodeToString(key)); err == nil {
		t.Fatal("ParseKey accepted surrounding whitespace")
	}
	if _, err := ParseKey(base64.StdEncoding.EncodeToString(make([]byte, 16))); !errors.Is(err, ErrKeySize) {
		t.Fatalf("16-byte key: %v", err)
	}
}

func TestShellQuote(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/etc/clipgate/fleet.key": "/etc/clipgate/fleet.key",
		"a b":                     "'a b'",
		"it's":                    `'it'\''s'`,
		"":                        "''",
		"$(rm -rf /)":             "'$(rm -rf /)'",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
