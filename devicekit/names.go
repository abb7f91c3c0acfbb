package devicekit

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Clip names and content types.
//
// OSS object keys are 1 to 1,023 bytes of UTF-8 that do not start with '/' or '\'
// (https://www.alibabacloud.com/help/en/oss/user-guide/object-naming-conventions); the SDK
// escapes the rest. A clip name is the last segment of a key, so it keeps whatever a
// recorder called its file (any script, spaces, '#', '?', '%') and only what is unsafe
// in a key segment, or in a console showing it, is refused: '/' and '\' (segment
// separators), control characters, line and paragraph separators, bidirectional
// formatting characters (they make a name display as another), invalid UTF-8, leading or
// trailing white space, and the names "." and "..".

// MaxClipNameLen bounds Clip.Name, in bytes.
const MaxClipNameLen = 200

// ErrInvalidClip is wrapped by the errors Upload returns for a bad Clip.
var ErrInvalidClip = errors.New("devicekit: invalid clip")

// ErrEmptyClip is wrapped by the error for a clip file of 0 bytes: a recording that wrote
// nothing is refused (Upload) or rejected with a "failed" event (Spool), never stored as
// an empty object. It wraps ErrInvalidClip.
var ErrEmptyClip = fmt.Errorf("%w: empty file", ErrInvalidClip)

// emptyClip returns the error for a clip file of size bytes, nil unless it is empty:
// the one rule of Upload and the Spool.
func emptyClip(size int64) error {
	if size != 0 {
		return nil
	}
	return emptyClipError{}
}

// emptyClipError reads "empty file (0 bytes): ..." (as a Spool's rejection: "rejected:
// empty file ...") and wraps ErrEmptyClip.
type emptyClipError struct{}

func (emptyClipError) Error() string { return "empty file (0 bytes): the recorder wrote nothing" }
func (emptyClipError) Unwrap() error { return ErrEmptyClip }

// unsafeRune reports whether r may not appear in a clip name.
func unsafeRune(r rune) bool {
	switch r {
	case '/', '\\':
		return true
	case '\u061c', '\u200e', '\u200f', // Arabic letter mark, LRM, RLM
		'\u202a', '\u202b', '\u202c', '\u202d', '\u202e', // LRE, RLE, PDF, LRO, RLO
		'\u2066', '\u2067', '\u2068', '\u2069': // LRI, RLI, FSI, PDI
		return true
	}
	return unicode.IsControl(r) || unicode.In(r, unicode.Zl, unicode.Zp)
}

// ValidClipName returns an error wrapping ErrInvalidClip unless name may be the last
// segment of an object key: 1 to MaxClipNameLen bytes of UTF-8, not "." or "..", no
// leading or trailing white space, none of '/', '\', control characters, line or
// paragraph separators or bidirectional formatting characters. SanitizeClipName makes any
// file name valid.
func ValidClipName(name string) error {
	if name == "" || len(name) > MaxClipNameLen {
		return fmt.Errorf("%w: name %q must be 1 to %d bytes", ErrInvalidClip, name, MaxClipNameLen)
	}
	if name == "." || name == ".." {
		return fmt.Errorf("%w: name %q is a path traversal", ErrInvalidClip, name)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("%w: name %q is not valid UTF-8", ErrInvalidClip, name)
	}
	if strings.TrimSpace(name) != name {
		return fmt.Errorf("%w: name %q starts or ends with white space", ErrInvalidClip, name)
	}
	for i, r := range name {
		if unsafeRune(r) {
			return fmt.Errorf("%w: name %q: character %q at offset %d may not appear in a clip name", ErrInvalidClip, name, r, i)
		}
	}
	return nil
}

// SanitizeClipName turns a file's base name into a valid clip name, changing only what
// ValidClipName refuses: every unsafe character and every byte of invalid UTF-8 becomes
// '_', white space is trimmed from both ends, "." and ".." (and a name left empty) become
// underscores, and a name longer than MaxClipNameLen bytes is cut at a character
// boundary, keeping a short extension. Unicode stays: "门口 camera #1.mp4" is valid as it
// is. Upload's default name, the Spool and the device CLI all name clips with it.
func SanitizeClipName(base string) string {
	var b strings.Builder
	b.Grow(len(base))
	for len(base) > 0 {
		r, n := utf8.DecodeRuneInString(base)
		base = base[n:]
		if r == utf8.RuneError && n == 1 || unsafeRune(r) { // invalid UTF-8 or unsafe
			r = '_'
		}
		b.WriteRune(r)
	}
	name := strings.TrimSpace(b.String())
	switch name {
	case "":
		name = "_"
	case ".", "..":
		name = strings.Repeat("_", len(name))
	}
	if len(name) > MaxClipNameLen {
		stem, ext := splitExt(name)
		stem = strings.TrimRightFunc(cutUTF8(stem, MaxClipNameLen-len(ext)), unicode.IsSpace)
		name = stem + ext
	}
	return name
}

// splitExt splits name into stem and extension; an extension longer than 16 bytes, or
// the whole name (".hidden"), counts as part of the stem.
func splitExt(name string) (stem, ext string) {
	ext = filepath.Ext(name)
	if len(ext) > 16 || len(ext) == len(name) {
		return name, ""
	}
	return name[:len(name)-len(ext)], ext
}

// cutUTF8 returns the longest prefix of s of at most n bytes that ends on a character
// boundary.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// alternateName is the name a clip takes when its own name is held by another recording
// of the same device and day: "{stem}~{CRC-64 in hex}{ext}". It is a function of the
// name and the content, so a retry of the same recording finds the same one, and another
// recording gets another one.
func alternateName(name string, crc uint64) string {
	stem, ext := splitExt(name)
	tag := fmt.Sprintf("~%016x", crc)
	return cutUTF8(stem, MaxClipNameLen-len(tag)-len(ext)) + tag + ext
}

// contentTypes is the fixed table of Content-Types of camera formats, by lower-case
// extension. It does not consult the host's MIME database, which differs between machines
// (Debian maps .ts to a Qt translation file), so that a clip gets the same type wherever
// it is uploaded.
var contentTypes = map[string]string{
	".mp4":  "video/mp4",
	".m4v":  "video/mp4",
	".mov":  "video/quicktime",
	".mkv":  "video/x-matroska",
	".webm": "video/webm",
	".ts":   "video/mp2t",
	".m2ts": "video/mp2t",
	".mts":  "video/mp2t",
	".m3u8": "application/vnd.apple.mpegurl",
	".h264": "video/h264",
	".264":  "video/h264",
	".h265": "video/h265",
	".265":  "video/h265",
	".hevc": "video/h265",
	".jpg":  "image/jpeg",
	".jpeg": "image/jpeg",
	".png":  "image/png",
	".aac":  "audio/aac",
	".mp3":  "audio/mpeg",
	".wav":  "audio/wav",
}

// DefaultContentType is the Content-Type of a clip whose extension is not in the table.
const DefaultContentType = "application/octet-stream"

// ContentTypeOf returns the Content-Type a clip named name gets by default: from a fixed
// table of camera formats (mp4, m4v, mov, mkv, webm, ts, m2ts, mts, m3u8, h264, 264, h265,
// 265, hevc, jpg, jpeg, png, aac, mp3, wav; any case), else DefaultContentType. It is the
// same on every machine.
func ContentTypeOf(name string) string {
	if ct, ok := contentTypes[strings.ToLower(filepath.Ext(name))]; ok {
		return ct
	}
	return DefaultContentType
}
