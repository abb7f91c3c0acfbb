package identity

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clipgate/clipgate/internal/deviceid"
	"github.com/clipgate/clipgate/internal/testutil"
)

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// replaceFile writes text next to path and renames it into place, as editors and
// configuration tools do.
func replaceFile(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".new"
	writeFile(t, tmp, text)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestRevocationsBasics(t *testing.T) {
	t.Parallel()
	var nilR *Revocations
	var zero Revocations
	if nilR.Revoked("cam-01") || zero.Revoked("cam-01") || nilR.Len() != 0 || zero.Len() != 0 {
		t.Fatal("nil or zero list revokes")
	}
	r := NewRevocations("cam-01", "cam-02")
	if !r.Revoked("cam-01") || !r.Revoked("cam-02") || r.Revoked("cam-03") || r.Len() != 2 {
		t.Fatal("NewRevocations")
	}
	r.Set([]string{"cam-03"})
	if r.Revoked("cam-01") || !r.Revoked("cam-03") || r.Len() != 1 {
		t.Fatal("Set did not replace the list")
	}
	r.Set(nil)
	if r.Revoked("cam-03") || r.Len() != 0 {
		t.Fatal("Set(nil) did not clear the list")
	}
}

func TestLoadRevocations(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cases := []struct {
		name, text string
		revoked    []string
		notRevoked []string
		errLine    string // "" = no error; else the ":N:" the error must name
		notID      bool   // the error is not about the device ID
	}{
		{"empty file", "", nil, []string{"cam-01"}, "", false},
		{"comments and blanks", "# revoked cameras\n\ncam-01\n  cam-02  \n\t\n# cam-03\n", []string{"cam-01", "cam-02"}, []string{"cam-03", "# cam-03"}, "", false},
		{"inline comment", "cam-01 # stolen 2024-05-01\n", []string{"cam-01"}, []string{"cam-01 "}, "", false},
		{"crlf and no final newline", "cam-01\r\ncam-02", []string{"cam-01", "cam-02"}, nil, "", false},
		{"duplicates", "cam-01\ncam-01\n", []string{"cam-01"}, nil, "", false},
		{"invalid character", "cam-01\ncam/02\n", nil, nil, ":2:", false},
		{"two IDs on a line", "cam-01 cam-02\n", nil, nil, ":1:", true},
		{"with times", "cam-01 2026-12-02T03:04:05Z\ncam-02 2026-12-02T03:04:05.5+01:00 # why\n", []string{"cam-01", "cam-02"}, nil, "", false},
		{"bad time", "cam-01 2026-13-02T03:04:05Z\n", nil, nil, ":1:", true},
		{"three fields", "cam-01 2026-12-02T03:04:05Z x\n", nil, nil, ":1:", true},
		{"too long", "ok-1\n\n# x\n" + strings.Repeat("a", 65) + "\n", nil, nil, ":4:", false},
		{"too short", "a\n", nil, nil, ":1:", false},
		{"dot dot", "..\n", nil, nil, ":1:", false},
		{"nul byte", "cam\x0001\n", nil, nil, ":1:", false},
		{"binary", "\xff\xfe\x00\x01", nil, nil, ":1:", false},
	}
	for i, c := range cases {
		path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_"))
		writeFile(t, path, c.text)
		r, err := LoadRevocations(path)
		if c.errLine != "" {
			if err == nil || errors.Is(err, deviceid.ErrInvalid) == c.notID || !strings.Contains(err.Error(), path+c.errLine) {
				t.Errorf("%d %s: got %v, want an invalid-ID error naming %s%s", i, c.name, err, path, c.errLine)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		for _, id := range c.revoked {
			if !r.Revoked(id) {
				t.Errorf("%s: %q not revoked", c.name, id)
			}
		}
		for _, id := range c.notRevoked {
			if r.Revoked(id) {
				t.Errorf("%s: %q revoked", c.name, id)
			}
		}
		if r.Len() != len(c.revoked) {
			t.Errorf("%s: Len = %d, want %d", c.name, r.Len(), len(c.revoked))
		}
	}
	if _, err := LoadRevocations(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := LoadRevocations(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
}

// errorLog collects the errors Watch reports.
type errorLog struct {
	mu   sync.Mutex
	errs []error
}

func (l *errorLog) add(err error) { l.mu.Lock(); l.errs = append(l.errs, err); l.mu.Unlock() }
func (l *errorLog) count() int    { l.mu.Lock(); defer l.mu.Unlock(); return len(l.errs) }
func (l *errorLog) last() error   { l.mu.Lock(); defer l.mu.Unlock(); return l.errs[len(l.errs)-1] }

func TestRevocationsWatch(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "revoked.txt")
	writeFile(t, path, "cam-01\n")
	r, err := LoadRevocations(path)
	if err != nil {
		t.Fatal(err)
	}
	var log errorLog
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Watch(ctx, path, log.add) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch returned %v", err)
		}
	}()

	// Rename into place (the recommended way).
	replaceFile(t, path, "cam-01\ncam-02\n")
	testutil.WaitFor(t, "cam-02 revoked after rename", func() bool { return r.Revoked("cam-02") })

	// Plain rewrite in place.
	writeFile(t, path, "cam-03\n")
	testutil.WaitFor(t, "in-place rewrite", func() bool { return r.Revoked("cam-03") && !r.Revoked("cam-01") })

	// An invalid file is reported and the list in force stays.
	replaceFile(t, path, "cam-04\nnot/valid\n")
	testutil.WaitFor(t, "error reported", func() bool { return log.count() > 0 })
	if err := log.last(); !errors.Is(err, deviceid.ErrInvalid) || !strings.Contains(err.Error(), ":2:") ||
		!strings.Contains(err.Error(), "keeping the previous list") {
		t.Fatalf("reported %v", err)
	}
	if !r.Revoked("cam-03") || r.Revoked("cam-04") {
		t.Fatal("invalid file changed the list in force")
	}

	// Removing the file is reported too, and changes nothing.
	n := log.count()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "removal reported", func() bool { return log.count() > n })
	if !errors.Is(log.last(), os.ErrNotExist) || !r.Revoked("cam-03") {
		t.Fatalf("after removal: %v, cam-03 revoked %v", log.last(), r.Revoked("cam-03"))
	}

	// A valid file again is picked up; activity on other files does not disturb it.
	writeFile(t, filepath.Join(dir, "unrelated"), "x")
	replaceFile(t, path, "cam-05\n")
	testutil.WaitFor(t, "recovery", func() bool { return r.Revoked("cam-05") && !r.Revoked("cam-03") })
}

// A symlink swap, as Kubernetes does for ConfigMap volumes: the watched name never
// changes, the link it goes through does.
func TestRevocationsWatchSymlinkSwap(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, text := range map[string]string{"v1": "cam-01\n", "v2": "cam-02\n"} {
		if err := os.Mkdir(filepath.Join(dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, name, "revoked.txt"), text)
	}
	if err := os.Symlink("v1", filepath.Join(dir, "..data")); err != nil {
		t.Skipf("symlinks unavailable: %v", err)
	}
	path := filepath.Join(dir, "revoked.txt")
	if err := os.Symlink("..data/revoked.txt", path); err != nil {
		t.Fatal(err)
	}
	r, err := LoadRevocations(path)
	if err != nil || !r.Revoked("cam-01") {
		t.Fatalf("load through symlink: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Watch(ctx, path, func(err error) { t.Errorf("reported %v", err) }) }()
	defer func() { cancel(); <-done }()

	if err := os.Symlink("v2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "symlink swap", func() bool { return r.Revoked("cam-02") && !r.Revoked("cam-01") })
}

func TestRevocationsWatchStartup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// A directory that does not exist cannot be watched: Watch says so at once.
	r := NewRevocations("cam-01")
	err := r.Watch(context.Background(), filepath.Join(dir, "nope", "revoked.txt"), nil)
	if err == nil {
		t.Fatal("watching a missing directory succeeded")
	}
	// A change made before Watch starts is picked up by its first load, and an invalid
	// file at start is reported with the list kept.
	path := filepath.Join(dir, "revoked.txt")
	writeFile(t, path, "cam-02\n")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Watch(ctx, path, nil) }() // nil onErr must be fine
	testutil.WaitFor(t, "initial load", func() bool { return r.Revoked("cam-02") && !r.Revoked("cam-01") })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	writeFile(t, path, "bad/id\n")
	var log errorLog
	ctx, cancel = context.WithCancel(context.Background())
	go func() { done <- r.Watch(ctx, path, log.add) }()
	testutil.WaitFor(t, "initial error", func() bool { return log.count() == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !r.Revoked("cam-02") {
		t.Fatal("invalid file at start replaced the list")
	}
}

func BenchmarkRevoked(b *testing.B) {
	ids := make([]string, 10000)
	for i := range ids {
		ids[i] = "cam-" + strings.Repeat("x", i%50) + string(rune('a'+i%26))
	}
	r := NewRevocations(ids...)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.Revoked("cam-000123")
		}
	})
}

// OnRevoke tells each registered callback which devices an apply newly revokes (not the
// ones revoked before, nor restores), from every source; unregistered, it is not called.
func TestRevocationsOnRevoke(t *testing.T) {
	t.Parallel()
	r := NewRevocations("cam-1")
	var got [][]string
	unregister := r.OnRevoke(func(ids []string) {
		ids = slices.Clone(ids)
		slices.Sort(ids)
		got = append(got, ids)
	})
	r.Set([]string{"cam-1", "cam-2", "cam-3"})
	r.Set([]string{"cam-2"})                                   // restores only
	r.SetList([]Revocation{{Device: "cam-1", At: time.Now()}}) // cam-1 again
	unregister()
	r.Set([]string{"cam-4"})
	want := [][]string{{"cam-2", "cam-3"}, {"cam-1"}}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("callbacks got %q, want %q", got, want)
	}
}
