// Package quota carries the per-device upload quotas from the console to the token
// workers, which share no database with it.
//
// The console keeps the quotas (bytes per UTC day and per UTC month) and counts each
// device's usage in its index. It signs a Snapshot of both with its signing key (the
// revocation list's: identity.SignDocument, under its own header, so that neither passes
// for the other) and publishes it, retained, on topics.Scheme.Quotas(), which only the
// console role may write. Each token worker follows the topic and applies every snapshot
// to a Table (Table.Apply), whose ResetAt is the worker's Config.Quota.
//
// A device is over its quota when its usage of the day (or month) the snapshot counted
// has reached the limit; it then gets no write or append credentials until the next UTC
// midnight (or the first of the next month). A snapshot counts for the day it was made:
// when the day (or month) turns, its usage no longer applies, whether or not a new
// snapshot has arrived, so a device is let through at the reset even if the console is
// away. Refused snapshots (garbage, a bad signature, older than the one in force, too far
// in the future) leave the one in force.
package quota

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clipgate/clipgate/internal/deviceid"
	"github.com/clipgate/clipgate/internal/identity"
)

// kind is a snapshot's first line (identity.SignDocument's header). A snapshot's body is
//
//	day 2026-12-02
//	cam-01 DAY_LIMIT MONTH_LIMIT DAY_USED MONTH_USED
//	...
//
// with decimal byte counts (a limit of 0: none), one line per device with a quota.
const kind = "clipgate-quotas-v1"

// MaxSnapshot bounds a signed snapshot's size: about 100,000 devices with quotas.
const MaxSnapshot = 8 << 20

// MaxBytes bounds a quota or a usage (1 EiB): larger numbers are refused as absurd.
const MaxBytes = 1 << 60

// ErrSnapshot is wrapped by every refusal of a snapshot.
var ErrSnapshot = errors.New("quota snapshot refused")

// Entry is one device's quota and usage.
type Entry struct {
	Device string
	// DayLimit and MonthLimit are the bytes the device may upload per UTC day and per
	// UTC month; 0 means no limit.
	DayLimit, MonthLimit int64
	// DayUsed and MonthUsed are the bytes it uploaded in the snapshot's day and month.
	DayUsed, MonthUsed int64
}

// Snapshot is every device's quota and usage at one time.
type Snapshot struct {
	// Issued is when the console made it; each snapshot is issued after the previous.
	Issued time.Time
	// Day is the UTC day (and so month) the usage counts.
	Day time.Time
	// Entries are sorted by device, one per device.
	Entries []Entry
}

// DayStart returns the start of t's UTC day.
func DayStart(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// MonthStart returns the start of t's UTC month.
func MonthStart(t time.Time) time.Time {
	y, m, _ := t.UTC().Date()
	return time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
}

// Over reports when a device over its quota at now may upload again: the next UTC
// midnight (day limit reached) or the first of the next month (month limit reached),
// whichever is later; the zero time when it is not over. The usage counts only within
// day's day and month.
func (e *Entry) Over(day, now time.Time) time.Time {
	if e.MonthLimit > 0 && e.MonthUsed >= e.MonthLimit && MonthStart(day).Equal(MonthStart(now)) {
		return MonthStart(now).AddDate(0, 1, 0)
	}
	if e.DayLimit > 0 && e.DayUsed >= e.DayLimit && DayStart(day).Equal(DayStart(now)) {
		return DayStart(now).AddDate(0, 0, 1)
	}
	return time.Time{}
}

// Sign returns s signed with the signing key's seed (identity.NewRevocationKey). Its
// entries are written sorted by device; a repeated device, an invalid device ID or a
// byte count outside 0..MaxBytes is an error.
func Sign(seed []byte, s *Snapshot) ([]byte, error) {
	entries := slices.Clone(s.Entries)
	slices.SortFunc(entries, func(a, b Entry) int { return strings.Compare(a.Device, b.Device) })
	var b bytes.Buffer
	b.WriteString("day " + DayStart(s.Day).Format(time.DateOnly) + "\n")
	for i, e := range entries {
		if err := deviceid.Validate(e.Device); err != nil {
			return nil, fmt.Errorf("quota snapshot: %w", err)
		}
		if i > 0 && entries[i-1].Device == e.Device {
			return nil, fmt.Errorf("quota snapshot: device %s twice", e.Device)
		}
		for _, v := range []int64{e.DayLimit, e.MonthLimit, e.DayUsed, e.MonthUsed} {
			if v < 0 || v > MaxBytes {
				return nil, fmt.Errorf("quota snapshot: device %s: %d bytes is outside 0..%d", e.Device, v, int64(MaxBytes))
			}
		}
		fmt.Fprintf(&b, "%s %d %d %d %d\n", e.Device, e.DayLimit, e.MonthLimit, e.DayUsed, e.MonthUsed)
	}
	data, err := identity.SignDocument(seed, kind, s.Issued, b.Bytes(), MaxSnapshot)
	if err != nil {
		return nil, fmt.Errorf("quota snapshot of %d devices: %w", len(s.Entries), err)
	}
	return data, nil
}

// Verify checks a signed snapshot against the console's public key and parses it. Every
// refusal wraps ErrSnapshot and says why.
func Verify(pub ed25519.PublicKey, data []byte) (*Snapshot, error) {
	issued, body, err := identity.VerifyDocument(pub, kind, data, MaxSnapshot)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSnapshot, err)
	}
	s, err := parse(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSnapshot, err)
	}
	s.Issued = issued
	return s, nil
}

