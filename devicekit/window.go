package devicekit

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Window is a daily span of local time: from From (inclusive) to To (exclusive), both
// offsets from midnight. A Window whose From is after its To runs past midnight:
// {22h, 6h} is 22:00 to 06:00 the next morning. To may be 24h (midnight at the end of
// the day); From and To may not be equal.
//
// The local time is the time of day of the clock's reading in its own location
// (Config.Now or SpoolConfig.Now; time.Now reads the system's time zone).
type Window struct {
	From, To time.Duration
}

// ParseWindow reads "HH:MM-HH:MM", for example "22:00-06:00" or "00:00-24:00".
func ParseWindow(s string) (Window, error) {
	from, to, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		return Window{}, fmt.Errorf("window %q: want HH:MM-HH:MM, e.g. 22:00-06:00", s)
	}
	var w Window
	var err error
	if w.From, err = parseClock(from); err != nil {
		return Window{}, fmt.Errorf("window %q: %w", s, err)
	}
	if w.To, err = parseClock(to); err != nil {
		return Window{}, fmt.Errorf("window %q: %w", s, err)
	}
	if err := w.check(); err != nil {
		return Window{}, fmt.Errorf("window %q: %w", s, err)
	}
	return w, nil
}

// parseClock reads "HH:MM" (00:00 to 24:00) as an offset from midnight.
func parseClock(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(h) < 1 || len(h) > 2 || len(m) != 2 {
		return 0, fmt.Errorf("%q is not a time of day HH:MM", s)
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || hh < 0 || mm < 0 || mm > 59 || hh > 24 || (hh == 24 && mm != 0) || h[0] == '+' || m[0] == '+' {
		return 0, fmt.Errorf("%q is not a time of day HH:MM (00:00 to 24:00)", s)
	}
	return time.Duration(hh)*time.Hour + time.Duration(mm)*time.Minute, nil
}

// check reports a Window that cannot be meant.
func (w Window) check() error {
	const day = 24 * time.Hour
	switch {
	case w.From < 0 || w.From >= day:
		return fmt.Errorf("start %v is outside 00:00..23:59", w.From)
	case w.To <= 0 || w.To > day:
		return fmt.Errorf("end %v is outside 00:01..24:00", w.To)
	case w.From == w.To:
		return fmt.Errorf("start and end are both %s: an empty window (00:00-24:00 is the whole day)", clockString(w.From))
	}
	return nil
}

// String returns "HH:MM-HH:MM".
func (w Window) String() string { return clockString(w.From) + "-" + clockString(w.To) }

func clockString(d time.Duration) string {
	return fmt.Sprintf("%02d:%02d", int(d/time.Hour), int(d%time.Hour/time.Minute))
}

// UnmarshalText reads a window with ParseWindow (flags, configuration files).
func (w *Window) UnmarshalText(b []byte) error {
	v, err := ParseWindow(string(b))
	if err != nil {
		return err
	}
	*w = v
	return nil
}

// MarshalText writes the window as String does.
func (w Window) MarshalText() ([]byte, error) { return []byte(w.String()), nil }

// Contains reports whether t's local time of day falls in the window.
func (w Window) Contains(t time.Time) bool {
	h, m, s := t.Clock()
	d := time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(s)*time.Second + time.Duration(t.Nanosecond())
	if w.From < w.To {
		return d >= w.From && d < w.To
	}
	return d >= w.From || d < w.To
}

// inWindows reports whether t falls in any of ws; no windows means always.
func inWindows(ws []Window, t time.Time) bool {
	if len(ws) == 0 {
		return true
	}
	for _, w := range ws {
		if w.Contains(t) {
			return true
		}
	}
	return false
}
