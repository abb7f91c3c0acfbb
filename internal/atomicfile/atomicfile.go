// Package atomicfile writes a file so that a crash leaves either its old content or its
// new content, never a mix: the one way clipgate replaces a file (keys, configuration, the
// device journal, revocation lists).
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// TempPattern is the name pattern of the temporary files Write creates beside the target
// ("." + base name + TempPattern). A crash between create and rename leaves one behind;
// directories that hold such files sweep names containing ".tmp-".
const TempPattern = ".tmp-*"

// Write writes data to path with permissions perm: it writes a temporary file in path's
// directory, syncs it, renames it over path and syncs the directory, so the new content
// is durable when Write returns nil. On error, path is unchanged and the temporary file
// is removed.
func Write(path string, data []byte, perm os.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
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
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// SyncDir makes the entries of dir durable (a rename or a create in it).
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
