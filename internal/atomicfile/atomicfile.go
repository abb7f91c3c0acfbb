// Package atomicfile writes a file so that a crash leaves either its old content or its
// new content, never a mix: the one way clipgate replaces a file (keys, configuration, the
// device journal, revocation lists).
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
)

// TempPattern is the name pattern of the temporary files Write creates beside the target
// ("." + base name + TempPattern). A crash between create and rename leaves one behind;
// directories that hold such files sweep names containing ".tmp-".
const TempPattern = ".tmp-*"

// Write writes data to path with permissions perm: it writes a temporary file in path's
// directory, syncs it, renames it over path and syncs the directory, so the new content
// is durable when Write returns nil. On error, path is unchanged and the temporary file
// is removed.
func Write(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, true)
}

// WriteVolatile is Write without the syncs, for a file whose loss a power cut can afford:
// a reader, and a process that crashed, see the old content or the new, but after a power
// loss path may hold the old content, the new, or nothing at all (missing or empty). Sync
// makes it durable later.
func WriteVolatile(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, false)
}

func write(path string, data []byte, perm os.FileMode, durable bool) (err error) {
	dir, base := filepath.Dir(path), filepath.Base(path)
	f, err := os.CreateTemp(dir, "."+base+TempPattern)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
			err = fmt.Errorf("write %s: %w", path, err)
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if durable {
		if err = syncFile(f); err != nil {
			return err
		}
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	if !durable {
		return nil
	}
	return SyncDir(dir)
}

// Sync makes path, as WriteVolatile left it, durable: it syncs the file, then its
// directory (which holds the rename that named it). A missing path is an error that
// wraps fs.ErrNotExist.
func Sync(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	err = syncFile(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return SyncDir(filepath.Dir(path))
}

// SyncHook, when set (by tests), is called with the name of every file and directory
// that this package syncs, before the sync: the crash tests of the device kit know what
// a power loss would keep, and its benchmarks count fsyncs.
var SyncHook atomic.Pointer[func(name string)]

func syncFile(f *os.File) error {
	if h := SyncHook.Load(); h != nil {
		(*h)(f.Name())
	}
	return f.Sync()
}

// SyncDir makes the entries of dir durable (a rename or a create in it).
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = syncFile(d)
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