// parse reads a snapshot's body (after the issue time, from line 3).
func parse(body []byte) (*Snapshot, error) {
	line, rest, _ := bytes.Cut(body, []byte("\n"))
	ds, ok := strings.CutPrefix(string(line), "day ")
	if !ok {
		return nil, errors.New("no day on line 3")
	}
	day, err := time.Parse(time.DateOnly, ds)
	if err != nil {
		return nil, fmt.Errorf("day %q: want YYYY-MM-DD", truncate(ds))
	}
	s := &Snapshot{Day: day}
	for n := 4; len(rest) > 0; n++ {
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		f := strings.Split(string(line), " ")
		if len(f) != 5 {
			return nil, fmt.Errorf("line %d: want DEVICE DAY_LIMIT MONTH_LIMIT DAY_USED MONTH_USED", n)
		}
		if err := deviceid.Validate(f[0]); err != nil {
			return nil, fmt.Errorf("line %d: %v", n, err)
		}
		e := Entry{Device: f[0]}
		for i, p := range []*int64{&e.DayLimit, &e.MonthLimit, &e.DayUsed, &e.MonthUsed} {
			v, err := strconv.ParseInt(f[i+1], 10, 64)
			if err != nil || v < 0 || v > MaxBytes || strconv.FormatInt(v, 10) != f[i+1] {
				return nil, fmt.Errorf("line %d: %q is not a byte count (0 to %d, decimal)", n, truncate(f[i+1]), int64(MaxBytes))
			}
			*p = v
		}
		if k := len(s.Entries); k > 0 && s.Entries[k-1].Device >= e.Device {
			return nil, fmt.Errorf("line %d: device %s out of order or repeated", n, e.Device)
		}
		s.Entries = append(s.Entries, e)
	}
	return s, nil
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// Table is a token worker's copy of the snapshot in force. ResetAt is lock-free (the
// snapshot is immutable and replaced whole). The zero value holds no quotas.
type Table struct {
	mu  sync.Mutex // serializes Apply
	cur atomic.Pointer[table]
}

// table is one applied snapshot, by device.
type table struct {
	issued, day time.Time
	devices     map[string]Entry
}

// Apply verifies a signed snapshot and puts it in force: its signature must verify, and
// it must have been issued after the one in force and at most
// identity.SignedDocumentSkew after now. The same snapshot again (a reconnection) is
// accepted and changes nothing. A refused snapshot leaves the one in force; the error
// wraps ErrSnapshot and says why.
func (t *Table) Apply(pub ed25519.PublicKey, data []byte, now time.Time) error {
	s, err := Verify(pub, data)
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if same, err := identity.CheckNewer("snapshot", s.Issued, t.Issued(), now); err != nil {
		return fmt.Errorf("%w: %v", ErrSnapshot, err)
	} else if same {
		return nil
	}
	m := make(map[string]Entry, len(s.Entries))
	for _, e := range s.Entries {
		m[e.Device] = e
	}
	t.cur.Store(&table{issued: s.Issued, day: s.Day, devices: m})
	return nil
}

// ResetAt is tokenworker.Config.Quota: when deviceID, over its quota at now, may upload
// again, or the zero time when it may upload now.
func (t *Table) ResetAt(deviceID string, now time.Time) time.Time {
	c := t.cur.Load()
	if c == nil {
		return time.Time{}
	}
	e, ok := c.devices[deviceID]
	if !ok {
		return time.Time{}
	}
	return e.Over(c.day, now)
}

// Issued returns the issue time of the snapshot in force (zero if none).
func (t *Table) Issued() time.Time {
	if c := t.cur.Load(); c != nil {
		return c.issued
	}
	return time.Time{}
}

// Len returns the number of devices with a quota in force.
func (t *Table) Len() int {
	if c := t.cur.Load(); c != nil {
		return len(c.devices)
	}
	return 0
}

// Entries returns the quotas in force, sorted by device.
func (t *Table) Entries() []Entry {
	c := t.cur.Load()
	if c == nil {
		return nil
	}
	out := make([]Entry, 0, len(c.devices))
	for _, e := range c.devices {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Device, b.Device) })
	return out
}
