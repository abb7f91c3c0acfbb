package events

import (
	"testing"
	"time"
)

// TestWrittenWhileRevoked: the boundary of ReasonRevoked, to the second of HTTP dates.
func TestWrittenWhileRevoked(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 2, 3, 0, 0, 600e6, time.UTC)
	revoked := func(device string) (time.Time, bool) {
		switch device {
		case "cam-1":
			return at, true
		case "cam-unknown":
			return time.Time{}, true
		}
		return time.Time{}, false
	}
	for _, c := range []struct {
		device   string
		modified time.Time
		want     bool
	}{
		{"cam-1", at.Add(-time.Second), false},
		{"cam-1", at.Truncate(time.Second), true}, // the revocation's own second
		{"cam-1", at.Add(time.Hour), true},
		{"cam-2", at.Add(time.Hour), false},
		{"cam-unknown", at.Add(time.Hour), false}, // revocation time unknown
		{"cam-1", time.Time{}, false},             // no Last-Modified
	} {
		if _, got := writtenWhileRevoked(revoked, c.device, c.modified); got != c.want {
			t.Errorf("%s at %v: %v, want %v", c.device, c.modified, got, c.want)
		}
	}
	if _, got := writtenWhileRevoked(nil, "cam-1", at); got {
		t.Error("nil RevokedFunc flags")
	}
}
