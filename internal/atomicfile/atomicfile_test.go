package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteReplaces(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	for _, tc := range []struct {
		data string
		perm os.FileMode
	}{{"first", 0o600}, {"second, longer", 0o644}} {
		if err := Write(path, []byte(tc.data), tc.perm); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != tc.data {
			t.Fatalf("read %q, %v; want %q", got, err, tc.data)
		}
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != tc.perm {
			t.Fatalf("mode %v, %v; want %v", fi.Mode().Perm(), err, tc.perm)
		}
	}
	if names := entries(t, dir); len(names) != 1 || names[0] != "state.json" {
		t.Errorf("directory holds %v, want only state.json", names)
	}
}

// TestWriteFailureLeavesNothing: a rename that cannot happen (the target is a non-empty
// directory) leaves the target as it was and no temporary file.
func TestWriteFailureLeavesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	target := filepath.Join(dir, "busy")
	if err := os.MkdirAll(filepath.Join(target, "inner"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Write(target, []byte("x"), 0o600); err == nil {
		t.Fatal("Write over a non-empty directory succeeded")
	}
	if names := entries(t, dir); len(names) != 1 || names[0] != "busy" {
		t.Errorf("directory holds %v, want only busy", names)
	}
	if fi, err := os.Stat(target); err != nil || !fi.IsDir() {
		t.Errorf("target changed: %v %v", fi, err)
	}
}

func TestWriteMissingDirectory(t *testing.T) {
	t.Parallel()
	err := Write(filepath.Join(t.TempDir(), "absent", "f"), []byte("x"), 0o600)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("got %v, want a not-exist error", err)
	}
}

func TestSyncDirMissing(t *testing.T) {
	t.Parallel()
	if err := SyncDir(filepath.Join(t.TempDir(), "absent")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("got %v", err)
	}
}

// syncs records what the package syncs until the test ends (the tests that set the hook
// do not run in parallel).
func syncs(t *testing.T) func() []string {
	t.Helper()
	var names []string
	h := func(name string) { names = append(names, name) }
	if !SyncHook.CompareAndSwap(nil, &h) {
		t.Fatal("SyncHook in use")
	}
	t.Cleanup(func() { SyncHook.Store(nil) })
	return func() []string { return names }
}

// Write syncs its temporary file, then the directory; WriteVolatile replaces the content
// the same way and syncs nothing; Sync then syncs the file and the directory.
func TestWriteVolatileThenSync(t *testing.T) {
	synced := syncs(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "entry.json")
	if err := Write(path, []byte("durable"), 0o600); err != nil {
		t.Fatal(err)
	}
	got := synced()
	if len(got) != 2 || !strings.HasPrefix(filepath.Base(got[0]), ".entry.json.tmp-") || got[1] != dir {
		t.Fatalf("Write synced %v, want its temporary file then %s", got, dir)
	}
	if err := WriteVolatile(path, []byte("volatile"), 0o640); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "volatile" {
		t.Fatalf("read %q, %v after WriteVolatile", b, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v, %v; want 0640", fi.Mode().Perm(), err)
	}
	if names := entries(t, dir); len(names) != 1 || names[0] != "entry.json" {
		t.Errorf("directory holds %v, want only entry.json", names)
	}
	if n := len(synced()); n != 2 {
		t.Fatalf("WriteVolatile synced %v", synced()[2:])
	}
	if err := Sync(path); err != nil {
		t.Fatal(err)
	}
	if got := synced()[2:]; len(got) != 2 || got[0] != path || got[1] != dir {
		t.Fatalf("Sync synced %v, want %s then %s", got, path, dir)
	}
}

// Sync of a file that is gone (published and removed meanwhile) says so.
func TestSyncMissing(t *testing.T) {
	t.Parallel()
	err := Sync(filepath.Join(t.TempDir(), "gone.json"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Sync of a missing file: %v, want fs.ErrNotExist", err)
	}
}

// WriteVolatile fails like Write and leaves nothing behind.
func TestWriteVolatileFailureLeavesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	target := filepath.Join(dir, "busy")
	if err := os.MkdirAll(filepath.Join(target, "inner"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteVolatile(target, []byte("x"), 0o600); err == nil {
		t.Fatal("WriteVolatile over a non-empty directory succeeded")
	}
	if names := entries(t, dir); len(names) != 1 || names[0] != "busy" {
		t.Errorf("directory holds %v, want only busy", names)
	}
}
