package clipgate

import (
	"errors"
	"strings"
	"testing"
)

func TestParseMode(t *testing.T) {
	t.Parallel()
	valid := []string{"w", "a", "r", "wa", "aw", "rw", "wr", "ar", "war", "rwa", "raw"}
	for _, s := range valid {
		m, err := ParseMode(s)
		if err != nil || string(m) != s {
			t.Errorf("ParseMode(%q) = %q, %v; want %q, nil", s, m, err, s)
		}
	}
	invalid := map[string]string{
		"":      "empty",
		"x":     "not one of",
		"W":     "not one of",
		"ww":    "repeated",
		"wrw":   "repeated",
		"wx":    "not one of",
		"w ":    "not one of",
		"warr":  "at most 3",
		"rwa*":  "at most 3",
		"*":     "not one of",
		"r\x00": "not one of",
	}
	for s, want := range invalid {
		m, err := ParseMode(s)
		if !errors.Is(err, ErrInvalidMode) || m != "" {
			t.Errorf("ParseMode(%q) = %q, %v; want ErrInvalidMode", s, m, err)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("ParseMode(%q) error %q does not mention %q", s, err, want)
		}
	}
}

func TestModeHas(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		m, letters Mode
		want       bool
	}{
		{"w", ModeWrite, true},
		{"w", ModeRead, false},
		{"rw", ModeRead, true},
		{"war", ModeAppend + ModeRead, true},
		{"wa", ModeAppend + ModeRead, false},
		{"", ModeWrite, false},
		{"w", "", true},
	} {
		if got := c.m.Has(c.letters); got != c.want {
			t.Errorf("Mode(%q).Has(%q) = %v, want %v", c.m, c.letters, got, c.want)
		}
	}
}
