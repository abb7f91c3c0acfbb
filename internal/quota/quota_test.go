package quota

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/clipgate/clipgate/internal/identity"
)

func testKey(t *testing.T) ([]byte, ed25519.PublicKey) {
	t.Helper()
	seed, err := identity.NewRevocationKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := identity.RevocationPublicKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	return seed, pub
}

func sign(t *testing.T, seed []byte, s *Snapshot) []byte {
	t.Helper()
	data, err := Sign(seed, s)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// signBody signs an arbitrary body under the snapshot header, as a console with a bug
// (or a thief of its key) could.
func signBody(t *testing.T, seed []byte, issued time.Time, body string) []byte {
	t.Helper()
	data, err := identity.SignDocument(seed, kind, issued, []byte(body), MaxSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// The fake clock of these tests: a day in December, 21:00 UTC.
var now = time.Date(2026, 12, 2, 21, 0, 0, 0, time.UTC)

// A snapshot round-trips; a device at or over a limit is over until the day's or the
// month's end (the later when both are reached), a device under its limits or without a
// quota is not, and the usage stops counting when its day (or month) is over, whether or
// not a new snapshot came.
func TestTableResetAt(t *testing.T) {
	t.Parallel()
	seed, pub := testKey(t)
	s := &Snapshot{Issued: now, Day: now, Entries: []Entry{
		{Device: "cam-under", DayLimit: 100, MonthLimit: 1000, DayUsed: 99, MonthUsed: 500},
		{Device: "cam-day", DayLimit: 100, DayUsed: 100},
		{Device: "cam-month", MonthLimit: 1000, DayUsed: 10, MonthUsed: 1200},
		{Device: "cam-both", DayLimit: 100, MonthLimit: 1000, DayUsed: 150, MonthUsed: 1000},
		{Device: "cam-nolimit", DayUsed: 1 << 40, MonthUsed: 1 << 41},
	}}
	var tb Table
	if got := tb.ResetAt("cam-day", now); !got.IsZero() {
		t.Fatalf("an empty table limits: %v", got)
	}
	if err := tb.Apply(pub, sign(t, seed, s), now); err != nil {
		t.Fatal(err)
	}
	if !tb.Issued().Equal(now) || len(tb.Entries()) != 5 || tb.Entries()[0].Device != "cam-both" {
		t.Fatalf("applied: issued %v, entries %+v", tb.Issued(), tb.Entries())
	}
	midnight := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	january := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		device string
		at     time.Time
		want   time.Time
	}{
		{"cam-under", now, time.Time{}},
		{"cam-nolimit", now, time.Time{}},
		{"cam-unknown", now, time.Time{}},
		{"cam-day", now, midnight},
		{"cam-day", midnight.Add(-time.Nanosecond), midnight},
		{"cam-day", midnight, time.Time{}}, // a new day: yesterday's usage does not count
		{"cam-month", now, january},
		{"cam-month", midnight.Add(time.Hour), january}, // still December
		{"cam-month", january, time.Time{}},
		{"cam-both", now, january},
		{"cam-both", january.Add(time.Hour), time.Time{}},
	} {
		if got := tb.ResetAt(c.device, c.at); !got.Equal(c.want) {
			t.Errorf("ResetAt(%s, %v) = %v, want %v", c.device, c.at, got, c.want)
		}
	}
	// A later snapshot replaces it: the operator raised cam-day's limit.
	s.Issued, s.Entries[1].DayLimit = now.Add(time.Second), 200
	if err := tb.Apply(pub, sign(t, seed, s), now); err != nil {
		t.Fatal(err)
	}
	if got := tb.ResetAt("cam-day", now); !got.IsZero() {
		t.Fatalf("after the raise: %v", got)
	}
	// The same snapshot again (a reconnection) is fine.
	if err := tb.Apply(pub, sign(t, seed, s), now); err != nil {
		t.Fatal(err)
	}
}

// Garbage, forged, altered, old and future snapshots, a revocation list under the same
// key, and signed snapshots with bad lines are refused with a reason; the snapshot in
// force stays.
func TestTableRefusesBadSnapshots(t *testing.T) {
	t.Parallel()
	seed, pub := testKey(t)
	otherSeed, _ := testKey(t)
	good := &Snapshot{Issued: now, Day: now, Entries: []Entry{{Device: "cam-01", DayLimit: 10, DayUsed: 10}}}
	goodData := sign(t, seed, good)
	var tb Table
	if err := tb.Apply(pub, goodData, now); err != nil {
		t.Fatal(err)
	}
	later := now.Add(time.Minute)
	free := &Snapshot{Issued: later, Day: now} // would lift cam-01's limit
	revList, err := identity.SignRevocationList(seed, later, nil)
	if err != nil {
		t.Fatal(err)
	}
	body := func(lines string) []byte { return signBody(t, seed, later, "day 2026-12-02\n"+lines) }
	cases := map[string]struct {
		data []byte
		why  string
	}{
		"empty":            {nil, "header"},
		"garbage":          {[]byte("\x00\xff garbage"), "header"},
		"revocation list":  {revList, "header"},
		"forged":           {sign(t, otherSeed, free), "bad signature"},
		"altered":          {bytes.Replace(goodData, []byte(" 10 0 10 0"), []byte(" 99 0 10 0"), 1), "bad signature"},
		"old":              {sign(t, seed, &Snapshot{Issued: now.Add(-time.Second), Day: now}), "older than the snapshot in force"},
		"from the future":  {sign(t, seed, &Snapshot{Issued: now.Add(identity.SignedDocumentSkew + time.Second), Day: now}), "after this host's time"},
		"oversized":        {bytes.Repeat([]byte("x"), MaxSnapshot+1), "more than"},
		"no day":           {signBody(t, seed, later, "cam-01 1 2 3 4\n"), "no day"},
		"bad day":          {signBody(t, seed, later, "day 2026-13-45\n"), "YYYY-MM-DD"},
		"bad device":       {body("cam/01 1 2 3 4\n"), "invalid device ID"},
		"four fields":      {body("cam-01 1 2 3\n"), "want DEVICE"},
		"negative":         {body("cam-01 -1 2 3 4\n"), "not a byte count"},
		"not a number":     {body("cam-01 ten 2 3 4\n"), "not a byte count"},
		"plus sign":        {body("cam-01 +1 2 3 4\n"), "not a byte count"},
		"leading zero":     {body("cam-01 01 2 3 4\n"), "not a byte count"},
		"absurd":           {body("cam-01 9223372036854775807 2 3 4\n"), "not a byte count"},
		"repeated device":  {body("cam-01 1 2 3 4\ncam-01 1 2 3 4\n"), "out of order or repeated"},
		"unsorted devices": {body("cam-02 1 2 3 4\ncam-01 1 2 3 4\n"), "out of order or repeated"},
	}
	for name, c := range cases {
		err := tb.Apply(pub, c.data, now)
		if !errors.Is(err, ErrSnapshot) || !strings.Contains(err.Error(), c.why) {
			t.Errorf("%s: %v, want a refusal mentioning %q", name, err, c.why)
		}
		if !tb.Issued().Equal(now) || tb.ResetAt("cam-01", now).IsZero() {
			t.Fatalf("%s changed the snapshot in force: %+v", name, tb.Entries())
		}
	}
	if err := tb.Apply(pub[:10], goodData, now); !errors.Is(err, ErrSnapshot) {
		t.Errorf("short public key: %v", err)
	}
	for name, s := range map[string]*Snapshot{
		"negative":   {Day: now, Entries: []Entry{{Device: "cam-01", DayLimit: -1}}},
		"absurd":     {Day: now, Entries: []Entry{{Device: "cam-01", MonthUsed: MaxBytes + 1}}},
		"bad device": {Day: now, Entries: []Entry{{Device: "cam 01"}}},
		"twice":      {Day: now, Entries: []Entry{{Device: "cam-01"}, {Device: "cam-01"}}},
	} {
		if _, err := Sign(seed, s); err == nil {
			t.Errorf("Sign accepted %s", name)
		}
	}
	if _, err := Sign(seed[:5], good); err == nil {
		t.Error("short seed accepted")
	}
}
