package clipgate

import (
	"errors"
	"fmt"
	"strings"
)

// Mode is what a device asks to do with its own objects: letters from "w" (write), "a"
// (append) and "r" (read), each at most once and in any order, e.g. "w", "wa", "rw".
// The token worker grants each letter's actions on the device's own objects and nothing
// else (package policy lists them).
type Mode string

// The mode letters; modes combine them, e.g. ModeWrite + ModeAppend.
const (
	// ModeWrite uploads objects: put, multipart upload (resume and abort), append.
	ModeWrite Mode = "w"
	// ModeAppend appends to objects and reads them back (to learn where an append
	// stands).
	ModeAppend Mode = "a"
	// ModeRead reads objects and their metadata (HEAD).
	ModeRead Mode = "r"
)

// ErrInvalidMode is wrapped by the errors ParseMode returns.
var ErrInvalidMode = errors.New("invalid mode")

// ParseMode checks that s is a mode: one to three letters from "w", "a", "r", none
// repeated. It returns s unchanged as a Mode; the letters' order does not matter.
// Errors wrap ErrInvalidMode.
func ParseMode(s string) (Mode, error) {
	if s == "" {
		return "", fmt.Errorf("%w: empty, want letters from \"w\", \"a\", \"r\"", ErrInvalidMode)
	}
	if len(s) > 3 {
		return "", fmt.Errorf("%w: %q has %d letters, want at most 3 from \"w\", \"a\", \"r\"", ErrInvalidMode, s, len(s))
	}
	var seen [3]bool
	for i := 0; i < len(s); i++ {
		j := strings.IndexByte("war", s[i])
		if j < 0 {
			return "", fmt.Errorf("%w: letter %q in %q is not one of \"w\", \"a\", \"r\"", ErrInvalidMode, s[i], s)
		}
		if seen[j] {
			return "", fmt.Errorf("%w: letter %q repeated in %q", ErrInvalidMode, s[i], s)
		}
		seen[j] = true
	}
	return Mode(s), nil
}

// Has reports whether m includes every letter of letters, e.g. m.Has(ModeRead).
func (m Mode) Has(letters Mode) bool {
	for i := 0; i < len(letters); i++ {
		if strings.IndexByte(string(m), letters[i]) < 0 {
			return false
		}
	}
	return true
}
